"""The tree on disk: one lock for its publishers, a private staging area, and atomic replacement.

A new version appears whole or not at all. Its files are written and fsynced in a staging
directory inside the tree (same filesystem), renamed into images/.../SERIAL/ as one directory,
and only then named by the products file, the index and LXC's index, each replaced atomically
(temp file, fsync, rename in the same directory, fsync of the directory). A publish killed at any
point leaves the served documents as they were or as they are meant to be: what it leaves behind
is unreferenced (staging directories, temp files, a version directory nothing names yet), and
`publish --prune` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..locks import lock_or_wait
from ..log import UserError
from ..run import pause_point
from . import streams

LOCK = ".vmbuilder-publish.lock"
STAGING = ".vmbuilder-staging"
TMP_SUFFIX = ".vmbuilder-tmp"
DOC_MAX = 64 << 20


def fault_point(stage: str) -> None:
    """A seam between two steps of a commit: the integration tests pause (and kill) a publish here
    (VMBUILDER_TEST_PAUSE_AT=publish-STAGE), the unit tests replace it with a function that raises."""
    pause_point(f"publish-{stage}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def pid_alive(name: str) -> bool:
    pid = name.split(".", 1)[0]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


class Tree:
    """A simplestreams + lxc-download tree rooted at `root` (what the web server serves)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self) -> bool:
        return self.path(streams.INDEX_PATH).is_file() or self.path(streams.PRODUCTS_PATH).is_file()

    def load(self) -> dict[str, Any]:
        """The products document, or an empty one for a new tree."""
        path = self.path(streams.PRODUCTS_PATH)
        if not path.exists():
            return streams.empty_products()
        try:
            with path.open("rb") as fh:
                doc = json.loads(fh.read(DOC_MAX))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} cannot be read as JSON ({exc})", "restore it from a backup") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("products"), dict):
            raise UserError(f"{path} is not a simplestreams products file", "give the root of a tree this tool wrote")
        return doc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One publisher (or prune) at a time changes the documents; the kernel drops the lock
        when its holder dies, even by SIGKILL."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            lock_or_wait(fd, "waiting for another publisher of %s", self.root)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def new_staging(self) -> Path:
        area = self.root / STAGING
        area.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.", dir=area))

    def stale_staging(self) -> list[Path]:
        area = self.root / STAGING
        if not area.is_dir():
            return []
        return [p for p in sorted(area.iterdir()) if not pid_alive(p.name)]

    def write_documents(self, doc: dict[str, Any]) -> None:
        """Products first (what every version's files are), then the index that names it, then
        LXC's index (which points into versions the products file already names)."""
        write_atomic(self.path(streams.PRODUCTS_PATH), dump(doc))
        fault_point("products")
        write_atomic(self.path(streams.INDEX_PATH), dump(streams.index_doc(doc)))
        fault_point("index")
        text = streams.lxc_index(doc).encode()
        for rel in streams.LXC_INDEXES:
            write_atomic(self.path(rel), text)

    def place(self, staged: Path, directory: str) -> Path:
        """Rename a fsynced staging directory to `directory` (images/.../SERIAL). An unreferenced
        directory already there (an interrupted publish's) is moved aside and removed."""
        target = self.path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        for parent in (target.parent, *target.parent.relative_to(self.root).parents):
            os.chmod(self.root / parent, 0o755)
        for entry in staged.iterdir():
            os.chmod(entry, 0o644)
            fsync_file(entry)
        os.chmod(staged, 0o755)
        fsync_dir(staged)
        if os.path.lexists(target):
            aside = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.old.", dir=self.root / STAGING))
            os.replace(target, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(staged, target)
        fsync_dir(target.parent)
        fault_point("files")
        return target
