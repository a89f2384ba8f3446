"""Running one command for the bench: wall time, peak RSS, and vmbuilder's own Python process RSS.

The peak RSS of a command comes from os.wait4 (Linux reports the largest of the process and the
descendants it waited for, so a shell pipeline reports its largest member). vmbuilder is run through
a tiny wrapper that records resource.getrusage(RUSAGE_SELF) at exit: that is the Python process
itself, apart from the tar, zstd or apt it starts.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WRAPPER = """
import atexit, resource, sys
out = sys.argv[1]
def record():
    with open(out, "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(record)
sys.argv = ["vmbuilder"] + sys.argv[2:]
from vmbuilder_lxc.cli import main
sys.exit(main())
"""


@dataclass
class Run:
    """One command's outcome: seconds is None when it failed (tail says why)."""

    seconds: float | None
    rss_kb: int
    self_rss_kb: int | None = None
    tail: str = ""


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run argv to completion, its output to a file (never a pipe that could fill up)."""
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=None if env is None else {**os.environ, **env}, cwd=cwd)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            lines = out.read().decode(errors="replace").strip().splitlines()
            return Run(None, usage.ru_maxrss, tail=f"exit {proc.returncode}: " + " / ".join(lines[-3:]))
    return Run(elapsed, usage.ru_maxrss)


def shell(command: str) -> Run:
    """A pipeline such as `tar -cf - . | xz -T0 > out`, failing if any member fails."""
    return run(["bash", "-o", "pipefail", "-c", command])


def bytecode_env(cache: Path) -> dict[str, str]:
    """Let vmbuilder's Python keep its compiled bytecode, in `cache`, as an installed package has it
    (dh_python and pip compile at install time). A source tree run with PYTHONDONTWRITEBYTECODE=1, as
    this test machine's environment sets, would compile every module again on every run (~0.1 s)."""
    return {"PYTHONPYCACHEPREFIX": str(cache), "PYTHONDONTWRITEBYTECODE": ""}


def vmbuilder(args: list[str], env: dict[str, str] | None = None) -> Run:
    """The project, run in-process by this Python (the same interpreter and installed code)."""
    with tempfile.NamedTemporaryFile(prefix="vmbuilder-rss-") as rss:
        result = run([sys.executable, "-c", WRAPPER, rss.name, *args], env=env)
        text = Path(rss.name).read_text().strip()
        result.self_rss_kb = int(text) if text.isdigit() else None
    return result


def disk_bytes(*paths: Path) -> int:
    """Blocks used by paths together, a hard-linked or shared file counted once (du -c)."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0
    out = subprocess.run(["du", "-s", "-c", "-B1", "-x", *existing], capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


_TRASH: list[Path] = []


def remove(path: Path) -> None:
    """Put a tree the bench made out of the way: renamed aside now, deleted by empty_trash() at the
    end (where a rename fails, e.g. a mount point, it is removed now, never crossing into a mount).

    Why not now: ext4 without a journal (this test machine's) skips, at a cost, every inode freed
    in the last minute (six while its table block is dirty) when it allocates one, so a tree made
    right after a tree of the same size was deleted beside it took 8 s to copy instead of 0.5 s. A
    deletion would slow whatever the bench measures next, and a cold build (which copies its base
    into the cache) twice as much as mmdebstrap. The tree's data is then written back (settle).
    """
    if not (path.exists() or path.is_symlink()):
        return
    aside = path.with_name(f".trash.{len(_TRASH)}.{path.name}")
    try:
        os.rename(path, aside)
    except OSError:
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
    else:
        _TRASH.append(aside)
    settle()


def settle() -> None:
    """Write back every dirty page now, untimed, so that each measurement starts with none: the
    data one command left behind is otherwise written back during the next one (tar and cp then
    compete with the flusher), and a build's own `sync -f` (its cache store) would flush every
    earlier command's trees as well as its own."""
    os.sync()


def empty_trash() -> None:
    """Delete what remove() put aside (untimed, at the end of a run)."""
    while _TRASH:
        path = _TRASH.pop()
        if path.exists() or path.is_symlink():
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def machine() -> dict[str, str]:
    """What the figures were measured on: cores, memory, kernel, the work directory's disk."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "load_at_start": load,
    }


def disk_type(path: Path) -> str:
    """Filesystem type and whether the device rotates (for the record of the machine)."""
    found = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(path)], capture_output=True, text=True)
    fstype, _, source = found.stdout.strip().partition(" ")
    dev = Path(source.strip()).name
    rotational = Path(f"/sys/block/{dev}/queue/rotational")
    kind = "unknown disk"
    if rotational.exists():
        kind = "rotational flag 1" if rotational.read_text().strip() == "1" else "non-rotational (SSD)"
    return f"{fstype} on {dev or '?'}, {kind}"


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
