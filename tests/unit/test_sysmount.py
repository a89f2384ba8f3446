"""sysmount: the mount(8) argument forms a build uses, translated to mount(2), and real mounts as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuilder_lxc import sysmount
from vmbuilder_lxc.chroot import mounts_below
from vmbuilder_lxc.run import CommandError


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["-t", "proc", "-o", "nosuid,nodev,noexec", "proc"], ("proc", "proc", 2 | 4 | 8, None)),
        (["-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs"], ("sysfs", "sysfs", 1 | 2 | 4 | 8, None)),
        (["-t", "tmpfs", "-o", "mode=755,nosuid,size=4m", "d"], ("d", "tmpfs", 2, "mode=755,size=4m")),
        (["-t", "devpts", "-o", "newinstance,gid=5", "devpts"], ("devpts", "devpts", 0, "newinstance,gid=5")),
        (["-t", "overlay", "-o", "lowerdir=/a,upperdir=/b,workdir=/c", "overlay"],
         ("overlay", "overlay", 0, "lowerdir=/a,upperdir=/b,workdir=/c")),
        (["-t", "tmpfs", "t"], ("t", "tmpfs", 0, None)),
        (["--bind", "/dev/null"], ("/dev/null", None, 4096, None)),
        (["--rbind", "/sys"], ("/sys", None, 4096 | 16384, None)),
    ],
)  # fmt: skip
def test_the_forms_a_build_uses(args: list[str], want: tuple[object, ...]) -> None:
    assert sysmount.parse(args) == want


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "remount,bind,ro"],
        ["-t", "tmpfs", "-o", "remount", "t"],
        ["-t", "x", "-o", "a,,b", "s"],
        ["-B", "/a"],
        [],
    ],
)
def test_other_forms_are_left_to_mount8(args: list[str], tmp_path: Path) -> None:
    assert sysmount.parse(args) is None
    assert sysmount.mount(args, tmp_path) is False


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_real_mount_and_umount(tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    try:
        assert sysmount.mount(["-t", "tmpfs", "-o", "mode=700,nosuid,size=1m", "vmbuilder-test"], target)
        assert mounts_below(tmp_path) == [target]
        assert (target.stat().st_mode & 0o777) == 0o700
    finally:
        assert sysmount.umount(target)
    assert mounts_below(tmp_path) == []
    assert not sysmount.umount(target)  # nothing mounted there any more


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_failed_mount_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as err:
        sysmount.mount(["-t", "no-such-fs-type", "-o", "nosuid", "x"], tmp_path / "absent")
    assert err.value.tail and err.value.tail[0].startswith("mount: ")
    assert mounts_below(tmp_path) == []
