"""Issue 12, the fault matrix: SIGINT, SIGTERM and SIGKILL at every stage of a build.

Stages: bootstrap (inside mmdebstrap, a fresh cache key), cache store (the tree written, not yet
published), configure (in the chroot, its mounts in place), export (every format written, none
moved), move into place (the new build swapped in, the old one not yet removed) and deploy (before
--libvirt's define). The build is stopped at a stage by a `setup` hook that waits inside mmdebstrap,
or by the test-only VMBUILDER_TEST_PAUSE_AT (vmbuilder_lxc.run.pause_point), and then signalled.

Each build replaces an earlier one (--overwrite). Afterwards: the exit code is 128 + the signal
(SIGKILL: killed), no process of the build is left (the reaper kills them after a SIGKILL), no
mount, DEST is the earlier build untouched or the new one complete, no build directory is left
(after SIGKILL one may be, and the next build removes it), no cache entry a later build would
trust was left by the interrupted one, and the next build to the same DEST succeeds from the cache.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Build, Builder, Domain, leftovers, mounts_mentioning
from .faultlib import (
    background,
    cache_key_of,
    error_lines,
    fresh_key_hooks,
    trusted_entry,
    wait_for_file,
    wait_until_gone,
)

BASE = ("--suite", "noble", "--network", "none")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
STAGES = ("bootstrap", "cache-store", "configure", "export", "move", "deploy")
# What a build interrupted at each stage leaves DEST as: the earlier build, or the new one.
DEST_AFTER = {"bootstrap": "earlier", "cache-store": "earlier", "configure": "earlier", "export": "earlier",
              "move": "new", "deploy": "new"}  # fmt: skip
SENTINEL = "etc/vmbuilder-test-earlier-build"


def stage_args(stage: str, dest: Path, libvirt: str | None) -> list[str]:
    """Options a stage needs besides the pause (the same for the interrupted build and the next one)."""
    args = [*BASE, "--overwrite", "-d", str(dest)]
    if stage == "export":
        args += ["--export", "tar"]
    if stage == "deploy":
        assert libvirt
        args += ["--libvirt", libvirt]
    return args


def earlier_build(builder: Builder, dest: Path, args: list[str]) -> str:
    """DEST holds a complete earlier build with a sentinel file; returns its build id."""
    if not (dest / "vmbuilder-lxc.json").exists():
        builder.run(*args).check()
    build_id = str(uuid.uuid4())
    (dest / "rootfs" / SENTINEL).write_text(build_id)
    return build_id


def assert_dest(dest: Path, expect: str, build_id: str) -> None:
    marker = json.loads((dest / "vmbuilder-lxc.json").read_text())
    assert marker["status"] == "ok"
    assert (dest / "rootfs/etc/os-release").is_file()
    sentinel = dest / "rootfs" / SENTINEL
    if expect == "earlier":
        assert sentinel.read_text() == build_id, "DEST is not the earlier build, untouched"
    else:
        assert not sentinel.exists(), "DEST is still the earlier build"


def export_partials(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".export."))


def exports_of(parent: Path, name: str) -> dict[str, tuple[int, int]]:
    """The export outputs of NAME in PARENT, each with its inode and mtime (to see them replaced)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parent.glob(f"{name}.*")}


@pytest.mark.parametrize("signame", list(SIGNALS))
@pytest.mark.parametrize("stage", STAGES)
def test_signal_at_stage(
    stage: str, signame: str, builder: Builder, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    sig = SIGNALS[signame]
    parent = tmp_path_factory.getbasetemp() / "faults-signals" / stage
    parent.mkdir(parents=True, exist_ok=True)
    name = f"fault-{stage}"
    dest = parent / name
    domain: Domain | None = None
    libvirt = None
    if stage == "deploy":
        domains: Callable[[str], Domain] = request.getfixturevalue("domains")
        domain = domains(name)
        libvirt = domain.uri
    args = stage_args(stage, dest, libvirt)
    build_id = earlier_build(builder, dest, args)
    earlier_exports = exports_of(parent, name)
    if domain is not None:
        domain.remove()  # the earlier build defined it: the interrupted one starts with none

    # Start the build and stop it at the stage.
    env: dict[str, str] = {}
    extra: list[str] = []
    marker = parent / "paused"
    marker.unlink(missing_ok=True)
    if stage == "bootstrap":
        extra = ["--hook-dir", str(fresh_key_hooks(parent / f"hooks-{signame}", pause_marker=marker))]
    elif stage == "cache-store":
        extra = ["--hook-dir", str(fresh_key_hooks(parent / f"hooks-{signame}"))]
        env["VMBUILDER_TEST_PAUSE_AT"] = stage
    else:
        env["VMBUILDER_TEST_PAUSE_AT"] = stage
    bg = background(builder, *args, *extra, env=env)
    if stage == "bootstrap":
        wait_for_file(marker, bg, timeout=300)
    else:
        bg.wait_for(f"vmbuilder-test: paused at {stage}", timeout=600)
    bg.proc.send_signal(sig)
    result = bg.finish(timeout=180)

    # The exit status and the one error line.
    if sig == signal.SIGKILL:
        assert result.returncode == -signal.SIGKILL
    else:
        assert result.returncode == 128 + sig, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        errors = error_lines(result.stderr)
        assert len(errors) == 1, result.stderr[-3000:]
        assert errors[0].startswith(f"vmbuilder: error: interrupted by {signame}; ")
        if DEST_AFTER[stage] == "earlier":
            assert errors[0].endswith("the build directory was removed")
        else:
            assert f"{dest} is complete" in errors[0]

    # Nothing of the build keeps running or stays mounted; DEST is untouched or complete.
    wait_until_gone(bg.proc.pid, parent)
    assert mounts_mentioning(parent) == []
    assert_dest(dest, DEST_AFTER[stage], build_id)
    if sig != signal.SIGKILL:
        assert leftovers(parent) == [], "the build directory was left behind"
        assert export_partials(parent) == [], "a partial export was left behind"
    assert exports_of(parent, name) == earlier_exports, "the earlier exports were changed"
    if domain is not None:
        assert domain.state() == "undefined", "the domain was defined although deploy was interrupted"

    # The interrupted build left no cache entry a later build would trust.
    key = cache_key_of(result.stderr)
    assert key is not None, result.stderr[-3000:]
    if stage in ("bootstrap", "cache-store"):
        assert not trusted_entry(cache_dir, key)
        assert sorted(p.name for p in (cache_dir / "bases").glob(f"{key}*")) == [f"{key}.lock"]

    # The next build to the same DEST succeeds from the (valid) cache and removes any leftovers.
    again = builder.run(*args)
    check(again)
    assert again.summary["cache"]["hit"] is True
    assert_dest(dest, "new", build_id)
    assert leftovers(parent) == []
    assert export_partials(parent) == []
    if stage == "export":
        assert sorted(exports_of(parent, name)) == [f"{name}.tar", f"{name}.template.properties"]
    if domain is not None:
        assert domain.state() == "shut off"
        assert f"{dest}/rootfs" in domain.virsh("dumpxml", name).stdout


def check(build: Build) -> None:
    build.check()
    assert "Traceback" not in build.stderr
