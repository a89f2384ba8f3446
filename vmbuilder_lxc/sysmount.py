"""mount(2) and umount2(2) called directly, for the few mount(8) command lines the build uses.

A build mounts proc, sysfs, /dev's tmpfs and devpts, /dev/shm, /run (and for --backing overlay the
overlay itself), then unmounts them: with mount(8) that is fifteen processes, about 10 ms each
through run(), a tenth of a warm overlay build. The system calls do the same in microseconds,
in the same (private) mount namespace. Only the argument forms below are translated; any other
is left to mount(8). A failure raises CommandError, as a failed mount(8) would.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path

from .log import LOG
from .run import CommandError

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2
FLAGS = {"ro": MS_RDONLY, "rw": 0, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}

_libc: list[ctypes.CDLL] = []


def _c() -> ctypes.CDLL:
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def parse(args: Sequence[str]) -> tuple[str, str | None, int, str | None] | None:
    """(source, fstype, flags, data) of `-t TYPE [-o OPTS] SOURCE` or `--bind|--rbind SOURCE`;
    None for any other form (mount(8) then runs it)."""
    if len(args) == 2 and args[0] in ("--bind", "--rbind"):
        return args[1], None, MS_BIND | (MS_REC if args[0] == "--rbind" else 0), None
    if len(args) not in (3, 5) or args[0] != "-t" or (len(args) == 5 and args[2] != "-o"):
        return None
    fstype, source = args[1], args[-1]
    flags, data = 0, []
    for option in args[3].split(",") if len(args) == 5 else []:
        if option in FLAGS:
            flags |= FLAGS[option]
        elif option in ("bind", "rbind", "remount", "move") or not option:
            return None  # not a plain new mount
        else:
            data.append(option)  # a file system's own option (mode=, size=, lowerdir=, newinstance, ...)
    return source, fstype, flags, ",".join(data) or None


def _fail(argv: list[str], err: int) -> CommandError:
    return CommandError(argv, 32, [f"mount: {argv[-1]}: {os.strerror(err)}"])


def mount(args: Sequence[str], target: Path | str) -> bool:
    """Mount as `mount ARGS TARGET` would; False: a form this module does not translate."""
    parsed = parse(args)
    if parsed is None:
        return False
    source, fstype, flags, data = parsed
    argv = ["mount", *args, os.fspath(target)]
    LOG.debug("+ %s (mount(2))", " ".join(argv))
    enc = os.fsencode
    if _c().mount(enc(source), enc(target), enc(fstype) if fstype else None, flags, enc(data) if data else None):
        raise _fail(argv, ctypes.get_errno())
    return True


def umount(target: Path | str) -> bool:
    """umount2(TARGET); if it is busy, a lazy detach (umount -l). False: neither worked."""
    path = os.fsencode(target)
    LOG.debug("+ umount %s (umount2(2))", os.fspath(target))
    if _c().umount2(path, 0) == 0:
        return True
    LOG.debug("umount %s: %s; detaching it lazily", os.fspath(target), os.strerror(ctypes.get_errno()))
    return bool(_c().umount2(path, MNT_DETACH) == 0)
