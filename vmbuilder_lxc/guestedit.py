"""Changing guest files that may be hard links, and removing the build's proxy from them.

Used by the bootstrap (mmdebstrap leaves its --aptopt proxy lines in the base) and by the exports'
stripped view (exports/stage.py), whose files share their inodes with the rootfs: a file is never
written in place, a new inode is renamed over it.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from .guestfs import GuestFS

PROXY_LINE = re.compile(r"^\s*Acquire::[A-Za-z]+::Proxy\b|^\s*(export\s+)?(https?|ftp|no|all)_proxy=", re.I | re.M)


def rewrite(fs: GuestFS, path: str, data: bytes) -> None:
    """Write a file that may be a hard link into the rootfs: a new inode renamed over it (never
    written in place), keeping mode, owner and times."""
    st = fs.lstat(path)
    fs.write_bytes(path, data, stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, parents=False)
    fs.utime(path, (st.st_atime_ns, st.st_mtime_ns))


def drop_proxy_lines(path: Path | str, fs: GuestFS | None = None) -> bool:
    """Remove proxy settings from a config file (unlinking it if nothing else is left); True if
    there were any. Also used on the bootstrap's base, where mmdebstrap keeps its --aptopt lines.
    `path` is a guest path of `fs`, or without `fs` a host path, confined to its directory."""
    if fs is None:
        with GuestFS(Path(path).parent) as parent:
            return drop_proxy_lines(Path(path).name, parent)
    name = str(path)
    kept = without_proxy_lines(fs, name)
    if kept is None:
        return False
    if kept.strip():
        rewrite(fs, name, kept.encode())
    else:
        fs.unlink(name)
    return True


def without_proxy_lines(fs: GuestFS, name: str) -> str | None:
    """The text of a config file without its proxy settings; None if it has none (or is not a
    regular file). Reads only: the exports plan their changes before making any."""
    if fs.is_symlink(name) or not fs.is_file(name):
        return None
    text = fs.read_text(name, follow=False, errors="replace")
    if not PROXY_LINE.search(text):
        return None
    return "".join(ln for ln in text.splitlines(keepends=True) if not PROXY_LINE.search(ln))
