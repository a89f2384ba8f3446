"""The one place where external commands are run.

Every command goes through run(): it is logged with -v, its output is shown with --debug and kept
(the tail) for the error message otherwise, it runs with a clean environment, and on Ctrl-C its
whole process group is terminated before the interrupt propagates, so that cleanup never races a
still-running debootstrap. Commands are run with the `sh` library (1.14 from Debian 12 and 2.x
from PyPI both work: only options common to both are used).

A build also starts a reaper (start_reaper): a small watchdog process outside the build's session
that learns the process group of every command and SIGKILLs those still registered when vmbuilder
itself dies, even by SIGKILL, so no mmdebstrap or tar keeps writing into a build directory (or
keeps the private mount namespace alive) after its parent is gone.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import aptnet
from .log import HEARTBEAT, LOG, OneLineError, Progress, UserError, verbosity


def __getattr__(name: str) -> Any:
    """`run.sh`, imported on first use: the `sh` library pulls in asyncio (~20 ms of every start,
    paid by `--version` and `lxc export` too); tests may replace it with monkeypatch."""
    if name == "sh":
        import sh as module

        globals()["sh"] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sh() -> Any:
    """The `sh` module run() uses (the library, or the stand-in a test put in its place)."""
    module = globals().get("sh")
    return module if module is not None else __getattr__("sh")


BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Which Debian package provides a tool we call, for "command not found" hints.
PACKAGE_HINTS = {
    "debootstrap": "debootstrap",
    "mmdebstrap": "mmdebstrap",
    "lxc-start": "lxc",
    "zstd": "zstd",
    "xz": "xz-utils",
    "unshare": "util-linux",
    "gpg": "gpg",
    "gpgv": "gpgv",
    "virsh": "libvirt-clients",
    "mksquashfs": "squashfs-tools",
}


def clean_env(extra: Mapping[str, str] | None = None, *, host_path: bool = True) -> dict[str, str]:
    """The environment every command gets: no host locale, no prompts, predictable PATH."""
    path = BASE_PATH
    if host_path and os.environ.get("PATH"):
        path = f"{BASE_PATH}:{os.environ['PATH']}"
    env = {
        "PATH": path,
        "LC_ALL": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "DEBCONF_NONINTERACTIVE_SEEN": "true",
        # A host command without root (a build in a user namespace) cannot read root's home: none then.
        "HOME": "/root" if not host_path or os.access("/root", os.X_OK) else "/nonexistent",
        "TERM": "dumb",
    }
    if extra:
        env.update(extra)
    return env


class CommandError(Exception):
    """An external command failed; carries the tail of its output for the error message, and for
    apt, mmdebstrap and debootstrap the cause read from the whole output (aptnet.diagnose)."""

    def __init__(self, argv: Sequence[str], returncode: int, tail: Sequence[str], cause: str | None = None) -> None:
        super().__init__(f"command failed with exit code {returncode}: {shlex.join(argv)}")
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = list(tail)
        self.cause = cause


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    output: str

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


def _terminate(proc: Any, grace: float = 10.0) -> None:
    """SIGTERM the command's process group, then SIGKILL it if it does not go away."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            proc.signal_group(sig)
        except OSError:  # already gone
            break
        deadline = time.monotonic() + grace
        while proc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not proc.is_alive():
            break
    try:
        proc.wait()
    except Exception:  # noqa: BLE001 - the exit status of a killed command is irrelevant
        pass


# What counts as "interrupt the build": Ctrl-C, kill, and the terminal going away.
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal's number, as shells report a process killed by it: 130, 143, 129.

    The interrupt handlers raise KeyboardInterrupt with the signal's name; a bare one is Ctrl-C.
    """
    name = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT"
    try:
        return 128 + int(signal.Signals[name])
    except KeyError:
        return 128 + int(signal.SIGINT)


class BuildInterrupted(KeyboardInterrupt):
    """An interrupt signal that stopped a build, with what it left behind (for the error line)."""

    def __init__(self, signame: str, state: str) -> None:
        super().__init__(signame)
        self.signame = signame
        self.state = state


class BuildError(OneLineError):
    """A build failed for a reason that one line explains (e.g. a full disk): exit code 1."""


# -- the reaper ---------------------------------------------------------------------------------

# Reads "+PGID" / "-PGID" lines; at end of input (vmbuilder exited or was killed) it SIGKILLs every
# group still registered, and every process whose environment carries this build's token (a command
# killed in the instant between its start and its registration, or one that left its group). It
# ignores the interrupt signals: it lives in its own session and only ever ends through its input.
# After "=done" (stop_reaper: no command is running, none is being started) one pass over /proc is
# enough; without it (vmbuilder was killed) it looks until three passes find nothing. A process in
# the middle of an exec (its new image's environment not yet set up) reads as an empty environment,
# as a kernel thread, a zombie or a program started with none do: such a process, if it is not one
# of those, keeps the scan going until it has read as empty in three passes in a row (a program
# with no environment; an exec is over in far less), so a daemon a command left behind is not
# missed because it was being exec'd at the instant of the one pass.
REAPER_ENV = "VMBUILDER_BUILD_TOKEN"
_REAPER_SCRIPT = """
import os, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
tag = sys.argv[1].encode()
groups = set()
passes = 3
for line in sys.stdin:
    line = line.strip()
    if line == "=done":
        passes = 1
    elif line[:1] == "+" and line[1:].isdigit():
        groups.add(int(line[1:]))
    elif line[:1] == "-" and line[1:].isdigit():
        groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
def exec_or_bare(pid):
    with open("/proc/" + pid + "/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return fields[0] not in (b"Z", b"X") and not int(fields[6]) & 0x200000  # PF_KTHREAD
quiet = 0
empty = {}
for _ in range(50):  # until `passes` passes find nothing (three 0.2 s apart: a child forked, not yet exec'd)
    found = unsure = 0
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/" + pid + "/environ", "rb") as fh:
                environ = fh.read()
            if not environ:
                if exec_or_bare(pid):
                    seen[pid] = empty.get(pid, 0) + 1
                    unsure += seen[pid] < 3
                continue
            if tag not in environ.split(b"\\0"):
                continue
            os.kill(int(pid), signal.SIGKILL)
            found += 1
        except (OSError, ValueError, IndexError):
            pass
    empty = seen
    quiet = 0 if found or unsure else quiet + 1
    if quiet >= passes:
        break
    time.sleep(0.05 if unsure and not found else 0.2)
"""
_reaper: dict[str, Any] = {"proc": None, "tag": ""}


def start_reaper() -> None:
    """Start the watchdog that kills our commands' process groups if vmbuilder dies (idempotent)."""
    if _reaper["proc"] is not None:
        return
    token = f"{os.getpid()}-{time.time_ns()}"
    _reaper["tag"] = f"{REAPER_ENV}={token}"
    _reaper["proc"] = subprocess.Popen(
        [sys.executable, "-I", "-c", _REAPER_SCRIPT, _reaper["tag"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd="/",
        text=True,
    )


def stop_reaper() -> None:
    """Tell the reaper we are done (it then kills nothing that was unregistered) and reap it."""
    proc = _reaper["proc"]
    _reaper["proc"] = None
    if proc is None:
        return
    try:
        proc.stdin.write("=done\n")  # a clean end: nothing can be mid-start, so one scan will do
        proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _tell_reaper(line: str) -> None:
    proc = _reaper["proc"]
    if proc is None:
        return
    try:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    except (OSError, ValueError):  # it is gone: nothing to tell
        pass


# -- the test-only pause --------------------------------------------------------------------------

PAUSE_ENV = "VMBUILDER_TEST_PAUSE_AT"
# Where a build can be paused for the fault-matrix tests (tests/integration/test_faults_signals.py).
PAUSE_STAGES = ("cache-store", "configure", "export", "move", "deploy")


def pause_point(stage: str) -> None:
    """Test-only: with VMBUILDER_TEST_PAUSE_AT=STAGE the build says so on stderr and waits here.

    The tests then send a signal at a known point of the build. The wait is a `sleep` command run
    like any other, so the signal finds a running command to stop, as it would in a real step.
    Without the variable (always, outside the test suite) this does nothing.
    """
    if os.environ.get(PAUSE_ENV) != stage:
        return
    print(f"vmbuilder-test: paused at {stage}", file=sys.stderr, flush=True)
    run(["sleep", "3600"])


@contextmanager
def interrupts_handled_by(handler: Any) -> Iterator[None]:
    """Temporarily handle the interrupt signals with `handler` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextmanager
def _signals_deferred() -> Iterator[list[str]]:
    """Hold back Ctrl-C (and SIGTERM/SIGHUP) while a command is being spawned.

    An interrupt that arrived between fork and the point where run() can terminate the command
    would leave the command running; it is recorded instead and raised once the command has a
    process group that can be killed.
    """
    pending: list[str] = []

    def record(signum: int, frame: object) -> None:
        pending.append(signal.Signals(signum).name)

    with interrupts_handled_by(record):
        yield pending


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    check: bool = True,
    progress: str | None = None,
    ok_codes: Sequence[int] = (0,),
) -> CommandResult:
    """Run a command, log it, and return its combined stdout/stderr.

    `progress` names a long step: its output then drives a status line (see log.Progress), and its
    label the heartbeat; a command without it is covered by the enclosing step's heartbeat.
    With check=True, an exit code outside `ok_codes` raises CommandError.
    """
    args = [os.fspath(a) for a in argv]
    LOG.debug("+ %s", shlex.join(args))
    full_env = dict(env) if env is not None else clean_env()
    if _reaper["proc"] is not None:  # inherited by the command's children: the reaper finds them all
        full_env[REAPER_ENV] = _reaper["tag"].split("=", 1)[1]
    exe = shutil.which(args[0], path=full_env.get("PATH", BASE_PATH))
    sh = _sh()
    try:
        command = sh.Command(exe or args[0])
    except sh.CommandNotFound:
        pkg = PACKAGE_HINTS.get(os.path.basename(args[0]))
        hint = f"install it with: apt-get install {pkg}" if pkg else "install it and retry"
        raise UserError(f"command '{args[0]}' not found", hint) from None

    output: list[str] = []
    tail: deque[str] = deque(maxlen=25)
    bar = Progress(progress) if progress else None
    debug_output = verbosity() >= 2

    def on_line(line: str) -> None:
        output.append(line)
        tail.append(line.rstrip("\n"))
        if debug_output:
            LOG.debug("    | %s", line.rstrip("\n"))
        if bar:
            bar.update(line)
        else:  # the enclosing step's heartbeat quotes it
            HEARTBEAT.saw(line)

    kwargs: dict[str, object] = {
        "_bg": True,
        "_bg_exc": False,
        "_out": on_line,
        "_err_to_out": True,
        "_new_session": True,
        "_env": full_env,
        "_tty_out": False,
        "_decode_errors": "replace",
        "_ok_code": list(range(0, 256)),
        # No input means an empty stdin, never an open pipe a command could wait on forever.
        "_in": input if input is not None else "",
    }
    if cwd is not None:
        kwargs["_cwd"] = os.fspath(cwd)
    with _signals_deferred() as pending:
        try:
            proc = command(*args[1:], **kwargs)
        except BaseException:
            if bar:
                bar.close()
            raise
        group = int(proc.pid)  # its own session: the process group id is its pid
        _tell_reaper(f"+{group}")
    code: int
    try:
        if pending:  # Ctrl-C while the command was being started: stop it, then report it
            raise KeyboardInterrupt(pending[0])
        try:
            proc.wait()
            code = int(proc.exit_code)
        except sh.ErrorReturnCode as exc:  # signals are reported this way by sh 1.14
            code = int(exc.exit_code)
    except BaseException:
        _terminate(proc)
        raise
    finally:
        _tell_reaper(f"-{group}")
        if bar:
            bar.close()
    if check and code not in ok_codes:
        cause = aptnet.diagnose(output) if aptnet.is_apt_tool(args) else None
        raise CommandError(args, code, list(tail), cause=cause)
    return CommandResult(args, code, "".join(output))
