"""A corrupted cache entry is never trusted: store() publishes, lookup() checks, restore() unpacks.

The cache is in tmp_path and tar is replaced by a fake run() that writes (or records) the tarball,
so store() runs its real publishing steps (partials, fsync, renames, the JSON last). Each test then
damages one part of a stored entry the way a crash, a full disk or a stray edit would, and checks
that lookup() refuses it and removes it, so the next build bootstraps afresh.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import cache as cache_module
from vmbuilder_lxc.cache import BaseCache, Entry
from vmbuilder_lxc.keyring import sha256_file
from vmbuilder_lxc.run import CommandError

KEY = "0123456789abcdef0123456789abcdef"
MANIFEST = {"suite": "noble", "arch": "amd64"}
TARBALL = b"pretend this is a tarball of a bootstrapped base"


class FakeTar:
    """run() for tar: `--create` writes TARBALL to --file, `--extract` is recorded."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail = False

    def __call__(self, argv: list[Any], **kwargs: Any) -> None:
        args = [str(a) for a in argv]
        self.calls.append(args)
        if self.fail:
            raise CommandError(args, 2, ["tar: ./usr: Cannot stat: Input/output error"])
        if "--create" in args:
            Path(args[args.index("--file") + 1]).write_bytes(TARBALL)


@pytest.fixture
def tar(monkeypatch: pytest.MonkeyPatch) -> FakeTar:
    fake = FakeTar()
    monkeypatch.setattr(cache_module, "run", fake)
    return fake


@pytest.fixture
def cache(tmp_path: Path, tar: FakeTar) -> BaseCache:
    return BaseCache(tmp_path / "cache")


def stored(cache: BaseCache, tmp_path: Path) -> Entry:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    with cache.locked(KEY):
        return cache.store(KEY, tmp_path / "rootfs", MANIFEST, {"backend": "mmdebstrap"})


def lookup(cache: BaseCache) -> Entry | None:
    with cache.locked(KEY):
        return cache.lookup(KEY)


def leftovers(cache: BaseCache) -> list[str]:
    """What remains in the cache directory besides the lock file."""
    return sorted(p.name for p in cache.dir.iterdir() if not p.name.endswith(".lock"))


# -- an intact entry --------------------------------------------------------------------------------


def test_a_stored_entry_is_found_and_describes_its_tarball(cache: BaseCache, tmp_path: Path) -> None:
    entry = stored(cache, tmp_path)
    assert entry.tarball.read_bytes() == TARBALL
    meta = json.loads(entry.meta.read_text())
    assert meta["key"] == KEY and meta["inputs"] == MANIFEST and meta["backend"] == "mmdebstrap"
    assert meta["sha256"] == sha256_file(entry.tarball)
    assert lookup(cache) == entry
    assert leftovers(cache) == sorted([entry.tarball.name, entry.meta.name])  # no partials


def test_restore_unpacks_the_entry_into_the_root(cache: BaseCache, tmp_path: Path, tar: FakeTar) -> None:
    entry = stored(cache, tmp_path)
    target = tmp_path / "new/rootfs"
    cache.restore(entry, target)
    extract = tar.calls[-1]
    assert target.is_dir()
    assert extract[extract.index("--file") + 1] == str(entry.tarball)
    assert extract[extract.index("-C") + 1] == str(target)
    assert ("-I" in extract) == (entry.tarball.suffix == ".zst")


@pytest.mark.parametrize(("suffix", "decompress"), [(".tar.zst", True), (".tar", False)])
def test_restore_decompresses_by_the_entrys_suffix(
    cache: BaseCache, tmp_path: Path, tar: FakeTar, suffix: str, decompress: bool
) -> None:
    entry = Entry(KEY, cache.dir / f"{KEY}{suffix}", cache.dir / f"{KEY}.json")
    cache.restore(entry, tmp_path / "rootfs")
    assert (tar.calls[-1][1:3] == ["-I", "zstd -d -T0 -q"]) is decompress


# -- corrupted entries ------------------------------------------------------------------------------


def corrupt(entry: Entry, how: str) -> None:
    meta = json.loads(entry.meta.read_text())
    if how == "tarball-changed":
        entry.tarball.write_bytes(TARBALL.replace(b"base", b"BASE"))
    elif how == "tarball-truncated":
        entry.tarball.write_bytes(TARBALL[:10])
    elif how == "tarball-empty":
        entry.tarball.write_bytes(b"")
    elif how == "tarball-missing":
        entry.tarball.unlink()
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
        del meta["sha256"]
        entry.meta.write_text(json.dumps(meta))
    elif how == "meta-with-another-digest":
        meta["sha256"] = "0" * 64
        entry.meta.write_text(json.dumps(meta))
    elif how == "meta-digest-not-a-string":
        meta["sha256"] = 12345
        entry.meta.write_text(json.dumps(meta))
    else:
        raise AssertionError(how)


CORRUPTIONS = [
    "tarball-changed", "tarball-truncated", "tarball-empty", "tarball-missing", "meta-missing", "meta-empty",
    "meta-truncated", "meta-not-json", "meta-a-list", "meta-without-digest", "meta-with-another-digest",
    "meta-digest-not-a-string",
]  # fmt: skip


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupted_entry_is_not_trusted_and_is_removed(cache: BaseCache, tmp_path: Path, how: str) -> None:
    corrupt(stored(cache, tmp_path), how)
    assert lookup(cache) is None
    assert leftovers(cache) == []
    assert lookup(cache) is None  # and it stays absent


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_new_store_over_a_corrupted_entry_is_trusted_again(cache: BaseCache, tmp_path: Path, how: str) -> None:
    corrupt(stored(cache, tmp_path), how)
    assert lookup(cache) is None
    entry = stored(cache, tmp_path)
    assert lookup(cache) == entry
    assert entry.tarball.read_bytes() == TARBALL


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


def test_a_failed_store_publishes_nothing(cache: BaseCache, tmp_path: Path, tar: FakeTar) -> None:
    tar.fail = True
    with pytest.raises(CommandError):
        stored(cache, tmp_path)
    assert leftovers(cache) == []
    assert lookup(cache) is None


def test_a_failed_store_keeps_no_half_of_an_older_entry(
    cache: BaseCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while the JSON is written: the old tarball may be replaced, but then its
    old JSON no longer vouches for it, so the entry is refused, never the old JSON trusted."""
    old = stored(cache, tmp_path)
    old_meta = old.meta.read_text()

    def new_tarball(argv: list[Any], **kwargs: Any) -> None:
        Path(str(argv[list(map(str, argv)).index("--file") + 1])).write_bytes(b"a different, newer base")

    monkeypatch.setattr(cache_module, "run", new_tarball)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(cache_module.os, "replace", replace)
    with pytest.raises(OSError):
        stored(cache, tmp_path)
    monkeypatch.setattr(cache_module.os, "replace", real_replace)
    assert old.meta.read_text() == old_meta  # the old marker is still there...
    assert lookup(cache) is None  # ...but it does not vouch for the new tarball
    assert leftovers(cache) == []
