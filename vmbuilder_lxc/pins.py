"""Which containers use a cached base, so that pruning the cache never removes one still in use.

A container built with `--backing overlay` or `btrfs` keeps using (overlay) or was cloned from
(btrfs) a base made from cache entry KEY. It is recorded twice:

- a pin `CACHE/pins/KEY/<hash of DEST>`, a symbolic link to DEST (the hash makes the name fixed
  and safe whatever DEST is called, so pinning again is idempotent);
- a marker `DEST/.vmbuilder-base.json` naming the key, written by the build.

A pin alone is not trusted: a container removed by hand (`rm -rf`, `lxc-destroy`) or rebuilt with
`--overwrite` on another base leaves its pin behind. `users()` therefore counts a pin only while
DEST exists and its marker still names KEY, and drops the others, so a stale pin never blocks
`cache prune` for ever.

A build in progress pins its hidden build directory (which holds the marker from the start), then
DEST once it is moved into place, then unpins the build directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

MARKER = ".vmbuilder-base.json"


def pins_dir(cache_dir: Path, key: str) -> Path:
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"not a cache key: {key!r}")
    return cache_dir / "pins" / key


def _pin_name(dest: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(dest))).hexdigest()[:32]


def pin(cache_dir: Path, key: str, dest: Path) -> Path:
    """Record that DEST uses base KEY (atomically: a link to a temporary name, then renamed)."""
    directory = pins_dir(cache_dir, key)
    directory.mkdir(parents=True, exist_ok=True)
    target = os.path.abspath(dest)
    link = directory / _pin_name(dest)
    tmp = directory / f".{link.name}.{os.getpid()}.partial"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def unpin(cache_dir: Path, key: str, dest: Path) -> None:
    """Forget that DEST uses base KEY; nothing happens when it was not pinned."""
    with contextlib.suppress(FileNotFoundError):
        (pins_dir(cache_dir, key) / _pin_name(dest)).unlink()
    with contextlib.suppress(OSError):  # only when empty
        pins_dir(cache_dir, key).rmdir()


def write_marker(dest: Path, key: str, backing: str, base: Path) -> None:
    """The container's own record of its base, which `users()` checks each pin against."""
    data = {"key": key, "backing": backing, "base": str(base)}
    tmp = dest / f"{MARKER}.partial"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, dest / MARKER)


def read_marker(dest: Path) -> dict[str, Any] | None:
    """DEST's marker, or None when it has none or it is unreadable."""
    try:
        data = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("key"), str) else None


def _live(dest: str, key: str) -> bool:
    path = Path(dest)
    if not os.path.isabs(dest) or not path.is_dir():
        return False
    marker = read_marker(path)
    return marker is not None and marker["key"] == key


def users(cache_dir: Path, key: str) -> list[Path]:
    """The containers that still use base KEY; stale pins found on the way are removed."""
    directory = pins_dir(cache_dir, key)
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # a pin being written
        try:
            dest = os.readlink(entry.path)
        except OSError:
            dest = ""
        if dest and _live(dest, key):
            found.append(Path(dest))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    if not found:
        with contextlib.suppress(OSError):
            directory.rmdir()
    return found


def pinned_keys(cache_dir: Path) -> list[str]:
    """Every key with a pin directory (live or not: ask `users()` which)."""
    try:
        return sorted(p.name for p in (cache_dir / "pins").iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
