"""Compress once per export run, not once per consumer.

`lxd` and `incus` write the same rootfs: their squashfs files are byte-identical, and so is the
rootfs part of their unified tarballs (only metadata.yaml and templates/ differ, and they come
first). A unified tarball is therefore written as two compressed streams, one after the other:
the metadata members (a tar without its end-of-archive blocks), then the rootfs members (a tar with
them). Concatenated xz streams, zstd frames and gzip members decompress as one stream, and the
tar inside is the same as one `tar` run over both would give (up to the zero padding after the end).
The first format compresses the rootfs part; the next copies those bytes (copy_file_range, a
reflink where the filesystem has them) instead of compressing it again.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .base import ExportJob
from .tarball import pipe, tar_argv

BLOCK = 512


def members_end(path: Path) -> int:
    """Offset just past the last member's data in a plain tar file: where its end-of-archive blocks start."""
    end = 0
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            end = member.offset_data + -(-member.size // BLOCK) * BLOCK
    return end


def copy_range(src: Path, offset: int, length: int, dst: Path) -> None:
    """Append `length` bytes of `src` from `offset` to `dst` (in the kernel; a reflink where it can).
    copy_file_range refuses O_APPEND, so the end of `dst` is given as an explicit offset."""
    with src.open("rb") as fin, dst.open("r+b") as fout:
        at = fout.seek(0, os.SEEK_END)
        done = 0
        try:
            while done < length:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), length - done, offset + done, at + done)
                if n == 0:
                    raise OSError(f"{src} ended before {offset + length} bytes")
                done += n
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fin.seek(offset + done)
            fout.seek(at + done)
            while done < length and (chunk := fin.read(min(1 << 20, length - done))):
                fout.write(chunk)
                done += len(chunk)
            if done < length:
                raise OSError(f"{src} ended before {offset + length} bytes") from None


def write_unified(
    job: ExportJob, meta_dir: Path, names: Sequence[str], out: Path, *, transform: str, label: str
) -> None:
    """`out` = compressed(metadata members) + compressed(rootfs members), the rootfs part shared
    with every other unified image of this run that has the same compression and level."""
    plain = meta_dir.parent / f".{out.name}.meta.tar"
    try:
        pipe(tar_argv(None, epoch=job.epoch, extra=(meta_dir, names)), plain, "none")
        with plain.open("r+b") as fh:
            fh.truncate(members_end(plain))
        pipe(["cat", str(plain)], out, job.compression, job.compression_level)
    finally:
        plain.unlink(missing_ok=True)
    key = ("unified-rootfs", transform, job.compression, job.compression_level)
    start = out.stat().st_size
    if key in job.shared:
        src, offset, length = job.shared[key]
        copy_range(src, offset, length, out)
        return
    producer = tar_argv(job.root, epoch=job.epoch, transform=transform)
    pipe(producer, out, job.compression, job.compression_level, progress=f"writing {label}", append=True)
    job.shared[key] = (out, start, out.stat().st_size - start)


def write_once(job: ExportJob, kind: str, out: Path, write: Callable[[Path], object]) -> None:
    """write(out), or a copy of the file an earlier format of this run wrote for the same `kind`."""
    key = (kind, job.compression, job.compression_level)
    earlier: Path | None = job.shared.get(key)
    if earlier is not None and earlier.is_file():
        out.touch(mode=0o600, exist_ok=False)
        copy_range(earlier, 0, earlier.stat().st_size, out)  # a reflink where the filesystem has them
        os.chmod(out, earlier.stat().st_mode & 0o7777)
        return
    write(out)
    job.shared[key] = out
