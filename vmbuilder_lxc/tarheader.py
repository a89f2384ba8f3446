"""The tar format as GNU tar 1.34 reads it: one 512-byte header block, a pax extended header's records.

tarstream.Reader drives these over the decompressed stream and applies the limits; nothing here
reads a stream or allocates more than the block or record it is given.
"""

from __future__ import annotations

import re
import tarfile

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
POSIX_MAGIC = b"ustar\x00"  # with version "00"; GNU's "ustar  \0" has no prefix field
PAX_RECORD = re.compile(rb"([0-9]{1,20}) ")

# Member types whose data GNU tar skips even though it writes no contents (measured with 1.34).
SKIPPED_DATA = {tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                tarfile.FIFOTYPE: "fifo"}  # fmt: skip
REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE)
EXTENDED = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK)  # fmt: skip


class TarFormatError(ValueError):
    """A header that is not a valid tar header, at byte `offset` of the decompressed stream."""

    def __init__(self, offset: int, why: str) -> None:
        super().__init__(why)
        self.offset = offset


def nts(field: bytes) -> bytes:
    """A NUL-terminated field's text (tar pads fields with NULs; what follows the first one is junk)."""
    return field.split(b"\0", 1)[0]


def decode(raw: bytes) -> str:
    """A name as text that round-trips any bytes (names need not be UTF-8)."""
    return raw.decode("utf-8", "surrogateescape")


def blocks(n: int) -> int:
    """`n` bytes of member data rounded up to whole blocks, as they are stored."""
    return -(-n // BLOCK) * BLOCK


class Header:
    """The fields of one 512-byte header block that the checks need."""

    def __init__(self, buf: bytes, offset: int) -> None:
        self.offset = offset
        chksum = self._number(buf[148:156], "checksum")
        blanked = buf[:148] + b" " * 8 + buf[156:]
        unsigned = sum(blanked)
        signed = unsigned - 256 * sum(1 for b in blanked if b >= 128)
        if chksum not in (unsigned, signed):
            raise TarFormatError(offset, "bad checksum")
        self.type = buf[156:157]
        self.name = nts(buf[0:100])
        if buf[257:263] == POSIX_MAGIC and self.type not in EXTENDED and nts(buf[345:500]):
            self.name = nts(buf[345:500]) + b"/" + self.name
        self.linkname = nts(buf[157:257])
        self.mode = self._number(buf[100:108], "mode")
        self.uid = self._number(buf[108:116], "uid")
        self.gid = self._number(buf[116:124], "gid")
        self.size = self._number(buf[124:136], "size")
        self.mtime = self._number(buf[136:148], "mtime")
        self.uname = nts(buf[265:297])
        self.gname = nts(buf[297:329])
        self.devmajor = self._number(buf[329:337], "devmajor")
        self.devminor = self._number(buf[337:345], "devminor")
        self.sparse_extended = self.type == tarfile.GNUTYPE_SPARSE and buf[482] != 0
        self.realsize = self._number(buf[483:495], "realsize") if self.type == tarfile.GNUTYPE_SPARSE else 0

    def _number(self, field: bytes, what: str) -> int:
        """A numeric field: octal digits (space or NUL padded), or GNU's base-256 with the high bit set."""
        if field[:1] == b"\x80":
            return int.from_bytes(field[1:], "big")
        if field[:1] == b"\xff" and what == "mtime":
            return int.from_bytes(field, "big", signed=True)  # GNU tar's form for times before 1970
        if field[:1] and field[0] & 0x80:
            raise TarFormatError(self.offset, f"negative or unknown binary number in its {what} field")
        text = nts(field).strip(b" ")
        if text and not all(48 <= b <= 55 for b in text):
            raise TarFormatError(self.offset, f"invalid {what} field {field!r}")
        return int(text or b"0", 8)


def parse_pax(data: bytes, offset: int) -> dict[str, str]:
    """The records of a pax extended header ("LEN KEY=VALUE\\n"); a later record of a key wins."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if not data[pos:].strip(b"\0"):
            break  # padding
        m = PAX_RECORD.match(data, pos)
        length = int(m.group(1)) if m else 0
        end = pos + length
        record = data[m.end() : end - 1] if m else b""
        if not m or end > len(data) or end <= m.end() or data[end - 1 : end] != b"\n" or b"=" not in record:
            raise TarFormatError(offset, f"malformed pax record at byte {pos} of the extended header")
        key, _, value = record.partition(b"=")
        records[decode(key)] = decode(value)
        pos = end
    return records
