"""`vmbuilder lxc cache refresh` bootstraps an old entry again and a new build hits the fresh one.

The session's noble entry is copied into a cache of this test's own (so the refresh touches no
other test's entry), its marker is aged by ten days, and `cache refresh --older-than 7` rebuilds it
from its recorded request (one cold bootstrap). The entry keeps its key, gets a new creation time
and tree, and the next build with the same options is a cache hit on it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Builder, vmbuilder_command

BASE = ("--suite", "noble", "--network", "none")


@pytest.fixture(scope="module")
def own_cache(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A cache holding a copy of the session's noble entry, aged ten days: (key, cache dir)."""
    top = tmp_path_factory.mktemp("refresh")
    key = builder.run(*BASE, "-d", str(top / "seed")).check().summary["cache"]["key"]
    bases = top / "cache" / "bases"
    bases.mkdir(parents=True)
    for suffix in (".tree", ".manifest", ".json"):
        subprocess.run(["cp", "-a", str(builder.cache_dir / "bases" / f"{key}{suffix}"), str(bases)], check=True)
    marker = bases / f"{key}.json"
    meta = json.loads(marker.read_text())
    marker.write_text(json.dumps({**meta, "created": time.time() - 10 * 86400}))
    return key, top / "cache"


def refresh(cache: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([vmbuilder_command(), "lxc", "cache", "refresh", "--older-than", "7", *args, "--json",
                           "--cache-dir", str(cache)], capture_output=True, text=True, timeout=900)  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_refresh_rebootstraps_an_old_entry_and_a_build_hits_it(own_cache: tuple[str, Path], tmp_path: Path) -> None:
    key, cache = own_cache
    marker = cache / "bases" / f"{key}.json"
    old_tree_inode = (cache / "bases" / f"{key}.tree").stat().st_ino

    code, planned, err = refresh(cache, "--dry-run")
    assert code == 0, err
    assert [p["key"] for p in planned["planned"]] == [key]
    assert json.loads(marker.read_text())["created"] < time.time() - 9 * 86400  # unchanged

    code, summary, err = refresh(cache)
    assert code == 0, f"{summary}\n{err[-3000:]}"
    assert [r["key"] for r in summary["refreshed"]] == [key] and summary["failed"] == []
    meta = json.loads(marker.read_text())
    assert time.time() - meta["created"] < 3600 and not meta.get("stale")
    assert meta["request"]["hook_dirs"] == []
    assert (cache / "bases" / f"{key}.tree").stat().st_ino != old_tree_inode
    assert not list(cache.glob(".refresh-*")) and not list((cache / "bases").glob("*.partial"))

    build = Builder(cache).run(*BASE, "-d", str(tmp_path / "ct")).check()
    assert build.summary["cache"]["hit"] is True and build.summary["cache"]["key"] == key
