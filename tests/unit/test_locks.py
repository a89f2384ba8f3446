"""locks.lock_or_wait: the one flock-and-wait of the cache and the export stage."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from vmbuilder_lxc.locks import lock_or_wait
from vmbuilder_lxc.log import LOG


class _Said(logging.Handler):
    """Records what LOG said and signals the first message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.first.set()


def _attached() -> _Said:
    said = _Said()
    LOG.addHandler(said)
    LOG.setLevel(logging.DEBUG)  # conftest restores LOG's handlers and level after each test
    return said


def test_a_free_lock_is_taken_silently(tmp_path: Path) -> None:
    said = _attached()
    fd = os.open(tmp_path / "k.lock", os.O_CREAT | os.O_RDWR)
    try:
        lock_or_wait(fd, "waiting for %s", "nobody")
        other = os.open(tmp_path / "k.lock", os.O_RDWR)  # a second open file description conflicts
        try:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the lock was not held")
            except BlockingIOError:
                pass
        finally:
            os.close(other)
    finally:
        os.close(fd)
        LOG.removeHandler(said)
    assert said.messages == []


def test_a_held_lock_is_announced_then_waited_for(tmp_path: Path) -> None:
    said = _attached()
    holder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    waiter = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    got = threading.Event()

    def wait() -> None:
        lock_or_wait(waiter, "waiting for another export of %s to finish", tmp_path)
        got.set()

    thread = threading.Thread(target=wait, daemon=True)
    try:
        thread.start()
        assert said.first.wait(60), "the wait was not announced"
        assert not got.is_set()  # announced, and still waiting while the holder keeps it
        os.close(holder)  # releases the lock
        thread.join(60)
        assert got.is_set()
        assert said.messages == [f"waiting for another export of {tmp_path} to finish"]
    finally:
        os.close(waiter)
        LOG.removeHandler(said)
