"""`vmbuilder lxc doctor`: what on this host stops a build or its container, and how to fix it.

The checks are data: each `Check` has a name, what it is about, and a function returning report
lines (`Result`: ok, warn or fail, a one-line finding and a one-line fix). FAIL is kept for what
stops a default build (`vmbuilder lxc ubuntu`), so the exit status (0: no FAIL, 1: some) can gate a
script. Doctor only reads: every external probe has a timeout and nothing on the host is changed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from . import doctor_disk as disk
from . import doctor_host as host
from . import doctor_virt as virt
from .cache import DEFAULT_CACHE_DIR
from .doctor_probes import GIB, Options, Result
from .log import LOG, UserError
from .plugin import discover

__all__ = ["CHECKS", "Check", "Options", "Result", "format_table", "main", "parser", "run_checks"]


@dataclass(frozen=True)
class Check:
    name: str
    about: str
    run: Callable[[Options], list[Result]]


class _Collect(logging.Handler):
    """Keeps the warnings a config file causes, to report them as a finding instead of on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@functools.lru_cache(maxsize=1)
def build_config() -> tuple[tuple[tuple[str, str], ...], Result]:
    """cache-dir and dest as a default build (`vmbuilder lxc ubuntu`) resolves them from the config files.

    A config file the build would refuse stops every build, so it is a failure here; one it warns
    about is a warning. Read once per run (the defaults and the `config` check share it).
    """
    from . import cli, settings  # cli loads the plugins, one of which loads this module

    files = [f for f in (settings.SYSTEM_CONFIG, settings.USER_CONFIG.expanduser()) if f.exists()]
    collect, saved = _Collect(), LOG.handlers[:]
    LOG.handlers[:] = [collect]
    try:
        ctx = cli.make_context("lxc", host.DEFAULT_DISTRO, discover())
        cli.configure(ctx, [])
        found = (("cache-dir", str(ctx.settings["cache-dir"])), ("dest", str(ctx.settings["dest"])))
    except UserError as exc:
        return (), Result("config", "fail", exc.message, exc.hint or "fix the config file")
    finally:
        LOG.handlers[:] = saved
    read = ", ".join(str(f) for f in files) if files else "none"
    if collect.messages:
        return found, Result("config", "warn", "; ".join(collect.messages), "fix the config file")
    return found, Result("config", "ok", f"config files a build reads: {read}")


def check_config(opts: Options) -> list[Result]:
    return [build_config()[1]]


CHECKS: tuple[Check, ...] = (
    Check("config", "the config files a build reads", check_config),
    Check("root", "builds run as root", host.check_root),
    Check("keyrings", "each distro's archive keyring, readable by gpg, and gpgv/sqv", host.check_keyrings),
    Check("bootstrappers", "mmdebstrap and debootstrap, and their versions", host.check_bootstrappers),
    Check("debootstrap-scripts", "the script each distro passes, the served suites", host.check_scripts),
    Check("lxcfs", "lxcfs running, or its stale mount", host.check_lxcfs),
    Check("cgroups", "the cgroup layout and systemd 258+ guests", host.check_cgroups),
    Check("subids", "root's subuid/subgid ranges and newuidmap", host.check_subids),
    Check("binfmt", "binfmt_misc and qemu-user for foreign architectures", host.check_binfmt),
    Check("libvirt", "libvirtd and its LXC driver", virt.check_libvirt),
    Check("lxd-incus", "LXD and Incus daemons", virt.check_lxd_incus),
    Check("space", "free space for the cache and DEST", disk.check_space),
    Check("partial-builds", "directories of interrupted builds beside DEST", disk.check_partials),
    Check("cache", "cache entries a build would not trust", disk.check_cache),
)


def run_checks(opts: Options, checks: Sequence[Check] | None = None) -> list[Result]:
    """Every check's lines; a check that crashes is reported as a warning, the others still run."""
    results: list[Result] = []
    for check in CHECKS if checks is None else checks:
        try:
            results += check.run(opts)
        except Exception as exc:  # noqa: BLE001 - one broken probe must not hide the other findings
            results.append(Result(check.name, "warn", f"could not be checked: {type(exc).__name__}: {exc}",
                                  "please report this"))  # fmt: skip
    return results


def format_table(results: Sequence[Result]) -> str:
    width = max((len(r.check) for r in results), default=0)
    lines = []
    for r in results:
        line = f"{r.status.upper():<4} {r.check + ':':<{width + 1}} {r.finding}"
        lines.append(line + (f"; fix: {r.fix}" if r.fix else ""))
    counts = {s: sum(1 for r in results if r.status == s) for s in ("ok", "warn", "fail")}
    lines.append(f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures")
    return "\n".join(lines) + "\n"


def exit_code(results: Sequence[Result]) -> int:
    return 1 if any(r.status == "fail" for r in results) else 0


def _gib(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of GiB") from None
    if not 0 <= value < 1 << 20:
        raise argparse.ArgumentTypeError(f"'{text}' is out of range")
    return int(value * GIB)


def _path(text: str) -> str:
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is empty or holds control characters")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"'{text}' must be between 0 and 600 seconds")
    return value


class _Parser(argparse.ArgumentParser):
    """Mistakes are one line (`vmbuilder: error: ...; see ... --help`), exit 2, as everywhere."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message, f"see {self.prog} --help")


def parser() -> argparse.ArgumentParser:
    """The parser of `vmbuilder lxc doctor` (built apart so that the man page can list it)."""
    ap = _Parser(
        prog="vmbuilder lxc doctor",
        description="Check this host for what builds and containers need; name the fix for each problem. "
        "Exit 1 when something stops a default build, else 0. Nothing is changed.",
    )
    ap.add_argument("--json", action="store_true", help="print a list of {check, status, finding, fix}")
    ap.add_argument("--cache-dir", type=_path, metavar="DIR",
                    help=f"the cache directory to check (default: a build's, from the config files, else "
                    f"{DEFAULT_CACHE_DIR})")  # fmt: skip
    ap.add_argument("-d", "--dest", type=_path, metavar="DIR",
                    help="the DEST you build to: its file system and its parent's interrupted builds are "
                    "checked (default: a build's, from the config files, else ./ubuntu-lxc)")  # fmt: skip
    ap.add_argument("-a", "--arch", action="append", default=[], metavar="ARCH",
                    help="a foreign architecture you intend to build (repeatable); then a missing qemu-user "
                    "registration is a failure")  # fmt: skip
    ap.add_argument("--min-free", type=_gib, default="2", metavar="GIB",
                    help="free space the cache and DEST need, in GiB")  # fmt: skip
    ap.add_argument("--timeout", type=_seconds, default="10", metavar="SECONDS",
                    help="how long each probe (virsh, gpg, a daemon's socket) may take")  # fmt: skip
    ap.add_argument("--verify-cache", action="store_true",
                    help="also hash every file of every cached base against its SHA-256 (reads them all)")  # fmt: skip
    return ap


def options(args: argparse.Namespace, defaults: dict[str, str] | None = None) -> Options:
    """Doctor's options; what is not given comes from a default build's configuration."""
    defaults = defaults or {}
    dest = Path(args.dest or defaults.get("dest") or "ubuntu-lxc").expanduser()
    cache_dir = Path(args.cache_dir or defaults.get("cache-dir") or DEFAULT_CACHE_DIR).expanduser()
    return Options(
        cache_dir=cache_dir.absolute(),
        dest=dest.absolute(),
        arches=host.parse_arches(args.arch),
        min_free=args.min_free,
        timeout=args.timeout,
        verify_cache=args.verify_cache,
    )


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    defaults = dict(build_config()[0]) if args.cache_dir is None or args.dest is None else {}
    results = run_checks(options(args, defaults))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(format_table(results), end="")
    return exit_code(results)
