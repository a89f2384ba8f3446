"""A 0-based view of a shifted rootfs (built with --idmap), for exports: an idmapped mount.

Images for LXD, Incus, lxc-create and tar consumers are 0-based: the consumer shifts them itself.
A shifted rootfs (owned by host ids start..start+count-1) is therefore exported through an
idmapped mount of it (mount_setattr(2) with MOUNT_ATTR_IDMAP, Linux 5.12 and later) whose user
namespace maps host id start+x back to x. The kernel translates everything a reader sees
through it: owners in stat(2), the ids of POSIX ACL entries, and a v3 `security.capability`
whose root id is the namespace's root comes back as the v2 capability the unshifted build had. So
tar, mksquashfs and the stage's overlay read the view exactly as they read an unshifted build: no
copy and no write to the rootfs (measured on a 230 MB rootfs: milliseconds, where a copy plus an
unshift pass takes seconds and twice the disk).

The mount is made in a private mount namespace of the export's process, at a hidden directory
beside the rootfs, and is unmounted and removed on exit, also on errors.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..chroot import enter_private_mount_namespace, unmount_below
from ..idmap import IdMap, IdMapError
from ..log import LOG, UserError

# Generic syscall numbers, the same on every architecture since Linux 5.1 (open_tree, move_mount)
# and 5.12 (mount_setattr).
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
VIEW_SUFFIX = ".vmbuilder-unshift"


class MountAttr(ctypes.Structure):
    """struct mount_attr (linux/mount.h, MOUNT_ATTR_SIZE_VER0)."""

    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(what: str, path: Path, number: int, *args: object) -> int:
    ret = int(_libc.syscall(number, *args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path))
    return ret


def userns_fd(uid_start: int, gid_start: int, count: int) -> int:
    """An fd of a new user namespace whose ids start..start+count-1 are the host's 0..count-1.

    A child process unshares its user namespace and waits; root writes its maps (any host ids may
    be mapped by a process with CAP_SETUID/CAP_SETGID in the parent namespace); the namespace
    lives on in the returned fd after the child exits.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level cleanup, only syscalls
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            code = 1 if _libc.unshare(CLONE_NEWUSER) != 0 else 0
            os.write(ready_w, b"1" if code == 0 else b"0")
            os.read(done_r, 1)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(errno.EPERM, "cannot create a user namespace for the unshifted view")
        Path(f"/proc/{pid}/uid_map").write_text(f"{uid_start} 0 {count}\n")
        Path(f"/proc/{pid}/gid_map").write_text(f"{gid_start} 0 {count}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)  # the child reads EOF and exits
        os.waitpid(pid, 0)


def idmapped_mount(src: Path, target: Path, ns_fd: int) -> None:
    """Mount a read-only, idmapped clone of the mount tree at `src` on `target`."""
    tree = _syscall("open_tree", src, SYS_OPEN_TREE, AT_FDCWD, os.fsencode(src),
                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)  # fmt: skip
    try:
        attr = MountAttr(attr_set=MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, userns_fd=ns_fd)
        _syscall("mount_setattr", src, SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH | AT_RECURSIVE,
                 ctypes.byref(attr), ctypes.sizeof(attr))  # fmt: skip
        _syscall("move_mount", target, SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(target),
                 MOVE_MOUNT_F_EMPTY_PATH)  # fmt: skip
    finally:
        os.close(tree)


def remove_stale_views(parent: Path) -> None:
    """Views left by a killed export (its PID is gone) are unmounted and removed."""
    for stale in parent.glob(f".*{VIEW_SUFFIX}"):
        m = re.search(r"\.(\d+)\.", stale.name)
        if m and int(m.group(1)) != os.getpid() and Path(f"/proc/{m.group(1)}").exists():
            continue
        unmount_below(stale)
        try:
            stale.rmdir()
        except OSError as exc:
            LOG.warning("cannot remove %s: %s", stale, exc)


@contextmanager
def unshifted(rootfs: Path, uid_start: int, gid_start: int, count: int) -> Iterator[Path]:
    """`rootfs` (owned by host ids start..start+count-1) seen 0-based, read-only; see the module doc."""
    remove_stale_views(rootfs.parent)
    # The mount (and the stage's overlay over it) lives in a mount namespace of this process's own:
    # even after kill -9 nothing stays mounted on the host, only the empty directory, which the
    # next export removes.
    enter_private_mount_namespace()
    view = rootfs.parent / f".{rootfs.name}.{os.getpid()}{VIEW_SUFFIX}"
    view.mkdir(mode=0o700)
    try:
        ns_fd = userns_fd(uid_start, gid_start, count)
        try:
            idmapped_mount(rootfs, view, ns_fd)
        finally:
            os.close(ns_fd)
    except OSError as exc:
        view.rmdir()
        raise UserError(
            f"cannot make a 0-based view of the shifted {rootfs} for the export ({exc.strerror})",
            "export needs Linux 5.12 or later and a filesystem that supports idmapped mounts (ext4, XFS, btrfs)",
        ) from None
    try:
        yield view
    finally:
        unmount_below(view)
        view.rmdir()


@contextmanager
def zero_based(rootfs: Path, recorded: object) -> Iterator[Path]:
    """`rootfs` as exports must read it: through an unshifted view when the build recorded an idmap
    (DEST's vmbuilder-lxc.json, key `idmap`) and its root is owned by the mapped root as seen from
    here; else `rootfs` itself (an unshifted build, or one seen from inside its own user namespace,
    where it already looks 0-based)."""
    if recorded is None:
        yield rootfs
        return
    try:
        ids = IdMap.from_json(recorded)
    except IdMapError as exc:
        raise UserError(f"the idmap recorded for {rootfs.parent} is not valid ({exc})", "rebuild it") from None
    st = os.lstat(rootfs)
    if (st.st_uid, st.st_gid) == (0, 0):
        yield rootfs
        return
    if (st.st_uid, st.st_gid) != (ids.uid_start, ids.gid_start):
        raise UserError(
            f"{rootfs} is owned by {st.st_uid}:{st.st_gid}, neither 0:0 nor the recorded idmap's root "
            f"{ids.uid_start}:{ids.gid_start}",
            "rebuild it, or fix the owner of its root",
        )
    with unshifted(rootfs, ids.uid_start, ids.gid_start, ids.count) as view:
        yield view
