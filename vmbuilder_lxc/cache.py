"""A cache of bootstrapped base systems, keyed by every input that shapes them, kept ready to use.

An entry is an unpacked tree `<key>.tree/rootfs` (the directory `<key>.tree` is made read-only),
its manifest `<key>.manifest` (every path's type, size, mtime, mode, owner, and each file's
SHA-256, see cachetree.py), and the marker `<key>.json` (the inputs, the manifest's SHA-256,
provenance). A warm build copies the tree with `cp -a --reflink=auto`, which keeps xattrs, ACLs,
file capabilities, hard links, device nodes and sparse files; on a file system with reflinks the
copy shares the blocks. Measured, the tree alone is enough: no tarball is kept (docs/cache.md).

Entries are written under an exclusive lock on `<key>.lock`, first as `.partial` names (synced),
then renamed, the marker last: the marker is the validity mark, published only once the tree and
manifest it vouches for are complete. A hit is checked cheaply (an lstat walk compared with the
manifest) or, with `--cache-verify full`, by hashing every file. An entry that fails the check,
lacks its marker, or is in the older tarball format is removed and rebuilt, so a build killed at
any point never leaves an entry a later build trusts. `<key>.used` is touched on every hit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import cachetree, treecopy
from .locks import lock_or_wait
from .log import LOG, UserError
from .places import check_writable_dir
from .run import BuildError, pause_point, run

DEFAULT_CACHE_DIR = Path("/var/cache/vmbuilder-lxc")
FORMAT = 2  # 1: KEY.tar[.zst] + KEY.json (before the trees); such entries are removed on sight
OLD_SUFFIXES = (".tar.zst", ".tar")
VERIFY_MODES = ("quick", "full")
# Set by `vmbuilder lxc cache refresh` (cacheadmin.py) for the build that re-bootstraps an entry: that
# build ignores the entry of this key (it would hit it) and replaces it by storing its fresh base.
REFRESH_ENV = "VMBUILDER_CACHE_REFRESH"
T = TypeVar("T")


def request_record(keyring: Path | None, seedfile: str | None, hook_dirs: list[str]) -> dict[str, Any]:
    """What `cache refresh` needs besides the inputs to build the base again: the inputs hold only
    the digests of these files, the marker records where they were (absolute paths)."""
    return {
        "keyring": str(keyring.absolute()) if keyring else None,
        "seedfile": str(Path(seedfile).absolute()) if seedfile else None,
        "hook_dirs": [str(Path(d).absolute()) for d in hook_dirs],
    }


def check_cache_dir(directory: Path) -> None:
    """Preflight: --cache-dir (and its bases/) must be, or be creatable as, a writable directory."""
    hint = "give --cache-dir a directory on a writable disk, or pass --no-cache"
    check_writable_dir(directory / "bases", "--cache-dir", hint, shown=directory)


def cache_key(manifest: dict[str, Any]) -> str:
    blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Beside(threading.Thread, Generic[T]):
    """fn(*args) in a thread, its value or error kept for the caller: a tree walk or hashing (C code
    that releases the GIL) runs on the other core while a command copies the same tree."""

    def __init__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> None:
        super().__init__(name=f"cache-{fn.__name__}", daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.value: T | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result() in the caller's thread
            self.error = exc

    def result(self) -> T:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # fn returned it (it may be None)


def _remove_tree(path: Path) -> None:
    """Remove a (read-only) tree or file; absent is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        with suppress(OSError):
            path.chmod(0o700)
        shutil.rmtree(path)


@dataclass
class Entry:
    key: str
    tree: Path
    manifest: Path
    meta: Path

    @property
    def root(self) -> Path:
        """The base system itself (what a warm build copies, or an overlay uses as its lower layer)."""
        return self.tree / "rootfs"

    @property
    def used(self) -> Path:
        return self.meta.with_suffix(".used")

    def load_meta(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def last_used(self) -> float | None:
        try:
            return self.used.stat().st_mtime
        except OSError:
            return None

    def problem(self, full: bool, content: bool = True) -> str | None:
        """Why this entry must not be trusted (None: it is intact). Reads only; removes nothing.
        Without `content` only the marker and the tree's presence are checked (see content_problem)."""
        meta = self.load_meta()
        if meta is None:
            return "no readable marker (an interrupted store?)"
        if meta.get("format") != FORMAT:
            return "an older cache format"
        if not self.root.is_dir() or self.root.is_symlink():
            return "its tree is missing"
        return self.content_problem(full, meta) if content else None

    def content_problem(
        self, full: bool, meta: dict[str, Any] | None = None, links: dict[int, list[str]] | None = None
    ) -> str | None:
        """The tree against its manifest: an lstat walk, or every file hashed (`full`); the walk
        also collects the hard links into `links` (cachetree.compare)."""
        meta = meta if meta is not None else self.load_meta() or {}
        try:
            if cachetree.digest_file(self.manifest) != meta.get("manifest_sha256"):
                return "its manifest does not match the marker"
            recorded = cachetree.read_manifest(self.manifest)
            return cachetree.compare(self.root, recorded, full, links)
        except (OSError, ValueError) as exc:
            return f"cannot be checked ({exc})"


def _created(meta: dict[str, Any]) -> float:
    created = meta.get("created", 0)
    return float(created) if isinstance(created, int | float) else 0.0  # a bad time: an unknown age


class BaseCache:
    def __init__(self, directory: Path, max_age_days: int = 0, verify: str = "quick") -> None:
        self.root = directory
        self.dir = directory / "bases"
        self.max_age = max_age_days * 86400
        self.verify = verify

    @property
    def full(self) -> bool:
        """--cache-verify full: every file of a hit is hashed, not only its lstat fields compared."""
        return self.verify == "full"

    def entry(self, key: str) -> Entry:
        return Entry(key, self.dir / f"{key}.tree", self.dir / f"{key}.manifest", self.dir / f"{key}.json")

    def keys(self) -> list[str]:
        """Every key with a marker, tree or old tarball in the cache (valid or not)."""
        try:
            names = [p.name for p in self.dir.iterdir()]
        except OSError:
            return []
        found = set()
        for name in names:
            key, _, rest = name.partition(".")
            if rest in ("json", "tree", "manifest", *(s[1:] for s in OLD_SUFFIXES)):
                found.add(key)
        return sorted(found)

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
            _remove_tree(leftover)

    def users(self, key: str) -> list[Path]:
        """The containers that still use KEY as their base (overlay or btrfs backing)."""
        from . import pins

        return pins.users(self.root, key)

    def refreshing(self, key: str, inputs: dict[str, Any]) -> bool:
        """Whether this build is `cache refresh` re-bootstrapping KEY: it then skips the lookup and its
        store replaces the entry. A request that now gives another key is refused before any work."""
        wanted = os.environ.get(REFRESH_ENV)
        if not wanted:
            return False
        if wanted != key:
            raw = (self.entry(wanted).load_meta() or {}).get("inputs")
            old: dict[str, Any] = raw if isinstance(raw, dict) else {}
            changed = ", ".join(sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k)))
            raise UserError(
                f"cache entry {wanted} cannot be refreshed: its recorded request now gives another base "
                f"({changed or 'other inputs'} changed)",
                "remove it with `vmbuilder lxc cache prune`; the next build with your options bootstraps anew",
            )
        return True

    def lookup(self, key: str, full: bool | None = None, content: bool = True) -> Entry | None:
        """A valid entry, or None (a broken, stale or expired one is removed). Call with the lock held.
        `content=False` leaves the tree's check to restore(), which makes it while copying."""
        entry = self.entry(key)
        if not any(p.exists() for p in self._paths(entry)):
            return None
        meta = entry.load_meta() or {}
        why = entry.problem(self.full if full is None else full, content)
        if why is None and meta.get("stale"):
            why = "marked stale by `vmbuilder lxc cache refresh`"
        if why is None and self.max_age and time.time() - _created(meta) > self.max_age:
            why = "older than the maximum age (--cache-max-age)"
        if why is not None:
            self._drop(entry, why)
            return None
        entry.used.touch()
        return entry

    def _paths(self, entry: Entry) -> list[Path]:
        old = [self.dir / f"{entry.key}{s}" for s in OLD_SUFFIXES]
        return [entry.meta, entry.manifest, entry.tree, entry.used, *old]

    def remove(self, entry: Entry, force: bool = False) -> bool:
        """Remove an entry, the marker first; one that a container still uses is kept (False)."""
        if not force and entry.tree.exists() and self.users(entry.key):
            LOG.warning("cache entry %s is still used by a container; keeping it", entry.key)
            return False
        for path in self._paths(entry):
            _remove_tree(path)
        return True

    def store(self, key: str, root: Path, manifest: dict[str, Any], extra: dict[str, Any]) -> Entry | None:
        """Copy `root` into the cache atomically (None: an entry in use is kept). Call with the lock held."""
        entry = self.entry(key)
        if entry.tree.exists() and self.users(key):
            LOG.warning("not replacing cache entry %s: containers still use it as their base", key)
            return None
        partial = self.dir / f"{key}.tree.partial"
        man_partial = self.dir / f"{key}.manifest.partial"
        partial.mkdir()
        # The manifest (every file hashed) is made from `root` on the other core while cp copies it,
        # then the copy is checked against it the way a hit is: a copy that differs is not stored.
        recorded = _Beside(cachetree.write_manifest, root, man_partial)
        copy = ["cp", "-a", "--reflink=auto", "--one-file-system", "--no-target-directory"]
        try:
            run([*copy, "--", root, partial / "rootfs"], progress="copying to the cache")
        except BaseException:
            recorded.join()  # not writing into the partial names while they are removed
            raise
        files, size = recorded.result()  # (files, bytes)
        why = cachetree.compare(partial / "rootfs", cachetree.read_manifest(man_partial), full=False)
        if why is not None:
            raise BuildError(f"the copy of the base in the cache differs from the base ({why}); nothing was stored")
        run(["sync", "--file-system", partial / "rootfs"])  # the tree's data is on the disk before its name
        pause_point("cache-store")  # test-only: the tree is written, nothing is published yet
        meta = {"key": key, "format": FORMAT, "created": time.time(), "inputs": manifest, "paths": files,
                "size": size, "manifest_sha256": cachetree.digest_file(man_partial), **extra}  # fmt: skip
        meta_partial = self.dir / f"{key}.json.partial"
        meta_partial.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _fsync(meta_partial)
        entry.meta.unlink(missing_ok=True)  # no old marker may vouch for the new tree
        _fsync(self.dir)
        for old in (entry.tree, entry.manifest, *(self.dir / f"{key}{s}" for s in OLD_SUFFIXES)):
            _remove_tree(old)
        partial.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(partial, entry.tree)
        os.replace(man_partial, entry.manifest)
        _fsync(self.dir)  # the tree and manifest names are durable before the marker that vouches for them
        os.replace(meta_partial, entry.meta)
        _fsync(self.dir)
        entry.used.touch()
        return entry

    def restore(self, entry: Entry, root: Path) -> bool:
        """Copy the entry's tree to `root` (two `cp -a` side by side, treecopy.py; shared blocks where
        the file system has reflinks), checking the tree against its manifest meanwhile.
        False: the check failed, so the copy is removed (`root` is left empty) and so is the entry."""
        links: dict[int, list[str]] = {}
        check = _Beside(entry.content_problem, self.full, links=links)  # it only reads: not waited for if cp fails

        def link_sets() -> Iterable[list[str]]:
            """The hard links the check's walk collected; none when it stopped at a difference (its
            sets are then incomplete, and the copy is thrown away below)."""
            check.join()
            return links.values() if check.error is None and check.value is None else []

        treecopy.copy_tree(entry.root, root, "copying the cached base", link_sets)
        why = check.result()
        if why is None:
            return True
        run(["rm", "-rf", "--one-file-system", "--", root])
        root.mkdir()
        self._drop(entry, why)
        return False

    def _drop(self, entry: Entry, why: str) -> None:
        LOG.warning("cache entry %s is not used: %s; rebuilding it", entry.key, why)
        self.remove(entry)
