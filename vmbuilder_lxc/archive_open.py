"""Opening an image tarball (--from-template): the compression from its magic bytes, then the headers through tarstream.

The file is read forward once. Decompression is streamed (gzip, bzip2, xz in-process, zstd through
the zstd command) with bounded memory: xz's dictionary is capped at XZ_MEMLIMIT, which LZMAFile
cannot do, and zstd's command refuses windows over 128 MiB by default. How much is decompressed is
bounded by tarstream's limits (the members' sizes against the free space, the data after the end).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from . import tarstream
from .log import UserError
from .run import PACKAGE_HINTS, clean_env
from .tarheader import TarFormatError
from .tarstream import Limits, UnsafeArchive

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
MAGICS = ((ZSTD_MAGIC, "zstd"), (XZ_MAGIC, "xz"), (GZIP_MAGIC, "gzip"), (BZIP2_MAGIC, "bzip2"))
READ_HINT = "check that it is a tar archive (plain, gzip, bzip2, xz or zstd) and that it was downloaded completely"

# A decompressed archive: the file itself, a decompressing reader or zstd's stdout.
_Stream = IO[bytes] | gzip.GzipFile | bz2.BZ2File | io.BufferedReader

# Memory an xz stream may ask for (its dictionary): xz -9 needs 65 MiB; a header may claim 1.5 GiB.
XZ_MEMLIMIT = 256 << 20
# Which regular members read_members() also returns the contents of.
Wanted = Callable[[tarfile.TarInfo], bool]
# A member header and, if it was wanted, its contents.
Member = tuple[tarfile.TarInfo, bytes | None]
# Decompression errors while reading headers: the archive is damaged or not a compressed tar archive.
_READ_ERRORS = (EOFError, OSError, lzma.LZMAError, zlib.error)


class _Decompressing(io.RawIOBase):
    """An xz (or lzma) stream decompressed with a memory limit, which lzma.LZMAFile cannot set.

    Concatenated streams are read one after another; what follows the last one is ignored if it
    is not a stream, as LZMAFile and xz do with stream padding.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._dec = self._new()
        self._done = False

    @staticmethod
    def _new() -> lzma.LZMADecompressor:
        return lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        size = len(buffer)
        while not self._done:
            if self._dec.eof:
                rest = self._dec.unused_data or self._fh.read(1 << 16)
                if not rest:
                    self._done = True
                    break
                self._dec = self._new()
                try:
                    data = self._dec.decompress(rest, size)
                except lzma.LZMAError:
                    self._done = True  # padding or garbage after the last stream
                    break
            elif self._dec.needs_input:
                chunk = self._fh.read(1 << 16)
                if not chunk:
                    raise EOFError("the compressed stream ends early")
                data = self._dec.decompress(chunk, size)
            else:
                data = self._dec.decompress(b"", size)
            if data:
                buffer[: len(data)] = data
                return len(data)
        return 0


def _tar_headers(
    path: Path, label: str, stream: _Stream, wanted: Wanted | None, limits: Limits | None
) -> Iterator[Member]:
    """The members of the decompressed `stream`, which is then read to its end (within limits).

    Reading on after the end-of-archive block makes a truncated or corrupt compressed stream an error
    here instead of in the middle of GNU tar's extraction.
    """
    try:
        yield from tarstream.read(stream, label, limits, wanted)  # type: ignore[arg-type]
    except TarFormatError as exc:
        if exc.offset == 0:
            raise UserError(f"cannot read {path} as a tar archive: {exc}", READ_HINT) from None
        raise UnsafeArchive(
            f"{label}: the tar header at byte {exc.offset} is damaged ({exc}); a reader may stop there but GNU tar "
            "would skip it and extract what follows unchecked",
            "get an intact copy of the template (compare its checksum) or repack it",
        ) from None
    except lzma.LZMAError as exc:
        if "memory" in str(exc).lower():
            raise UnsafeArchive(
                f"{label}: its xz stream needs more than {XZ_MEMLIMIT >> 20} MiB of memory to decompress",
                "recompress it with a smaller dictionary (xz -6)",
            ) from None
        raise UserError(f"cannot read {path} as a tar archive: {exc}", READ_HINT) from None
    except _READ_ERRORS as exc:
        raise UserError(f"cannot read {path} as a tar archive: {exc}", READ_HINT) from None


def _zstd_headers(path: Path, label: str, wanted: Wanted | None, limits: Limits | None) -> Iterator[Member]:
    """Members of a .tar.zst through the zstd command: tarfile reads zstd itself only from Python 3.14.

    zstd's own default refuses frames that need more than 128 MiB of window memory.
    """
    try:
        proc = subprocess.Popen(
            ["zstd", "-d", "-c", "-q", "--", os.fspath(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
    except FileNotFoundError:
        raise UserError(
            "command 'zstd' not found", f"install it with: apt-get install {PACKAGE_HINTS['zstd']}"
        ) from None
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None
    code = 0
    message = ""
    try:
        try:
            yield from _tar_headers(path, label, stdout, wanted, limits)
        finally:
            stdout.close()  # if we stopped early, zstd ends on EPIPE instead of blocking
            message = " ".join(stderr.read(4096).decode(errors="replace").split())
            stderr.close()
            code = proc.wait()
    except UserError as exc:
        if code and exc.message.startswith(f"cannot read {path} "):
            # a damaged stream: zstd's own message says more than the tar reader's
            raise UserError(f"cannot decompress {path}: {message or f'zstd exit code {code}'}", READ_HINT) from None
        raise
    if code:
        raise UserError(f"cannot decompress {path}: {message or f'zstd exit code {code}'}", READ_HINT)


def compression_of(head: bytes) -> str:
    """The compression that a file's first bytes show (names lie): zstd, xz, gzip, bzip2 or none."""
    return next((name for magic, name in MAGICS if head.startswith(magic)), "none")


def compression(path: Path) -> str:
    """How the file at `path` is compressed, by its first bytes (see compression_of)."""
    with path.open("rb") as fh:
        return compression_of(fh.read(len(XZ_MAGIC)))


def read_headers(
    path: Path, wanted: Wanted | None = None, limits: Limits | None = None, label: str | None = None
) -> Iterator[Member]:
    """Each member header once, in order, without extracting anything; the file is read forward once."""
    label = label or str(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", "check the file name and its permissions") from None
    with fh:
        kind = compression_of(fh.read(len(XZ_MAGIC)))
        fh.seek(0)
        if kind == "zstd":
            yield from _zstd_headers(path, label, wanted, limits)
            return
        stream: _Stream = fh
        if kind == "gzip":
            stream = gzip.GzipFile(fileobj=fh, mode="rb")
        elif kind == "bzip2":
            stream = bz2.BZ2File(fh)
        elif kind == "xz":
            stream = io.BufferedReader(_Decompressing(fh), 1 << 16)
        with stream:
            yield from _tar_headers(path, label, stream, wanted, limits)
