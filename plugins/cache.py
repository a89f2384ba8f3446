"""The `cache` plugin: `vmbuilder lxc cache list|prune|verify|refresh` looks after the base cache.

It adds no settings and takes no part in builds; the actions live in vmbuilder_lxc/cacheadmin.py
and the cache itself in vmbuilder_lxc/cache.py (docs/cache.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from vmbuilder_lxc.cache import DEFAULT_CACHE_DIR, BaseCache
from vmbuilder_lxc.cliparse import CommandParser
from vmbuilder_lxc.log import die
from vmbuilder_lxc.plugin import Plugin

ACTIONS = ("list", "prune", "verify", "refresh")
DESCRIPTION = (
    "Look after the cache of bootstrapped bases. list: each entry's suite, arch, variant, size, age, "
    "last use and the containers that use it as their base; prune: remove entries by --max-age and "
    "--max-size, least recently used first, never one a container uses; verify: hash every file of "
    "every entry (exit 1 if one is bad; it is removed); refresh: bootstrap the entries built more than "
    "--older-than DAYS ago again from their recorded inputs and replace them, so that new containers get "
    "the archive's updates (exit 1 if one fails; its old entry is kept)."
)
ONLY_FOR = {"max_age": ("--max-age", "prune"), "max_size": ("--max-size", "prune"),
            "older_than": ("--older-than", "refresh"), "dry_run": ("--dry-run", "refresh")}  # fmt: skip


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 36500:
        die(f"{text!r} is not a number of days", "give a number from 0 to 36500")
    return value


def _configured_cache_dir() -> str:
    """The cache-dir a default build resolves from /etc/vmbuilder.cfg and ~/.vmbuilder.cfg."""
    from vmbuilder_lxc import doctor

    return dict(doctor.build_config()[0]).get("cache-dir") or str(DEFAULT_CACHE_DIR)


class Cache(Plugin):
    name: ClassVar[str] = "cache"
    description: ClassVar[str] = "base cache upkeep (vmbuilder lxc cache list|prune|verify|refresh)"
    hypervisors: ClassVar[tuple[str, ...] | None] = ("lxc",)
    commands: ClassVar[dict[str, str]] = {"cache": "cache_command"}

    @staticmethod
    def cache_parser() -> CommandParser:
        """The parser of `vmbuilder lxc cache` (built apart so that the man page can list it)."""
        parser = CommandParser("vmbuilder lxc cache", DESCRIPTION, operand=("ACTION", "one of: " + ", ".join(ACTIONS)))
        parser.add_argument("--cache-dir", metavar="DIR",
                            help=f"the cache to look after (default: a build's, from the config files, "
                                 f"else {DEFAULT_CACHE_DIR})")  # fmt: skip
        parser.add_argument("--max-age", metavar="DAYS", help="prune: remove entries unused for more than DAYS")
        size_help = "prune: remove the least recently used entries until the cache fits SIZE (e.g. 20G)"
        parser.add_argument("--max-size", metavar="SIZE", help=size_help)
        parser.add_argument("--older-than", metavar="DAYS", help="refresh: the entries built more than DAYS ago")
        dry_help = "refresh: list the entries and the build options it would use; change nothing"
        parser.add_argument("--dry-run", action="store_true", help=dry_help)
        parser.add_output_options("print a JSON summary")
        return parser

    @staticmethod
    def cache_command(argv: list[str]) -> int:
        """List, prune, verify or refresh the cached bases."""
        from vmbuilder_lxc import cacheadmin, cacherefresh  # here: every build discovers this plugin

        args = Cache.cache_parser().parse_command(argv)
        if args.action not in ACTIONS:
            die(f"unknown cache action {args.action!r}", "give one of: " + ", ".join(ACTIONS))
        for dest, (flag, action) in ONLY_FOR.items():
            if getattr(args, dest) not in (None, False) and args.action != action:
                die(f"{flag} applies to `cache {action}` only", f"drop {flag}, or run `vmbuilder lxc cache {action}`")
        directory = Path(args.cache_dir or _configured_cache_dir()).expanduser().absolute()
        if directory.exists() and not directory.is_dir():  # absent: no build has cached a base yet
            die(f"--cache-dir {directory} is not a directory", "give the --cache-dir your builds use")
        cache = BaseCache(directory)
        ok = True
        if args.action == "list":
            summary, lines = cacheadmin.list_entries(cache)
        elif args.action == "prune":
            if args.max_age is None and args.max_size is None:
                die("cache prune needs a limit", "give --max-age DAYS, --max-size SIZE, or both")
            max_age = _days(args.max_age) if args.max_age is not None else None
            max_size = cacheadmin.parse_size(args.max_size) if args.max_size is not None else None
            summary, lines = cacheadmin.prune(cache, max_age, max_size)
        elif args.action == "verify":
            summary, lines, ok = cacheadmin.verify(cache)
        else:
            if args.older_than is None:
                die("cache refresh needs --older-than DAYS", "give --older-than 0 to refresh every entry")
            summary, lines, ok = cacherefresh.refresh(cache, _days(args.older_than), dry_run=args.dry_run)
        if args.json:
            print(json.dumps({"action": args.action, **summary}, indent=2, sort_keys=True))
        else:
            print("\n".join(lines))
        return 0 if ok else 1
