"""openat2(2) with RESOLVE_IN_ROOT through ctypes: the kernel resolves a path as a chroot would.

Python has no binding for it; guestfs.py uses it where the kernel (and any seccomp filter) allows,
and falls back to the O_NOFOLLOW walker in guestpath.py elsewhere.
"""

from __future__ import annotations

import ctypes
import errno
import os

SYS_OPENAT2 = 437  # the same number on every architecture's table (alpha aside)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_state: bool | None = None  # None: not probed yet


def open_in_root(dirfd: int, path: str, flags: int) -> int:
    """openat2(dirfd, path) with `..` and absolute symlinks kept below dirfd, magic links refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    for _ in range(16):  # EAGAIN: a concurrent rename made `..` resolution unsafe; retry
        fd = libc.syscall(
            ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)),
        )  # fmt: skip
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def available() -> bool:
    """Whether the kernel (and any seccomp filter) lets us use openat2; probed once."""
    global _state
    if _state is None:
        probe = os.open("/", O_DIR)
        try:
            os.close(open_in_root(probe, ".", O_DIR))
            _state = True
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG):
                raise
            _state = False
        finally:
            os.close(probe)
    return _state
