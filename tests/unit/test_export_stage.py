"""The export view: an overlay mount (or, where that fails, a hard-linked copy) that leaves the
rootfs alone, gives the same archive bytes either way, and leaves no mount behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vmbuilder_lxc.chroot import mounts_below
from vmbuilder_lxc.exports import stage, tarball

EPOCH = 1_700_000_000


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "ct" / "rootfs"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/ssh/ssh_host_rsa_key").write_text("secret\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool2")
    os.chmod(root, 0o755)
    os.utime(root, (EPOCH - 100, EPOCH - 100))
    return root


def tar_of(root: Path) -> bytes:
    return subprocess.run(tarball.tar_argv(root, epoch=EPOCH), capture_output=True, check=True, timeout=60).stdout


def staged_tar(rootfs: Path) -> tuple[bytes, bool]:
    with stage.staged(rootfs) as (view, report):
        assert report["ssh-host-keys"] == ["etc/ssh/ssh_host_rsa_key"]
        mounted = bool(mounts_below(view))
        data = tar_of(view)
    return data, mounted


def test_overlay_and_hardlink_views_give_the_same_bytes(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tar_of(rootfs)
    via_overlay, mounted = staged_tar(rootfs)
    if os.geteuid() == 0:
        assert mounted, "root on ext4/tmpfs should get the overlay view"
    monkeypatch.setattr(stage, "overlay_view", lambda src, view: None)
    via_links, mounted_links = staged_tar(rootfs)
    assert not mounted_links
    assert via_overlay == via_links
    assert tar_of(rootfs) == before  # the rootfs keeps its keys and machine-id
    assert (rootfs / "etc/ssh/ssh_host_rsa_key").exists()
    assert not mounts_below(rootfs.parent)
    assert [p.name for p in rootfs.parent.iterdir()] == ["rootfs"]  # no view left behind


def test_a_view_left_mounted_by_a_killed_export_is_unmounted_and_removed(rootfs: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting an overlay needs root")
    stale = rootfs.parent / f".stage.999999999{stage.STAGE_SUFFIX}"  # no such PID
    if stage.overlay_view(rootfs, stale) is None:
        pytest.skip("overlayfs cannot be mounted here")
    assert mounts_below(stale)
    stage.remove_stale_views(rootfs.parent)
    assert not mounts_below(rootfs.parent) and not stale.exists()


def test_paths_overlayfs_would_misread_are_not_mounted(tmp_path: Path) -> None:
    odd = tmp_path / "a,b"
    odd.mkdir()
    assert stage.overlay_view(odd, tmp_path / "view") is None
    assert not (tmp_path / "view").exists()
