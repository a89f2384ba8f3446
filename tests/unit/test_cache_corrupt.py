"""A corrupted cache entry is never trusted: store() publishes, lookup() checks, restore() copies.

The cache is in tmp_path and store() runs for real on a small tree, so its publishing steps
(partials, sync, renames, the marker last) are the real ones. Each test then damages one part of a
stored entry the way a crash, a full disk or a stray edit would, and checks that lookup() refuses
it and removes it, so the next build bootstraps afresh.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import cache as cache_module
from vmbuilder_lxc.cache import BaseCache, Entry
from vmbuilder_lxc.run import CommandError

KEY = "0123456789abcdef0123456789abcdef"
MANIFEST = {"suite": "noble", "arch": "amd64"}


@pytest.fixture
def cache(tmp_path: Path) -> BaseCache:
    return BaseCache(tmp_path / "cache")


def stored(cache: BaseCache, tmp_path: Path) -> Entry:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text("base\n")
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin/sh").write_bytes(b"#!" + bytes(100))
    with cache.locked(KEY):
        entry = cache.store(KEY, root, MANIFEST, {"backend": "mmdebstrap"})
    assert entry is not None
    return entry


def lookup(cache: BaseCache, full: bool | None = None) -> Entry | None:
    with cache.locked(KEY):
        return cache.lookup(KEY, full=full)


def leftovers(cache: BaseCache) -> list[str]:
    """What remains in the cache directory besides the lock file."""
    return sorted(p.name for p in cache.dir.iterdir() if not p.name.endswith(".lock"))


# -- an intact entry --------------------------------------------------------------------------------


def test_a_stored_entry_is_found_and_describes_its_tree(cache: BaseCache, tmp_path: Path) -> None:
    entry = stored(cache, tmp_path)
    assert (entry.root / "etc/hostname").read_text() == "base\n"
    meta = json.loads(entry.meta.read_text())
    assert meta["key"] == KEY and meta["inputs"] == MANIFEST and meta["backend"] == "mmdebstrap"
    assert meta["manifest_sha256"] == cache_module.cachetree.digest_file(entry.manifest)
    assert lookup(cache) == entry
    assert leftovers(cache) == sorted([entry.tree.name, entry.manifest.name, entry.meta.name, entry.used.name])


# -- corrupted entries ------------------------------------------------------------------------------


def corrupt(entry: Entry, how: str) -> None:
    meta = json.loads(entry.meta.read_text())
    if how == "tree-missing":
        entry.tree.chmod(0o755)
        shutil.rmtree(entry.tree)
    elif how == "rootfs-a-file":
        entry.tree.chmod(0o755)
        shutil.rmtree(entry.root)
        entry.root.write_text("not a tree")
    elif how == "file-truncated":
        (entry.root / "bin/sh").write_bytes(b"#!")
    elif how == "manifest-missing":
        entry.manifest.unlink()
    elif how == "manifest-edited":
        entry.manifest.write_text(entry.manifest.read_text().replace("hostname", "hostnamf"))
    elif how == "manifest-garbage":
        entry.manifest.write_bytes(b"\x00\xff garbage")
    elif how == "meta-missing":
        entry.meta.unlink()
    elif how == "meta-empty":
        entry.meta.write_text("")
    elif how == "meta-truncated":
        entry.meta.write_text(entry.meta.read_text()[:20])
    elif how == "meta-not-json":
        entry.meta.write_bytes(b"\x00\xff\xfe garbage")
    elif how == "meta-a-list":
        entry.meta.write_text(json.dumps([meta]))
    elif how == "meta-without-digest":
        del meta["manifest_sha256"]
        entry.meta.write_text(json.dumps(meta))
    elif how == "meta-with-another-digest":
        meta["manifest_sha256"] = "0" * 64
        entry.meta.write_text(json.dumps(meta))
    elif how == "meta-digest-not-a-string":
        meta["manifest_sha256"] = 12345
        entry.meta.write_text(json.dumps(meta))
    elif how == "meta-old-format":
        del meta["format"]
        entry.meta.write_text(json.dumps(meta))
    else:
        raise AssertionError(how)


CORRUPTIONS = [
    "tree-missing", "rootfs-a-file", "file-truncated", "manifest-missing", "manifest-edited", "manifest-garbage",
    "meta-missing", "meta-empty", "meta-truncated", "meta-not-json", "meta-a-list", "meta-without-digest",
    "meta-with-another-digest", "meta-digest-not-a-string", "meta-old-format",
]  # fmt: skip


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupted_entry_is_not_trusted_and_is_removed(cache: BaseCache, tmp_path: Path, how: str) -> None:
    corrupt(stored(cache, tmp_path), how)
    assert lookup(cache) is None
    assert leftovers(cache) == []
    assert lookup(cache) is None  # and it stays absent


TREE_CORRUPTIONS = ["file-truncated", "manifest-missing", "manifest-edited", "manifest-garbage",
                    "meta-without-digest", "meta-with-another-digest"]  # fmt: skip


@pytest.mark.parametrize("how", TREE_CORRUPTIONS)
def test_a_copy_checked_while_copying_is_dropped_with_its_entry(cache: BaseCache, tmp_path: Path, how: str) -> None:
    """A warm `--backing dir` build looks the entry up without walking it and lets restore() check the
    tree while cp copies it: a bad tree is then caught after the copy, which is thrown away."""
    corrupt(stored(cache, tmp_path), how)
    with cache.locked(KEY):
        entry = cache.lookup(KEY, content=False)
        assert entry is not None  # the marker and the tree are there
        target = tmp_path / "ct/rootfs"
        assert cache.restore(entry, target) is False
    assert target.is_dir() and not any(target.iterdir())  # as before the copy: the build bootstraps into it
    assert leftovers(cache) == []


def test_a_checked_copy_of_an_intact_entry_is_kept(cache: BaseCache, tmp_path: Path) -> None:
    stored(cache, tmp_path)
    with cache.locked(KEY):
        entry = cache.lookup(KEY, content=False)
        assert entry is not None and cache.restore(entry, tmp_path / "ct/rootfs") is True
    assert (tmp_path / "ct/rootfs/etc/hostname").read_text() == "base\n"
    assert lookup(cache, full=True) == entry


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_new_store_over_a_corrupted_entry_is_trusted_again(cache: BaseCache, tmp_path: Path, how: str) -> None:
    corrupt(stored(cache, tmp_path), how)
    assert lookup(cache) is None
    entry = stored(cache, tmp_path)
    assert lookup(cache, full=True) == entry


@pytest.mark.parametrize("created", ["yesterday", None, [1], {"t": 1}, "1e308"])
def test_a_corrupted_creation_time_counts_as_expired(cache: BaseCache, tmp_path: Path, created: Any) -> None:
    """With a maximum age the time is read; a bad one must mean "rebuild", not a crash."""
    entry = stored(cache, tmp_path)
    meta = json.loads(entry.meta.read_text())
    meta["created"] = created
    entry.meta.write_text(json.dumps(meta))
    aged = BaseCache(cache.dir.parent, max_age_days=7)
    assert lookup(aged) is None
    assert leftovers(aged) == []


def test_a_corrupted_creation_time_without_a_maximum_age_is_not_read(cache: BaseCache, tmp_path: Path) -> None:
    entry = stored(cache, tmp_path)
    meta = json.loads(entry.meta.read_text())
    meta["created"] = "yesterday"
    entry.meta.write_text(json.dumps(meta))
    assert lookup(cache) == entry


def test_an_entry_within_the_maximum_age_is_kept(cache: BaseCache, tmp_path: Path) -> None:
    entry = stored(cache, tmp_path)
    aged = BaseCache(cache.dir.parent, max_age_days=7)
    assert lookup(aged) == entry
    meta = json.loads(entry.meta.read_text())
    meta["created"] = time.time() - 8 * 86400
    entry.meta.write_text(json.dumps(meta))
    assert lookup(aged) is None


def test_a_failed_copy_publishes_nothing(cache: BaseCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(argv: list[Any], **kwargs: Any) -> None:
        raise CommandError([str(a) for a in argv], 1, ["cp: error reading './usr': Input/output error"])

    monkeypatch.setattr(cache_module, "run", failing)
    with pytest.raises(CommandError):
        stored(cache, tmp_path)
    assert leftovers(cache) == []
    monkeypatch.undo()
    assert lookup(cache) is None
