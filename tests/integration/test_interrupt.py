"""Acceptance 6: Ctrl-C during the bootstrap and during configuration leaves no mounts, no
destination, no build directory and no running child processes behind. (The full matrix of
signals and stages is test_faults_signals.py.)"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from .conftest import Builder, leftovers, mounts_mentioning
from .faultlib import processes_mentioning


def start(builder: Builder, *args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = subprocess.Popen(builder.argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def wait_for(lines: queue.Queue[str], needle: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen in {timeout} s:\n{''.join(seen)}")


def assert_clean(parent: Path, dest: Path) -> None:
    assert not dest.exists(), "a half-built destination was left behind"
    assert leftovers(parent) == [], "the build directory was left behind"
    assert mounts_mentioning(parent) == [], "mounts were left behind"
    assert processes_mentioning(parent) == [], "processes of the build are still running"


def test_ctrl_c_during_bootstrap(builder: Builder, tmp_path: Path) -> None:
    dest = tmp_path / "out/int1"
    proc, lines = start(builder, "--suite", "noble", "--network", "none", "--no-cache", "-d", str(dest))
    wait_for(lines, "running mmdebstrap", timeout=60)
    time.sleep(5)  # well inside the bootstrap: packages are being downloaded or unpacked
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert_clean(tmp_path / "out", dest)
    assert not (tmp_path / "out").exists(), "the parent directory the build created was left behind"


def test_ctrl_c_during_configuration(builder: Builder, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "customizing"
    hook = hooks / "customize50-slow"
    hook.write_text(f'#!/bin/sh\ntouch {marker}\nexec chroot "$1" sleep 120\n')
    hook.chmod(0o755)
    dest = tmp_path / "int2"
    proc, lines = start(builder, "--suite", "noble", "--network", "none", "--hook-dir", str(hooks), "-d", str(dest))
    wait_for(lines, "running customize hook", timeout=600)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert_clean(tmp_path, dest)
    # The cache was not harmed: the next build of the same base is a cache hit.
    again = builder.run("--suite", "noble", "--network", "none", "-d", str(tmp_path / "after")).check()
    assert again.summary["cache"]["hit"] is True
