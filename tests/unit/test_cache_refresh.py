"""`vmbuilder lxc cache refresh`: old entries are bootstrapped again from their recorded request.

The entries are real (store() on a tiny tree in tmp_path); the child build is faked at the
cacherefresh.run_build seam by one that does what a refreshing build does: under the key's lock,
BaseCache.refreshing() says yes, and store() replaces the entry with a new tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import cacherefresh
from vmbuilder_lxc.cache import REFRESH_ENV, BaseCache, Entry, request_record
from vmbuilder_lxc.cli import main
from vmbuilder_lxc.log import UserError

A, B = "a" * 32, "b" * 32
INPUTS = {
    "distro": "ubuntu",
    "suite": "jammy",
    "arch": "amd64",
    "variant": "minbase",
    "mirror": "http://127.0.0.1:9/ubuntu",
    "security_mirror": "http://127.0.0.1:9/ubuntu",
    "components": ["main", "universe"],
    "addpkg": ["vim"],
    "removepkg": [],
    "backend": "mmdebstrap",
    "keyring": "0" * 64,
    "seedfile": None,
    "hooks": cacherefresh.NO_HOOKS,
}


@pytest.fixture
def cache(tmp_path: Path) -> BaseCache:
    return BaseCache(tmp_path / "cache")


def store(cache: BaseCache, key: str, days_old: float, text: str = "old", **extra: Any) -> Entry:
    root = cache.root.parent / f"root-{key}-{text}"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/issue").write_text(text + "\n")
    with cache.locked(key):
        entry = cache.store(key, root, INPUTS, extra)
    assert entry is not None
    meta = json.loads(entry.meta.read_text())
    entry.meta.write_text(json.dumps({**meta, "created": time.time() - days_old * 86400}))
    return entry


class FakeBuild:
    """What the child `vmbuilder` does for a refresh, or a failure with the tail of its output."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, cache: BaseCache, key: str, argv: list[str]) -> tuple[int, list[str]]:
        self.calls.append((key, argv))
        if self.fail:
            return 1, ["E: Failed to fetch http://127.0.0.1:9/ubuntu/dists/jammy/InRelease", "vmbuilder: error: boom"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(REFRESH_ENV, key)
            with cache.locked(key):
                assert cache.refreshing(key, INPUTS)
                root = cache.root.parent / f"fresh-{key}"
                (root / "etc").mkdir(parents=True)
                (root / "etc/issue").write_text("new\n")
                assert cache.store(key, root, INPUTS, {}) is not None
        return 0, []


def test_request_argv_gives_the_build_options_back() -> None:
    request = request_record(Path("/k/keyring.gpg"), "/s/seed", ["/h"])
    meta = {"inputs": {**INPUTS, "seedfile": "1" * 64, "hooks": "2" * 64}, "request": request}
    assert cacherefresh.request_argv(meta) == [
        "ubuntu", "--suite", "jammy", "--arch", "amd64", "--variant", "minbase",
        "--mirror", "http://127.0.0.1:9/ubuntu", "--security-mirror", "http://127.0.0.1:9/ubuntu",
        "--components", "main", "--components", "universe", "--addpkg", "vim", "--bootstrapper", "mmdebstrap",
        "--keyring", "/k/keyring.gpg", "--seedfile", "/s/seed", "--hook-dir", "/h",
    ]  # fmt: skip


def test_request_argv_of_an_entry_from_before_the_request_was_recorded() -> None:
    argv = cacherefresh.request_argv({"inputs": {**INPUTS, "variant": None, "keyring": "insecure"}})
    assert isinstance(argv, list) and "--variant" not in argv and "--keyring" not in argv
    assert argv[-1] == "--insecure"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"seedfile": "1" * 64}, "--seedfile whose path"),
        ({"hooks": "2" * 64}, "hooks whose --hook-dir"),
        ({"suite": None}, "does not record the suite"),
    ],
)
def test_request_argv_says_what_it_lacks(change: dict[str, Any], why: str) -> None:
    argv = cacherefresh.request_argv({"inputs": {**INPUTS, **change}})
    assert isinstance(argv, str) and why in argv


def test_old_entries_are_rebuilt_and_replaced_fresh_ones_kept(cache: BaseCache) -> None:
    old, fresh = store(cache, A, days_old=10), store(cache, B, days_old=1)
    build = FakeBuild()
    summary, lines, ok = cacherefresh.refresh(cache, 7, rebuild=build)
    assert ok and [r["key"] for r in summary["refreshed"]] == [A] and summary["failed"] == []
    assert [key for key, _ in build.calls] == [A]
    assert build.calls[0][1][:3] == ["ubuntu", "--suite", "jammy"]
    with cache.locked(A):
        entry = cache.lookup(A)
    assert entry is not None and (entry.root / "etc/issue").read_text() == "new\n"
    assert time.time() - json.loads(old.meta.read_text())["created"] < 3600
    assert (fresh.root / "etc/issue").read_text() == "old\n"
    assert lines[-1] == "1 entries refreshed, 0 in use marked stale, 0 failed"
    assert not list(cache.dir.glob("*.partial"))


def test_a_failed_rebuild_is_exit_1_with_its_tail_and_keeps_the_old_entry(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store(cache, A, days_old=10)
    monkeypatch.setattr(cacherefresh, "run_build", FakeBuild(fail=True))
    code = main(["lxc", "cache", "refresh", "--older-than", "7", "--cache-dir", str(cache.root)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAILED {A} (jammy/amd64): the build failed with exit code 1; the old entry is kept" in out
    assert "    | vmbuilder: error: boom" in out
    with cache.locked(A):
        entry = cache.lookup(A)  # still valid (refresh does not mark it stale)
    assert entry is not None and (entry.root / "etc/issue").read_text() == "old\n"


def test_a_rebuild_that_did_not_replace_the_entry_is_a_failure(cache: BaseCache) -> None:
    store(cache, A, days_old=10)
    summary, lines, ok = cacherefresh.refresh(cache, 7, rebuild=lambda c, k, a: (0, []))
    assert not ok and "did not replace" in summary["failed"][0]["error"]


def test_an_entry_that_cannot_be_rebuilt_fails_and_is_kept(cache: BaseCache) -> None:
    store(cache, A, days_old=10)
    meta = json.loads(cache.entry(A).meta.read_text())
    cache.entry(A).meta.write_text(json.dumps({**meta, "inputs": {**INPUTS, "seedfile": "1" * 64}}))
    build = FakeBuild()
    summary, _, ok = cacherefresh.refresh(cache, 7, rebuild=build)
    assert not ok and build.calls == [] and "--seedfile" in summary["failed"][0]["error"]


def test_dry_run_lists_the_commands_and_changes_nothing(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = store(cache, A, days_old=10)
    before = entry.meta.read_text()
    build = FakeBuild()
    monkeypatch.setattr(cacherefresh, "run_build", build)
    argv = ["lxc", "cache", "refresh", "--older-than", "7", "--dry-run", "--json", "--cache-dir", str(cache.root)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dry_run"] and summary["planned"][0]["key"] == A and summary["refreshed"] == []
    assert summary["planned"][0]["command"][:4] == ["vmbuilder", "lxc", "ubuntu", "--suite"]
    assert build.calls == [] and entry.meta.read_text() == before


def test_the_refreshing_build_skips_only_its_key_and_refuses_another(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(cache, A, days_old=10)
    assert not cache.refreshing(A, INPUTS)  # an ordinary build
    monkeypatch.setenv(REFRESH_ENV, A)
    assert cache.refreshing(A, INPUTS)
    with pytest.raises(UserError, match=r"cannot be refreshed: .*\(arch, tool changed\)"):
        cache.refreshing(B, {**INPUTS, "arch": "arm64", "tool": "9.9"})


def test_the_child_build_runs_in_a_scratch_dest_that_is_removed(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.dir.mkdir(parents=True)
    seen: dict[str, Any] = {}
    real_run = subprocess.run

    def fake_run(command: list[str], **kwargs: Any) -> Any:
        if command[0] == "rm":
            return real_run(command, check=False)
        seen.update(command=command, env=kwargs["env"])
        dest = Path(command[command.index("-d") + 1])
        dest.mkdir()
        return type("P", (), {"returncode": 3, "stdout": "a\n\nb\n"})()

    monkeypatch.setattr(cacherefresh.subprocess, "run", fake_run)
    code, tail = cacherefresh.run_build(cache, A, ["ubuntu", "--suite", "jammy"])
    assert (code, tail) == (3, ["a", "b"])
    assert seen["env"][REFRESH_ENV] == A
    assert seen["command"][1:6] == ["-m", "vmbuilder_lxc", "lxc", "ubuntu", "--suite"]
    assert "--backing" in seen["command"] and str(cache.root) in seen["command"]
    assert [p.name for p in cache.root.iterdir()] == ["bases"]  # the scratch directory is gone


def test_scratch_left_by_a_killed_refresh_is_removed_a_live_ones_kept(cache: BaseCache) -> None:
    cache.dir.mkdir(parents=True)
    dead, live = cache.root / ".refresh-dead", cache.root / ".refresh-live"
    for scratch, pid in ((dead, 2**22 + 1), (live, os.getpid())):  # above pid_max: no such process
        (scratch / "dest/rootfs/etc").mkdir(parents=True)
        (scratch / "pid").write_text(f"{pid}\n")
    summary, _, ok = cacherefresh.refresh(cache, 7, rebuild=FakeBuild())
    assert ok and not dead.exists() and live.is_dir()
