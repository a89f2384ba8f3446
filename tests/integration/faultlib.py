"""Helpers shared by the interrupt and fault-matrix tests: start a build in the background, follow
its stderr, find what it left behind (processes, mounts, build directories, cache entries)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

from vmbuilder_lxc.cache import BaseCache

from .conftest import Build, Builder


class Background:
    """A `vmbuilder` run in the background whose stderr lines are collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.stdout = ""
        self._pumps = [threading.Thread(target=fn, daemon=True) for fn in (self._pump, self._out)]
        for t in self._pumps:
            t.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def _out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if needle in line:
                return
        raise AssertionError(f"{needle!r} not seen (exit code {self.proc.poll()}):\n{''.join(self.seen)[-4000:]}")

    def finish(self, timeout: float = 120) -> Build:
        """Wait for the exit; the whole stderr and the --json summary (if any) as a Build."""
        code = self.proc.wait(timeout=timeout)
        for t in self._pumps:
            t.join(30)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        build = Build(code, self.stdout, "".join(self.seen), 0.0)
        try:
            build.summary = json.loads(self.stdout) if self.stdout.strip() else {}
        except ValueError:
            pass
        return build


def processes_mentioning(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmdline:
                found.append(cmdline)
    return found


def children_of_build(pid: int) -> list[str]:
    """Processes started by the build with this pid: run() tags their environment with it."""
    tag = f"VMBUILDER_BUILD_TOKEN={pid}-".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes()
                if any(item.startswith(tag) for item in environ.split(b"\0")):
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return found


def wait_until_gone(pid: int, parent: Path, timeout: float = 30) -> None:
    """The build's commands end (the reaper needs a moment after a SIGKILL); fails after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        left = children_of_build(pid) + processes_mentioning(parent)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of the build are still running: {left}")
        time.sleep(0.5)


def cache_key_of(stderr: str) -> str | None:
    """The cache key a build reported (`cache miss: no base KEY` or `cache hit: reusing base KEY`)."""
    m = re.search(r"cache (?:miss: no base|hit: reusing base) ([0-9a-f]{32})", stderr)
    return m.group(1) if m else None


def trusted_entry(cache_dir: Path, key: str) -> bool:
    """Whether a later build would use the entry of KEY (checked as a build does, under the lock)."""
    cache = BaseCache(cache_dir)
    with cache.locked(key):
        return cache.lookup(key) is not None


def fresh_key_hooks(directory: Path, pause_marker: Path | None = None) -> Path:
    """A hook dir with a `setup` hook whose text is unique: a fresh cache key, so a cold bootstrap.

    With PAUSE_MARKER the hook touches it and then waits, inside mmdebstrap, for the test's signal.
    """
    directory.mkdir(parents=True, exist_ok=True)
    body = f"#!/bin/sh\n# a fresh cache key: {uuid.uuid4()}\n"
    if pause_marker is not None:
        body += f"touch {pause_marker}\nexec sleep 3600\n"
    hook = directory / "setup50-fresh-key"
    hook.write_text(body)
    hook.chmod(0o755)
    return directory


def wait_for_file(path: Path, bg: Background, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if bg.proc.poll() is not None or time.monotonic() > deadline:
            build = bg.finish(timeout=30)
            raise AssertionError(f"{path} did not appear (exit code {build.returncode}):\n{build.stderr[-4000:]}")
        time.sleep(0.2)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vmbuilder: error:")]


def background(builder: Builder, *args: str, env: dict[str, str] | None = None) -> Background:
    return Background(builder.argv(*args), env=env)
