"""Issue 12, the fault matrix: a full disk, and concurrent builds of one cache key.

Disk full: DEST and the cache on a small ext4 filesystem the test makes on a loop device. The build
fails with exit code 1 and one line naming the filesystem's mount point and "no space left"; no
build directory and no incomplete cache entry is left; the earlier entry in that cache stays valid
and is used by the next build.
Concurrency: three builds of one base into an empty cache bootstrap once; all three succeed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Build, Builder, leftovers
from .faultlib import background, cache_key_of, error_lines, trusted_entry

BASE = ("--suite", "noble", "--network", "none")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 400 MB ext4 filesystem at tmp_path/small: room for a cached tree, not for a second copy of it."""
    image, mount = tmp_path / "small.img", tmp_path / "small"
    subprocess.run(["truncate", "-s", "400M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def warm_entry(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The session cache's noble base (built here if no earlier test did): (key, bases dir)."""
    build = builder.run(*BASE, "-d", str(tmp_path_factory.mktemp("disk-warm") / "w")).check()
    return build.summary["cache"]["key"], builder.cache_dir / "bases"


def test_disk_full(small_fs: Path, warm_entry: tuple[str, Path], tmp_path: Path) -> None:
    key, bases = warm_entry
    cache = small_fs / "cache"
    (cache / "bases").mkdir(parents=True)
    for suffix in (".tree", ".manifest", ".json"):  # an earlier, valid entry in the small filesystem's cache
        subprocess.run(["cp", "-a", str(bases / f"{key}{suffix}"), str(cache / "bases")], check=True)
    small = Builder(cache)
    dest = small_fs / "out" / "full"

    failed = small.run(*BASE, "-d", str(dest))
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    errors = error_lines(failed.stderr)
    assert len(errors) == 1, failed.stderr[-3000:]
    assert errors[0].startswith(f"vmbuilder: error: no space left on device: the filesystem mounted at {small_fs} ")
    assert not dest.exists() and leftovers(dest.parent) == []
    entry = [f"{key}.tree", f"{key}.manifest", f"{key}.json", f"{key}.used", f"{key}.lock"]
    assert sorted(p.name for p in (cache / "bases").iterdir()) == sorted(entry)
    assert trusted_entry(cache, key), "the earlier cache entry was harmed"

    # The entry is still used: the same build with DEST on a disk with room is a cache hit.
    again: Build = small.run(*BASE, "-d", str(tmp_path / "roomy"))
    again.check()
    assert again.summary["cache"]["hit"] is True


def test_three_concurrent_builds_bootstrap_once(tmp_path: Path) -> None:
    cold = Builder(tmp_path / "cache")
    runs = [background(cold, *BASE, "-d", str(tmp_path / f"c{i}")) for i in range(3)]
    results = [r.finish(timeout=900) for r in runs]
    for r in results:
        r.check()
    hits = sorted(r.summary["cache"]["hit"] for r in results)
    assert hits == [False, True, True], [r.stderr[-1500:] for r in results]
    assert len({cache_key_of(r.stderr) for r in results}) == 1
    assert sum("waiting for another build that is bootstrapping the same base" in r.stderr for r in results) >= 1
    assert sum("running mmdebstrap" in r.stderr for r in results) == 1
