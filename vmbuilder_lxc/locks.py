"""Waiting for another vmbuilder that holds a lock, and saying so.

Two builds of one cache key, or two exports of one rootfs, must not run at once; the second one
waits on an exclusive flock(2) (released by the kernel when its holder exits, even when killed).
A wait can be long, so it is announced first instead of looking like a hang.
"""

from __future__ import annotations

import fcntl

from .log import LOG


def lock_or_wait(fd: int, waiting: str, *args: object) -> None:
    """Take an exclusive flock on `fd`; if another process holds it, log `waiting % args` and block."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        LOG.info(waiting, *args)
        fcntl.flock(fd, fcntl.LOCK_EX)
