"""Checks of host paths a user names: files read as input and directories the build writes.

They run when a setting is set (so in preflight, before anything slow) and never block or
read more than they must: a FIFO, a device or a /proc file given as input (a config file, a
--copy list, a keyring, a script) is refused without being opened or read, and a directory the
build will write to is refused when it lies on a virtual filesystem (/proc, /sys, /dev, cgroups)
or a read-only one (places.py), where the build would only fail after the bootstrap.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from . import places
from .log import UserError
from .textchecks import Invalid, control_char, shown

MAX_INPUT = 1 << 20  # 1 MiB: config files, --copy lists


def describe_mode(mode: int) -> str:
    """What a non-regular file is, in words for an error message."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def virtual_fs(path: Path) -> str | None:
    """Why `path` (its nearest existing ancestor, resolved) is a kernel interface, or None."""
    real = Path(os.path.realpath(places.nearest_existing(Path(os.path.abspath(path)))))
    for root in places.VIRTUAL_ROOTS:
        if real == root or root in real.parents:
            return f"{root} holds kernel interfaces, not files"
    mount = places.mount_of(real)
    if mount is not None and mount[1] in places.VIRTUAL_FS:
        return f"it is on {mount[0]}, a {mount[1]} filesystem (kernel interfaces, not files)"
    return None


def writable_dir(value: str, what: str, hint: str, shown: Path | None = None) -> str:
    """A directory the build creates or writes into (places.check_writable_dir), as a validator."""
    path = Path(value).expanduser()
    if not value.strip():
        raise ValueError("an empty path")
    if path.exists() and not path.is_dir():
        raise Invalid(f"{path} exists and is not a directory", hint)
    try:
        places.check_writable_dir(path, what, hint, shown=shown)
    except UserError as exc:
        raise Invalid(exc.message, exc.hint) from None
    return value


def regular_file(value: str, limit: int | None = None) -> Path:
    """An existing regular file (symlinks followed), checked with stat() alone: never opened here."""
    path = Path(value).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValueError(f"file {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is {describe_mode(st.st_mode)}, not a regular file")
    why = virtual_fs(path)
    if why:
        raise ValueError(f"{path} is not an input file: {why}")
    if limit is not None and st.st_size > limit:
        raise ValueError(f"{path} is {st.st_size} bytes, more than the {limit} an input file may have")
    return path


def read_small_text(path: Path, limit: int = MAX_INPUT) -> str:
    """Read a small UTF-8 text file: refused before reading when it is not a regular file on a real
    filesystem or too big, and refused when it holds NUL bytes or is not UTF-8."""
    regular_file(str(path), limit)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced since the stat() above
            raise ValueError(f"{path} is {describe_mode(st.st_mode)}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} is more than the {limit} bytes an input file may have")
    if b"\0" in data:
        raise ValueError(f"{path} is a binary file (it holds NUL bytes), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def copy_list(value: str) -> str:
    """A --copy file: 'SOURCE DESTINATION' per line, '#' comments; read (at most 1 MiB) and checked
    line by line here, so that a mistake is found before the build, naming the line."""
    path = regular_file(value).resolve()
    text = read_small_text(path)
    hint = "fix the --copy file"
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        where = f"{path}:{number}"
        bad = control_char(body.replace("\t", " "))
        if bad:
            raise Invalid(f"{where}: contains a control character: {bad}", hint)
        try:
            parts = shlex.split(body)
        except ValueError as exc:
            raise Invalid(f"{where}: {exc}", hint) from None
        if len(parts) != 2:
            raise Invalid(f"{where}: expected 'SOURCE DESTINATION', got {len(parts)} fields", hint)
        source, dest = parts
        source_path = Path(source).expanduser()
        try:
            mode = source_path.stat().st_mode
        except FileNotFoundError:
            raise Invalid(f"{where}: {shown(source)} does not exist", hint) from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # /dev/zero or a FIFO would never end
            raise Invalid(f"{where}: {shown(source)} is {describe_mode(mode)}; copy files and directories", hint)
        why = virtual_fs(source_path)
        if why:
            raise Invalid(f"{where}: {shown(source)} cannot be copied: {why}", hint)
        if not dest.startswith("/") or ".." in dest.split("/"):
            raise Invalid(f"{where}: destination {shown(dest)} is not an absolute guest path without '..'", hint)
    return str(path)
