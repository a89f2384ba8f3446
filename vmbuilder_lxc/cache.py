"""A cache of bootstrapped base systems, keyed by every input that shapes them.

An entry is a tarball `<key>.tar[.zst]` plus `<key>.json` (the inputs, the tarball's SHA-256 and
provenance). Entries are written under an exclusive lock on `<key>.lock`, first as `.partial`
files (each fsynced), then renamed, JSON last, and the directory is fsynced: the JSON is the
validity marker, published only once the tarball it describes is complete. An entry whose JSON is
missing or unreadable or whose digest does not match is treated as absent and rebuilt, so a build
killed at any point (or a full disk) never leaves an entry a later build trusts. A concurrent build
of the same key waits for the lock and then reuses the entry instead of bootstrapping twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .keyring import sha256_file
from .locks import lock_or_wait
from .log import LOG
from .places import check_writable_dir
from .run import pause_point, run

DEFAULT_CACHE_DIR = Path("/var/cache/vmbuilder-lxc")
TAR_OPTS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]


def check_cache_dir(directory: Path) -> None:
    """Preflight: --cache-dir (and its bases/) must be, or be creatable as, a writable directory."""
    hint = "give --cache-dir a directory on a writable disk, or pass --no-cache"
    check_writable_dir(directory / "bases", "--cache-dir", hint, shown=directory)


def cache_key(manifest: dict[str, Any]) -> str:
    blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _compressor() -> list[str]:
    return ["-I", "zstd -T0 -3 -q"] if shutil.which("zstd") else []


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Entry:
    key: str
    tarball: Path
    meta: Path

    def load_meta(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


class BaseCache:
    def __init__(self, directory: Path, max_age_days: int = 0) -> None:
        self.dir = directory / "bases"
        self.max_age = max_age_days * 86400

    def entry(self, key: str) -> Entry:
        for suffix in (".tar.zst", ".tar"):
            tarball = self.dir / f"{key}{suffix}"
            if tarball.exists():
                return Entry(key, tarball, self.dir / f"{key}.json")
        suffix = ".tar.zst" if _compressor() else ".tar"
        return Entry(key, self.dir / f"{key}{suffix}", self.dir / f"{key}.json")

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the per-key lock; other builds of the same key wait (and say so)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{key}.lock", "a+") as fh:
            lock_or_wait(fh.fileno(), "waiting for another build that is bootstrapping the same base (%s)", key)
            try:
                self._remove_partials(key)
                yield
            finally:
                self._remove_partials(key)
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _remove_partials(self, key: str) -> None:
        for leftover in self.dir.glob(f"{key}.*.partial"):
            leftover.unlink(missing_ok=True)

    def lookup(self, key: str) -> Entry | None:
        """A valid entry, or None (a broken or expired one is removed). Call with the lock held."""
        entry = self.entry(key)
        meta = entry.load_meta()
        if meta is None or not entry.tarball.exists():
            if entry.tarball.exists() or entry.meta.exists():
                LOG.warning("cache entry %s is incomplete; rebuilding it", key)
                self.remove(entry)
            return None
        created = meta.get("created", 0)
        if not isinstance(created, int | float):  # a corrupted time is an unknown age: too old
            created = 0
        if self.max_age and time.time() - float(created) > self.max_age:
            LOG.info("cache entry %s is older than the maximum age; rebuilding it", key)
            self.remove(entry)
            return None
        if sha256_file(entry.tarball) != meta.get("sha256"):
            LOG.warning("cache entry %s does not match its recorded digest; rebuilding it", key)
            self.remove(entry)
            return None
        return entry

    def remove(self, entry: Entry) -> None:
        entry.meta.unlink(missing_ok=True)
        entry.tarball.unlink(missing_ok=True)

    def store(self, key: str, root: Path, manifest: dict[str, Any], extra: dict[str, Any]) -> Entry:
        """Pack `root` into the cache atomically. Call with the lock held."""
        entry = self.entry(key)
        partial = self.dir / f"{key}.tarball.partial"
        run(
            ["tar", *_compressor(), "--create", "--file", partial, *TAR_OPTS, "--one-file-system",
             "--sort=name", "-C", root, "."],
            progress="packing cache",
        )  # fmt: skip
        _fsync(partial)
        pause_point("cache-store")  # test-only: the tarball is written, nothing is published yet
        meta = {"key": key, "created": time.time(), "sha256": sha256_file(partial), "inputs": manifest, **extra}
        meta_partial = self.dir / f"{key}.json.partial"
        meta_partial.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _fsync(meta_partial)
        os.replace(partial, entry.tarball)
        _fsync(self.dir)  # the tarball's name is durable before the marker that vouches for it
        os.replace(meta_partial, entry.meta)
        _fsync(self.dir)
        return entry

    def restore(self, entry: Entry, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        comp = ["-I", "zstd -d -T0 -q"] if entry.tarball.suffix == ".zst" else []
        run(
            ["tar", *comp, "--extract", "--file", entry.tarball, *TAR_OPTS, "--preserve-permissions",
             "-C", root],
            progress="unpacking cache",
        )  # fmt: skip
