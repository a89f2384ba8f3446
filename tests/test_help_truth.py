"""--help and the docs say the defaults and choices that the code uses.

For every option of every command's parser (`vmbuilder HV DISTRO` for each pair, and each plugin
command such as `vmbuilder lxc export`, `validate` and `doctor`), what `--help`,
docs/options.md and docs/vmbuilder.cfg.example say about its default and its choices is compared
with the value a build actually uses: the Setting's value after every plugin's set_defaults, and
for the per-format compression the table the exports read (exports.FORMATS via
runner.compression_for). docs/exports.md's table is compared with that table too.

The committed docs are read as they are (not regenerated), so a default changed in the code
without `python3 -m vmbuilder_lxc.docgen` fails here; the last tests change a default, a choice
list, a help string and a format's table entry, and check that the comparison notices each.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import CSV
from tests.unit.test_debian import DEBIAN_CSV
from vmbuilder_lxc import docgen, exports, suites
from vmbuilder_lxc.cli import PROG, make_context
from vmbuilder_lxc.cliparse import build_parser
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.exports.plain import SQUASHFS
from vmbuilder_lxc.exports.runner import compression_for
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.plugin import by_kind, call_hook, command_parsers, discover
from vmbuilder_lxc.settings import Setting, Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RE = re.compile(r"\(default: ((?:[^()]|\([^()]*\))*)\)")
KEY_RE = re.compile(r"^#([a-z0-9][a-z0-9-]*) =(?: (.*))?$")
Table = dict[str, Setting]
Mutate = Callable[[Table], None]


@pytest.fixture(autouse=True)
def _fixed_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Built-in plugins only, and a fixed distro-info-data (set_defaults resolves --suite)."""
    monkeypatch.setenv("VMBUILDER_NO_ENTRY_POINTS", "1")
    (tmp_path / "ubuntu.csv").write_text(CSV)
    (tmp_path / "debian.csv").write_text(DEBIAN_CSV)
    monkeypatch.setattr(suites, "DISTRO_INFO_DIR", tmp_path)


# -- what the code uses ------------------------------------------------------------------------


@dataclass
class Build:
    """One `vmbuilder HV DISTRO` as a build with no options sees it: its parser, and its settings
    after every plugin's set_defaults."""

    hypervisor: str
    distro: str
    ctx: Context
    parser: argparse.ArgumentParser

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def table(self) -> Table:
        return self.ctx.settings.table


def make_build(hypervisor: str, distro: str, mutate: Mutate | None = None) -> Build:
    ctx = make_context(hypervisor, distro, discover())
    if mutate is not None:
        mutate(ctx.settings.table)
    call_hook(ctx.plugins, "set_defaults")
    parser = build_parser(f"{PROG} {hypervisor} {distro}", ctx.settings.table.values())
    return Build(hypervisor, distro, ctx, parser)


def pairs() -> list[tuple[str, str]]:
    plugins = discover()
    return [(hv, d) for hv in by_kind(plugins, "hypervisor") for d in by_kind(plugins, "distro")]


def documented(s: Setting) -> str | None:
    """The default --help must state for s (build_parser appends it); None: it states none."""
    if s.type == "bool":
        return None
    if callable(s.default):
        return (s.default.__doc__ or "").strip() or None
    if s.default is None or s.default == []:
        return None
    return ",".join(s.default) if isinstance(s.default, list) else str(s.default)


def shown(value: Any) -> str:
    """A value as the docs write it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def used_default_text(s: Setting, settings: Settings) -> str:
    """The default column that docs/options.md must show: the computed default's description, else
    the value a build uses."""
    if callable(s.default):
        return docgen._default(s)
    return shown(settings[s.name])


def stated_defaults(text: str) -> list[str]:
    return [m.strip() for m in DEFAULT_RE.findall(text)]


def squash(text: str) -> str:
    """Text without whitespace: --help wraps lines, the docs wrap comments."""
    return "".join(text.split())


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help argparse prints for action (with %(default)s and the like expanded), one line."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return " ".join(parser._get_formatter()._expand_help(action).split())


def setting_of(table: Table, action: argparse.Action) -> Setting | None:
    return next((s for s in table.values() if s.dest == action.dest), None)


# -- the per-format compression: text <-> exports.FORMATS --------------------------------------


def format_defaults() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """What the exports use without --compression: per format, and per separately compressed part."""
    formats = exports.FORMATS.values()
    return ({f.name: compression_for(f, "") for f in formats},
            {(part, f.name): value for f in formats for part, value in f.parts})  # fmt: skip


def parse_format_defaults(text: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """ "each format's own: tar none, lxc/lxd xz; rootfs.squashfs of lxd zstd" -> the two maps."""
    _, _, listing = text.partition(": ")
    whole, _, rest = listing.partition("; ")
    own: dict[str, str] = {}
    parts: dict[tuple[str, str], str] = {}
    for item in filter(None, whole.split(", ")):
        names, _, value = item.rpartition(" ")
        own.update({name: value for name in names.split("/")})
    for item in filter(None, rest.split(", ")):
        part_names, _, value = item.rpartition(" ")
        part, _, names = part_names.partition(" of ")
        parts.update({(part, name): value for name in names.split("/")})
    return own, parts


def format_default_problems(text: str, where: str) -> list[str]:
    claimed = parse_format_defaults(text)
    actual = format_defaults()
    if claimed != actual:
        return [f"{where}: says the formats' own compressions are {claimed}, the exports use {actual}"]
    return []


def compression_choice_problems(s: Setting, where: str) -> list[str]:
    """--compression's choices are what the formats accept, in exports.COMPRESSIONS' order."""
    accepted = {c for f in exports.FORMATS.values() for c in f.compressions}
    if s.choices != exports.COMPRESSIONS or set(s.choices) != accepted:
        return [f"{where}: choices {s.choices}, the formats accept {sorted(accepted)}"]
    return []


# -- --help of `vmbuilder HV DISTRO` -----------------------------------------------------------


def build_help_problems(b: Build) -> list[str]:
    problems: list[str] = []
    printed = squash(b.parser.format_help())
    for action in b.parser._actions:
        s = setting_of(b.table, action)
        if s is None:
            continue
        where = f"{b.parser.prog} --help, {s.flag}"
        text = help_text(b.parser, action)
        if squash(text) not in printed:
            problems.append(f"{where}: its help is not what --help prints")
        stated = stated_defaults(text)
        doc = documented(s)
        used = b.settings[s.name]
        source = b.settings.source(s.name)
        if len(stated) > 1:
            problems.append(f"{where}: states {len(stated)} defaults: {stated}")
        if doc is not None and stated != [doc]:
            problems.append(f"{where}: states default {stated}, the setting's is {doc!r}")
        if callable(s.default) and doc is not None and doc != docgen._default(s):
            problems.append(f"{where}: states default {doc!r}, the docs {docgen._default(s)!r}")
        if doc is None and s.default is not None and stated:
            problems.append(f"{where}: states default {stated}, the setting has none to state")
        if not callable(s.default) and s.default is not None and used != s.default:
            problems.append(f"{where}: documented default {shown(s.default)!r}, a build uses {used!r} ({source})")
        if s.default is None and used is not None and not stated:
            problems.append(f"{where}: a build uses {used!r} ({source}), --help states no default")
        if s.choices:
            listed = action.metavar == "{" + ",".join(s.choices) + "}" or all(c in text for c in s.choices)
            if not listed:
                problems.append(f"{where}: does not list its choices {s.choices}")
        elif isinstance(action.metavar, str) and action.metavar.startswith("{"):
            problems.append(f"{where}: shows choices {action.metavar} the setting does not check")
        no_form = f"--no-{s.name}" in action.option_strings
        if s.type == "bool" and no_form != s.negatable:
            problems.append(f"{where}: --no-{s.name} {'given' if no_form else 'missing'}; negatable={s.negatable}")
        if s.name == "compression":
            problems += compression_choice_problems(s, where)
            problems += format_default_problems(stated[0] if stated else "", where)
    return problems


def libvirt_network_problems(b: Build) -> list[str]:
    """--network's help names the network --libvirt picks (libvirt's set_defaults) when no --bridge."""
    if "libvirt" not in b.table or "network" not in b.table:
        return []
    ctx = make_context(b.hypervisor, b.distro, discover())
    ctx.settings.set_raw("libvirt", "lxc:///", "command line")
    call_hook([p for p in ctx.plugins if p.name == "libvirt"], "set_defaults")
    picked = ctx.settings["network"]
    action = next(a for a in b.parser._actions if a.dest == "network")
    if f"'{picked}'" not in help_text(b.parser, action):
        return [f"{b.parser.prog} --help, --network: does not name '{picked}', the network --libvirt picks"]
    return []


# -- the docs ----------------------------------------------------------------------------------


def options_rows(text: str) -> dict[str, tuple[list[str], str, str]]:
    """docs/options.md's table rows by long option: (flags, default, meaning)."""
    rows: dict[str, tuple[list[str], str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        flags = [f.strip("`") for f in cells[0].split(", ")]
        long = next(f for f in flags if f.startswith("--"))
        rows[long] = (flags, cells[2], cells[3])
    return rows


def options_md_problems(b: Build, text: str) -> list[str]:
    problems: list[str] = []
    rows = options_rows(text)
    actions = {a.dest: a for a in b.parser._actions}
    for s in b.table.values():
        where = f"docs/options.md, {s.flag}"
        if s.flag not in rows:
            problems.append(f"{where}: no row")
            continue
        flags, default, meaning = rows.pop(s.flag)
        if sorted(flags) != sorted(actions[s.dest].option_strings):
            problems.append(f"{where}: lists {flags}, --help has {actions[s.dest].option_strings}")
        if default != used_default_text(s, b.settings):
            problems.append(f"{where}: default {default!r}, a build uses {used_default_text(s, b.settings)!r}")
        if squash(s.help) not in squash(meaning):
            problems.append(f"{where}: its meaning is not the setting's help")
        if s.choices and f"({', '.join(s.choices)})" not in meaning:
            problems.append(f"{where}: does not list the choices {s.choices}")
        if s.default is not None and stated_defaults(meaning):
            problems.append(f"{where}: states a second default in its meaning: {stated_defaults(meaning)}")
        if s.name == "compression":
            problems += format_default_problems(default, where)
    problems += [f"docs/options.md: row for {flag}, which has no setting" for flag in rows]
    return problems


def example_entries(text: str) -> dict[str, tuple[str, str, str]]:
    """docs/vmbuilder.cfg.example's keys: name -> (section, value, the comment above it)."""
    entries: dict[str, tuple[str, str, str]] = {}
    section = ""
    comment: list[str] = []
    for line in text.splitlines():
        if re.fullmatch(r"#\[[^]]+\]", line):
            section = line[2:-1]
        elif KEY_RE.match(line):
            m = KEY_RE.match(line)
            assert m is not None
            entries[m.group(1)] = (section, m.group(2) or "", " ".join(comment))
        elif line.startswith("# ") and not line.startswith("# -- "):
            comment.append(line[2:])
            continue
        comment = []
    return entries


def example_problems(b: Build, text: str) -> list[str]:
    problems: list[str] = []
    entries = example_entries(text)
    sections = (b.hypervisor, b.distro)
    for s in b.table.values():
        where = f"docs/vmbuilder.cfg.example, {s.name}"
        if not s.in_config:
            if s.name in entries:
                problems.append(f"{where}: a command-line-only option is a key")
            continue
        if s.name not in entries:
            problems.append(f"{where}: missing")
            continue
        section, value, comment = entries.pop(s.name)
        if section != (s.plugin if s.plugin in sections else "DEFAULT"):
            problems.append(f"{where}: in [{section}]")
        want = "" if callable(s.default) else used_default_text(s, b.settings)
        if value != want:
            problems.append(f"{where}: shows {value!r}, a build uses {want!r}")
        if squash(s.help) not in squash(comment):
            problems.append(f"{where}: its comment is not the setting's help")
        if s.choices and squash(f"({', '.join(s.choices)})") not in squash(comment):
            problems.append(f"{where}: does not list the choices {s.choices}")
        stated = stated_defaults(comment)
        if callable(s.default) and s.default.__doc__ and stated != [docgen._default(s).rstrip(".")]:
            problems.append(f"{where}: states default {stated}, the setting's is {docgen._default(s)!r}")
        if not callable(s.default) and s.default is not None and stated:
            problems.append(f"{where}: states a default {stated} besides the value shown")
        if s.name == "compression":
            problems += format_default_problems(stated[0] if stated else "", where)
    problems += [f"docs/vmbuilder.cfg.example: key {name}, which is no setting" for name in entries]
    cli_only = ", ".join(s.flag for s in b.table.values() if not s.in_config)
    if squash(f"Only on the command line: {cli_only}.") not in squash(text):
        problems.append(f"docs/vmbuilder.cfg.example: does not say that only {cli_only} are command line only")
    return problems


def exports_md_problems(text: str) -> list[str]:
    """docs/exports.md's format table: each format's default compression, its parts', 'always'."""
    problems: list[str] = []
    own, parts = format_defaults()
    for f in exports.FORMATS.values():
        m = re.search(rf"^\| `{f.name}` \|[^|]*\| ([a-z]+)(?: \(([^)]*)\))? \|", text, re.M)
        if m is None:
            problems.append(f"docs/exports.md: no row for {f.name}")
            continue
        default, note = m.group(1), m.group(2) or ""
        if default != own[f.name]:
            problems.append(f"docs/exports.md, {f.name}: default {default}, the export uses {own[f.name]}")
        for (part, name), value in parts.items():
            if name == f.name and f"{part.rsplit('.', 1)[-1]}: {value}" not in note:
                problems.append(f"docs/exports.md, {f.name}: does not say its {part} is {value}")
        if (len(f.compressions) == 1) != ("always" in note):
            problems.append(f"docs/exports.md, {f.name}: 'always' does not match its compressions {f.compressions}")
    if f"--compression {'|'.join(exports.COMPRESSIONS)}" not in text:
        problems.append(f"docs/exports.md: does not list --compression {'|'.join(exports.COMPRESSIONS)}")
    return problems


# -- the commands' own parsers -----------------------------------------------------------------


def command_build(hypervisor: str) -> tuple[str, str]:
    """The build a command's defaults follow: `vmbuilder HV ubuntu` (doctor checks what a default
    build would use), or the first distro where there is no ubuntu."""
    distros = list(by_kind(discover(), "distro"))
    return hypervisor, "ubuntu" if "ubuntu" in distros else distros[0]


def command_help_problems(b: Build) -> list[str]:
    """`vmbuilder HV COMMAND` (compared with command_build(HV)): a stated default is the parser's
    default, or, for an option a build has too, the build's (same text, or naming the value a build
    uses); choices are the build's."""
    problems: list[str] = []
    for name, parser in command_parsers(discover(), b.hypervisor).items():
        for action in parser._actions:
            if not action.option_strings:
                continue
            long = next((f for f in action.option_strings if f.startswith("--")), action.option_strings[0])
            where = f"{PROG} {b.hypervisor} {name} --help, {long}"
            text = help_text(parser, action)
            stated = stated_defaults(text)
            if len(stated) > 1:
                problems.append(f"{where}: states {len(stated)} defaults: {stated}")
            real = action.default not in (None, argparse.SUPPRESS, False, True, [])
            if stated and real and stated[0] != str(action.default):
                problems.append(f"{where}: states default {stated[0]!r}, the parser's is {action.default!r}")
            s = b.table.get(long.removeprefix("--"))
            if s is None or s.type == "bool":
                continue
            if s.choices and tuple(action.choices or ()) != s.choices:
                problems.append(f"{where}: choices {action.choices}, the build's {s.flag} has {s.choices}")
            doc = documented(s)
            if doc is not None and not real:
                value = shown(b.settings[s.name])
                if not stated or not (stated[0] == doc or (value and value in stated[0])):
                    problems.append(f"{where}: states default {stated}, a build's {s.flag} is {doc!r}")
            if s.name == "compression":
                problems += format_default_problems(stated[0] if stated else "", where)
    return problems


# -- the tests ---------------------------------------------------------------------------------


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


def all_problems(mutate: Mutate | None = None) -> list[str]:
    problems: list[str] = []
    for hv, distro in pairs():
        b = make_build(hv, distro, mutate)
        problems += build_help_problems(b) + libvirt_network_problems(b)
        if (hv, distro) == command_build(hv):
            problems += command_help_problems(b)
    docs = make_build("lxc", "ubuntu", mutate)  # the docs are generated for `vmbuilder lxc ubuntu`
    problems += options_md_problems(docs, read("docs/options.md"))
    problems += example_problems(docs, read(docgen.doc_path("vmbuilder.cfg")))
    problems += exports_md_problems(read("docs/exports.md"))
    return problems


@pytest.mark.parametrize("pair", pairs(), ids="-".join)
def test_help_states_the_defaults_and_choices_a_build_uses(pair: tuple[str, str]) -> None:
    b = make_build(*pair)
    assert build_help_problems(b) + libvirt_network_problems(b) == []


@pytest.mark.parametrize("hypervisor", by_kind(discover(), "hypervisor"))
def test_commands_help_agrees_with_the_build_options(hypervisor: str) -> None:
    assert command_help_problems(make_build(*command_build(hypervisor))) == []


def test_options_md_states_the_defaults_and_choices_a_build_uses() -> None:
    assert options_md_problems(make_build("lxc", "ubuntu"), read("docs/options.md")) == []


def test_example_config_states_the_defaults_and_choices_a_build_uses() -> None:
    assert example_problems(make_build("lxc", "ubuntu"), read(docgen.doc_path("vmbuilder.cfg"))) == []


def test_exports_md_states_each_formats_compression() -> None:
    assert exports_md_problems(read("docs/exports.md")) == []


def test_every_command_and_option_is_compared() -> None:
    """The comparison reaches every pair, the plugin commands and the options that matter here."""
    assert ("lxc", "ubuntu") in pairs() and ("lxc", "debian") in pairs()
    assert {"export", "validate"} <= set(command_parsers(discover(), "lxc"))
    table = make_build("lxc", "ubuntu").table
    assert {"compression", "export-dir", "network", "list-suites", "bootstrapper"} <= set(table)


# -- the comparison fails when something drifts ---------------------------------------------------


def replace(name: str, **changes: Any) -> Mutate:
    def mutate(table: Table) -> None:
        table[name] = dataclasses.replace(table[name], **changes)

    return mutate


def test_a_default_changed_without_the_docs_is_caught() -> None:
    problems = all_problems(replace("cache-max-age", default=8))
    assert any(p.startswith("docs/options.md, --cache-max-age: default '7'") for p in problems)
    assert any(p.startswith("docs/vmbuilder.cfg.example, cache-max-age: shows '7'") for p in problems)


def test_a_default_hard_coded_in_help_is_caught() -> None:
    def mutate(table: Table) -> None:
        replace("export-dir", help="where --export writes (default: the directory DEST is in)")(table)
        replace("network", help=table["network"].help + " (default: 'default')")(table)

    problems = all_problems(mutate)
    assert any("--export-dir: states 2 defaults" in p for p in problems)
    assert any("--network: states 2 defaults" in p for p in problems)
    assert any(p.startswith("docs/options.md, --network: its meaning") for p in problems)


def test_a_plugin_that_changes_a_documented_default_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    lxc = discover()["lxc"]
    original = lxc.set_defaults

    def set_defaults(self: Any) -> None:
        original(self)
        self.settings.set("bridge", "br9")

    monkeypatch.setattr(lxc, "set_defaults", set_defaults)
    problems = all_problems()
    assert any("--bridge: documented default 'lxcbr0', a build uses 'br9'" in p for p in problems)
    assert any(p.startswith("docs/options.md, --bridge: default 'lxcbr0'") for p in problems)


def test_a_format_default_changed_without_help_and_docs_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(exports.FORMATS, "squashfs", dataclasses.replace(SQUASHFS, default_compression="xz"))
    problems = all_problems()
    for where in ("--help, --compression", "export --help, --compression", "docs/options.md, --compression",
                  "docs/vmbuilder.cfg.example, compression"):  # fmt: skip
        assert any(where in p and "the exports use" in p for p in problems), where
    assert "docs/exports.md, squashfs: default zstd, the export uses xz" in problems


def test_a_changed_choice_list_is_caught() -> None:
    problems = all_problems(replace("compression", choices=(*exports.COMPRESSIONS, "lz4")))
    assert any("--compression: choices" in p and "the formats accept" in p for p in problems)
    assert any(p.startswith("docs/options.md, --compression: does not list the choices") for p in problems)
    assert any(p.startswith("docs/vmbuilder.cfg.example, compression: does not list") for p in problems)
    assert any("export --help, --compression: choices" in p for p in problems)


def test_a_no_form_the_docs_do_not_have_is_caught() -> None:
    problems = all_problems(replace("list-suites", default=True))
    assert any(p.startswith("docs/options.md, --list-suites: lists ['--list-suites']") for p in problems)


# -- what the issue found, directly --------------------------------------------------------------


def test_command_line_only_switches_have_no_no_form() -> None:
    b = make_build("lxc", "ubuntu")
    flags = {f for a in b.parser._actions for f in a.option_strings}
    assert "--list-suites" in flags and "--no-list-suites" not in flags
    assert "--insecure" in flags and "--no-insecure" not in flags
    assert "--no-cache" in flags and "--no-verbose" in flags  # a config file can turn these on
    with pytest.raises(UserError, match="unrecognized arguments: --no-list-suites"):
        b.parser.parse_args(["--no-list-suites"])


def test_a_bad_choice_lists_the_choices_once() -> None:
    b = make_build("lxc", "ubuntu")
    with pytest.raises(UserError) as err:
        b.settings.set_raw("compression", "rar", "command line")
    assert str(err.value).count("gzip") == 1, str(err.value)
    assert err.value.hint == "give --compression one of these"


def test_squashfs_is_documented_as_what_it_uses() -> None:
    uses = compression_for(exports.FORMATS["squashfs"], "")
    b = make_build("lxc", "ubuntu")
    action = next(a for a in b.parser._actions if a.dest == "compression")
    assert parse_format_defaults(stated_defaults(help_text(b.parser, action))[0])[0]["squashfs"] == uses
    assert f"| `squashfs` | `NAME.squashfs` | {uses} |" in read("docs/exports.md")
