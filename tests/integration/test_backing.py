"""--backing overlay and btrfs: real containers that boot, a small delta, export of the merged view, pins.

One overlay build and one btrfs build per run (module-scoped), from the session's cache. The btrfs
filesystem is a sparse image made here, loop-mounted, and unmounted again at teardown.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmbuilder_lxc import pins

from .conftest import Build, Builder, Container, boot_within, mounts_mentioning, vmbuilder_command

SUITE = "noble"
ARGS = ("--suite", SUITE, "--network", "none")


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sxb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@pytest.fixture(scope="module")
def overlay_build(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Build:
    work = tmp_path_factory.mktemp("backing-overlay")
    script = work / "post-install.sh"  # runs after the chroot is left: the overlay must still be there
    script.write_text('#!/bin/sh\necho ran > "$1/root/post-install-ran"\n')
    script.chmod(0o755)
    return builder.run(*ARGS, "--backing", "overlay", "--execscript", str(script), "-d", str(work / "ov1")).check()


@pytest.fixture(scope="module")
def btrfs_parent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not shutil.which("mkfs.btrfs"):
        pytest.skip("btrfs-progs is not installed (quickstart.sh installs it)")
    work = tmp_path_factory.mktemp("backing-btrfs")
    image, mount = work / "btrfs.img", work / "mnt"
    with image.open("wb") as fh:
        fh.truncate(2 << 30)  # sparse: only what is written takes space
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        image.unlink()


@pytest.fixture(scope="module")
def btrfs_build(builder: Builder, btrfs_parent: Path) -> Build:
    return builder.run(*ARGS, "--backing", "btrfs", "-d", str(btrfs_parent / "b1")).check()


def test_overlay_writes_liblxcs_overlay_layout_with_a_small_delta(overlay_build: Build, builder: Builder) -> None:
    dest = overlay_build.dest
    marker = pins.read_marker(dest)
    assert marker is not None and marker["backing"] == "overlay"
    base = Path(marker["base"])
    config = (dest / "config").read_text().splitlines()
    assert f"lxc.rootfs.path = overlay:{base}:{dest}/overlay/delta" in config
    assert base.is_relative_to(builder.cache_dir)
    assert not any((dest / "rootfs").iterdir()), "the rootfs is only a mount point"
    delta, whole = du_bytes(dest / "overlay/delta"), du_bytes(base)
    assert delta * 20 < whole, f"the delta ({delta} bytes) is not much smaller than the base ({whole} bytes)"
    assert not mounts_mentioning(dest), "the build left its overlay mounted"
    assert (dest / "overlay/delta/root/post-install-ran").is_file(), "post-install did not write through the overlay"


def test_the_pin_reports_the_container(overlay_build: Build, builder: Builder) -> None:
    marker = pins.read_marker(overlay_build.dest)
    assert marker is not None
    assert overlay_build.dest in pins.users(builder.cache_dir, marker["key"])


def test_export_reads_the_merged_view(overlay_build: Build) -> None:
    dest = overlay_build.dest
    proc = subprocess.run([vmbuilder_command(), "lxc", "export", str(dest), "--export", "tar"],
                          capture_output=True, text=True, timeout=600, cwd="/")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    tarball = dest.parent / f"{dest.name}.tar"
    names = subprocess.run(["tar", "-tf", str(tarball)], capture_output=True, text=True, check=True).stdout
    assert "./etc/os-release" in names.splitlines() or "etc/os-release" in names.splitlines()
    assert "./etc/hostname" in names.splitlines() or "etc/hostname" in names.splitlines()  # from the delta
    assert not mounts_mentioning(dest), "the export left the merged view mounted"
    assert not any((dest / "rootfs").iterdir())


def test_overlay_container_boots(overlay_build: Build, container: Callable[[Path], Container], lxcfs: Path) -> None:
    c = boot_within(container, overlay_build.dest, "overlay")
    assert c.sh("findmnt -n -o FSTYPE /") == "overlay"
    c.sh("echo changed > /root/written-while-running")
    c.stop()
    assert (overlay_build.dest / "overlay/delta/root/written-while-running").is_file()


def test_btrfs_container_is_a_snapshot_and_boots(
    btrfs_build: Build, btrfs_parent: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    dest = btrfs_build.dest
    assert "lxc.rootfs.path = btrfs:" + str(dest / "rootfs") in (dest / "config").read_text().splitlines()
    subvolumes = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_parent)], capture_output=True, text=True,
                                check=True).stdout  # fmt: skip
    assert "b1/rootfs" in subvolumes and ".vmbuilder-bases/" in subvolumes
    boot_within(container, dest, "btrfs")


def test_export_of_a_btrfs_container(btrfs_build: Build) -> None:
    """Hard links never cross into a subvolume: the export stage copies (with reflinks) instead."""
    dest = btrfs_build.dest
    proc = subprocess.run([vmbuilder_command(), "lxc", "export", str(dest), "--export", "tar"],
                          capture_output=True, text=True, timeout=600, cwd="/")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = subprocess.run(["tar", "-tf", str(dest.parent / f"{dest.name}.tar")], capture_output=True, text=True,
                           check=True).stdout.splitlines()  # fmt: skip
    assert "./etc/os-release" in names or "etc/os-release" in names


def test_btrfs_overwrite_and_lxc_destroy_leave_no_subvolume(
    btrfs_build: Build, btrfs_parent: Path, builder: Builder
) -> None:
    dest = btrfs_build.dest
    builder.run(*ARGS, "--backing", "btrfs", "--overwrite", "-d", str(dest)).check()
    marker = pins.read_marker(dest)
    assert marker is not None
    assert dest in pins.users(builder.cache_dir, marker["key"])
    subprocess.run(["lxc-destroy", "-P", str(dest.parent), "-n", dest.name], check=True, capture_output=True)
    subvolumes = subprocess.run(["btrfs", "subvolume", "list", str(btrfs_parent)], capture_output=True, text=True,
                                check=True).stdout  # fmt: skip
    assert "b1/rootfs" not in subvolumes
    assert dest not in pins.users(builder.cache_dir, marker["key"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--backing", "overlay", "--no-cache"), "--backing overlay needs the base cache"),
        (("--backing", "btrfs"), "not btrfs"),
    ],
)
def test_refusals_are_one_line_exit_2(builder: Builder, tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    if "btrfs" in extra and subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                                           text=True).stdout.strip() == "btrfs":  # fmt: skip
        pytest.skip("tmp is on btrfs here")
    result = builder.run(*ARGS, *extra, "-d", str(tmp_path / "x"), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vmbuilder: error:") and message in lines[0], result.stderr
    assert not (tmp_path / "x").exists()
