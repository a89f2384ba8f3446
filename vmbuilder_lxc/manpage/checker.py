"""The check behind `--check DIR`: read the roff back and compare its option items with the parsers.

It does not trust the generator: it collects the flags of every .TP item in the OPTIONS and
COMMANDS sections (whatever wrote them, by hand or in another style) and compares them with the
parsers, for every (hypervisor, distro) pair, every command and vmbuilder-fetch-keyring. It shares
with the builders only the page names and the ONLY_IN sentence (layout.py).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import PROG, build_command_parser
from ..keyring import fetch_parser
from ..plugin import Plugin, by_kind, command_parsers, discover
from .layout import FETCH_KEYRING, FETCH_PAGE, MAIN_PAGE, ONLY_IN, OPTION_SECTIONS, page_of, pairs, plugin_pages

ESCAPES = ((r"\-", "-"), (r"\&", ""), (r"\(dq", '"'), (r"\(aq", "'"), (r"\ ", " "), (r"\e", "\\"))
FLAG_RE = re.compile(r"(?<![\w-])--?[A-Za-z0-9][\w-]*")


def plain(roff: str) -> str:
    """Roff text without fonts and escapes (enough for the tags and titles we read)."""
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", roff)
    for code, char in ESCAPES:
        text = text.replace(code, char)
    return text


def request_args(line: str) -> str:
    """The arguments of a request line such as `.SS "title"`, unquoted."""
    parts = line.split(None, 1)
    rest = parts[1] if len(parts) > 1 else ""
    return " ".join(a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', rest))


@dataclass
class DocGroup:
    """An option group read from a page: its title, where it applies, and its items' flags."""

    section: str
    title: str
    flags: list[str] = field(default_factory=list)
    only: dict[str, set[str]] = field(default_factory=dict)  # "hypervisor"/"distro" -> names

    def applies(self, hypervisor: str, distro: str) -> bool:
        wanted = {"hypervisor": hypervisor, "distro": distro}
        return all(wanted.get(kind) in names for kind, names in self.only.items())


def read_page(text: str) -> list[DocGroup]:
    """The option items of the OPTIONS and COMMANDS sections, by subsection."""
    groups: list[DocGroup] = []
    section = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            section = plain(request_args(line)).strip().upper()
            if section in OPTION_SECTIONS:
                groups.append(DocGroup(section, ""))
        elif section not in OPTION_SECTIONS:
            continue
        elif line.startswith(".SS"):
            groups.append(DocGroup(section, " ".join(plain(request_args(line)).split())))
        elif line.startswith(".TP") and i + 1 < len(lines):
            tag = lines[i + 1]
            tag = plain(request_args(tag) if tag.startswith(".") else tag)
            groups[-1].flags += FLAG_RE.findall(tag)
        elif not line.startswith("."):
            m = re.match(rf"{ONLY_IN} (.+)\.$", plain(line).strip())
            if m and not groups[-1].flags:
                for part in m.group(1).split(" and "):
                    kind, _, names = part.partition(" ")
                    groups[-1].only[kind] = set(names.split(" or "))
    return groups


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


class Report:
    """Mismatches, each reported once with every command line it concerns."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str, str], list[str]] = {}

    def add(self, flag: str, page: str, missing_from_page: bool, where: str) -> None:
        self.found.setdefault((flag, page, "page" if missing_from_page else "cli"), []).append(where)

    def lines(self) -> list[str]:
        out = []
        for (flag, page, side), where in sorted(self.found.items()):
            cli = ", ".join(dict.fromkeys(where))
            if side == "page":
                out.append(f"{flag} is in the CLI but not in the man page {page} ({cli})")
            else:
                out.append(f"{flag} is in the man page {page} but not in the CLI ({cli})")
        return out


def compare(report: Report, where: str, cli: dict[str, str], documented: dict[str, list[str]]) -> None:
    """cli: flag -> the page it belongs in; documented: flag -> the pages that have it."""
    for flag, page in cli.items():
        if flag not in documented:
            report.add(flag, page, True, where)
    for flag, pages in documented.items():
        if flag not in cli:
            for page in pages:
                report.add(flag, page, False, where)


def check(directory: Path, plugins: dict[str, type[Plugin]] | None = None) -> tuple[list[str], int]:
    """Mismatches between the pages in directory and the parsers, and how many flags were compared."""
    plugins = discover() if plugins is None else plugins
    problems: list[str] = []
    pages: dict[str, list[DocGroup]] = {}
    for name in plugin_pages(plugins):
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing from {directory}")
        pages[name] = read_page(path.read_text(encoding="utf-8")) if path.is_file() else []
    report = Report()
    compared = 0
    for hv, distro in pairs(plugins):
        parser, by_dest = build_command_parser(hv, distro, plugins)
        cli = {
            flag: page_of(s.plugin, plugins) if (s := by_dest.get(action.dest)) else MAIN_PAGE
            for action in parser._actions
            for flag in action.option_strings
        }
        documented: dict[str, list[str]] = {}
        for name in (MAIN_PAGE, f"{PROG}-{hv}.1", f"{PROG}-{distro}.1"):
            for group in pages[name]:
                if group.section == "OPTIONS" and group.applies(hv, distro):
                    for flag in group.flags:
                        documented.setdefault(flag, []).append(name)
        where = f"{PROG} {hv} {distro}"
        compare(report, where, cli, documented)
        problems += [f"{flag} is documented more than once ({', '.join(names)}; {where})"
                     for flag, names in documented.items() if len(names) > 1]  # fmt: skip
        compared += len(cli)
    for hv in by_kind(plugins, "hypervisor"):
        name = f"{PROG}-{hv}.1"
        sections = {g.title.split(" [")[0]: g for g in pages[name] if g.section == "COMMANDS" and g.title}
        parsers = command_parsers(plugins, hv)
        for cmd, parser in parsers.items():
            where = f"{PROG} {hv} {cmd}"
            section = sections.get(where)
            if section is None:
                problems.append(f"command '{where}' is not in the COMMANDS section of {name}")
                continue
            compare(report, where, dict.fromkeys(parser_flags(parser), name), {f: [name] for f in section.flags})
            compared += len(parser_flags(parser))
        known = {f"{PROG} {hv} {cmd}" for cmd in parsers}
        problems += [f"command '{title}' is in {name} but not in the CLI" for title in sections if title not in known]
    fetch = [g for g in pages[FETCH_PAGE] if g.section == "OPTIONS"]
    flags = parser_flags(fetch_parser())
    compare(report, FETCH_KEYRING, dict.fromkeys(flags, FETCH_PAGE), {f: [FETCH_PAGE] for g in fetch for f in g.flags})
    compared += len(flags)
    return problems + report.lines(), compared
