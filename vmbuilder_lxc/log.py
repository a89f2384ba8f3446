"""Logging, user-facing errors and timed steps.

Every message goes to stderr so that stdout stays free for --json. Steps are recorded with their
wall time so that the human log and the JSON summary report the same numbers.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


class _OutputFilter(logging.Filter):
    """Every line the handler prints postpones the next heartbeat."""

    def filter(self, record: logging.LogRecord) -> bool:
        HEARTBEAT.output()
        return True


def _is_terminal(stream: TextIO) -> bool:
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is no terminal
        tty = False
    return tty and os.environ.get("TERM", "dumb") != "dumb"


def setup_logging(verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Configure the vmbuilder logger; safe to call more than once (tests do)."""
    _state["verbosity"] = verbosity
    LOG.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(_DepthFilter())
    handler.addFilter(_OutputFilter())
    LOG.addHandler(handler)
    HEARTBEAT.enabled = not _is_terminal(handler.stream)
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

    A quiet step is logged only with -v: input checks should print nothing but their error. A
    step that is not quiet keeps the heartbeat going while it runs (see Heartbeat).
    """
    rec = StepRecord(title)
    level = logging.DEBUG if quiet else logging.INFO
    if _state["depth"] == 0:
        STEPS.append(rec)
    LOG.log(level, "%s %s", "==>" if _state["depth"] == 0 else "-->", title)
    start = time.monotonic()
    # A quiet step (the input checks) prints nothing but its error, heartbeats included.
    activity = None if quiet else HEARTBEAT.push(title, _state["depth"] + 1)
    _state["depth"] += 1
    try:
        yield rec
    except BaseException:
        rec.ok = False
        raise
    finally:
        _state["depth"] -= 1
        if activity is not None:
            HEARTBEAT.pop(activity)
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


HEARTBEAT_SECONDS = 15.0  # docs/design.md promises a line at least this often during a long step


@dataclass
class Activity:
    """Something long that is running: a step or a command's progress label, and its last output."""

    label: str
    start: float
    depth: int
    last_line: str = ""


class Heartbeat:
    """Proof of life for logs that are not a terminal: while a step runs, a line after every
    `interval` seconds in which nothing was printed, whatever the step is doing (a silent command
    such as xz, or Python code that runs none).

    `due()` decides from a clock it is given, so tests drive it without waiting; a daemon thread
    calls it while activities are open. Heartbeats are logged like any note, so they go to stderr
    and never into --json's stdout.
    """

    def __init__(self, interval: float = HEARTBEAT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.enabled = False  # setup_logging: stderr is not a terminal
        self.activities: list[Activity] = []  # innermost last
        self.last_output = clock()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def push(self, label: str, depth: int) -> Activity:
        with self._cond:
            act = Activity(label, self.clock(), depth)
            self.activities.append(act)
            self._cond.notify_all()
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="vmbuilder-heartbeat", daemon=True)
            self._thread.start()
        return act

    def pop(self, act: Activity) -> None:
        with self._cond:
            if act in self.activities:
                self.activities.remove(act)

    def output(self) -> None:
        """Something was printed: the next heartbeat is due `interval` seconds from now."""
        self.last_output = self.clock()

    def saw(self, line: str) -> None:
        """A command printed `line` (not shown): the heartbeat quotes the latest one."""
        text = line.strip()
        if text and self.activities:
            self.activities[-1].last_line = text

    def due(self, now: float) -> tuple[str, int] | None:
        """The heartbeat line (and its depth) if one is due at `now`; it then counts as output."""
        with self._cond:
            if not self.activities or now - self.last_output < self.interval:
                return None
            act = self.activities[-1]
            self.last_output = now
        text = f"{act.label}: still running after {now - act.start:.0f} s"
        return (f"{text} ({act.last_line[:80]})" if act.last_line else text), act.depth

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.activities:
                    self._cond.wait()
                wait = self.last_output + self.interval - self.clock() if self.enabled else self.interval
                if wait > 0:
                    self._cond.wait(min(wait, self.interval))
                    continue
            beat = self.due(self.clock())
            if beat is not None:
                LOG.info("%s", beat[0], extra={"depth": beat[1]})


HEARTBEAT = Heartbeat()


class Progress:
    """The status of a long command, driven by its output lines.

    On a terminal one line is rewritten in place; elsewhere the label and the latest line feed the
    heartbeat (a line at least every HEARTBEAT_SECONDS), so CI logs show that the build is alive
    without being flooded.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = _is_terminal(self.stream)
        self.start = time.monotonic()
        self.width = 100
        self.activity = HEARTBEAT.push(label, _state["depth"])

    def update(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        HEARTBEAT.saw(text)
        if verbosity() >= 2 or not self.tty:
            return  # --debug prints every output line already; elsewhere the heartbeat reports
        msg = f"    {self.label} [{time.monotonic() - self.start:4.0f}s] {text}"[: self.width]
        self.stream.write("\r\033[K" + msg)
        self.stream.flush()

    def close(self) -> None:
        HEARTBEAT.pop(self.activity)
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
