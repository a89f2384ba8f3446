"""Reproducible GNU tar archives, compressed with multi-threaded compressors.

Reproducible means: entries sorted by name, numeric owners, mtimes clamped to the epoch, no atime
or ctime and no PID in the pax header names, and a compressor whose output does not depend on the
machine's load. xattrs (file capabilities among them) are kept in pax headers. The same
staged rootfs and epoch give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..log import UserError
from ..run import run

SUFFIX = {"zstd": ".zst", "xz": ".xz", "gzip": ".gz", "none": ""}
DEFAULT_LEVEL = {"zstd": 12, "xz": 6, "gzip": 6}
TAR_REPRODUCIBLE = [
    "--format=posix", "--sort=name", "--numeric-owner", "--clamp-mtime",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,globexthdr.name=/tmp/GlobalHead.%n,delete=atime,delete=ctime",
    "--xattrs", "--xattrs-include=*", "--one-file-system",
]  # fmt: skip


# xz's multi-threaded output depends on the block size, never on the thread count; the block size
# is pinned (3x the level's dictionary, xz's own default) so another xz version cannot change it.
# (-T1 would pick xz's single-threaded mode, whose output differs: "+1" is one thread, same bytes.)
XZ_DICT_MIB = (0.25, 1, 2, 4, 4, 8, 8, 16, 32, 64)


def xz_block_size(level: int) -> str:
    return f"--block-size={max(1024, int(XZ_DICT_MIB[min(max(level, 0), 9)] * 3 * 1024))}KiB"


def compressor(compression: str, level: int | None = None, threads: str = "0") -> list[str]:
    """A filter command (stdin to stdout) for `compression`; [] for none.

    pigz (parallel gzip) is used when installed; its output, like zstd -T0's and xz -T0's (with its
    pinned block size), does not depend on the number of threads.
    """
    lvl = level if level is not None else DEFAULT_LEVEL.get(compression, 0)
    if compression == "zstd":
        return ["zstd", "-q", "-c", f"-T{threads}", f"-{lvl}"] + (["--ultra"] if lvl > 19 else [])
    if compression == "xz":
        return ["xz", "-q", "-c", f"-T{threads}", xz_block_size(lvl), f"-{lvl}"]
    if compression == "gzip":
        return ["pigz" if shutil.which("pigz") else "gzip", "-n", "-c", f"-{lvl}"]
    if compression == "none":
        return []
    raise UserError(f"unknown compression '{compression}'", "use zstd, xz, gzip or none")


def decompressor(compression: str) -> list[str]:
    return {"zstd": ["zstd", "-q", "-d", "-c"], "xz": ["xz", "-q", "-d", "-c", "-T0"],
            "gzip": ["gzip", "-d", "-c"], "none": ["cat"]}[compression]  # fmt: skip


def tar_argv(
    root: Path | None,
    *,
    epoch: int,
    transform: str | None = None,
    extra: tuple[Path, Sequence[str]] | None = None,
    exclude: Sequence[str] = (),
) -> list[str]:
    """GNU tar writing root's contents ("./"-prefixed names) to stdout.

    `extra` = (dir, names) adds files from another directory first, under their plain names
    (LXD looks for `metadata.yaml`, not `./metadata.yaml`); with root None they are all there is.
    `transform` holds sed expressions (";"-separated) for the rootfs member names only; symlink
    targets are never rewritten (flag S). `exclude` lists paths of root (relative) left out, each
    matched whole (anchored, no wildcards), as if they were not there.
    """
    argv = ["tar", "--create", "--file=-", *TAR_REPRODUCIBLE, f"--mtime=@{epoch}"]
    if extra is not None:
        argv += ["-C", str(extra[0]), *extra[1]]
    if root is not None:
        if exclude:
            argv += ["--anchored", "--no-wildcards", *(f"--exclude=./{rel}" for rel in exclude)]
        if transform:
            argv += [f"--transform={expr}S" for expr in transform.split(";")]
        argv += ["-C", str(root), "."]
    return argv


def hasher() -> list[str]:
    """sha256 of stdin: openssl's uses the CPU's SHA instructions (several times faster than
    coreutils' sha256sum, the fallback)."""
    return ["openssl", "dgst", "-sha256", "-r"] if shutil.which("openssl") else ["sha256sum"]


def pipe(
    producer: list[str],
    out: Path,
    compression: str,
    level: int | None = None,
    progress: str | None = None,
    append: bool = False,
) -> Path:
    """Run `producer | compressor > out` (>> with append) through one logged shell, failing if any part fails."""
    comp = compressor(compression, level)
    script = "set -o pipefail; " + shlex.join(producer)
    if comp:
        script += " | " + shlex.join(comp)
    script += (" >> " if append else " > ") + shlex.quote(str(out))
    run(["bash", "-c", script], progress=progress)
    return out


class _Follower(threading.Thread):
    """Hashes a file while another process appends to it, on the other core: it reads what is there,
    waits a moment when it has caught up, and after `finish()` (the writer has exited) reads the rest."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="sha256-follower", daemon=True)
        self.fh = path.open("rb", buffering=0)
        self.done = threading.Event()
        self.size = 0
        self.digest = hashlib.sha256()
        self.error: BaseException | None = None

    def run(self) -> None:
        buf = memoryview(bytearray(FOLLOW_CHUNK))
        try:
            while True:
                finished = self.done.is_set()  # before the read: a short read after it means the end
                n = self.fh.readinto(buf)
                if n:
                    self.digest.update(buf[:n])
                    self.size += n
                elif finished:
                    return
                else:
                    time.sleep(FOLLOW_WAIT)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish() in the caller's thread
            self.error = exc

    def finish(self) -> tuple[int, str]:
        self.done.set()
        self.join()
        self.fh.close()
        if self.error is not None:
            raise self.error
        return self.size, self.digest.hexdigest()


FOLLOW_CHUNK = 1 << 20
FOLLOW_WAIT = 0.002


def pipe_digest(
    producer: list[str], out: Path, compression: str, level: int | None = None, progress: str | None = None
) -> tuple[int, str]:
    """`producer | compressor > out` and (size, sha256) of the uncompressed stream, which is never
    read a second time: compressed, a tee feeds a hasher on another core, and GNU tar's --totals
    ("Total bytes written") gives the size; uncompressed, tar writes the file itself and a thread
    hashes it while it grows, from the page cache on the other core (tee's extra pipe copies and
    hashing after tar were both measured slower)."""
    if compression == "none":
        # A new file, which tar writes as its stdout, never opened with O_TRUNC: ext4 flushes a file
        # truncated to size 0 when it is closed (auto_da_alloc), and tar then waited ~0.1 s on writeback.
        out.unlink(missing_ok=True)
        os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
        follower = _Follower(out)
        follower.start()
        try:
            run(["bash", "-c", 'exec 1<>"$0" && exec "$@"', out, *producer], progress=progress)
        except BaseException:
            with contextlib.suppress(Exception):  # the command's failure is the one to report
                follower.finish()
            raise
        size, sha256 = follower.finish()
        if size != out.stat().st_size:
            raise RuntimeError(f"{out.name} changed while it was hashed")
        return size, sha256
    digest = out.with_name(out.name + ".sha256")
    head = "set -o pipefail; " + shlex.join([producer[0], "--totals", *producer[1:]])
    hash_to = shlex.join(hasher()) + " > " + shlex.quote(str(digest))
    # tee's copy goes to fd 3, the compressor's stdin; its stdout to the hasher.
    script = (f"{head} | {{ tee /dev/fd/3 | {hash_to}; }} 3>&1 >&2 | "
              f"{shlex.join(compressor(compression, level))} > {shlex.quote(str(out))}")  # fmt: skip
    try:
        lines = run(["bash", "-c", script], progress=progress).lines
        sha256 = digest.read_text().split()[0]
    finally:
        digest.unlink(missing_ok=True)
    totals = [ln for ln in lines if ln.startswith("Total bytes written:")]
    if not totals:
        raise RuntimeError(f"tar printed no totals for {out.name}")
    return int(totals[-1].split()[3]), sha256


def write_tar(
    root: Path | None,
    out: Path,
    *,
    epoch: int,
    compression: str,
    transform: str | None = None,
    extra: tuple[Path, Sequence[str]] | None = None,
    level: int | None = None,
    exclude: Sequence[str] = (),
) -> Path:
    """A reproducible, compressed tarball of `root` (and `extra`) at `out`."""
    argv = tar_argv(root, epoch=epoch, transform=transform, extra=extra, exclude=exclude)
    return pipe(argv, out, compression, level, progress=f"writing {out.name}")


def write_tar_digest(
    root: Path, out: Path, *, epoch: int, compression: str, level: int | None = None, exclude: Sequence[str] = ()
) -> tuple[int, str]:
    """write_tar of a plain rootfs that returns (size, sha256) of the uncompressed tar, hashed while written."""
    argv = tar_argv(root, epoch=epoch, exclude=exclude)
    return pipe_digest(argv, out, compression, level, progress=f"writing {out.name}")


def stream_stats(path: Path, compression: str) -> tuple[int, str]:
    """(size, sha256) of the uncompressed stream: what a consumer that stores it unpacked sees."""
    if compression == "none":
        with path.open("rb") as fh:
            return os.fstat(fh.fileno()).st_size, hashlib.file_digest(fh, "sha256").hexdigest()
    dec = shlex.join([*decompressor(compression), str(path)])
    out = run(["bash", "-c", f"set -o pipefail; {dec} | wc -c; {dec} | sha256sum"]).lines
    return int(out[0].strip()), out[1].split()[0]
