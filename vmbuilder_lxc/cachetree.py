"""The manifest of a cached base tree: what a cheap check on every hit compares with an lstat walk.

One JSON line per path under the tree (sorted): [path, type, size, mtime_ns, mode, uid, gid,
link target or sha256 or null]. The quick check walks the tree with lstat and compares every field
but the digest, so a file added, removed, truncated, rewritten (its mtime moves) or re-owned is
noticed in a fraction of a second; the full check also hashes every regular file. Paths are
str with surrogate escapes, which JSON round-trips, so any file name is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TYPES = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
         stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}  # fmt: skip


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _walk(top: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to top, lstat) of everything under top, the top itself as ".", never following links."""
    yield ".", os.lstat(top)
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(top, rel) if rel else top) as it:
            for entry in it:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                yield sub, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(sub)


def _record(top: str, rel: str, st: os.stat_result, hashes: bool) -> list[Any]:
    kind = TYPES.get(stat.S_IFMT(st.st_mode), "?")
    extra: str | None = None
    if kind == "l":
        extra = os.readlink(os.path.join(top, rel))
    elif kind == "f" and hashes:
        extra = _digest(os.path.join(top, rel))
    size = st.st_size if kind in ("f", "l") else 0  # a directory's size depends on the file system
    mtime = st.st_mtime_ns if kind != "d" else 0  # cp -a sets it, but later entries may touch it
    return [rel, kind, size, mtime, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra]


def write_manifest(top: Path, out: Path) -> tuple[int, int]:
    """Record the tree at `top` (with every regular file's SHA-256) in `out`; (files, bytes)."""
    records = sorted(_record(str(top), rel, st, True) for rel, st in _walk(str(top)))
    total = 0
    with open(out, "w", encoding="utf-8", errors="surrogateescape") as fh:
        for rec in records:
            total += rec[2]
            fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return len(records), total


def read_manifest(path: Path) -> dict[str, list[Any]]:
    """path -> record; a malformed manifest raises ValueError.

    The lines are parsed as one JSON array (json.dumps never writes a raw newline inside a value),
    four times faster than a json.loads per line: this runs on every cache hit.
    """
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if "\n\n" in text.rstrip("\n"):
        raise ValueError("malformed manifest: an empty line")
    records = json.loads("[" + text.rstrip("\n").replace("\n", ",") + "]")
    found: dict[str, list[Any]] = {}
    for rec in records:
        if not isinstance(rec, list) or len(rec) != 8 or not isinstance(rec[0], str):
            raise ValueError("malformed manifest line")
        found[rec[0]] = rec
    return found


def compare(
    top: Path, manifest: dict[str, list[Any]], full: bool, links: dict[int, list[str]] | None = None
) -> str | None:
    """The first difference between the tree and its manifest (None: they agree).

    The fields are those of _record, compared inline: on a hit this loop runs once per path.
    `links` collects, by inode, the paths of every file with more than one link (for treecopy).
    """
    seen = 0
    root = str(top)
    types, s_ifmt, s_imode = TYPES, stat.S_IFMT, stat.S_IMODE
    for rel, st in _walk(root):
        want = manifest.get(rel)
        if want is None:
            return f"{rel}: not in the manifest"
        seen += 1
        mode = st.st_mode
        kind = types.get(s_ifmt(mode), "?")
        sized = kind == "f" or kind == "l"
        if (
            kind != want[1]
            or (st.st_size if sized else 0) != want[2]
            or (st.st_mtime_ns if kind != "d" else 0) != want[3]
            or s_imode(mode) != want[4]
            or st.st_uid != want[5]
            or st.st_gid != want[6]
        ):
            return f"{rel}: changed since it was stored"
        if links is not None and st.st_nlink > 1 and kind != "d":
            links.setdefault(st.st_ino, []).append(rel)
        if kind == "l" and os.readlink(os.path.join(root, rel)) != want[7]:
            return f"{rel}: link target changed"
        if full and kind == "f" and _digest(os.path.join(root, rel)) != want[7]:
            return f"{rel}: content does not match its SHA-256"
    if seen != len(manifest):
        return f"{len(manifest) - seen} recorded paths are missing"
    return None


def digest_file(path: Path) -> str:
    return _digest(str(path))
