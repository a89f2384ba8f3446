"""Generate documentation from the settings table, so docs never drift from the CLI.

    python3 -m vmbuilder_lxc.docgen options > docs/options.md
    python3 -m vmbuilder_lxc.docgen tweaks > docs/tweaks.md                # the ubuntu plugin's
    python3 -m vmbuilder_lxc.docgen tweaks-debian > docs/tweaks-debian.md  # or: tweaks debian
    python3 -m vmbuilder_lxc.docgen libvirt-validation > docs/libvirt-validation.md
    python3 -m vmbuilder_lxc.docgen upgrading > docs/upgrading.md
    python3 -m vmbuilder_lxc.docgen vmbuilder.cfg > docs/vmbuilder.cfg.example   # /etc/vmbuilder.cfg

Each generator NAME writes doc_path(NAME), docs/NAME.md unless DOC_PATHS says otherwise; a unit
test regenerates every file and compares.
"""

from __future__ import annotations

import functools
import sys
import textwrap
from collections.abc import Callable, Iterable

from .cli import make_context
from .domaincheck import rules_markdown
from .plugin import discover
from .settings import SYSTEM_CONFIG, USER_CONFIG, Setting
from .tweaks import When
from .upgrading import upgrading_markdown


def _default(s: Setting) -> str:
    if callable(s.default):
        doc = (s.default.__doc__ or "computed").strip()
        return doc.splitlines()[0]
    if s.type == "bool":
        return "yes" if s.default else "no"
    if s.default in (None, []):
        return ""
    return ",".join(s.default) if isinstance(s.default, list) else str(s.default)


def options_markdown(hypervisor: str = "lxc", distro: str = "ubuntu") -> str:
    ctx = make_context(hypervisor, distro, discover())
    groups: dict[str, list[Setting]] = {}
    for s in ctx.settings.table.values():
        title = f"{s.group} ({s.plugin})" if s.plugin else s.group
        groups.setdefault(title, []).append(s)
    lines = [
        f"# Options of `vmbuilder {hypervisor} {distro}`",
        "",
        "Generated from the settings table by `python3 -m vmbuilder_lxc.docgen options`; do not edit.",
        "",
        "Every option is also a config-file key: `--name VALUE` on the command line is `name = VALUE` in",
        "`/etc/vmbuilder.cfg`, `~/.vmbuilder.cfg` or a `-c FILE`, in the `[DEFAULT]`, "
        f"`[{hypervisor}]` or `[{distro}]` section.",
        "A boolean option that a config file may set, or that is on by default, also has a `--no-` form.",
        "List options may be repeated or take commas.",
        "",
    ]
    for title, settings in groups.items():
        lines += [f"## {title}", "", "| option | config key | default | meaning |", "|---|---|---|---|"]
        lines += [_row(s) for s in settings]
        lines.append("")
    return "\n".join(lines)


def _row(s: Setting) -> str:
    flags = ", ".join(f"`{f}`" for f in s.flags + ([f"--no-{s.name}"] if s.negatable else []))
    key = f"`{s.name}`" if s.in_config else "(command line only)"
    meaning = s.help + (f" ({', '.join(s.choices)})" if s.choices else "")
    return f"| {flags} | {key} | {_default(s)} | {meaning} |"


def _when(w: When) -> str:
    parts = []
    if w.since or w.until:
        parts.append(f"{w.since or 'any'} to {w.until or 'the devel series'}")
    for label, value in (("init", w.init), ("network", w.network), ("sources", w.sources)):
        if value:
            parts.append(f"{label} {value}")
    if w.resolved is not None:
        parts.append("systemd-resolved" if w.resolved else "no systemd-resolved")
    if w.overrides is not None:
        parts.append("upstart .override files" if w.overrides else "no upstart .override files")
    if w.container_detect is not None:
        parts.append("container-detect (precise on)" if w.container_detect else "no container-detect (before precise)")
    if w.initctl is not None:
        parts.append("a listener on /run/initctl" if w.initctl else
                     "no listener on /run/initctl (systemd 258 on, upstart; see --initctl-listener)")  # fmt: skip
    if w.installed:
        parts.append(f"{w.installed} installed")
    if w.userns is not None:
        parts.append("a user namespace (--idmap, or built without root)" if w.userns else "no user namespace")
    if w.emulated is not None:
        parts.append("a foreign --arch (qemu-user; docs/architectures.md)" if w.emulated else "a native --arch")
    return ", ".join(parts) or "every release"


# Generator name -> distro whose tweak table it documents (docs/NAME.md). The ubuntu plugin's
# keeps its original name, docs/tweaks.md.
TWEAK_DOCS = {"tweaks": "ubuntu", "tweaks-debian": "debian"}


def tweaks_doc_name(distro: str) -> str:
    return next((name for name, d in TWEAK_DOCS.items() if d == distro), f"tweaks-{distro}")


def tweaks_markdown(distro: str = "ubuntu") -> str:
    ctx = make_context("lxc", distro, discover())
    table = ctx.distro.tweak_table()  # type: ignore[attr-defined]
    lines = [
        f"# Container tweaks of the `{distro}` plugin",
        "",
        f"Generated from the tweak table by `python3 -m vmbuilder_lxc.docgen {tweaks_doc_name(distro)}`; do not edit.",
        "See docs/design.md for why every tweak is upgrade-safe.",
        "",
        "| tweak | applies to | what | why |",
        "|---|---|---|---|",
    ]
    for t in table:
        what = "; ".join(a.describe() for a in t.actions)
        lines.append(f"| {t.name} | {_when(t.when)} | {what} | {t.why} |")
    return "\n".join(lines) + "\n"


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, 98, break_on_hyphens=False, break_long_words=False)


def example_config(hypervisor: str = "lxc", distro: str = "ubuntu") -> str:
    """/etc/vmbuilder.cfg as shipped: every config key with its help and default, all commented out,
    so that the file changes nothing until a line is uncommented."""
    ctx = make_context(hypervisor, distro, discover())
    sections: dict[str, list[Setting]] = {"DEFAULT": [], hypervisor: [], distro: []}
    for s in ctx.settings.table.values():
        if s.in_config:
            sections[s.plugin if s.plugin in (hypervisor, distro) else "DEFAULT"].append(s)
    cli_only = ", ".join(s.flag for s in ctx.settings.table.values() if not s.in_config)
    intro = (
        f"Defaults for every vmbuilder run (vmbuilder-lxc). Every line is a comment: this file changes nothing "
        f"until you uncomment a key. A key is a long option without its dashes (--install-mirror URL is "
        f"'install-mirror = URL'); the value shown is the default, a key without one has a computed or no default. "
        f"Files are read in this order, later ones winning: {SYSTEM_CONFIG}, {USER_CONFIG}, then each -c FILE; "
        f"within a file [DEFAULT] first, then the hypervisor's section [{hypervisor}], then the distro's "
        f"[{distro}] (the debian plugin reads [debian], with the same keys). The command line wins over every "
        f"file, even when it repeats the default. An unknown key is an error in [{hypervisor}] and [{distro}] and "
        f"a warning in [DEFAULT]. Booleans: yes/no, true/false, on/off, 1/0; lists: comma or space separated. "
        f"Only on the command line: {cli_only}."
    )
    lines = [f"# {ln}" for ln in _wrap(intro)]
    lines += ["#", "# Generated from the settings table by `python3 -m vmbuilder_lxc.docgen vmbuilder.cfg`;",
              "# every option is described in vmbuilder(1) and in options.md of the documentation.", ""]  # fmt: skip
    for section, settings in sections.items():
        lines += [f"#[{section}]", ""]
        group = ""
        for s in settings:
            title = f"{s.group} ({s.plugin})" if s.plugin else s.group
            if title != group:
                group = title
                lines += [f"# -- {title} --", ""]
            meaning = s.help + (f" ({', '.join(s.choices)})" if s.choices else "")
            if callable(s.default) and s.default.__doc__ and "default:" not in s.help:
                meaning += f" (default: {_default(s).rstrip('.')})"
            lines += [f"# {ln}" for ln in _wrap(meaning)]
            lines += [f"#{s.name} = {'' if callable(s.default) else _default(s)}".rstrip(), ""]
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[], str]] = {
    "options": options_markdown,
    **{name: functools.partial(tweaks_markdown, distro) for name, distro in TWEAK_DOCS.items()},
    "libvirt-validation": rules_markdown,
    "upgrading": upgrading_markdown,
    "vmbuilder.cfg": example_config,
}
# Generators whose output is not docs/NAME.md: the example config is installed as /etc/vmbuilder.cfg.
DOC_PATHS = {"vmbuilder.cfg": "docs/vmbuilder.cfg.example"}


def doc_path(name: str) -> str:
    """Where the output of generator NAME is committed, relative to the checkout."""
    return DOC_PATHS.get(name, f"docs/{name}.md")


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "tweaks":  # `tweaks DISTRO` is the generator of that distro
        args = [tweaks_doc_name(args[1])]
    if len(args) != 1 or args[0] not in GENERATORS:
        print(f"usage: python3 -m vmbuilder_lxc.docgen {{{'|'.join(GENERATORS)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(GENERATORS[args[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
