"""`vmbuilder lxc cache prune` keeps a base that a container uses, and removes it once it is gone.

The session's noble entry is copied into a cache of this test's own (so pruning it touches no other
test), an `--backing overlay` container is built from it (a hit: seconds), and prune --max-age 0,
which would remove every entry, keeps that one; after the container is removed it goes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Builder, vmbuilder_command

BASE = ("--suite", "noble", "--network", "none")


def cache_cmd(cache: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run([vmbuilder_command(), "lxc", "cache", *args, "--json", "--cache-dir", str(cache)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def own_cache(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A cache holding a copy of the session's noble entry: (key, cache dir)."""
    top = tmp_path_factory.mktemp("prune")
    key = builder.run(*BASE, "-d", str(top / "seed")).check().summary["cache"]["key"]
    bases = top / "cache" / "bases"
    bases.mkdir(parents=True)
    for suffix in (".tree", ".manifest", ".json"):
        subprocess.run(["cp", "-a", str(builder.cache_dir / "bases" / f"{key}{suffix}"), str(bases)], check=True)
    return key, top / "cache"


def test_prune_keeps_a_base_in_use(own_cache: tuple[str, Path], tmp_path: Path) -> None:
    key, cache = own_cache
    dest = tmp_path / "ct"
    build = Builder(cache).run(*BASE, "--backing", "overlay", "-d", str(dest)).check()
    assert build.summary["cache"]["hit"] is True and build.summary["cache"]["key"] == key

    listed = {e["key"]: e for e in cache_cmd(cache, "list")["entries"]}
    assert listed[key]["users"] == [str(dest)]

    pruned = cache_cmd(cache, "prune", "--max-age", "0")
    assert [e["key"] for e in pruned["kept_in_use"]] == [key] and pruned["removed"] == []
    assert (cache / "bases" / f"{key}.tree" / "rootfs" / "etc").is_dir()

    shutil.rmtree(dest)  # the container is gone: its pin no longer counts
    pruned = cache_cmd(cache, "prune", "--max-age", "0")
    assert [e["key"] for e in pruned["removed"]] == [key]
    assert not (cache / "bases" / f"{key}.tree").exists()
