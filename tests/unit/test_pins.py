"""pins.py: which containers use a cached base; stale pins never block a prune."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuilder_lxc import pins

KEY = "0123456789abcdef0123456789abcdef"


def _container(path: Path, key: str = KEY) -> Path:
    path.mkdir(parents=True)
    pins.write_marker(path, key, "overlay", Path("/cache/bases/x"))
    return path


def test_pin_reports_a_live_user(tmp_path: Path) -> None:
    dest = _container(tmp_path / "lxc" / "web")
    link = pins.pin(tmp_path / "cache", KEY, dest)
    assert link.is_symlink() and os.readlink(link) == str(dest)
    assert pins.users(tmp_path / "cache", KEY) == [dest]
    assert pins.pinned_keys(tmp_path / "cache") == [KEY]


def test_pin_is_idempotent_and_named_by_a_hash(tmp_path: Path) -> None:
    dest = _container(tmp_path / "we ird\nname")
    a = pins.pin(tmp_path / "cache", KEY, dest)
    b = pins.pin(tmp_path / "cache", KEY, dest)
    assert a == b and len(a.name) == 32 and a.name.isalnum()
    assert list((tmp_path / "cache" / "pins" / KEY).iterdir()) == [a]


def test_unpin(tmp_path: Path) -> None:
    dest = _container(tmp_path / "web")
    pins.pin(tmp_path / "cache", KEY, dest)
    pins.unpin(tmp_path / "cache", KEY, dest)
    pins.unpin(tmp_path / "cache", KEY, dest)  # twice is fine
    assert pins.users(tmp_path / "cache", KEY) == []
    assert not (tmp_path / "cache" / "pins" / KEY).exists()


def test_removed_container_drops_its_pin(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    pins.pin(tmp_path / "cache", KEY, gone)
    kept = _container(tmp_path / "kept")
    pins.pin(tmp_path / "cache", KEY, kept)
    assert pins.users(tmp_path / "cache", KEY) == [kept]
    assert len(list((tmp_path / "cache" / "pins" / KEY).iterdir())) == 1


def test_rebuilt_on_another_base_drops_the_pin(tmp_path: Path) -> None:
    dest = _container(tmp_path / "web", key="f" * 32)
    pins.pin(tmp_path / "cache", KEY, dest)
    assert pins.users(tmp_path / "cache", KEY) == []
    assert not (tmp_path / "cache" / "pins" / KEY).exists()


def test_unreadable_marker_is_not_a_user(tmp_path: Path) -> None:
    dest = tmp_path / "web"
    dest.mkdir()
    (dest / pins.MARKER).write_text("{not json")
    pins.pin(tmp_path / "cache", KEY, dest)
    assert pins.users(tmp_path / "cache", KEY) == []


def test_no_pins_at_all(tmp_path: Path) -> None:
    assert pins.users(tmp_path, KEY) == []
    assert pins.pinned_keys(tmp_path) == []


def test_a_bad_key_is_refused(tmp_path: Path) -> None:
    for key in ("", "../x", ".hidden"):
        with pytest.raises(ValueError):
            pins.pin(tmp_path, key, tmp_path / "d")
