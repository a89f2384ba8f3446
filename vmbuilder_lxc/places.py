"""Preflight checks of the directories a build writes to: DEST's parent, --cache-dir, --export-dir.

A path is judged by its nearest existing ancestor (what mkdir -p would start from): it must be a
directory on a real, writable filesystem, never under /proc, /sys or /dev or on another virtual
filesystem. Each problem is a UserError (exit 2, one line) before the build directory is made.
"""

from __future__ import annotations

import os
from pathlib import Path

from .log import UserError

VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
# Kernel filesystems that hold no user data: writing a build there fails, or worse, does something.
VIRTUAL_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
    "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "autofs", "efivarfs", "selinuxfs",
    "rpc_pipefs", "nsfs", "fuse.lxcfs",
})  # fmt: skip
MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_of(path: Path, mountinfo: Path | None = None) -> tuple[Path, str, frozenset[str]] | None:
    """(mount point, filesystem type, mount and superblock options) of the mount holding `path`."""
    try:
        lines = (mountinfo or MOUNTINFO).read_text().splitlines()
    except OSError:
        return None
    best: tuple[Path, str, frozenset[str]] | None = None
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(" "), tail.split(" ")
        if not sep or len(fields) < 6 or len(rest) < 3:
            continue
        point = Path(_unescape(fields[4]))
        if path != point and point not in path.parents:
            continue
        if best is None or len(point.parts) >= len(best[0].parts):  # the last of stacked mounts wins
            best = (point, rest[0], frozenset(fields[5].split(",")) | frozenset(rest[2].split(",")))
    return best


def nearest_existing(path: Path) -> Path:
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _under_virtual_root(path: Path) -> Path | None:
    return next((root for root in VIRTUAL_ROOTS if path == root or root in path.parents), None)


def check_writable_dir(
    path: Path, what: str, hint: str, *, shown: Path | None = None, mountinfo: Path | None = None
) -> None:
    """Refuse `path` (which may not exist yet) as a place to create files in.

    `shown` is the path the user gave, when `path` is derived from it (DEST's parent for -d).
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in str(shown or path) + str(path)):
        raise UserError(f"{what} {str(shown or path)!r} holds a control character", hint)
    path = Path(os.path.abspath(path))
    label = f"{what} {shown or path}"
    anc = nearest_existing(path)
    real = Path(os.path.realpath(anc))
    for candidate in (Path(os.path.abspath(shown or path)), path, real):
        root = _under_virtual_root(candidate)
        if root is not None:
            raise UserError(f"{label} is under {root}, a kernel filesystem", hint)
    if not real.is_dir():
        raise UserError(f"{label}: {anc} is not a directory", hint)
    mount = mount_of(real, mountinfo)
    if mount is not None:
        point, fstype, options = mount
        if fstype in VIRTUAL_FS:
            raise UserError(f"{label} is on {point}, a {fstype} filesystem", hint)
        if "ro" in options:
            raise UserError(f"{label} is on {point}, which is mounted read-only", hint)
    if os.geteuid() == 0 and not os.access(real, os.W_OK | os.X_OK):  # without root: userns.preflight checks
        raise UserError(f"{label}: {anc} is not writable", hint)
