"""Issue 13, item 2, with the real `vmbuilder`: only the value that wins is checked.

A bad value that a later `-c` file or the command line overrides must not stop the run; a bad value
that wins must stop it in preflight with exit 2 and one line naming where it came from. Each run is
as `nobody`: a build that passes every check then stops right after preflight ("building needs
root"), so no case bootstraps anything, and no mistake in the code under test can start a build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import vmbuilder_command

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz2x5n1y8kq3m0CRWpq1mzJtCPOTm3dQDSfZ1FZWd6L ops@example\n"
NEEDS_ROOT = "vmbuilder: error: building needs root"


@dataclass(frozen=True)
class Kind:
    """A setting with a bad and a good value; {dir} in a value is the test's directory."""

    id: str
    key: str
    bad: str
    good: str
    needle: str
    section: str = "ubuntu"


KINDS = [
    Kind("path", "ssh-key", "{dir}/missing.pub", "{dir}/ops.pub", "does not exist"),
    Kind("size", "mem", "lots", "2G", "expected megabytes", section="lxc"),
    Kind("int", "cpus", "two", "2", "expected a whole number", section="DEFAULT"),
    Kind("choice", "compression", "rar", "zstd", "must be one of:", section="DEFAULT"),
    Kind("zone", "timezone", "Mars/X", "UTC", "unknown time zone"),
]
IDS = [k.id for k in KINDS]


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory `nobody` can read (pytest's tmp_path lies below a root-only directory)."""
    path = Path(tempfile.mkdtemp(prefix="vmbuilder-precedence-"))
    os.chmod(path, 0o755)
    (path / "home").mkdir()
    (path / "ops.pub").write_text(KEY)
    yield path
    shutil.rmtree(path)


def write_cfg(base: Path, name: str, kind: Kind, text: str) -> str:
    path = base / name
    path.write_text(f"[{kind.section}]\n{kind.key} = {text.format(dir=base)}\n")
    path.chmod(0o644)
    return str(path)


def run(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`vmbuilder lxc ubuntu ARGS` as nobody, with nothing of the host's config."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", vmbuilder_command(), "lxc", "ubuntu",
            "--arch", arch, "--suite", "noble", "--network", "none",
            "-d", str(base / "out" / "web1"), "--cache-dir", str(base / "cache"), *args]  # fmt: skip
    env = {**os.environ, "HOME": str(base / "home")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=base, env=env)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert not (base / "out").exists() and not (base / "cache").exists()
    return proc


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if "error:" in ln]


def passes_preflight(proc: subprocess.CompletedProcess[str], bad: str) -> None:
    """Every check passed: the only error is the one after preflight, and the bad value is unsaid."""
    assert proc.returncode == 2, proc.stderr
    assert [ln.split(" (")[0].split(";")[0] for ln in errors(proc)] == [NEEDS_ROOT], proc.stderr
    assert bad not in proc.stderr


def refused(proc: subprocess.CompletedProcess[str], kind: Kind, source: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vmbuilder: error: invalid value "), proc.stderr
    assert f" for {source}: " in lines[0] and kind.needle in lines[0], proc.stderr
    return lines[0]


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_file_value_overridden_by_the_command_line_passes(base: Path, kind: Kind) -> None:
    cfg = write_cfg(base, "a.cfg", kind, kind.bad)
    passes_preflight(run(base, "-c", cfg, f"--{kind.key}", kind.good.format(dir=base)), kind.bad.format(dir=base))


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_file_value_overridden_by_a_later_file_passes(base: Path, kind: Kind) -> None:
    first = write_cfg(base, "a.cfg", kind, kind.bad)
    later = write_cfg(base, "b.cfg", kind, kind.good)
    passes_preflight(run(base, "-c", first, "-c", later), kind.bad.format(dir=base))


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_command_line_value_over_a_good_file_is_refused(base: Path, kind: Kind) -> None:
    cfg = write_cfg(base, "a.cfg", kind, kind.good)
    line = refused(run(base, "-c", cfg, f"--{kind.key}", kind.bad.format(dir=base)), kind,
                   f"--{kind.key} on the command line")  # fmt: skip
    assert cfg not in line


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_value_in_the_later_file_is_refused(base: Path, kind: Kind) -> None:
    first = write_cfg(base, "a.cfg", kind, kind.good)
    later = write_cfg(base, "b.cfg", kind, kind.bad)
    refused(run(base, "-c", first, "-c", later), kind, f"'{kind.key}' in {later} [{kind.section}]")


def test_the_issues_example(base: Path) -> None:
    """`timezone = Mars/X` in a.cfg, then `-c a.cfg --timezone UTC`: exited 2 naming a.cfg."""
    cfg = base / "a.cfg"
    cfg.write_text("[ubuntu]\ntimezone = Mars/X\n")
    cfg.chmod(0o644)
    passes_preflight(run(base, "-c", str(cfg), "--timezone", "UTC"), "Mars/X")
