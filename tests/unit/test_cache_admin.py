"""`vmbuilder lxc cache list|prune|verify|refresh`, on real entries of a tiny base in tmp_path."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from vmbuilder_lxc import cacheadmin, pins
from vmbuilder_lxc.cache import BaseCache, Entry
from vmbuilder_lxc.cli import main

A, B, C = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
def cache(tmp_path: Path) -> BaseCache:
    return BaseCache(tmp_path / "cache")


def store(cache: BaseCache, key: str, suite: str = "noble", used_days_ago: float = 0, kib: int = 4) -> Entry:
    root = cache.root.parent / f"root-{key}"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text(f"VERSION_CODENAME={suite}\n")
    (root / "blob").write_bytes(bytes(kib * 1024))
    inputs = {"distro": "ubuntu", "suite": suite, "arch": "amd64", "variant": "minbase"}
    with cache.locked(key):
        entry = cache.store(key, root, inputs, {})
    assert entry is not None
    when = time.time() - used_days_ago * 86400
    os.utime(entry.used, (when, when))
    return entry


def use(cache: BaseCache, entry: Entry, dest: Path) -> None:
    """A container whose base is the entry (what --backing overlay records)."""
    dest.mkdir(parents=True)
    pins.write_marker(dest, entry.key, "overlay", entry.root)
    pins.pin(cache.root, entry.key, dest)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["lxc", "cache", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_entry_and_its_users(
    cache: BaseCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = store(cache, A, used_days_ago=3)
    store(cache, B, suite="jammy")
    use(cache, a, tmp_path / "ct1")
    code, out, _ = run(capsys, "list", "--cache-dir", str(cache.root), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["action"] == "list" and [e["key"] for e in data["entries"]] == [A, B]
    first = data["entries"][0]
    assert (first["suite"], first["arch"], first["variant"], first["status"]) == ("noble", "amd64", "minbase", "ok")
    assert first["size"] > 4096 and first["age_days"] == 0 and 2.9 < first["last_used_days"] < 3.1
    assert first["users"] == [str(tmp_path / "ct1")] and data["entries"][1]["users"] == []
    code, out, _ = run(capsys, "list", "--cache-dir", str(cache.root))
    assert code == 0 and A in out and "jammy" in out and str(tmp_path / "ct1") in out


def test_list_of_an_empty_or_absent_cache(cache: BaseCache, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "list", "--cache-dir", str(cache.root))[1].startswith("no cached bases")
    cache.dir.mkdir(parents=True)
    assert run(capsys, "list", "--cache-dir", str(cache.root))[1].startswith("no cached bases")


def test_prune_by_age_keeps_an_entry_in_use(cache: BaseCache, tmp_path: Path) -> None:
    old_used = store(cache, A, used_days_ago=40)
    store(cache, B, used_days_ago=40)
    store(cache, C, used_days_ago=1)
    use(cache, old_used, tmp_path / "ct")
    summary, lines = cacheadmin.prune(cache, 30, None)
    assert [r["key"] for r in summary["removed"]] == [B]
    assert [k["key"] for k in summary["kept_in_use"]] == [A]
    assert old_used.root.is_dir() and cache.keys() == [A, C]
    assert any(line.startswith(f"kept {A}: in use by {tmp_path / 'ct'}") for line in lines)


def test_prune_by_size_removes_least_recently_used_first(cache: BaseCache) -> None:
    store(cache, A, used_days_ago=5, kib=64)
    store(cache, B, used_days_ago=9, kib=64)
    store(cache, C, used_days_ago=1, kib=64)
    summary, _ = cacheadmin.prune(cache, None, 150 * 1024)
    assert [r["key"] for r in summary["removed"]] == [B]
    assert cache.keys() == [A, C]


def test_prune_removes_a_pin_whose_container_is_gone(cache: BaseCache, tmp_path: Path) -> None:
    entry = store(cache, A, used_days_ago=40)
    use(cache, entry, tmp_path / "ct")
    (tmp_path / "ct" / pins.MARKER).unlink()  # the container was rebuilt on another base / removed
    summary, _ = cacheadmin.prune(cache, 30, None)
    assert [r["key"] for r in summary["removed"]] == [A]


def test_prune_removes_old_format_and_incomplete_entries(cache: BaseCache) -> None:
    cache.dir.mkdir(parents=True)
    (cache.dir / f"{A}.tar.zst").write_bytes(b"old")
    (cache.dir / f"{A}.json").write_text(json.dumps({"key": A, "sha256": "0" * 64}))
    summary, _ = cacheadmin.prune(cache, 365, None)
    assert [r["reason"] for r in summary["removed"]] == ["old-format"]
    assert sorted(p.name for p in cache.dir.iterdir()) == [f"{A}.lock"]


def test_verify_names_and_removes_a_bad_entry(cache: BaseCache, capsys: pytest.CaptureFixture[str]) -> None:
    store(cache, A)
    bad = store(cache, B)
    path = bad.root / "etc/os-release"
    st = path.stat()
    path.write_text("VERSION_CODENAME=nobel\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a quick check would not see it
    code, out, _ = run(capsys, "verify", "--cache-dir", str(cache.root), "--json")
    data = json.loads(out)
    assert code == 1 and data["verified"] == [A]
    assert data["bad"] == [{"key": B, "problem": "etc/os-release: content does not match its SHA-256",
                            "action": "removed"}]  # fmt: skip
    assert cache.keys() == [A]
    code, out, _ = run(capsys, "verify", "--cache-dir", str(cache.root))
    assert code == 0 and "1 entries verified, 0 bad" in out


def test_verify_marks_a_bad_entry_in_use_stale(cache: BaseCache, tmp_path: Path) -> None:
    entry = store(cache, A)
    use(cache, entry, tmp_path / "ct")
    (entry.root / "blob").write_bytes(b"x")
    summary, _, ok = cacheadmin.verify(cache)
    assert not ok and summary["bad"][0]["action"] == "marked stale (in use)"
    assert entry.root.is_dir()
    with cache.locked(A):
        assert cache.lookup(A) is None  # no new build trusts it


def test_refresh_marks_an_old_entry_in_use_stale(
    cache: BaseCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry a container uses cannot be replaced: it is marked stale, as before (test_cache_refresh.py
    covers the re-bootstrap itself)."""
    old, new = store(cache, A), store(cache, B)
    use(cache, old, tmp_path / "ct")
    meta = json.loads(old.meta.read_text())
    old.meta.write_text(json.dumps({**meta, "created": time.time() - 10 * 86400}))
    code, out, _ = run(capsys, "refresh", "--older-than", "7", "--cache-dir", str(cache.root), "--json")
    summary = json.loads(out)
    assert code == 0 and [s["key"] for s in summary["stale"]] == [A] and summary["refreshed"] == []
    with cache.locked(A):
        assert cache.lookup(A) is None
    with cache.locked(B):
        assert cache.lookup(B) == new


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "unknown cache action 'nope'"),
        (["prune"], "cache prune needs a limit"),
        (["prune", "--max-size", "lots"], "--max-size 'lots' is not a size"),
        (["prune", "--max-age", "-1"], "'-1' is not a number of days"),
        (["refresh"], "cache refresh needs --older-than DAYS"),
        (["list", "--max-age", "3"], "--max-age applies to `cache prune` only"),
        (["prune", "--max-age", "3", "--dry-run"], "--dry-run applies to `cache refresh` only"),
        (["list", "--cache-dir", "/etc/hostname"], "--cache-dir /etc/hostname is not a directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    cache: BaseCache, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    cache.dir.mkdir(parents=True)
    extra = [] if "--cache-dir" in argv else ["--cache-dir", str(cache.root)]
    code, out, err = run(capsys, *argv, *extra)
    assert code == 2 and out == ""
    assert err.startswith(f"vmbuilder: error: {message}") and err.count("\n") == 1, err


@pytest.mark.parametrize(("text", "size"), [("10G", 10 << 30), ("500m", 500 << 20), ("1.5K", 1536), ("42", 42)])
def test_sizes(text: str, size: int) -> None:
    assert cacheadmin.parse_size(text) == size
