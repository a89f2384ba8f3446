"""The base-system cache: keys, and what counts as a usable entry.

Entries are stored for real (cp -a into tmp_path) from a small tree; the integration tests cover
a whole bootstrapped base.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import cache as cache_module
from vmbuilder_lxc.cache import BaseCache, Entry, cache_key

MANIFEST: dict[str, Any] = {
    "tool": "0.1.0",
    "distro": "ubuntu",
    "suite": "noble",
    "arch": "amd64",
    "variant": "minbase",
    "components": ["main", "restricted", "universe"],
    "packages": ["openssh-server", "systemd-sysv"],
    "addpkg": [],
    "removepkg": [],
    "mirror": "http://archive.mirror.test/ubuntu",
    "security_mirror": "http://security.mirror.test/ubuntu",
    "pockets": ["updates", "security"],
    "keyring": "0" * 64,
    "backend": "mmdebstrap",
    "seedfile": None,
    "hooks": "e3b0c442",
    "nested": {"a": 1, "b": [1, 2]},
}
KEY = "0123456789abcdef0123456789abcdef"


# -- keys -----------------------------------------------------------------------------------------


def test_cache_key_is_stable_under_dict_ordering() -> None:
    reordered = dict(reversed(list(MANIFEST.items())))
    reordered["nested"] = {"b": [1, 2], "a": 1}
    assert cache_key(reordered) == cache_key(MANIFEST)


def test_cache_key_is_short_hex_and_deterministic() -> None:
    key = cache_key(MANIFEST)
    assert len(key) == 32 and int(key, 16) >= 0
    assert key == cache_key(copy.deepcopy(MANIFEST))


def _variants() -> list[tuple[str, Any]]:
    changed: list[tuple[str, Any]] = []
    for name, value in MANIFEST.items():
        if isinstance(value, list):
            new: Any = [*value, "extra"]
        elif isinstance(value, dict):
            new = {**value, "a": 2}
        elif value is None:
            new = "0" * 64
        else:
            new = value + "x"
        changed.append((name, new))
    return changed


@pytest.mark.parametrize(("name", "value"), _variants())
def test_cache_key_changes_when_any_input_changes(name: str, value: Any) -> None:
    """Every input shapes the base; reusing a base built from other inputs would be wrong."""
    assert cache_key({**MANIFEST, name: value}) != cache_key(MANIFEST)


def test_cache_key_changes_when_an_input_is_added_or_list_order_changes() -> None:
    assert cache_key({**MANIFEST, "new": None}) != cache_key(MANIFEST)
    assert cache_key({**MANIFEST, "pockets": ["security", "updates"]}) != cache_key(MANIFEST)


# -- entries ---------------------------------------------------------------------------------------


def make_root(top: Path) -> Path:
    """A small base: files, a hard link, a symlink, an empty dir, a FIFO, odd modes and a sparse file."""
    root = top / "base"
    (root / "etc/apt").mkdir(parents=True)
    (root / "etc/os-release").write_text("NAME=Test\n")
    (root / "etc/apt/sources.list").write_text("deb http://mirror.test/ubuntu noble main\n")
    os.link(root / "etc/os-release", root / "etc/os-release.link")
    (root / "usr/bin").mkdir(parents=True)
    tool = root / "usr/bin/tool"
    tool.write_bytes(b"\x7fELF" + bytes(1000))
    tool.chmod(0o4755)
    os.symlink("../usr/bin/tool", root / "etc/tool")
    (root / "var/empty").mkdir(parents=True)
    os.mkfifo(root / "var/fifo")
    with open(root / "var/sparse", "wb") as fh:
        fh.truncate(1 << 20)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


@pytest.fixture
def cache(tmp_path: Path) -> BaseCache:
    return BaseCache(tmp_path / "cache", max_age_days=7)


def store(cache: BaseCache, root: Path, key: str = KEY) -> Entry:
    with cache.locked(key):
        entry = cache.store(key, root, MANIFEST, {"packages": {"bash": "5.2"}})
    assert entry is not None
    return entry


def lookup(cache: BaseCache, key: str = KEY, full: bool | None = None) -> Entry | None:
    with cache.locked(key):
        return cache.lookup(key, full=full)


def names(cache: BaseCache) -> list[str]:
    return sorted(p.name for p in cache.dir.iterdir() if not p.name.endswith(".lock"))


def test_a_stored_entry_is_a_read_only_tree_with_manifest_and_marker(cache: BaseCache, root: Path) -> None:
    entry = store(cache, root)
    assert names(cache) == [f"{KEY}.json", f"{KEY}.manifest", f"{KEY}.tree", f"{KEY}.used"]
    assert entry.tree.stat().st_mode & 0o222 == 0  # the top level is not writable
    assert (entry.root / "etc/os-release").read_text() == "NAME=Test\n"
    meta = json.loads(entry.meta.read_text())
    assert meta["format"] == 2 and meta["inputs"] == MANIFEST and meta["packages"] == {"bash": "5.2"}
    assert meta["paths"] == 15 and meta["size"] > 1 << 20


def test_the_tree_keeps_what_a_rootfs_needs(cache: BaseCache, root: Path) -> None:
    entry = store(cache, root)
    got = entry.root
    assert (got / "usr/bin/tool").stat().st_mode & 0o7777 == 0o4755
    assert (got / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert os.readlink(got / "etc/tool") == "../usr/bin/tool"
    assert (got / "etc/os-release").stat().st_ino == (got / "etc/os-release.link").stat().st_ino
    assert (got / "var/fifo").is_fifo() and (got / "var/empty").is_dir()
    assert (got / "var/sparse").stat().st_blocks * 512 < 1 << 20  # still sparse


def test_restore_copies_the_tree(cache: BaseCache, root: Path, tmp_path: Path) -> None:
    entry = store(cache, root)
    target = tmp_path / "ct/rootfs"
    cache.restore(entry, target)
    assert (target / "etc/apt/sources.list").read_text().startswith("deb ")
    assert os.readlink(target / "etc/tool") == "../usr/bin/tool"
    assert (target / "usr/bin/tool").stat().st_mode & 0o7777 == 0o4755
    (target / "etc/new").write_text("the copy is the container's own")
    assert lookup(cache) == entry  # the cached tree did not change


def test_a_valid_entry_is_found_quick_and_full(cache: BaseCache, root: Path) -> None:
    entry = store(cache, root)
    assert lookup(cache, full=False) == entry
    assert lookup(cache, full=True) == entry


def test_a_hit_records_its_last_use(cache: BaseCache, root: Path) -> None:
    entry = store(cache, root)
    os.utime(entry.used, (1000, 1000))
    assert entry.last_used() == 1000
    assert lookup(cache) == entry
    last = entry.last_used()
    assert last is not None and last > time.time() - 3600


def test_no_entry(cache: BaseCache) -> None:
    assert lookup(cache) is None
    assert names(cache) == []


@pytest.mark.parametrize("full", [False, True])
def test_content_changed_in_place_is_caught_by_full_only(cache: BaseCache, root: Path, full: bool) -> None:
    """Same size and mtime, other bytes: only hashing sees it; that is what --cache-verify full is for."""
    entry = store(cache, root)
    path = entry.root / "etc/os-release"
    st = path.stat()
    path.write_text("NAME=Evil\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (lookup(cache, full=full) is None) is full


def _relink(link: Path, target: str) -> None:
    link.unlink()
    os.symlink(target, link)


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: (r / "etc/os-release").write_text("NAME=Longer text\n"),
        lambda r: (r / "etc/os-release").unlink(),
        lambda r: (r / "etc/extra").write_text("x"),
        lambda r: (r / "usr/bin/tool").chmod(0o755),
        lambda r: os.chown(r / "usr/bin/tool", 1, 1),
        lambda r: _relink(r / "etc/tool", "/bin/sh"),
        lambda r: os.utime(r / "etc/apt/sources.list", (1, 1)),
        lambda r: shutil.rmtree(r / "var"),
    ],
    ids=["size", "removed", "added", "mode", "owner", "link-target", "mtime", "dir-removed"],
)
def test_a_changed_tree_fails_the_quick_check_and_is_removed(
    cache: BaseCache, root: Path, damage: Any, request: pytest.FixtureRequest
) -> None:
    if "owner" in request.node.name and os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    entry = store(cache, root)
    damage(entry.root)
    assert lookup(cache) is None
    assert names(cache) == []


def test_verify_mode_of_the_cache_is_the_default(cache: BaseCache, root: Path, tmp_path: Path) -> None:
    entry = store(cache, root)
    path = entry.root / "etc/os-release"
    st = path.stat()
    path.write_text("NAME=Evil\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert lookup(cache) == entry  # quick
    assert lookup(BaseCache(tmp_path / "cache", verify="full")) is None


def test_expired_entry_is_absent_and_removed(cache: BaseCache, root: Path) -> None:
    entry = store(cache, root)
    meta = json.loads(entry.meta.read_text())
    meta["created"] = time.time() - 8 * 86400
    entry.meta.write_text(json.dumps(meta))
    assert lookup(BaseCache(cache.root, max_age_days=0)) is not None  # 0: never expires
    assert lookup(cache) is None
    assert names(cache) == []


def test_a_stale_entry_is_rebuilt(cache: BaseCache, root: Path) -> None:
    entry = store(cache, root)
    meta = json.loads(entry.meta.read_text())
    entry.meta.write_text(json.dumps({**meta, "stale": True}))
    assert lookup(cache) is None


def test_other_keys_are_untouched(cache: BaseCache, root: Path) -> None:
    other = store(cache, root, "f" * 32)
    entry = store(cache, root)
    entry.meta.unlink()
    assert lookup(cache) is None
    assert lookup(cache, "f" * 32) == other


def test_an_old_format_entry_is_removed(cache: BaseCache) -> None:
    """A tarball entry from before the trees is not read: it is removed and the base rebuilt."""
    cache.dir.mkdir(parents=True)
    (cache.dir / f"{KEY}.tar.zst").write_bytes(b"old tarball")
    (cache.dir / f"{KEY}.json").write_text(json.dumps({"key": KEY, "created": time.time(), "sha256": "0" * 64}))
    assert cache.keys() == [KEY]
    assert lookup(cache) is None
    assert names(cache) == []


def test_partials_are_removed_under_the_lock(cache: BaseCache) -> None:
    """Leftovers of an interrupted store() must not survive into (or after) the next build."""
    cache.dir.mkdir(parents=True)
    tree = cache.dir / f"{KEY}.tree.partial"
    (tree / "rootfs/etc").mkdir(parents=True)
    tree.chmod(0o555)
    (cache.dir / f"{KEY}.json.partial").write_text("half")
    other = cache.dir / f"{'f' * 32}.tree.partial"
    other.mkdir()
    with cache.locked(KEY):
        assert not tree.exists() and not (cache.dir / f"{KEY}.json.partial").exists()
        (cache.dir / f"{KEY}.manifest.partial").write_text("written during the build, then interrupted")
    assert not (cache.dir / f"{KEY}.manifest.partial").exists()
    assert other.exists()  # another key's build may be running
    assert (cache.dir / f"{KEY}.lock").exists()


def test_partials_are_removed_when_the_build_fails(cache: BaseCache) -> None:
    with pytest.raises(RuntimeError), cache.locked(KEY):
        (cache.dir / f"{KEY}.json.partial").write_text("x")
        raise RuntimeError("bootstrap failed")
    assert not (cache.dir / f"{KEY}.json.partial").exists()


def test_locked_creates_the_cache_directory(tmp_path: Path) -> None:
    cache = BaseCache(tmp_path / "fresh/cache")
    with cache.locked(KEY):
        assert cache.dir.is_dir()


def test_an_entry_in_use_is_kept_and_not_replaced(cache: BaseCache, root: Path, tmp_path: Path) -> None:
    """A container whose overlay lower layer is the tree: removing it would break the container."""
    from vmbuilder_lxc import pins

    entry = store(cache, root)
    dest = tmp_path / "ct"
    dest.mkdir()
    pins.write_marker(dest, KEY, "overlay", entry.root)
    pins.pin(cache.root, KEY, dest)
    meta = json.loads(entry.meta.read_text())
    entry.meta.write_text(json.dumps({**meta, "stale": True}))
    assert lookup(cache) is None  # not used for new builds...
    assert entry.root.is_dir()  # ...but kept for the container
    with cache.locked(KEY):
        assert cache.store(KEY, root, MANIFEST, {}) is None
    assert cache.remove(entry) is False and entry.root.is_dir()


# -- publishing: a store() killed at any point leaves nothing a later build trusts ------------------


class Killed(BaseException):
    """Stands for SIGKILL: no cleanup code may run after it (locked()'s finally is skipped too)."""


@pytest.mark.parametrize("killed_at", ["pause", "first-rename", "second-rename", "third-rename"])
def test_a_store_killed_midway_is_never_trusted(
    cache: BaseCache, root: Path, monkeypatch: pytest.MonkeyPatch, killed_at: str
) -> None:
    replaced: list[str] = []
    real_replace = os.replace
    stop_after = {"first-rename": 0, "second-rename": 1, "third-rename": 2}.get(killed_at)

    def replace(src: Any, dst: Any) -> None:
        if stop_after is not None and len(replaced) == stop_after:
            raise Killed
        replaced.append(str(dst))
        real_replace(src, dst)

    def pause(stage: str) -> None:
        if killed_at == "pause":
            raise Killed

    cache.dir.mkdir(parents=True)
    monkeypatch.setattr(cache_module.os, "replace", replace)
    monkeypatch.setattr(cache_module, "pause_point", pause)
    with pytest.raises(Killed):
        cache.store(KEY, root, MANIFEST, {})
    monkeypatch.setattr(cache_module.os, "replace", real_replace)
    assert lookup(cache) is None  # the next build of the key
    assert names(cache) == []


def test_a_store_over_an_older_entry_never_lets_the_old_marker_vouch(
    cache: BaseCache, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(cache, root)
    (root / "etc/os-release").write_text("NAME=Newer\n")

    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(cache_module.os, "replace", full_disk)
    with pytest.raises(OSError), cache.locked(KEY):
        cache.store(KEY, root, MANIFEST, {})
    monkeypatch.undo()
    assert lookup(cache) is None
    assert names(cache) == []


def test_a_copy_that_differs_from_the_base_is_not_stored(
    cache: BaseCache, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is made from the base while cp copies it; the copy is checked against it."""
    real_run = cache_module.run

    def lossy_cp(argv: list[Any], **kwargs: Any) -> Any:
        result = real_run(argv, **kwargs)
        if argv[0] == "cp":
            (Path(argv[-1]) / "etc/os-release").chmod(0o600)  # a copy that lost a file's mode
        return result

    monkeypatch.setattr(cache_module, "run", lossy_cp)
    with pytest.raises(cache_module.BuildError, match="differs from the base.*etc/os-release"), cache.locked(KEY):
        cache.store(KEY, root, MANIFEST, {})
    monkeypatch.undo()
    assert lookup(cache) is None
    assert names(cache) == []
