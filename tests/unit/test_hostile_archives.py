"""Hostile template archives: every check ends with one line, an acceptance or a refusal, in bounded work.

The archives are crafted here, header by header (tarfile cannot write lies): size claims far past
the end of the file, sparse members of 1 TB, 100 000 members, deep and long names, chains of
extended headers, decompression bombs. Each check runs in a child Python under a hang guard (a
generous timeout, and RLIMIT_AS 1 GiB) and must print one line. Before tarstream, the first case
spun at 100 % CPU for minutes inside tarfile.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import tarstream
from vmbuilder_lxc.archive_safety import Limits, UnsafeArchive, check_archive, read_members, safe_extract
from vmbuilder_lxc.log import UserError

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD = 60  # seconds; every case here takes well under one
TB = 10**12

# The child: one check of one archive, under a 1 GiB address-space limit, printing one line.
CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from vmbuilder_lxc.archive_safety import Limits, check_archive
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.image_import import inspect
path, how, limits = Path(sys.argv[1]), sys.argv[2], Limits(**json.loads(sys.argv[3]))
try:
    if how == "inspect":
        t = inspect(path, limits=limits)
        print(f"accepted: {t.members} members")
    else:
        check_archive(path, limits=limits, strip=how)
        print("accepted")
except UserError as exc:
    print(f"refused: {exc}")
"""


def check_in_child(path: Path, how: str = "", **limits: object) -> str:
    """The one line a checking child prints; a hang, a crash or more output fails the test."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), how, json.dumps(limits)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout[:2000]
    return lines[0]


# -- writing tar headers by hand ------------------------------------------------------------------


def octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def base256(n: int, width: int) -> bytes:
    return b"\x80" + n.to_bytes(width - 1, "big")


def header(
    name: str | bytes,
    typ: bytes = b"0",
    size: int = 0,
    *,
    linkname: str = "",
    mode: int = 0o644,
    size_field: bytes | None = None,
    gnu: bytes = b"",
    magic: bytes = b"ustar\x0000",
) -> bytes:
    """One 512-byte header block with a valid checksum; `gnu` is the old-GNU area from byte 345."""
    raw = name.encode() if isinstance(name, str) else name
    h = bytearray(512)
    h[0:100] = raw[:100].ljust(100, b"\0")
    h[100:108] = octal(mode, 8)
    h[108:116] = octal(0, 8)
    h[116:124] = octal(0, 8)
    h[124:136] = size_field if size_field is not None else (octal(size, 12) if size < 8**11 else base256(size, 12))
    h[136:148] = octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[157:257] = linkname.encode()[:100].ljust(100, b"\0")
    h[257:265] = magic
    if gnu:
        h[345 : 345 + len(gnu)] = gnu
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def pax_body(records: list[tuple[str, str]]) -> bytes:
    out = b""
    for key, value in records:
        rec = f" {key}={value}\n".encode()
        length = len(rec) + 1
        while len(str(length)) + len(rec) != length:
            length = len(str(length)) + len(rec)
        out += str(length).encode() + rec
    return out


def pax(records: list[tuple[str, str]], typ: bytes = b"x") -> bytes:
    body = pax_body(records)
    return header("PaxHeaders/x", typ, len(body)) + pad(body)


def gnu_sparse(name: str, realsize: int, chunks: list[tuple[int, int]], extended: bool = False) -> bytes:
    """An old-GNU sparse ('S') header: up to four map entries, the real size and the extension flag."""
    area = bytearray(155)  # bytes 345..499
    for i, (offset, numbytes) in enumerate(chunks[:4]):
        area[41 + 24 * i : 53 + 24 * i] = octal(offset, 12)
        area[53 + 24 * i : 65 + 24 * i] = octal(numbytes, 12)
    area[137] = 1 if extended else 0  # isextended, byte 482
    area[138:150] = octal(realsize, 12) if realsize < 8**11 else base256(realsize, 12)  # realsize, 483
    stored = sum(n for _, n in chunks)
    return header(name, b"S", stored, gnu=bytes(area), magic=b"ustar  \0")


END = bytes(1024)
ROOT = header("./", b"5", mode=0o755) + header("./etc/", b"5", mode=0o755)


def write(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path


# -- size claims ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["base256", "octal"])
def test_a_size_claim_past_the_end_is_refused_as_truncated(tmp_path: Path, field: str) -> None:
    """The issue's case: an 11 KB file whose member claims 10^12 bytes (base-256; octal tops out at 8^11)."""
    claim = TB if field == "base256" else 8**11 - 1
    path = write(tmp_path / "t.tar", ROOT, header("./etc/big", size=claim), b"x" * 10_000)
    assert path.stat().st_size < 12_000
    line = check_in_child(path)
    assert line.startswith(f"refused: {path} is truncated: member './etc/big' claims {claim} bytes")


def test_a_size_claim_in_a_compressed_stream_is_refused_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "t.tar.gz"
    path.write_bytes(gzip.compress(ROOT + header("./etc/big", size=TB) + b"x" * 10_000))
    assert check_in_child(path).startswith(f"refused: {path} is truncated: member './etc/big' claims {TB} bytes")


def test_truncated_message_names_the_template(tmp_path: Path) -> None:
    from vmbuilder_lxc.image_import import inspect

    path = write(tmp_path / "t.tar", ROOT, header("./etc/big", size=TB))
    with pytest.raises(UserError, match=rf"^template {path} is truncated: member './etc/big' claims {TB} bytes;"):
        inspect(path)


def test_the_sum_of_sizes_is_compared_with_the_free_space(tmp_path: Path) -> None:
    """Refused at the header that crosses the limit, before its data is read: the numbers are named."""
    path = write(tmp_path / "t.tar", ROOT, header("./etc/a", size=600_000), bytes(600_064), END)
    line = check_in_child(path, data=500_000, data_where="free at /srv")
    assert line.startswith(f"refused: {path} needs at least 586.0 KiB for its members up to './etc/a', and only ")
    assert "488.3 KiB is free at /srv; free some space" in line
    assert check_in_child(path, data=700_000) == "accepted"


def test_members_are_compared_with_the_free_inodes(tmp_path: Path) -> None:
    path = many_members(tmp_path / "t.tar", 50)
    line = check_in_child(path, inodes=20, data_where="free at /srv")
    assert line == f"refused: {path} has more than 20 members, and only 20 inodes are free at /srv; " + (
        "free some inodes or choose a destination on another file system"
    )


def test_free_space_is_taken_from_the_nearest_existing_directory(tmp_path: Path) -> None:
    from vmbuilder_lxc.archive_safety import free_space

    limits = free_space(tmp_path / "not" / "yet" / "dest")
    assert limits.data is not None and limits.data > 0
    assert limits.data_where == f"free at {tmp_path}"


# -- sparse members -------------------------------------------------------------------------------


def test_an_old_gnu_sparse_member_of_1_tb_is_not_expanded(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tar", ROOT, gnu_sparse("./etc/sparse", TB, [(TB - 512, 512)]), b"s" * 512, END)
    assert check_in_child(path) == "accepted"
    info = next(m for m, _ in read_members(path, lambda m: True) if m.name == "./etc/sparse")
    assert info.size == TB and info.sparse is not None


def test_a_pax_sparse_1_0_member_of_1_tb_is_not_expanded(tmp_path: Path) -> None:
    body = pad(b"1\n%d\n512\n" % (TB - 512)) + b"s" * 512
    member = pax(
        [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "./etc/sparse"),
         ("GNU.sparse.realsize", str(TB))]
    ) + header("./etc/GNUSparseFile.0/sparse", size=len(body)) + body  # fmt: skip
    path = write(tmp_path / "t.tar", ROOT, member, END)
    assert check_in_child(path) == "accepted"
    names = {m.name: m for m, _ in read_members(path, lambda m: True)}
    assert names["./etc/sparse"].size == TB  # GNU tar extracts it under GNU.sparse.name


def test_an_endless_old_gnu_sparse_map_is_refused_as_truncated(tmp_path: Path) -> None:
    ext = bytearray(512)
    ext[504] = 1  # "another extension block follows", forever
    path = write(tmp_path / "t.tar", ROOT, gnu_sparse("./etc/s", TB, [(0, 512)], extended=True), bytes(ext) * 50)
    assert check_in_child(path).startswith(f"refused: {path} is truncated: member './etc/s'")


def test_a_sparse_member_is_extracted_sparse(tmp_path: Path) -> None:
    """GNU tar keeps the holes: 1 TB of apparent size takes a few blocks."""
    root = tmp_path / "tpl"
    (root / "etc").mkdir(parents=True)
    big = root / "etc" / "sparse"
    with big.open("wb") as fh:
        fh.seek(TB - 5)
        fh.write(b"tail\n")
    archive = tmp_path / "t.tar"
    subprocess.run(["tar", "--sparse", "--format=pax", "-C", root, "-cf", archive, "."], check=True)
    assert archive.stat().st_size < 1 << 20
    dest = tmp_path / "dest"
    safe_extract(archive, dest)
    out = dest / "etc" / "sparse"
    assert out.stat().st_size == TB
    assert out.stat().st_blocks * 512 < 1 << 20


# -- many members, long and deep names, extended headers --------------------------------------------


def many_members(path: Path, count: int) -> Path:
    """`count` empty files under etc/, written header by header (fast: no tarfile)."""
    with path.open("wb") as fh:
        fh.write(ROOT)
        first = header("./etc/f0000000")
        for i in range(count):
            h = bytearray(first)
            h[0:16] = (b"./etc/f%07d" % i).ljust(16, b"\0")
            h[148:156] = b" " * 8
            h[148:156] = b"%06o\0 " % sum(h)
            fh.write(h)
        fh.write(END)
    return path


def test_100000_members_are_checked_within_the_guard(tmp_path: Path) -> None:
    path = many_members(tmp_path / "t.tar", 100_000)
    assert check_in_child(path, "inspect") == "accepted: 100002 members"


def test_the_number_of_members_is_capped(tmp_path: Path) -> None:
    path = many_members(tmp_path / "t.tar", 2_000)
    assert (
        check_in_child(path, members=1_000)
        == f"refused: {path}: it has more than 1000 members; " + tarstream.LIMIT_HINT
    )


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ([("path", "a/" * 10_000 + "x")], "name at byte 1024 is 20001 bytes long (limit 4096)"),
        ([("path", "x" * 100_000)], "name at byte 1024 is 100000 bytes long (limit 4096)"),
        ([("linkpath", "y" * 5_000)], "link target at byte 1024 is 5000 bytes long (limit 4096)"),
        ([("path", "./etc/" + "d/" * 300 + "x")], "is more than 256 directories deep"),
    ],
    ids=["10000-levels", "100-kb-name", "long-link", "300-levels"],
)
def test_long_and_deep_names_are_refused(tmp_path: Path, records: list[tuple[str, str]], why: str) -> None:
    path = write(tmp_path / "t.tar", ROOT, pax(records), header("./etc/x", b"2", linkname="y"), END)
    line = check_in_child(path)
    assert line.startswith(f"refused: {path}: ") and why in line


def test_a_gnu_long_name_of_100_kb_is_refused(tmp_path: Path) -> None:
    name = b"x" * 100_000 + b"\0"
    path = write(tmp_path / "t.tar", ROOT, header("././@LongLink", b"L", len(name)), pad(name), header("x"), END)
    assert "name at byte 1024 is 100000 bytes long (limit 4096)" in check_in_child(path)


@pytest.mark.parametrize(
    ("typ", "why"),
    [
        (b"x", "two extended headers of one kind for one member at byte 2048"),
        (b"g", "more than 4 extended headers in a row at byte 5120"),
    ],
)
def test_a_chain_of_pax_headers_is_refused(tmp_path: Path, typ: bytes, why: str) -> None:
    """tarfile recursed once per header; GNU tar's view of a chain is unclear, so it is refused."""
    chain = pax([("comment", "x")], typ) * 10_000
    path = write(tmp_path / "t.tar", ROOT, chain, header("./etc/x"), END)
    assert why in check_in_child(path)


def test_two_pax_headers_for_one_member_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tar", ROOT, pax([("path", "a")]), pax([("path", "b")]), header("./etc/x"), END)
    assert "two extended headers of one kind for one member" in check_in_child(path)


@pytest.mark.parametrize("claim", [TB, 2 << 20])
def test_a_huge_pax_header_claim_is_refused_before_reading(tmp_path: Path, claim: int) -> None:
    path = write(tmp_path / "t.tar", ROOT, header("PaxHeaders/x", b"x", claim), b"9" * 8_000)
    assert f"an extended header at byte 1024 claims {claim} bytes (limit 1.0 MiB)" in check_in_child(path)


def test_extended_headers_are_capped_in_total(tmp_path: Path) -> None:
    member = pax([("comment", "c" * 4000)]) + header("./etc/x")
    path = write(tmp_path / "t.tar", ROOT, member * 40, END)
    assert "its extended headers exceed 64.0 KiB in total" in check_in_child(path, extended_total=64 << 10)


def test_a_pax_header_claiming_more_than_the_file_is_truncated(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tar", ROOT, header("PaxHeaders/x", b"x", 900_000), b"9" * 8_000)
    assert check_in_child(path).startswith(f"refused: {path} is truncated: member 'extended header at byte 1024'")


def test_a_malformed_pax_record_is_a_damaged_header(tmp_path: Path) -> None:
    body = b"99999 path=x\n"
    path = write(tmp_path / "t.tar", ROOT, header("PaxHeaders/x", b"x", len(body)), pad(body), header("x"), END)
    assert "the tar header at byte 1024 is damaged (malformed pax record" in check_in_child(path)


def test_a_global_pax_path_is_refused(tmp_path: Path) -> None:
    """GNU tar applies a global path to every following member (measured)."""
    path = write(tmp_path / "t.tar", ROOT, pax([("path", "etc/passwd")], typ=b"g"), header("./etc/x"), END)
    assert "a global pax header at byte 1024 sets 'path' for every member" in check_in_child(path)


def test_a_global_pax_comment_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tar", ROOT, pax([("comment", "hello")], typ=b"g"), header("./etc/x"), END)
    assert check_in_child(path) == "accepted"


# -- where GNU tar and tarfile disagreed ------------------------------------------------------------


def test_gnu_sparse_name_wins_over_a_later_pax_path(tmp_path: Path) -> None:
    """GNU tar extracts under GNU.sparse.name whatever the order; tarfile took the later path."""
    records = [("GNU.sparse.name", "../escape"), ("path", "./etc/harmless")]
    path = write(tmp_path / "t.tar", ROOT, pax(records), header("./etc/x"), END)
    assert "unsafe member '../escape'" in check_in_child(path)


@pytest.mark.parametrize("typ", [b"2", b"3", b"4", b"6"])
def test_data_on_a_symlink_device_or_fifo_is_refused(tmp_path: Path, typ: bytes) -> None:
    """GNU tar skips those bytes and tarfile read them as headers: a member could hide in them."""
    hidden = header("./etc/hidden")
    path = write(tmp_path / "t.tar", ROOT, header("./dev/x", typ, 512, linkname="t"), hidden, END)
    assert "whose header claims 512 data bytes, which GNU tar skips" in check_in_child(path)


def test_a_file_member_named_like_a_directory_is_a_directory(tmp_path: Path) -> None:
    """GNU tar makes a directory of "s/" (type 0), so it must not land on the symlink s."""
    path = write(tmp_path / "t.tar", ROOT, header("./s", b"2", linkname="/etc"), header("./s/"), END)
    assert "it turns an earlier symlink of the same name into a directory" in check_in_child(path)


def test_members_after_a_lone_zero_block_are_not_read(tmp_path: Path) -> None:
    """GNU tar stops at the first zero block too ("A lone zero block"); what follows is trailing data."""
    path = write(tmp_path / "t.tar", ROOT, bytes(512), header("/etc/passwd"), END)
    assert check_in_child(path) == "accepted"
    assert [m.name for m, _ in read_members(path, lambda m: False)] == [".", "./etc"]


def test_names_agree_with_gnu_tar_on_a_real_archive(tmp_path: Path) -> None:
    """A GNU-tar-made archive with long names, links and sparse files reads as `tar -t` lists it."""
    root = tmp_path / "tpl"
    deep = root / "etc" / ("long-" * 30) / ("name-" * 30)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_text("x")
    (root / "etc" / "link").symlink_to("l" * 150)
    os.link(deep / ("f" * 200), root / "etc" / "hard")
    with (root / "etc" / "sparse").open("wb") as fh:
        fh.truncate(64 << 20)
    for fmt, sparse in [("gnu", "1.0"), ("pax", "0.0"), ("pax", "0.1"), ("posix", "1.0")]:
        archive = tmp_path / f"{fmt}-{sparse}.tar"
        argv = ["tar", f"--format={fmt}", "--sparse", "-C", str(root), "-cf", str(archive), "."]
        if fmt != "gnu":
            argv.insert(3, f"--sparse-version={sparse}")
        subprocess.run(argv, check=True)
        listed = subprocess.run(["tar", "-tf", archive], check=True, capture_output=True, text=True).stdout
        members = [m for m, _ in read_members(archive, lambda m: False)]
        ours = [m.name + ("/" if m.isdir() and m.name != "." else "") for m in members]
        assert ours == [n if n != "./" else "." for n in listed.splitlines()], (fmt, sparse)
        assert next(m for m in members if m.name == "./etc/sparse").size == 64 << 20, (fmt, sparse)


# -- decompression bombs ------------------------------------------------------------------------------


def zstd_compress(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


COMPRESSORS = {
    "gzip": lambda data: gzip.compress(data, 1),
    "xz": lambda data: lzma.compress(data, preset=0),
    "zstd": zstd_compress,
}


def bomb(path: Path, compress: str, head: bytes, zeros_mib: int, tail: bytes) -> Path:
    """head + zeros + tail, compressed as concatenated streams: a 1 MiB frame of zeros repeated."""
    squeeze = COMPRESSORS[compress]
    chunk = squeeze(bytes(1 << 20))
    with path.open("wb") as fh:
        fh.write(squeeze(head))
        for _ in range(zeros_mib):
            fh.write(chunk)
        fh.write(squeeze(tail))
    return path


@pytest.mark.parametrize("compress", sorted(COMPRESSORS))
def test_a_bomb_inside_a_member_is_bounded_by_the_free_space(tmp_path: Path, compress: str) -> None:
    """A member of 1 GiB of zeros; 64 MiB "free": refused at its header, the zeros are never inflated."""
    path = bomb(tmp_path / "t.tar", compress, ROOT + header("./etc/zeros", size=1 << 30), 1024, END)
    assert path.stat().st_size < 20 << 20
    line = check_in_child(path, data=64 << 20, data_where="free at /x")
    assert "needs at least 1.0 GiB for its members up to './etc/zeros', and only 64.0 MiB is free at /x" in line


@pytest.mark.parametrize("compress", sorted(COMPRESSORS))
def test_a_bomb_after_the_end_of_the_archive_is_bounded(tmp_path: Path, compress: str) -> None:
    """Zeros after the end-of-archive block are read only up to the trailing limit."""
    path = bomb(tmp_path / "t.tar", compress, ROOT + END, 1024, b"")
    assert "more than 16.0 MiB follow its end-of-archive block" in check_in_child(path)


def test_an_xz_stream_that_wants_too_much_memory_is_refused(tmp_path: Path) -> None:
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 30}]
    path = tmp_path / "t.tar.xz"
    path.write_bytes(lzma.compress(ROOT + END, format=lzma.FORMAT_XZ, filters=filters))
    assert "its xz stream needs more than 256 MiB of memory to decompress" in check_in_child(path)


def test_an_honest_compressed_archive_is_read_to_its_end(tmp_path: Path) -> None:
    """64 MiB of real contents, decompressed through each reader: accepted."""
    for compress in sorted(COMPRESSORS):
        path = bomb(tmp_path / f"t.{compress}", compress, ROOT + header("./etc/zeros", size=64 << 20), 64, END)
        assert check_in_child(path) == "accepted", compress


# -- device nodes ---------------------------------------------------------------------------------------


def device_image(path: Path, prefix: str = "./") -> Path:
    """A rootfs with devices in dev/ (tarfile writes them without privileges), a FIFO and a file."""
    with tarfile.open(path, "w:gz") as tar:
        entries: list[tuple[str, bytes, dict[str, Any]]] = [
            ("", tarfile.DIRTYPE, {}),
            ("dev", tarfile.DIRTYPE, {}),
            ("dev/null", tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}),
            ("dev/sda", tarfile.BLKTYPE, {"devmajor": 8, "devminor": 0}),
            ("dev/zero", tarfile.LNKTYPE, {"linkname": f"{prefix}dev/null"}),
            ("dev/pts", tarfile.DIRTYPE, {}),
            ("dev/initctl", tarfile.FIFOTYPE, {}),
            ("etc", tarfile.DIRTYPE, {}),
        ]
        for name, typ, extra in entries:
            info = tarfile.TarInfo((prefix + name).rstrip("/") or ".")
            info.type = typ
            info.mode = 0o755 if typ == tarfile.DIRTYPE else 0o666
            for key, value in extra.items():
                setattr(info, key, value)
            tar.addfile(info)
        data = b"tpl\n"
        info = tarfile.TarInfo(f"{prefix}etc/hostname")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(("prefix", "strip"), [("./", ""), ("", ""), ("rootfs/", "rootfs")])
def test_device_nodes_in_dev_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, prefix: str, strip: str
) -> None:
    archive = device_image(tmp_path / "t.tar.gz", prefix)
    dest = tmp_path / "rootfs"
    with caplog.at_level(logging.INFO, logger="vmbuilder"):
        skipped = safe_extract(archive, dest, strip=strip)
    assert skipped == [f"{prefix}dev/null", f"{prefix}dev/sda", f"{prefix}dev/zero"]
    assert sorted(p.name for p in (dest / "dev").iterdir()) == ["initctl", "pts"]
    assert (dest / "dev" / "initctl").is_fifo()  # FIFOs are extracted: they need no privilege
    assert (dest / "etc" / "hostname").read_text() == "tpl\n"
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert lines == [
        f"skipped 3 device nodes in dev/ ({prefix}dev/null, {prefix}dev/sda, {prefix}dev/zero): LXC and libvirt "
        "create the ones a container needs"
    ]


def test_a_device_outside_dev_is_still_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tar", ROOT, header("./etc/null", b"3"), END)
    with pytest.raises(UnsafeArchive, match="unsafe member './etc/null': character device outside dev/"):
        check_archive(path)


def test_too_many_device_nodes_are_refused(tmp_path: Path) -> None:
    devices = b"".join(header(f"./dev/d{i}", b"3") for i in range(4100))
    path = write(tmp_path / "t.tar", ROOT, header("./dev/", b"5"), devices, END)
    with pytest.raises(UnsafeArchive, match="more than 4096 device nodes in dev/"):
        check_archive(path)


def test_limits_default_to_the_documented_values() -> None:
    limits = Limits()
    assert (limits.members, limits.name, limits.depth) == (1_000_000, 4096, 256)
    assert (limits.extended, limits.trailing, limits.data) == (1 << 20, 16 << 20, None)


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def test_a_negative_mtime_is_fine_and_a_negative_size_is_damaged(tmp_path: Path) -> None:
    """GNU tar writes times before 1970 in base-256 with 0xff; a negative size is no header."""
    old = bytearray(header("./etc/old"))
    old[136:148] = (-86400).to_bytes(12, "big", signed=True)
    old[148:156] = b" " * 8
    old[148:156] = b"%06o\0 " % sum(old)
    path = write(tmp_path / "t.tar", ROOT, bytes(old), END)
    assert check_in_child(path) == "accepted"
    path = write(tmp_path / "u.tar", ROOT, header("./etc/neg", size_field=b"\xff" * 12), END)
    assert "the tar header at byte 1024 is damaged (negative or unknown binary number in its size field)" in (
        check_in_child(path)
    )
