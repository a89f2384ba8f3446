"""The base-system cache: keys, and what counts as a usable entry.

store() and restore() run tar and are covered by the integration tests; here the cache directory
is a fake file system and entries are written by hand.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

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
TARBALL = b"pretend this is a tarball"


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


@pytest.fixture
def cache(fs: FakeFilesystem) -> BaseCache:
    fs.create_dir("/var/cache/vmbuilder-lxc/bases")
    return BaseCache(Path("/var/cache/vmbuilder-lxc"), max_age_days=7)


def write_entry(
    cache: BaseCache,
    key: str = KEY,
    *,
    suffix: str = ".tar",
    data: bytes = TARBALL,
    sha256: str | None = None,
    age_days: float = 0,
    meta: str | None = None,
) -> Entry:
    tarball = cache.dir / f"{key}{suffix}"
    tarball.write_bytes(data)
    record = {
        "key": key,
        "created": time.time() - age_days * 86400,
        "sha256": sha256 or hashlib.sha256(data).hexdigest(),
        "inputs": MANIFEST,
    }
    (cache.dir / f"{key}.json").write_text(json.dumps(record) if meta is None else meta)
    return Entry(key, tarball, cache.dir / f"{key}.json")


def test_valid_entry_is_found(cache: BaseCache) -> None:
    written = write_entry(cache)
    with cache.locked(KEY):
        found = cache.lookup(KEY)
    assert found == written
    assert found is not None and found.load_meta() is not None


def test_zstd_tarball_is_preferred_name(cache: BaseCache) -> None:
    written = write_entry(cache, suffix=".tar.zst")
    assert cache.lookup(KEY) == written


def test_no_entry(cache: BaseCache) -> None:
    assert cache.lookup(KEY) is None
    assert list(cache.dir.iterdir()) == []


def test_entry_without_json_is_absent_and_removed(cache: BaseCache) -> None:
    """A build killed between writing the tarball and the JSON leaves half an entry."""
    entry = write_entry(cache)
    entry.meta.unlink()
    assert cache.lookup(KEY) is None
    assert not entry.tarball.exists()


def test_json_without_tarball_is_absent_and_removed(cache: BaseCache) -> None:
    entry = write_entry(cache)
    entry.tarball.unlink()
    assert cache.lookup(KEY) is None
    assert not entry.meta.exists()


@pytest.mark.parametrize("meta", ["{not json", "[1, 2]", ""])
def test_unreadable_json_is_absent_and_removed(cache: BaseCache, meta: str) -> None:
    entry = write_entry(cache, meta=meta)
    assert cache.lookup(KEY) is None
    assert not entry.tarball.exists() and not entry.meta.exists()


def test_wrong_digest_is_absent_and_removed(cache: BaseCache) -> None:
    """A truncated or corrupted tarball must be rebuilt, never unpacked into a guest."""
    entry = write_entry(cache, sha256="f" * 64)
    assert cache.lookup(KEY) is None
    assert not entry.tarball.exists() and not entry.meta.exists()


def test_tarball_changed_after_it_was_stored(cache: BaseCache) -> None:
    entry = write_entry(cache)
    entry.tarball.write_bytes(TARBALL[:-1])
    assert cache.lookup(KEY) is None


def test_expired_entry_is_absent_and_removed(cache: BaseCache) -> None:
    entry = write_entry(cache, age_days=8)
    assert cache.lookup(KEY) is None
    assert not entry.tarball.exists() and not entry.meta.exists()


def test_entry_within_max_age_is_kept(cache: BaseCache) -> None:
    write_entry(cache, age_days=6.9)
    assert cache.lookup(KEY) is not None


def test_max_age_zero_never_expires(fs: FakeFilesystem) -> None:
    cache = BaseCache(Path("/c"), max_age_days=0)
    cache.dir.mkdir(parents=True)
    write_entry(cache, age_days=3650)
    assert cache.lookup(KEY) is not None


def test_other_keys_are_untouched(cache: BaseCache) -> None:
    other = write_entry(cache, "f" * 32)
    write_entry(cache, sha256="0" * 64)
    assert cache.lookup(KEY) is None
    assert other.tarball.exists() and other.meta.exists()


def test_partials_are_removed_under_the_lock(cache: BaseCache) -> None:
    """Leftovers of an interrupted store() must not survive into (or after) the next build."""
    for name in (f"{KEY}.tarball.partial", f"{KEY}.json.partial"):
        (cache.dir / name).write_text("half")
    other = cache.dir / f"{'f' * 32}.tarball.partial"
    other.write_text("someone else's")
    with cache.locked(KEY):
        assert not (cache.dir / f"{KEY}.tarball.partial").exists()
        assert not (cache.dir / f"{KEY}.json.partial").exists()
        (cache.dir / f"{KEY}.tarball.partial").write_text("written during the build, then interrupted")
    assert not (cache.dir / f"{KEY}.tarball.partial").exists()
    assert other.exists()  # another key's build may be running
    assert (cache.dir / f"{KEY}.lock").exists()


def test_partials_are_removed_when_the_build_fails(cache: BaseCache) -> None:
    with pytest.raises(RuntimeError), cache.locked(KEY):
        (cache.dir / f"{KEY}.json.partial").write_text("x")
        raise RuntimeError("bootstrap failed")
    assert not (cache.dir / f"{KEY}.json.partial").exists()


def test_locked_creates_the_cache_directory(fs: FakeFilesystem) -> None:
    cache = BaseCache(Path("/fresh/cache"))
    with cache.locked(KEY):
        assert cache.dir.is_dir()


@pytest.mark.parametrize(("zstd", "suffix"), [(True, ".tar.zst"), (False, ".tar")])
def test_entry_names(cache: BaseCache, monkeypatch: pytest.MonkeyPatch, zstd: bool, suffix: str) -> None:
    """A new entry is compressed exactly when zstd is installed; the marker is always KEY.json."""
    monkeypatch.setattr(cache_module.shutil, "which", lambda name: f"/usr/bin/{name}" if zstd else None)
    entry = cache.entry(KEY)
    assert entry.meta == cache.dir / f"{KEY}.json"
    assert entry.tarball == cache.dir / f"{KEY}{suffix}"


@pytest.mark.parametrize("zstd", [True, False])
@pytest.mark.parametrize("existing", [".tar", ".tar.zst"])
def test_an_existing_entry_keeps_its_suffix(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch, zstd: bool, existing: str
) -> None:
    """An entry stored on a host with(out) zstd is found again after zstd was (un)installed."""
    monkeypatch.setattr(cache_module.shutil, "which", lambda name: f"/usr/bin/{name}" if zstd else None)
    (cache.dir / f"{KEY}{existing}").write_bytes(TARBALL)
    assert cache.entry(KEY).tarball == cache.dir / f"{KEY}{existing}"


# -- publishing: a store() killed at any point leaves nothing a later build trusts ------------------


class Killed(BaseException):
    """Stands for SIGKILL: no cleanup code may run after it (locked()'s finally is skipped too)."""


def _fake_tar(argv: list[Any], **kwargs: Any) -> None:
    target = Path(argv[argv.index("--file") + 1])
    target.write_bytes(TARBALL)


@pytest.mark.parametrize("killed_at", ["pause", "first-rename", "second-rename"])
def test_a_store_killed_midway_is_never_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at: str
) -> None:
    import os

    from vmbuilder_lxc import cache as cache_module

    monkeypatch.setattr(cache_module, "run", _fake_tar)
    replaced: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if killed_at == "first-rename" or (killed_at == "second-rename" and replaced):
            raise Killed
        replaced.append(str(dst))
        real_replace(src, dst)

    def pause(stage: str) -> None:
        if killed_at == "pause":
            raise Killed

    monkeypatch.setattr(cache_module.os, "replace", replace)
    monkeypatch.setattr(cache_module, "pause_point", pause)
    cache = BaseCache(tmp_path)
    cache.dir.mkdir(parents=True)
    with pytest.raises(Killed):
        cache.store(KEY, tmp_path, MANIFEST, {})
    monkeypatch.setattr(cache_module.os, "replace", real_replace)
    with cache.locked(KEY):  # the next build of the key
        assert cache.lookup(KEY) is None
    assert sorted(p.name for p in cache.dir.iterdir()) == [f"{KEY}.lock"]


def test_a_complete_store_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmbuilder_lxc import cache as cache_module

    monkeypatch.setattr(cache_module, "run", _fake_tar)
    cache = BaseCache(tmp_path)
    with cache.locked(KEY):
        cache.store(KEY, tmp_path, MANIFEST, {})
    with cache.locked(KEY):
        entry = cache.lookup(KEY)
    assert entry is not None and entry.tarball.read_bytes() == TARBALL
