"""The core settings every build has, whatever the hypervisor and distro."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import validators as v
from .bootstrap import BACKENDS
from .cache import DEFAULT_CACHE_DIR, VERIFY_MODES
from .cliparse import DEBUG_HELP, VERBOSE_HELP
from .settings import Needs, Setting, Settings

GENERAL = "General options"
CACHE_HINT = "give --cache-dir a directory on a writable disk, or pass --no-cache"
BUILD = "Build and cache options"


def each(check: Callable[[str], str]) -> Callable[[list[str]], list[str]]:
    """Apply a single-value check to every item of a list setting."""

    def run(values: list[str]) -> list[str]:
        return [check(x) for x in values]

    return run


def _default_dest(s: Settings) -> str:
    """./DISTRO-HYPERVISOR"""
    return f"{s.distro}-{s.hypervisor}"


def _bootstraps(s: Settings) -> bool:
    return not ("from-template" in s.table and s["from-template"])


# A cached base is only read or written when a base is bootstrapped with the cache on.
USES_CACHE = (Needs(lambda s: s.get_bool("cache"), "with --no-cache"),
              Needs(_bootstraps, "with --from-template (nothing is bootstrapped, so no cache is used)"))  # fmt: skip


def core_settings() -> list[Setting]:
    common: dict[str, Any] = {"plugin": "", "group": GENERAL}
    build: dict[str, Any] = {"plugin": "", "group": BUILD}
    return [
        Setting("dest", "directory to create; the rootfs goes to DEST/rootfs", short="-d",
                aliases=("--destdir",), metavar="DIR", default=_default_dest, validate=v.dest, **common),
        Setting("overwrite", "replace DEST if it holds an earlier build", "bool", False, short="-o", **common),
        Setting("config", "read this config file after /etc/vmbuilder.cfg and ~/.vmbuilder.cfg (repeatable)",
                "list", [], short="-c", metavar="FILE", in_config=False, validate=each(v.path_text), **common),
        Setting("verbose", VERBOSE_HELP, "bool", False, short="-v", **common),
        Setting("debug", DEBUG_HELP, "bool", False, **common),
        Setting("json", "print a machine-readable summary on stdout", "bool", False, **common),
        Setting("templates", "search DIR for template overrides first (repeatable)", "list", [],
                metavar="DIR", validate=each(v.existing_dir), **common),
        Setting("hook-dir", "run the executables in DIR whose names start with a stage name "
                "(setup, essential, customize, finalize) at that stage (repeatable)", "list", [],
                metavar="DIR", validate=each(v.existing_dir), **common),
        Setting("bootstrapper", "tool that bootstraps the base system", default="auto",
                choices=BACKENDS, **build),
        Setting("cache", "reuse a cached base system with the same inputs", "bool", True, **build),
        Setting("cache-dir", "where cached base systems are kept", default=str(DEFAULT_CACHE_DIR),
                metavar="DIR", validate=v.writable_dir("--cache-dir", CACHE_HINT), needs=USES_CACHE, **build),
        Setting("cache-max-age", "rebuild a cached base older than DAYS (0: never)", "int", 7,
                metavar="DAYS", validate=v.int_range(0, 36500), needs=USES_CACHE, **build),
        Setting("cache-verify", "how a cached base is checked on each hit: quick compares a manifest of "
                "sizes, times, modes and owners; full also hashes every file", default="quick",
                choices=VERIFY_MODES, needs=USES_CACHE, **build),
        # Command line only: a config file, which may be shared, can never switch signatures off.
        Setting("insecure", "do not verify archive signatures (dangerous; command line only)", "bool", False,
                in_config=False, **build),
    ]  # fmt: skip
