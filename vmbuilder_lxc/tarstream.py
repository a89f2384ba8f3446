"""Reading tar member headers in bounded time and memory, whatever the headers claim.

Python's tarfile is not used to read images: in stream mode it skips a member's data by reading
until it has the claimed size and takes an empty read at the end of the file for more data, so an
11 KB file whose header claims 10^12 bytes made it loop about 10^8 times. It also reads pax and
GNU long-name records whole into memory, recurses once per extended header, loops forever on a
truncated pax sparse map, and reads some headers differently from GNU tar (which extracts them):
GNU.sparse.name wins over a pax path in GNU tar whatever their order, and GNU tar skips the data
that a symlink, device or FIFO header claims where tarfile reads it as the next header.

This reader reads the decompressed stream forward once, one 512-byte block at a time, and follows
GNU tar 1.34's rules (each measured with crafted archives). A member that claims more bytes than
the stream has is refused as truncated as soon as the stream ends. Every quantity a header can
claim has a limit (the Limits defaults, documented in docs/import.md), so the work is bounded by
the limits and the real size of the file, never by a claim. The header block and pax record
formats are read in tarheader.py.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from .log import UserError
from .tarheader import (
    BLOCK,
    EXTENDED,
    REGULAR,
    SKIPPED_DATA,
    ZERO_BLOCK,
    Header,
    TarFormatError,
    blocks,
    decode,
    nts,
    parse_pax,
)

MAX_MEMBERS = 1_000_000  # a large distro rootfs has 50 000 to 400 000
MAX_NAME = 4096  # PATH_MAX: bytes in a member name or link target
MAX_DEPTH = 256  # components in a member name
MAX_EXTENDED = 1 << 20  # one pax header or GNU long-name record
MAX_EXTENDED_TOTAL = 512 << 20  # all of them together
MAX_CHAIN = 4  # extended headers in front of one member (pax, pax global, long name, long link)
MAX_SPARSE_BLOCKS = 100_000  # extension blocks of one old-GNU sparse map (21 entries each)
MAX_TRAILING = 16 << 20  # bytes after the end-of-archive block (record padding, at most a few MiB)
MAX_READ = 16 << 20  # contents of one member that a caller may ask for

LIMIT_HINT = "use a template from a source you trust, or repack it from a clean root (tar -C ROOT -cf FILE .)"
TRUNCATED_HINT = "get a complete copy of the template (compare its checksum)"
PAX_GLOBAL_REFUSED = ("path", "linkpath", "size", "GNU.sparse.")

DIGITS = re.compile(r"[0-9]{1,30}")

# Which regular members the caller also wants the contents of.
Wanted = Callable[[tarfile.TarInfo], bool]


class UnsafeArchive(UserError):
    """An archive that must not be extracted; the message names its first problem on one line."""


@dataclass(frozen=True)
class Limits:
    """What one archive may claim. `data` (bytes of member contents) is the free space, if known."""

    members: int = MAX_MEMBERS
    name: int = MAX_NAME
    depth: int = MAX_DEPTH
    extended: int = MAX_EXTENDED
    extended_total: int = MAX_EXTENDED_TOTAL
    sparse_blocks: int = MAX_SPARSE_BLOCKS
    trailing: int = MAX_TRAILING
    data: int | None = None
    data_where: str = ""  # where that space is, for the message: "free at /srv"
    inodes: int | None = None  # free inodes there, where the file system counts them


def _size(n: int) -> str:
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} bytes"


class _Stream:
    """The decompressed stream, read forward; a plain file is skipped through with seek."""

    def __init__(self, stream: IO[bytes], label: str) -> None:
        self.stream = stream
        self.label = label
        self.offset = 0
        self.length: int | None = None
        # Only a plain file opened as such (a decompressing reader has the file's fileno() too).
        if isinstance(stream, io.BufferedReader) and isinstance(stream.raw, io.FileIO):
            info = os.fstat(stream.fileno())
            if stat.S_ISREG(info.st_mode) and stream.tell() == 0:
                self.length = info.st_size

    def read(self, n: int) -> bytes:
        """Up to `n` bytes: fewer only at the end of the stream."""
        parts = []
        want = n
        while want > 0:
            chunk = self.stream.read(min(want, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            want -= len(chunk)
        data = b"".join(parts)
        self.offset += len(data)
        return data

    def exact(self, n: int, name: str, claim: int) -> bytes:
        data = self.read(n)
        if len(data) < n:
            raise self.truncated(name, claim)
        return data

    def skip(self, n: int, name: str, claim: int) -> None:
        """Skip `n` bytes of data that member `name` claims (`claim` bytes), refusing a short stream."""
        if self.length is not None:
            if self.offset + n > self.length:
                raise self.truncated(name, claim)
            self.stream.seek(n, os.SEEK_CUR)
            self.offset += n
            return
        while n > 0:
            got = len(self.read(min(n, 1 << 20)))
            if not got:
                raise self.truncated(name, claim)
            n -= got

    def truncated(self, name: str, claim: int) -> UserError:
        return UserError(f"{self.label} is truncated: member {name!r} claims {claim} bytes", TRUNCATED_HINT)


class Reader:
    """Yields (TarInfo, contents or None) for every member, in order, within `limits`."""

    def __init__(self, stream: IO[bytes], label: str, limits: Limits, wanted: Wanted | None = None) -> None:
        self.s = _Stream(stream, label)
        self.label = label
        self.limits = limits
        self.wanted = wanted
        self.members = 0
        self.extended_total = 0
        self.data_total = 0  # member contents, in whole blocks: what extraction writes at least
        self.ended = False  # an end-of-archive block was seen

    def refuse(self, why: str) -> UnsafeArchive:
        return UnsafeArchive(f"{self.label}: {why}", LIMIT_HINT)

    def _block(self) -> bytes:
        offset = self.s.offset
        buf = self.s.read(BLOCK)
        if buf and len(buf) < BLOCK:
            raise UserError(f"{self.label} is truncated: it ends inside the header at byte {offset}", TRUNCATED_HINT)
        return buf

    def __iter__(self) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
        while True:
            item = self._next()
            if item is None:
                break
            yield item
        self._trailing()

    def _next(self) -> tuple[tarfile.TarInfo, bytes | None] | None:
        pax: dict[str, str] | None = None
        long_name: bytes | None = None
        long_link: bytes | None = None
        chain = 0
        start = self.s.offset  # where the member's first header block is
        while True:
            offset = self.s.offset
            buf = self._block()
            if not buf and offset == 0:
                raise TarFormatError(0, "empty file")
            if not buf:
                return None  # the stream ends at a header boundary without an end-of-archive block
            if buf == ZERO_BLOCK:
                if chain:
                    raise TarFormatError(offset, "an extended header is followed by the end of the archive")
                self.ended = True  # GNU tar stops here, even at a lone zero block ("A lone zero block")
                return None
            header = Header(buf, offset)
            if header.type not in EXTENDED:
                return self._member(header, start, pax or {}, long_name, long_link)
            chain += 1
            if chain > MAX_CHAIN:
                raise self.refuse(f"more than {MAX_CHAIN} extended headers in a row at byte {offset}")
            if header.size > self.limits.extended:
                raise self.refuse(
                    f"an extended header at byte {offset} claims {header.size} bytes "
                    f"(limit {_size(self.limits.extended)})"
                )
            self.extended_total += header.size
            if self.extended_total > self.limits.extended_total:
                raise self.refuse(f"its extended headers exceed {_size(self.limits.extended_total)} in total")
            what = f"extended header at byte {offset}"
            data = self.s.exact(header.size, what, header.size)
            self.s.skip(blocks(header.size) - header.size, what, header.size)
            kind = header.type
            if kind == tarfile.XGLTYPE:
                bad = [k for k in parse_pax(data, offset) if k.startswith(PAX_GLOBAL_REFUSED)]
                if bad:
                    raise self.refuse(f"a global pax header at byte {offset} sets {bad[0]!r} for every member")
                continue
            again = {tarfile.GNUTYPE_LONGNAME: long_name, tarfile.GNUTYPE_LONGLINK: long_link}.get(kind, pax)
            if again is not None:
                raise self.refuse(f"two extended headers of one kind for one member at byte {offset}")
            if kind == tarfile.GNUTYPE_LONGNAME:
                long_name = nts(data)
            elif kind == tarfile.GNUTYPE_LONGLINK:
                long_link = nts(data)
            else:
                pax = parse_pax(data, offset)

    def _number(self, pax: dict[str, str], key: str, default: int, offset: int) -> int:
        if key not in pax:
            return default
        if not DIGITS.fullmatch(pax[key]):
            raise TarFormatError(offset, f"invalid pax {key} {pax[key][:40]!r}")
        return int(pax[key])

    def _member(
        self, h: Header, start: int, pax: dict[str, str], long_name: bytes | None, long_link: bytes | None
    ) -> tuple[tarfile.TarInfo, bytes | None]:
        self.members += 1
        if self.members > self.limits.members:
            raise self.refuse(f"it has more than {self.limits.members} members")
        if self.limits.inodes is not None and self.members > self.limits.inodes:
            raise UserError(
                f"{self.label} has more than {self.limits.inodes} members, and only {self.limits.inodes} inodes are "
                f"{self.limits.data_where or 'available'}",
                "free some inodes or choose a destination on another file system",
            )
        # Precedence as GNU tar's: GNU.sparse.name > pax path > GNU long name > ustar prefix/name.
        name = pax.get("GNU.sparse.name", pax.get("path", decode(long_name if long_name is not None else h.name)))
        linkname = pax.get("linkpath", decode(long_link if long_link is not None else h.linkname))
        stored = self._number(pax, "size", h.size, h.offset)
        for what, text in (("name", name), ("link target", linkname)):
            raw = len(text.encode("utf-8", "surrogateescape"))
            if raw > self.limits.name:
                raise self.refuse(f"a member's {what} at byte {start} is {raw} bytes long "
                                  f"(limit {self.limits.name})")  # fmt: skip
        if sum(1 for piece in name.split("/") if piece not in ("", ".")) > self.limits.depth:
            raise self.refuse(f"member {name[:60]!r}... is more than {self.limits.depth} directories deep")
        info = tarfile.TarInfo(name)
        info.type = h.type
        if h.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and name.endswith("/"):
            info.type = tarfile.DIRTYPE  # GNU tar makes a directory of a file member named "x/"
        if info.type == tarfile.DIRTYPE:
            info.name = name.rstrip("/") or name  # as tarfile reports directories
        info.linkname = linkname
        info.mode = h.mode & 0o7777
        info.uid = self._number(pax, "uid", h.uid, h.offset)
        info.gid = self._number(pax, "gid", h.gid, h.offset)
        info.uname = pax.get("uname", decode(h.uname))
        info.gname = pax.get("gname", decode(h.gname))
        info.mtime = h.mtime
        info.devmajor, info.devminor = h.devmajor, h.devminor
        info.pax_headers = {}
        sparse = h.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse.") for k in pax)
        if sparse and h.type not in REGULAR:
            raise self.refuse(f"member {name!r} has a sparse map but is not a regular file")
        if h.type == tarfile.GNUTYPE_SPARSE:
            self._sparse_map(h, name)
        info.size = stored
        if sparse:  # the real size, as tarfile reports it; the contents are never expanded here
            real = h.realsize if h.type == tarfile.GNUTYPE_SPARSE else stored
            real = self._number(pax, "GNU.sparse.size", real, h.offset)
            info.size = self._number(pax, "GNU.sparse.realsize", real, h.offset)
            info.sparse = []  # type: ignore[assignment]  # tarfile keeps the map here; typeshed says bytes
        if info.type in (tarfile.DIRTYPE, tarfile.LNKTYPE):
            info.size = 0  # GNU tar reads no data after these, whatever the size field says
            return info, None
        if info.type in SKIPPED_DATA and stored:
            raise self.refuse(
                f"member {name!r} is a {SKIPPED_DATA[info.type]} whose header claims {stored} data bytes, which "
                "GNU tar skips and other readers take for headers"
            )
        if self.s.length is not None and self.s.offset + stored > self.s.length:
            raise self.s.truncated(name, stored)  # said first: the claim is a lie, not a need for space
        self.data_total += blocks(stored)
        if self.limits.data is not None and self.data_total > self.limits.data:
            raise UserError(
                f"{self.label} needs at least {_size(self.data_total)} for its members up to {name!r}, and only "
                f"{_size(self.limits.data)} is {self.limits.data_where or 'available'}",
                "free some space or choose a destination on a larger file system",
            )
        data = None
        if self.wanted is not None and info.type in REGULAR and not sparse and stored <= MAX_READ and self.wanted(info):
            data = self.s.exact(stored, name, stored)
            self.s.skip(blocks(stored) - stored, name, stored)
        else:
            self.s.skip(blocks(stored), name, stored)
        return info, data

    def _sparse_map(self, h: Header, name: str) -> None:
        """Skip an old-GNU sparse member's extension blocks (its map goes on while the flag byte is set)."""
        more = h.sparse_extended
        count = 0
        while more:
            count += 1
            if count > self.limits.sparse_blocks:
                raise self.refuse(f"member {name!r} has a sparse map of more than {self.limits.sparse_blocks} blocks")
            buf = self._block()
            if not buf:
                raise self.s.truncated(name, h.size)
            more = buf[504] != 0

    def _trailing(self) -> None:
        """Read what follows the end of the archive (GNU tar drains it too), but not without end."""
        extra = 0
        while True:
            got = len(self.s.read(1 << 20))
            if not got:
                return
            extra += got
            if extra > self.limits.trailing + 2 * BLOCK:
                raise self.refuse(f"more than {_size(self.limits.trailing)} follow its end-of-archive block")


def read(
    stream: IO[bytes], label: str, limits: Limits | None = None, wanted: Wanted | None = None
) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Every member header of the decompressed tar `stream`, with the contents `wanted` selects.

    Raises TarFormatError for a header that is not one (at offset 0: not a tar archive), UserError
    for a truncated archive or one that needs more than `limits.data`, and UnsafeArchive for any
    other limit.
    """
    return iter(Reader(stream, label, limits or Limits(), wanted))
