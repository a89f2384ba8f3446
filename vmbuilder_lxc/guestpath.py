"""Resolving a guest path inside the rootfs without the kernel's help, and the checks on a guest path.

guestfs.GuestFS resolves with openat2(2) RESOLVE_IN_ROOT (openat2.py) where it can; where it cannot
(ENOSYS, or a seccomp filter's EPERM) it uses walk() here, which gives the same answer from
O_NOFOLLOW opens. split_path() refuses what no entry can be named by (the root, `.`, `..`).
"""

from __future__ import annotations

import errno
import os
import stat

MAXSYMLINKS = 40  # as the kernel's limit
O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class GuestPathError(OSError):
    """A guest path that cannot be used as asked (e.g. it names the root itself)."""


def split_path(path: str) -> tuple[str, str]:
    """A guest path as (parent, final name); refuses the root and names that are `.` or `..`."""
    clean = path.rstrip("/")
    parent, _, name = clean.rpartition("/")
    if not name or name in (".", ".."):
        raise GuestPathError(errno.EINVAL, "a guest path must name an entry, not the root, '.' or '..'", path)
    return parent or "/", name


def walk(root_fd: int, path: str) -> int:
    """An O_PATH descriptor of directory `path` below the directory `root_fd`, resolved as a chroot
    would: one O_NOFOLLOW component at a time, symlinks resolved here, `..` never above the root."""
    stack = [os.dup(root_fd)]  # stack[-1] is the current directory; `..` pops, never past the root
    todo = [c for c in reversed(path.split("/")) if c]
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAXSYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(c for c in reversed(target.split("/")) if c)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=stack[-1]))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)
