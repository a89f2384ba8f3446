"""What `vmbuilder lxc doctor`'s checks share: the result type, the options and read-only probes.

Every probe is bounded: external commands get a timeout (and their whole process group is killed
when it expires), and nothing here writes to the host. Checks call `probe()` and `which()` through
this module so that unit tests can replace them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .cache import DEFAULT_CACHE_DIR
from .run import clean_env

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")
MOUNTINFO = Path("/proc/self/mountinfo")
OS_RELEASE = Path("/etc/os-release")
GIB = 1 << 30


@dataclass(frozen=True)
class Result:
    """One line of the report: what was found and, unless it is fine, how to fix it."""

    check: str
    status: Status
    finding: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "finding": self.finding, "fix": self.fix}


@dataclass(frozen=True)
class Options:
    """What the user told doctor about the builds they intend (the defaults are a default build's)."""

    cache_dir: Path = DEFAULT_CACHE_DIR
    dest: Path = field(default_factory=lambda: Path.cwd() / "ubuntu-lxc")
    arches: tuple[str, ...] = ()
    min_free: int = 2 * GIB
    timeout: float = 10.0
    verify_cache: bool = False


@dataclass(frozen=True)
class Probe:
    """The outcome of an external command: found or not, finished in time or not, and its output."""

    found: bool
    returncode: int | None
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def first_line(self) -> str:
        lines = self.output.strip().splitlines()
        return lines[0].strip() if lines else ""

    @property
    def last_line(self) -> str:
        lines = self.output.strip().splitlines()
        return lines[-1].strip() if lines else ""


def which(name: str) -> str | None:
    """The path of a command on the build's PATH (sbin included), or None."""
    return shutil.which(name, path=clean_env()["PATH"])


def probe(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Probe:
    """Run a read-only command with a deadline; a hang is reported, never waited out."""
    exe = which(argv[0])
    if exe is None:
        return Probe(False, None, "")
    try:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env or clean_env(),
            start_new_session=True,
            text=True,
            errors="replace",
            cwd="/",
        )
    except OSError as exc:
        return Probe(True, None, str(exc))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild in another session holds the pipe
            out = ""
        return Probe(True, None, out or "", timed_out=True)
    return Probe(True, proc.returncode, out)


@dataclass(frozen=True)
class Mount:
    target: str
    fstype: str
    source: str


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field_.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts(path: Path | None = None) -> list[Mount]:
    """The mounts this process sees (the last mount on a target is the one that counts)."""
    try:
        text = (path or MOUNTINFO).read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        parts, rest = left.split(), right.split()
        if sep and len(parts) >= 5 and len(rest) >= 2:
            found.append(Mount(_unescape(parts[4]), rest[0], _unescape(rest[1])))
    return found


def mount_at(target: Path, path: Path | None = None) -> Mount | None:
    at = [m for m in mounts(path) if m.target == str(target)]
    return at[-1] if at else None


def host_os(path: Path | None = None) -> str:
    """ubuntu, debian or another os-release ID; derivatives count as what they are like."""
    try:
        fields = dict(
            line.split("=", 1)
            for line in (path or OS_RELEASE).read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
    except OSError:
        return ""
    ids = [fields.get("ID", "").strip('"')] + fields.get("ID_LIKE", "").strip('"').split()
    return next((i for i in ids if i in ("ubuntu", "debian")), ids[0])


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
