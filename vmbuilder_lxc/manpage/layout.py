"""Which page documents what: the page names, each page's option groups as `--help` groups them,
and the roff of an option item.

The options come from the parsers the commands themselves use (cliparse.build_parser over
cli.make_context's table, the commands' `*_parser()` methods), so the pages cannot drift from the
command line. The page names and the ONLY_IN sentence are also what the checker reads back.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..cli import PROG, build_command_parser
from ..docgen import _default
from ..plugin import Plugin, by_kind
from ..settings import Setting
from .roff import Roff, bold, esc, fmt, italic, sentence

FETCH_KEYRING = "vmbuilder-fetch-keyring"
MAIN_PAGE = f"{PROG}.1"
FETCH_PAGE = f"{FETCH_KEYRING}.1"
OPTION_SECTIONS = ("OPTIONS", "COMMANDS")
# A generic plugin limited to some hypervisors or distros says so in this sentence, which --check reads.
ONLY_IN = "Only in builds with"


@dataclass
class Option:
    flags: list[str]
    metavar: str | None
    setting: Setting | None  # None: argparse's -h/--help


@dataclass
class Group:
    title: str
    plugin: str  # "" for the core settings
    options: list[Option] = field(default_factory=list)


def plugin_pages(plugins: dict[str, type[Plugin]]) -> list[str]:
    """Every page, vmbuilder.1 first: one per hypervisor and distro, then the keyring tool's."""
    own = [f"{PROG}-{name}.1" for kind in ("hypervisor", "distro") for name in by_kind(plugins, kind)]
    return [MAIN_PAGE, *own, FETCH_PAGE]


def page_of(plugin: str, plugins: dict[str, type[Plugin]]) -> str:
    """Where a plugin's options are documented: its own page, or vmbuilder.1 for core and generic ones."""
    cls = plugins.get(plugin)
    return f"{PROG}-{plugin}.1" if cls is not None and cls.kind in ("hypervisor", "distro") else MAIN_PAGE


def pairs(plugins: dict[str, type[Plugin]]) -> list[tuple[str, str]]:
    return [(hv, d) for hv in by_kind(plugins, "hypervisor") for d in by_kind(plugins, "distro")]


def option_groups(plugins: dict[str, type[Plugin]]) -> dict[str, list[Group]]:
    """Each page's option groups, in --help order, over every (hypervisor, distro) pair."""
    pages: dict[str, dict[str, Group]] = {name: {} for name in plugin_pages(plugins)}
    seen: set[str] = set()
    for hv, distro in pairs(plugins):
        parser, by_dest = build_command_parser(hv, distro, plugins)
        for arg_group in parser._action_groups:
            for action in arg_group._group_actions:
                setting = by_dest.get(action.dest)
                if setting is None and not isinstance(action, argparse._HelpAction):
                    continue
                plugin = setting.plugin if setting else ""
                page = page_of(plugin, plugins)
                key = f"{page} {setting.name if setting else '-h'}"
                if key in seen:
                    continue
                seen.add(key)
                title = arg_group.title if setting else "General options"
                groups = pages[page]
                group = groups.setdefault(title or "", Group(title or "", plugin))
                option = Option(list(action.option_strings), option_metavar(action), setting)
                group.options.insert(0 if setting is None else len(group.options), option)
    return {name: list(groups.values()) for name, groups in pages.items()}


def restriction(cls: type[Plugin] | None) -> str:
    """The roff sentence naming where a generic plugin applies ('' for everywhere); --check reads it."""
    if cls is None or cls.kind != "plugin":
        return ""
    limits = (("hypervisor", cls.hypervisors), ("distro", cls.distros))
    parts = [f"{kind} {' or '.join(bold(n) for n in names)}" for kind, names in limits if names is not None]
    return f"{ONLY_IN} {' and '.join(parts)}." if parts else ""


def setting_paragraphs(s: Setting) -> list[str]:
    details = []
    default = _default(s)
    if default == "computed" and callable(s.default) and not s.default.__doc__:
        default = "computed at run time"
    if default:
        details.append(f"Default: {esc(default.rstrip('.'))}.")
    if s.choices:
        details.append(f"One of: {', '.join(bold(c) for c in s.choices)}.")
    if s.type == "list":
        details.append("Repeatable; values may also be separated by commas.")
    if s.secret:
        details.append("Shown as *** in \\-\\-json and \\-\\-debug output.")
    details.append(f"Config key: {bold(s.name)}." if s.in_config else "Command line only (no config key).")
    return [esc(sentence(s.help)), " ".join(details)]


def option_tag(flags: Sequence[str], metavar: str | None) -> str:
    return ", ".join(bold(f) + (f" {italic(metavar)}" if metavar else "") for f in flags)


def write_groups(page: Roff, groups: list[Group], plugins: dict[str, type[Plugin]]) -> None:
    for group in groups:
        page.request("SS", group.title)
        note = restriction(plugins.get(group.plugin))
        if note:
            page.text(note)
        for opt in group.options:
            if opt.setting is None:
                page.item(option_tag(opt.flags, None),
                          fmt(f"Show every option of `{PROG} HYPERVISOR DISTRO` and exit; without "
                              "HYPERVISOR and DISTRO, the installed plugins and commands."))  # fmt: skip
            else:
                page.item(option_tag(opt.flags, opt.metavar), *setting_paragraphs(opt.setting))


def parser_items(page: Roff, parser: argparse.ArgumentParser, fallback: dict[str, Setting]) -> None:
    """The arguments of a plain argparse parser; help it lacks comes from the setting of that flag."""
    for action in parser._actions:
        if not action.option_strings:
            name = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            page.item(italic(name), esc(sentence(action.help or name)))
            continue
        takes_value = action.nargs != 0
        metavar = option_metavar(action)
        long = next((f for f in action.option_strings if f.startswith("--")), "")
        setting = fallback.get(long.removeprefix("--"))
        text = action.help if action.help and action.help != argparse.SUPPRESS else setting.help if setting else ""
        details = []
        if action.required:
            details.append("Required.")
        if takes_value and action.default not in (None, argparse.SUPPRESS, False):
            details.append(f"Default: {esc(str(action.default))}.")
        if action.choices:
            details.append(f"One of: {', '.join(bold(str(c)) for c in action.choices)}.")
        if isinstance(action, argparse._AppendAction):
            details.append("Repeatable.")
        paragraphs = ([esc(sentence(text))] if text else []) + ([" ".join(details)] if details else [])
        page.item(option_tag(action.option_strings, metavar), *paragraphs)


def option_metavar(action: argparse.Action) -> str | None:
    """What argparse's help shows after an option that takes a value (None for a switch)."""
    if action.nargs == 0:
        return None
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [
        a.metavar if isinstance(a.metavar, str) else a.dest.upper() for a in parser._actions if not a.option_strings
    ]


def usage(prog: str, parser: argparse.ArgumentParser) -> str:
    return " ".join([prog, "[options]", *positionals(parser)])


def all_settings(groups: dict[str, list[Group]]) -> dict[str, Setting]:
    """Every setting by name: the help of a command's option that has none of its own."""
    return {o.setting.name: o.setting for page in groups.values() for g in page for o in g.options if o.setting}
