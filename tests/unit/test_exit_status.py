"""Exit status after a signal (128 + its number), the reaper that outlives a killed vmbuilder, the
test-only pause point, and the one-line error for a full disk.

The signal tests run a small Python program in a subprocess: cli.main() with a _main() that waits
in a command, as a build waits in mmdebstrap or tar.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.conftest import DictSettings
from tests.unit.test_run import _alive
from vmbuilder_lxc import pipeline
from vmbuilder_lxc.run import BuildInterrupted, CommandError, interrupt_exit_code

HANG_GUARD = 60  # seconds; only ever reached when something hangs

MAIN_WAITING_IN_A_COMMAND = """
import sys
from vmbuilder_lxc import cli
from vmbuilder_lxc.run import pause_point

def waiting(args, state):
    pause_point("configure")
    return 0

cli._main = waiting
sys.exit(cli.main(sys.argv[1:]))
"""


def start_paused(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "VMBUILDER_TEST_PAUSE_AT": "configure"}
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN_WAITING_IN_A_COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line == "vmbuilder-test: paused at configure\n"
    return proc


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=lambda x: str(x)
)
def test_the_exit_code_follows_the_signal(sig: signal.Signals, code: int) -> None:
    proc = start_paused()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == code
    assert err.strip().splitlines() == [f"vmbuilder: error: interrupted by {sig.name}; nothing was built"]
    assert "Traceback" not in err


def test_json_reports_the_exit_code() -> None:
    proc = start_paused("--json")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 143
    assert '"exit_code": 143' in out


def test_interrupt_exit_code() -> None:
    assert interrupt_exit_code(KeyboardInterrupt()) == 130
    assert interrupt_exit_code(KeyboardInterrupt("SIGINT")) == 130
    assert interrupt_exit_code(KeyboardInterrupt("SIGTERM")) == 143
    assert interrupt_exit_code(KeyboardInterrupt("SIGHUP")) == 129
    assert interrupt_exit_code(BuildInterrupted("SIGTERM", "the build directory was removed")) == 143
    assert interrupt_exit_code(KeyboardInterrupt("not a signal")) == 130


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)


KILLED_WHILE_A_COMMAND_RUNS = """
import sys
from vmbuilder_lxc.run import run, start_reaper
if sys.argv[2] == "reaper":
    start_reaper()
run(["sh", "-c", "sleep 120 & echo $! > " + sys.argv[1] + "; wait"])
"""


@pytest.mark.parametrize("reaper", ["reaper", "no-reaper"])
def test_sigkill_of_vmbuilder_kills_its_commands_with_the_reaper(tmp_path: Path, reaper: str) -> None:
    """Commands run in their own session, so only the reaper can stop them once vmbuilder is killed."""
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_A_COMMAND_RUNS, str(pidfile), reaper])
    _wait(lambda: pidfile.exists() and pidfile.read_text().strip(), "the command did not start")
    child = int(pidfile.read_text())
    proc.kill()
    proc.wait(timeout=HANG_GUARD)
    try:
        if reaper == "reaper":
            _wait(lambda: not _alive(child), "the command survived vmbuilder's SIGKILL")
        else:  # what the reaper is for
            time.sleep(0.5)
            assert _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_clean_exit_kills_nothing(tmp_path: Path) -> None:
    """Commands that ended are unregistered: the reaper never signals a group it no longer owns."""
    script = "from vmbuilder_lxc.run import run, start_reaper\nstart_reaper()\nrun(['true'])\nrun(['true'])\n"
    done = subprocess.run([sys.executable, "-c", script], timeout=HANG_GUARD, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


LEFT_BEHIND_BY_A_CLEAN_BUILD = """
import sys
from vmbuilder_lxc.run import run, start_reaper, stop_reaper
start_reaper()
run(["sh", "-c", "setsid sleep 120 </dev/null >/dev/null 2>&1 & echo $! > " + sys.argv[1]])
stop_reaper()
"""


def test_a_clean_stop_still_kills_what_a_command_left_behind(tmp_path: Path) -> None:
    """stop_reaper's "=done" shortens the reaper's scan to one pass; that pass still finds a daemon
    a command started in a session of its own (it carries the build's token in its environment)."""
    pidfile = tmp_path / "pid"
    done = subprocess.run(
        [sys.executable, "-c", LEFT_BEHIND_BY_A_CLEAN_BUILD, str(pidfile)],
        timeout=HANG_GUARD,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    child = int(pidfile.read_text())
    try:
        _wait(lambda: not _alive(child), "the daemon a command left behind survived the build")
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


RE_EXECS_ITSELF = 'exec "$0"'  # a daemon caught mid-exec reads as an empty environment


def test_a_clean_stop_kills_a_daemon_caught_in_the_middle_of_an_exec(tmp_path: Path) -> None:
    """A left-behind daemon that execs itself over and over is, in a good share of reads, between
    two images with no environment to read; the one pass after "=done" must not miss it then."""
    loop = tmp_path / "loop"
    loop.write_text(f"#!/bin/sh\n{RE_EXECS_ITSELF}\n")
    loop.chmod(0o755)
    for attempt in range(10):  # each read has a few percent chance of falling between two images
        pidfile = tmp_path / f"pid{attempt}"
        script = LEFT_BEHIND_BY_A_CLEAN_BUILD.replace("setsid sleep 120", f"setsid {loop}")
        done = subprocess.run([sys.executable, "-c", script, str(pidfile)], timeout=HANG_GUARD,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        child = int(pidfile.read_text())
        try:
            _wait(lambda pid=child: not _alive(pid), f"a daemon in an exec loop survived the build (attempt {attempt})")
        finally:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


def test_a_clean_stop_leaves_a_stranger_with_no_environment_alone(tmp_path: Path) -> None:
    """A program started with an empty environment (not the build's) reads like one mid-exec: the
    reaper looks again a few times, then ends, and does not kill it."""
    stranger = subprocess.Popen(["sleep", "120"], env={})
    try:
        test_a_clean_stop_still_kills_what_a_command_left_behind(tmp_path)
        assert stranger.poll() is None, "the reaper killed a process that was not the build's"
    finally:
        stranger.kill()
        stranger.wait()


def test_no_pause_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmbuilder_lxc.run import pause_point

    monkeypatch.delenv("VMBUILDER_TEST_PAUSE_AT", raising=False)
    pause_point("configure")  # returns at once
    monkeypatch.setenv("VMBUILDER_TEST_PAUSE_AT", "export")
    pause_point("configure")  # another stage: returns at once


# -- a full disk ---------------------------------------------------------------------------------


def fake_ctx(tmp_path: Path, **values: Any) -> Any:
    settings = DictSettings(cache=True, **{"cache-dir": str(tmp_path / "cache")}, **values)
    return SimpleNamespace(settings=settings, workdir=tmp_path / ".x.1.vmbuilder-partial", dest=tmp_path / "x")


def test_enospc_from_python_names_the_filesystem_of_the_file(tmp_path: Path) -> None:
    err = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x/rootfs/etc/hosts"))
    full = pipeline.disk_full_error(fake_ctx(tmp_path), err)
    assert full is not None
    mount = pipeline.mount_point(tmp_path)
    assert str(full).startswith(f"no space left on device: the filesystem mounted at {mount} is full (")
    assert "the build directory beside DEST" in str(full) and "the cache" in str(full)


def test_enospc_in_a_commands_output_or_inside_a_plugin_error(tmp_path: Path) -> None:
    cmd = CommandError(["tar", "-x"], 2, ["tar: ./usr/bin/x: Cannot write: No space left on device"])
    assert pipeline.disk_full_error(fake_ctx(tmp_path), cmd) is not None
    wrapped = RuntimeError("plugin 'export' failed")
    wrapped.original = cmd  # type: ignore[attr-defined]  # as PluginError carries it
    assert pipeline.disk_full_error(fake_ctx(tmp_path), wrapped) is not None
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("while writing") from inner
    except RuntimeError as outer:
        assert pipeline.disk_full_error(fake_ctx(tmp_path), outer) is not None


def test_other_failures_are_not_called_a_full_disk(tmp_path: Path) -> None:
    assert pipeline.disk_full_error(fake_ctx(tmp_path), OSError(errno.EACCES, "Permission denied")) is None
    cmd = CommandError(["mmdebstrap"], 1, ["E: Failed to fetch http://mirror/x.deb  500  Internal Server Error"])
    assert pipeline.disk_full_error(fake_ctx(tmp_path), cmd) is None
    assert pipeline.disk_full_error(fake_ctx(tmp_path), KeyboardInterrupt("SIGINT")) is None


def test_mount_point_of_a_path_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert pipeline.mount_point(tmp_path / "not/yet") == pipeline.mount_point(tmp_path)
    assert pipeline.mount_point(Path("/")) == Path("/")


# -- moving into place -----------------------------------------------------------------------------


def commit_ctx(tmp_path: Path, overwrite: bool) -> Any:
    workdir = tmp_path / ".x.1.vmbuilder-partial"
    (workdir / "rootfs").mkdir(parents=True)
    (workdir / "rootfs/new").write_text("new")
    (workdir / ".pid").write_text(str(os.getpid()))
    return SimpleNamespace(
        workdir=workdir, dest=tmp_path / "x", name="x", keep_dest=True,
        settings=DictSettings(overwrite=overwrite),
    )  # fmt: skip


def test_commit_to_a_new_destination(tmp_path: Path) -> None:
    ctx = commit_ctx(tmp_path, overwrite=False)
    pipeline._commit(ctx)
    assert (tmp_path / "x/rootfs/new").read_text() == "new"
    assert not (tmp_path / "x/.pid").exists()
    assert ctx.workdir is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_commit_swaps_an_old_build_and_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = commit_ctx(tmp_path, overwrite=True)
    (tmp_path / "x/rootfs").mkdir(parents=True)
    (tmp_path / "x/rootfs/old").write_text("old")
    (tmp_path / "x" / pipeline.MARKER).write_text("{}")
    monkeypatch.setattr(pipeline, "check_destination", lambda ctx: None)
    pipeline._commit(ctx)
    assert sorted(p.name for p in (tmp_path / "x/rootfs").iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_interrupted_after_the_swap_dest_is_the_new_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while the old build is removed: DEST stays the new one and the old is still removed."""
    ctx = commit_ctx(tmp_path, overwrite=True)
    (tmp_path / "x/rootfs").mkdir(parents=True)
    (tmp_path / "x/rootfs/old").write_text("old")
    monkeypatch.setattr(pipeline, "check_destination", lambda ctx: None)

    def interrupted(stage: str) -> None:
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(pipeline, "pause_point", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline._commit(ctx)
    assert sorted(p.name for p in (tmp_path / "x/rootfs").iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_commit_without_renameat2_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(src: Path, dst: Path, flags: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(pipeline, "_renameat2", unsupported)
    monkeypatch.setattr(pipeline, "check_destination", lambda ctx: None)
    ctx = commit_ctx(tmp_path, overwrite=True)
    (tmp_path / "x").mkdir()
    (tmp_path / "x/old").write_text("old")
    pipeline._commit(ctx)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["rootfs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    ctx = commit_ctx(tmp_path / "new", overwrite=False)
    pipeline._commit(ctx)
    assert (tmp_path / "new/x/rootfs/new").exists()
