"""The exports' compressors: the same bytes whatever the number of threads, and the tar stream hashed
while it is written (no second read)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shlex
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_exports import job_for
from vmbuilder_lxc import exports
from vmbuilder_lxc.exports import lxdimage, sharing, tarball
from vmbuilder_lxc.run import CommandError

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


def test_plain_tar_is_hashed_while_it_grows(tmp_path: Path) -> None:
    """The follower reads a file another process is still appending to, and everything it appended
    after the follower caught up (a slow writer: the follower waits, then reads the rest)."""
    out = tmp_path / "grown"
    writer = "import sys, time\nfor i in range(6):\n    sys.stdout.buffer.write(bytes([i]) * 300001); " \
             "sys.stdout.flush(); time.sleep(0.05)\n"  # fmt: skip
    producer = ["bash", "-c", f"python3 -c {shlex.quote(writer)} > {shlex.quote(str(out))}", "--file=-"]
    size, sha256 = tarball.pipe_digest(producer, out, "none")
    data = b"".join(bytes([i]) * 300001 for i in range(6))
    assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest()) and out.read_bytes() == data


def test_a_failing_tar_is_reported_and_its_follower_stopped(tmp_path: Path) -> None:
    before = threading.active_count()
    with pytest.raises(CommandError):
        tarball.write_tar_digest(tmp_path / "missing", tmp_path / "t.tar", epoch=EPOCH, compression="none")
    assert threading.active_count() == before


# -- the shared-compression plan (sharing.py) ---------------------------------------------------


def unpack(path: Path) -> bytes:
    compression = {".zst": "zstd", ".xz": "xz", ".gz": "gzip"}.get(path.suffix, "none")
    argv = [*tarball.decompressor(compression), str(path)]
    return subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout


def rootfs_tree(tmp_path: Path) -> Path:
    root = tmp_path / "ct" / "rootfs"
    for rel, text in {
        "etc/hostname": "web1\n",
        "etc/hosts": "127.0.1.1\tweb1\n",
        "usr/bin/tool": "#!/bin/sh\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text * 1000)
    return root


def test_lxd_and_incus_default_to_zstd() -> None:
    for name in ("lxd", "incus"):
        fmt = exports.FORMATS[name]
        assert fmt.default_compression == "zstd" and "xz" in fmt.compressions
        assert f".{name}.tar.zst" in fmt.description
    assert "lxd/incus/squashfs/sbuild zstd" in exports.default_compressions()


@pytest.mark.parametrize("compression", ["", "xz", "gzip", "none"])
def test_lxd_and_incus_compress_the_rootfs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               compression: str) -> None:  # fmt: skip
    root = rootfs_tree(tmp_path)
    rootfs_streams: list[Path] = []
    squashfs_runs: list[Path] = []
    real_pipe, real_squashfs = sharing.pipe, lxdimage.write_squashfs

    def counting_pipe(producer: list[str], out: Path, *args: Any, **kw: Any) -> Path:
        if kw.get("append"):
            rootfs_streams.append(out)
        return real_pipe(producer, out, *args, **kw)

    def counting_squashfs(job: exports.ExportJob, out: Path) -> Path:
        squashfs_runs.append(out)
        return real_squashfs(job, out)

    monkeypatch.setattr(sharing, "pipe", counting_pipe)
    monkeypatch.setattr(lxdimage, "write_squashfs", counting_squashfs)
    out = tmp_path / "out"
    job = job_for(root, out, compression=compression, lxd_image="both")
    formats = [exports.FORMATS["lxd"], exports.FORMATS["incus"]]
    exports.export(root, formats, job, keep=frozenset(), overwrite=False)
    assert len(rootfs_streams) == 1 and len(squashfs_runs) == 1
    suffix = tarball.SUFFIX[compression or "zstd"]
    lxd, incus = out / f"web1.lxd.tar{suffix}", out / f"web1.incus.tar{suffix}"
    assert (out / "web1.lxd/rootfs.squashfs").read_bytes() == (out / "web1.incus/rootfs.squashfs").read_bytes()
    for path, var in ((lxd, "container"), (incus, "instance")):
        data = unpack(path)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            hostname = tar.extractfile("templates/hostname.tpl")
            assert hostname is not None and hostname.read() == ("{{ " + var + ".name }}\n").encode()
        assert names[:5] == ["metadata.yaml", "templates", "templates/hostname.tpl", "templates/hosts.tpl", "rootfs"]
        assert "rootfs/usr/bin/tool" in names
        # The same tar one run of GNU tar over both would give, up to the zero padding at the end.
        with tempfile.TemporaryDirectory(dir=tmp_path) as meta_dir:
            names_top = lxdimage.write_metadata_dir(job, path.name.split(".")[1], Path(meta_dir))
            argv = tarball.tar_argv(root, epoch=EPOCH, transform=lxdimage.ROOTFS_PREFIX,
                                    extra=(Path(meta_dir), names_top))  # fmt: skip
            one = subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout
        assert data.rstrip(b"\0") == one.rstrip(b"\0")


def test_members_end_is_before_the_end_of_archive_blocks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"x" * 700)  # two data blocks, the second one partly used
    tar = tmp_path / "t.tar"
    tar.write_bytes(subprocess.run(tarball.tar_argv(tmp_path / "d", epoch=EPOCH), capture_output=True, check=True,
                                   timeout=60).stdout)  # fmt: skip
    end = sharing.members_end(tar)
    data = tar.read_bytes()
    assert end % 512 == 0 and data[end - 512 : end - 512 + 188] == b"x" * 188 and set(data[end:]) == {0}
