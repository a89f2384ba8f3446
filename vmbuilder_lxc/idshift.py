"""Shift (or unshift) the ids of a whole rootfs in one pass, with what a naive `chown -R` gets wrong.

An unprivileged container sees host id start+x as its id x, so its rootfs must be owned by the
shifted ids (issue 16). `chown` alone is not enough: the kernel clears setuid/setgid bits and
drops `security.capability` on every chown, a v2 capability is only honoured for the initial
namespace's root (a container needs v3 with the namespace's root id), and POSIX ACL entries name
ids of their own. `shift_tree` walks the tree once, never following a symlink and never leaving
the root's filesystem, and for every inode (hard links once) rewrites the owner, restores the
mode, rewrites capabilities (v3 with the new root id; back to v2 when the root id becomes 0) and
shifts the ACL_USER/ACL_GROUP entries of the access and default ACLs. Other xattrs are kept (chown
leaves them alone). An id outside the range is an error, never wrapped.

Every inode is reached from an open directory descriptor: names are looked up one component at a
time under /proc/self/fd/N without following the last one, so a symlink in the tree cannot lead a
change out of it. The module takes plain ints (the `IdMap` of vmbuilder_lxc/idmap.py is the
caller's business).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .log import UserError

XATTR_CAPS = "security.capability"
ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"

# linux/capability.h: the magic word's top byte is the revision, bit 0 the effective flag.
CAP_REVISION_MASK = 0xFF000000
CAP_FLAGS_MASK = 0x00FFFFFF
CAP_V1, CAP_V2, CAP_V3 = 0x01000000, 0x02000000, 0x03000000
CAP_SIZES = {CAP_V1: 12, CAP_V2: 20, CAP_V3: 24}

# linux/posix_acl_xattr.h: a le32 version, then (le16 tag, le16 perm, le32 id) entries.
ACL_VERSION = 2
ACL_USER, ACL_GROUP = 0x02, 0x08
ACL_HEADER = struct.Struct("<I")
ACL_ENTRY = struct.Struct("<HHI")

MAX_ID = 2**32 - 2  # (uid_t)-1 is no id
SUID_SGID = stat.S_ISUID | stat.S_ISGID
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class IdShiftError(UserError):
    """The tree holds something the shift must not guess about (an id outside the map, a bad xattr)."""


@dataclass
class ShiftReport:
    """What a shift did: inodes changed, hard-link names seen again, capabilities and ACLs rewritten,
    and the mount points left alone (another filesystem is never entered)."""

    inodes: int = 0
    links: int = 0
    caps: int = 0
    acls: int = 0
    mounts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Map:
    """One id kind (uids or gids): source ids [low, low+count) become id+shift."""

    kind: str
    shift: int
    count: int

    @property
    def low(self) -> int:
        return -self.shift if self.shift < 0 else 0

    def __call__(self, value: int, where: str) -> int:
        low = self.low
        if not low <= value < low + self.count:
            raise IdShiftError(
                f"{where} has {self.kind} {value}, outside the mapped ids {low}-{low + self.count - 1}",
                "give --idmap a COUNT that covers every id in the tree, or fix the owner in the image",
            )
        return value + self.shift


def convert_cap(raw: bytes, uids: _Map, where: str) -> bytes:
    """A `security.capability` value with its root id shifted: v3 with the new root id, or v2 when
    that id is 0 (a v2 capability is the initial namespace's; the kernel writes v2 as it is)."""
    if len(raw) < 4:
        raise IdShiftError(f"{where} has a truncated {XATTR_CAPS}", "remove it (setcap -r) or fix the image")
    (magic,) = struct.unpack_from("<I", raw)
    revision, flags = magic & CAP_REVISION_MASK, magic & CAP_FLAGS_MASK
    if CAP_SIZES.get(revision) != len(raw):
        raise IdShiftError(f"{where} has a {XATTR_CAPS} of unknown revision or size ({len(raw)} bytes)",
                           "remove it (setcap -r) or fix the image")  # fmt: skip
    data = list(struct.unpack_from("<2I", raw, 4)) + [0, 0]  # v1: permitted, inheritable (low words only)
    if revision != CAP_V1:
        data = list(struct.unpack_from("<4I", raw, 4))
    rootid = struct.unpack_from("<I", raw, 20)[0] if revision == CAP_V3 else 0
    new_root = uids(rootid, f"{where} ({XATTR_CAPS} root id)")
    if new_root == 0:
        return struct.pack("<5I", CAP_V2 | flags, *data)
    return struct.pack("<6I", CAP_V3 | flags, *data, new_root)


def convert_acl(raw: bytes, uids: _Map, gids: _Map, where: str) -> bytes:
    """A POSIX ACL xattr with its named-user and named-group entries shifted."""
    body = len(raw) - ACL_HEADER.size
    if body < 0 or body % ACL_ENTRY.size or ACL_HEADER.unpack_from(raw)[0] != ACL_VERSION:
        raise IdShiftError(f"{where} has a POSIX ACL this tool cannot read", "remove it (setfacl -b) or fix the image")
    out = bytearray(raw[: ACL_HEADER.size])
    for offset in range(ACL_HEADER.size, len(raw), ACL_ENTRY.size):
        tag, perm, ident = ACL_ENTRY.unpack_from(raw, offset)
        if tag == ACL_USER:
            ident = uids(ident, f"{where} (ACL entry)")
        elif tag == ACL_GROUP:
            ident = gids(ident, f"{where} (ACL entry)")
        out += ACL_ENTRY.pack(tag, perm, ident)
    return bytes(out)


class _Shifter:
    def __init__(self, root: Path, uid_shift: int, gid_shift: int, count: int) -> None:
        self.root = root
        self.uids = _Map("uid", uid_shift, count)
        self.gids = _Map("gid", gid_shift, count)
        self.report = ShiftReport()
        self.seen: set[tuple[int, int]] = set()

    def shift(self, target: int | str, st: os.stat_result, rel: str) -> None:
        """Shift one inode: `target` is an open fd (the root) or a /proc/self/fd/N/NAME path."""
        where = f"{self.root}/{rel}" if rel else str(self.root)
        is_fd = isinstance(target, int)
        follow = is_fd  # a path's last component is never followed; an fd takes no follow flag
        uid, gid = self.uids(st.st_uid, where), self.gids(st.st_gid, where)
        is_link = stat.S_ISLNK(st.st_mode)
        rewrites: dict[str, bytes] = {}
        if not is_link:
            for name in os.listxattr(target, follow_symlinks=follow):
                if name == XATTR_CAPS:
                    raw = os.getxattr(target, name, follow_symlinks=follow)
                    rewrites[name] = convert_cap(raw, self.uids, where)
                elif name in (ACL_ACCESS, ACL_DEFAULT):
                    raw = os.getxattr(target, name, follow_symlinks=follow)
                    new = convert_acl(raw, self.uids, self.gids, where)
                    if new != raw:
                        rewrites[name] = new
        # Everything checked: now change the inode. chown clears setuid/setgid and drops the
        # capability, so the mode is restored and the capability written after it.
        os.chown(target, uid, gid, follow_symlinks=follow)
        if not is_link and st.st_mode & SUID_SGID:
            os.chmod(target, stat.S_IMODE(st.st_mode))
        for name, value in rewrites.items():
            os.setxattr(target, name, value, follow_symlinks=follow)
            if name == XATTR_CAPS:
                self.report.caps += 1
            else:
                self.report.acls += 1
        self.report.inodes += 1

    def walk(self, root_fd: int) -> None:
        """Depth first, with one open directory per level of the path (not per directory seen)."""
        dev = os.fstat(root_fd).st_dev
        stack: list[tuple[int, str, list[tuple[str, os.stat_result]]]] = [
            (root_fd, "", self._entries(root_fd, "", dev))
        ]
        try:
            while stack:
                dfd, rel, subdirs = stack[-1]
                if not subdirs:
                    stack.pop()
                    if dfd != root_fd:
                        os.close(dfd)
                    continue
                name, st = subdirs.pop()
                cfd = os.open(name, DIR_FLAGS, dir_fd=dfd)
                child = f"{rel}/{name}" if rel else name
                try:
                    cst = os.fstat(cfd)
                    if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino):
                        raise IdShiftError(f"{self.root}/{child} changed during the shift", "build again")
                    entries = self._entries(cfd, child, dev)
                except BaseException:
                    os.close(cfd)
                    raise
                stack.append((cfd, child, entries))
        finally:
            for dfd, _, _ in stack:
                if dfd != root_fd:
                    os.close(dfd)

    def _entries(self, dfd: int, rel: str, dev: int) -> list[tuple[str, os.stat_result]]:
        """Shift every entry of the open directory `dfd`; returns its subdirectories to descend into."""
        with os.scandir(dfd) as it:
            entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        subdirs: list[tuple[str, os.stat_result]] = []
        for name, st in entries:
            child = f"{rel}/{name}" if rel else name
            if st.st_dev != dev:  # a mount point: another filesystem is never entered or changed
                self.report.mounts.append(child)
                continue
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in self.seen:
                    self.report.links += 1
                    continue
                self.seen.add(key)
            self.shift(f"/proc/self/fd/{dfd}/{name}", st, child)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((name, st))
        return subdirs


def shift_tree(root: Path, uid_shift: int, gid_shift: int, count: int) -> ShiftReport:
    """Add `uid_shift`/`gid_shift` to every id under `root` (negative: unshift), ids [0, count) (or
    [-shift, -shift+count) when unshifting) only; see the module docstring for what is rewritten.

    Each inode is checked before it is changed; an id outside the range stops the shift with
    IdShiftError, and the tree is then partly shifted: the caller discards it (a build fails).
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    for shift in (uid_shift, gid_shift):
        if shift + count - 1 > MAX_ID:
            raise ValueError(f"a shift of {shift} moves ids past {MAX_ID}")
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise IdShiftError(f"{root} is not a directory", "give the rootfs directory itself") from None
        raise
    shifter = _Shifter(root, uid_shift, gid_shift, count)
    try:
        shifter.shift(root_fd, os.fstat(root_fd), "")
        shifter.walk(root_fd)
    finally:
        os.close(root_fd)
    return shifter.report
