"""The exports' compressors: the same bytes whatever the number of threads, and the tar stream hashed
while it is written (no second read)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

import pytest

from vmbuilder_lxc.exports import tarball

EPOCH = 1_700_000_000


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A few MiB of half-compressible files: enough for several xz blocks at level 0 (1 MiB each)."""
    root = tmp_path / "tree"
    rng = random.Random(15)
    for n in range(3):
        path = root / f"d{n % 3}" / f"f{n}"
        path.parent.mkdir(parents=True, exist_ok=True)
        words = [rng.choice(("alpha", "beta", "gamma", "delta")) + str(rng.randrange(10**6)) for _ in range(120_000)]
        path.write_text(" ".join(words))
        os.chmod(path, 0o644)
    return root


def compress(data: bytes, compression: str, level: int, threads: str) -> bytes:
    argv = tarball.compressor(compression, level, threads=threads)
    return subprocess.run(argv, input=data, capture_output=True, check=True, timeout=300).stdout


def tar_bytes(root: Path) -> bytes:
    return subprocess.run(tarball.tar_argv(root, epoch=EPOCH), capture_output=True, check=True, timeout=300).stdout


@pytest.mark.parametrize(("compression", "level"), [("xz", 0), ("zstd", 3)])
def test_output_does_not_depend_on_the_thread_count(tree: Path, compression: str, level: int) -> None:
    data = tar_bytes(tree)
    one = compress(data, compression, level, "+1" if compression == "xz" else "1")
    assert compress(data, compression, level, "2") == one
    assert compress(data, compression, level, "0") == one


def test_xz_runs_multi_threaded_with_a_pinned_block_size() -> None:
    argv = tarball.compressor("xz", 6)
    assert "-T0" in argv and "--block-size=24576KiB" in argv  # 3 x the 8 MiB dictionary of -6
    assert "--block-size=1024KiB" in tarball.compressor("xz", 0)  # xz's floor of 1 MiB


def test_xz_blocks_are_split_for_threads(tree: Path) -> None:
    """More than one block: the output can be decompressed (and was compressed) in parallel."""
    packed = compress(tar_bytes(tree), "xz", 0, "0")
    listing = subprocess.run(["xz", "--robot", "--list", "-"], input=packed, capture_output=True, timeout=60)
    if listing.returncode != 0:  # xz --list needs a seekable file
        path = tree.parent / "t.tar.xz"
        path.write_bytes(packed)
        listing = subprocess.run(["xz", "--robot", "--list", str(path)], capture_output=True, check=True, timeout=60)
    totals = next(line for line in listing.stdout.decode().splitlines() if line.startswith("totals"))
    assert int(totals.split("\t")[2]) > 1  # blocks


@pytest.mark.parametrize("compression", ["none", "zstd", "xz"])
def test_digest_is_that_of_the_uncompressed_stream(tree: Path, tmp_path: Path, compression: str) -> None:
    out = tmp_path / f"t.tar{tarball.SUFFIX[compression]}"
    size, sha256 = tarball.write_tar_digest(tree, out, epoch=EPOCH, compression=compression, level=1)
    data = tar_bytes(tree)
    assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest())
    unpacked = (
        out.read_bytes()
        if compression == "none"
        else subprocess.run(
            [*tarball.decompressor(compression), str(out)], capture_output=True, check=True, timeout=60
        ).stdout
    )
    assert unpacked == data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "tree"])  # no digest file left
