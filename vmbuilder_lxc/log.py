"""Logging, user-facing errors and timed steps.

Every message goes to stderr so that stdout stays free for --json. Steps are recorded with their
wall time so that the human log and the JSON summary report the same numbers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn, TextIO

LOG = logging.getLogger("vmbuilder")

# Verbosity levels: 0 = steps only, 1 = -v (commands), 2 = --debug (commands, output, tracebacks).
_state: dict[str, int] = {"verbosity": 0, "depth": 0}


class OneLineError(Exception):
    """An error reported as one line: the problem and, in `hint`, the fix."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UserError(OneLineError):
    """A problem the user can fix; printed as one line, never with a traceback (exit code 2)."""


def die(message: str, hint: str | None = None) -> NoReturn:
    """Stop the build with a one-line error that names the problem and, in `hint`, the fix."""
    raise UserError(message, hint)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        indent = "    " * getattr(record, "depth", 0)
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"vmbuilder: error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"{indent}vmbuilder: warning: {msg}"
        return f"{indent}{msg}"


class _DepthFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "depth"):
            record.depth = _state["depth"]
        return True


def setup_logging(verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Configure the vmbuilder logger; safe to call more than once (tests do)."""
    _state["verbosity"] = verbosity
    LOG.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(_DepthFilter())
    LOG.addHandler(handler)
    LOG.setLevel(logging.DEBUG)
    handler.setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    LOG.propagate = False


def verbosity() -> int:
    return _state["verbosity"]


@dataclass
class StepRecord:
    title: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    ok: bool = True


STEPS: list[StepRecord] = []


@contextmanager
def step(title: str, quiet: bool = False) -> Iterator[StepRecord]:
    """Log a named step, time it and record it for the summary.

    A quiet step is logged only with -v: input checks should print nothing but their error.
    """
    rec = StepRecord(title)
    level = logging.DEBUG if quiet else logging.INFO
    if _state["depth"] == 0:
        STEPS.append(rec)
    LOG.log(level, "%s %s", "==>" if _state["depth"] == 0 else "-->", title)
    start = time.monotonic()
    _state["depth"] += 1
    try:
        yield rec
    except BaseException:
        rec.ok = False
        raise
    finally:
        _state["depth"] -= 1
        rec.seconds = time.monotonic() - start
        status = "done" if rec.ok else "failed"
        LOG.log(level, "    %s in %.1f s", status, rec.seconds, extra={"depth": _state["depth"]})


@contextmanager
def deferred() -> Iterator[None]:
    """Hold back notes and warnings until the block succeeds.

    Used around the input checks: when one of them fails, its one-line error is the only output,
    not preceded by notes about settings that no longer matter.
    """
    held: list[logging.LogRecord] = []

    class _Hold(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno < logging.ERROR:
                _DepthFilter().filter(record)
                held.append(record)
                return False
            return True

    hold = _Hold()
    LOG.addFilter(hold)
    try:
        yield
    finally:
        LOG.removeFilter(hold)
    for record in held:
        LOG.handle(record)


def note(message: str, *args: object) -> None:
    """An informational line inside the current step."""
    LOG.info(message, *args)


class Progress:
    """A single updating status line for long commands.

    On a terminal the line is rewritten in place; elsewhere a heartbeat is printed at most every
    `interval` seconds so CI logs show that the build is alive without flooding them.
    """

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 15.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and os.environ.get("TERM", "dumb") != "dumb"
        self.interval = interval
        self.start = time.monotonic()
        self.last = self.start
        self.width = 100

    def update(self, line: str) -> None:
        if verbosity() >= 2:
            return  # --debug prints every output line already
        now = time.monotonic()
        text = line.strip()
        if not text:
            return
        elapsed = now - self.start
        if self.tty:
            msg = f"    {self.label} [{elapsed:4.0f}s] {text}"[: self.width]
            self.stream.write("\r\033[K" + msg)
            self.stream.flush()
        elif now - self.last >= self.interval:
            self.stream.write(f"    {self.label}: still running after {elapsed:.0f} s ({text[:80]})\n")
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
