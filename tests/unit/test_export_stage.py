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


def tar_of(root: Path, exclude: tuple[str, ...] = ()) -> bytes:
    argv = tarball.tar_argv(root, epoch=EPOCH, exclude=exclude)
    return subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout


def staged_tar(rootfs: Path) -> tuple[bytes, bool]:
    with stage.staged(rootfs) as staged:
        view, report = staged.root, staged.stripped
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


def removals_only(rootfs: Path) -> Path:
    """A rootfs whose strip is removals only: what a direct export leaves out with tar's excludes."""
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/log/apt").mkdir(parents=True)
    for rel in ("var/log/apt/history.log", "var/log/wtmp", "var/log/wtmp.keep", "etc/passwd-"):
        (rootfs / rel).write_text("x\n")
    os.link(rootfs / "var/log/wtmp", rootfs / "usr/bin/wtmp-link")  # a removed path's hard link stays
    for rel in ("var/log/apt", "var/log", "var", "etc", "etc/ssh"):
        os.utime(rootfs / rel, (EPOCH - 50, EPOCH - 50))  # older than the epoch: not clamped
    return rootfs


def staged_bytes(rootfs: Path, direct: bool) -> tuple[bytes, tuple[str, ...], Path]:
    with stage.staged(rootfs, direct=direct) as staged:
        return tar_of(staged.root, staged.exclude), staged.exclude, staged.root


def test_a_direct_export_excludes_what_the_view_removes_and_gives_the_same_bytes(rootfs: Path) -> None:
    removals_only(rootfs)
    direct, exclude, root = staged_bytes(rootfs, direct=True)
    assert root == rootfs and "var/log/wtmp" in exclude and "etc/ssh/ssh_host_rsa_key" in exclude
    assert "var/log/wtmp.keep" in exclude  # var/log/** : every file, each named whole
    via_view, none, view = staged_bytes(rootfs, direct=False)
    assert none == () and view != rootfs
    assert direct == via_view  # the view's changed directories get the rootfs's times back
    names = subprocess.run(["tar", "-t"], input=direct, capture_output=True, check=True).stdout.decode().split()
    assert "./usr/bin/wtmp-link" in names and "./var/log/apt/" in names
    assert not {"./var/log/wtmp", "./var/log/apt/history.log", "./etc/passwd-"} & set(names)
    assert (rootfs / "var/log/wtmp").exists() and not mounts_below(rootfs.parent)


def test_a_change_that_is_not_a_removal_takes_the_view(rootfs: Path) -> None:
    """The fixture's machine-id is not empty: it is emptied in a view, never in the rootfs."""
    data, exclude, root = staged_bytes(rootfs, direct=True)
    assert exclude == () and root != rootfs
    assert (rootfs / "etc/machine-id").read_text().startswith("0123")


def test_exclude_names_are_matched_whole_not_as_patterns(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    for name in ("*", "f", "f.1", "[f]"):
        (root / "a" / name).write_text("x")
    data = tar_of(root, ("a/*", "a/[f]"))
    names = subprocess.run(["tar", "-t"], input=data, capture_output=True, check=True).stdout.decode().split()
    assert names == ["./", "./a/", "./a/f", "./a/f.1"]


def test_a_removal_whose_name_is_not_utf8_takes_the_view(rootfs: Path) -> None:
    removals_only(rootfs)
    (rootfs / "var/log" / os.fsdecode(b"bad-\xff.log")).write_text("x\n")
    data, exclude, root = staged_bytes(rootfs, direct=True)
    assert exclude == () and root != rootfs
    names = subprocess.run(["tar", "-t"], input=data, capture_output=True, check=True).stdout
    assert b"bad-" not in names and b"./var/log/apt/" in names
