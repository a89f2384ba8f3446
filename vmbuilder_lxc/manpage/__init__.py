"""Man pages generated from the settings table, and a check that they still match the parsers.

    python3 -m vmbuilder_lxc.manpage --outdir DIR   # vmbuilder.1, vmbuilder-HV.1, vmbuilder-DISTRO.1,
                                                    # vmbuilder-fetch-keyring.1
    python3 -m vmbuilder_lxc.manpage --check DIR    # one line per mismatch and exit 1, else one OK line

The options come from the parsers that the commands themselves use (cliparse.build_parser over
cli.make_context's table, the commands' `*_parser()` methods, keyring.fetch_parser), grouped as
`--help` groups them, so the pages cannot drift from the command line. --check does not trust the
generator: it reads the roff back, collects the flags of every option item, and compares them with
the parsers, for every (hypervisor, distro) pair and every command. A plugin's command method
NAME_command has its parser built by a NAME_parser() staticmethod (libvirt's validate, export's export).

Nothing here reads config files, the cache or the network: the output depends only on the
installed plugins and on SOURCE_DATE_EPOCH (the date in .TH, omitted when it is not set), so a
package build gets byte-identical pages.

The package, in the order a page is made and checked: roff.py (the roff writer), layout.py (which
page documents which options, and an option item's roff), pages.py (the page builders), checker.py
(reads the roff back). This module keeps the entry points.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..log import UserError
from ..plugin import Plugin
from .checker import DocGroup, check, plain, read_page
from .layout import FETCH_PAGE, MAIN_PAGE, page_of, pairs, plugin_pages
from .pages import generate
from .roff import Roff, bold, esc, fmt, italic, sentence

__all__ = [
    "FETCH_PAGE",
    "MAIN_PAGE",
    "DocGroup",
    "Roff",
    "bold",
    "check",
    "esc",
    "fmt",
    "generate",
    "italic",
    "main",
    "page_of",
    "pairs",
    "plain",
    "plugin_pages",
    "read_page",
    "sentence",
    "write",
]


def write(outdir: Path, plugins: dict[str, type[Plugin]] | None = None) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate(plugins).items():
        path = outdir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vmbuilder_lxc.manpage",
                                     description="Write or check the man pages of vmbuilder.")  # fmt: skip
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--outdir", type=Path, metavar="DIR", help="write the pages into DIR")
    action.add_argument("--check", type=Path, metavar="DIR", help="compare the pages in DIR with the CLI")
    args = parser.parse_args(argv)
    try:
        if args.outdir:
            for path in write(args.outdir):
                print(path)
            return 0
        problems, compared = check(args.check)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"OK: the man pages in {args.check} document exactly the CLI's options ({compared} flags compared)")
    return 0
