"""archive_open.compression: the one sniffing of a template's compression from its first bytes,
which read_headers() decompresses by and --from-template reports."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest

from vmbuilder_lxc import archive_open

PLAIN = b"not compressed" * 64


@pytest.mark.parametrize(
    ("expected", "data"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("xz", lzma.compress(PLAIN)),
        ("bzip2", bz2.compress(PLAIN)),
        ("zstd", archive_open.ZSTD_MAGIC + b"\x00" * 16),
        ("none", PLAIN),
        ("none", b""),
        ("none", b"\xfd7zX"),  # a cut xz magic is not xz
    ],
)
def test_the_first_bytes_decide_not_the_name(tmp_path: Path, expected: str, data: bytes) -> None:
    misnamed = tmp_path / "t.tar.zst" if expected != "zstd" else tmp_path / "t.tar.gz"
    misnamed.write_bytes(data)
    assert archive_open.compression(misnamed) == expected
    assert archive_open.compression_of(data[: len(archive_open.XZ_MAGIC)]) == expected
