"""Reading /proc/self/mountinfo: octal unescaping, which mounts lie below a path, unmount order.

A build directory is deleted only after everything below it is unmounted; if `mounts_below`
missed a mount point (a space in the path, a sibling with the same prefix), `rm -rf` would walk
into a mounted /proc or /dev. These tests feed written mountinfo files, so no mount is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuilder_lxc import chroot as chroot_module
from vmbuilder_lxc.chroot import Chroot, _unescape, mounts_below, unmount_below
from vmbuilder_lxc.run import CommandResult


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("/plain/path", "/plain/path"),
        (r"/with\040space", "/with space"),
        (r"/tab\011and\012newline", "/tab\tand\nnewline"),
        (r"/back\134slash", "/back\\slash"),
        (r"/end\040", "/end "),
        (r"\040", " "),
        (r"/a\040\040b", "/a  b"),
        (r"/short\04", r"/short\04"),  # not three digits: kept as it is
        ("/trailing\\", "/trailing\\"),
        (r"/not\0x1digits", r"/not\0x1digits"),
        ("", ""),
    ],
)
def test_unescape(field: str, expected: str) -> None:
    assert _unescape(field) == expected


def mountinfo_line(mount_id: int, point: str) -> str:
    escaped = point.replace("\\", r"\134").replace(" ", r"\040").replace("\t", r"\011").replace("\n", r"\012")
    return f"{mount_id} 1 0:{mount_id} / {escaped} rw,relatime shared:{mount_id} - tmpfs tmpfs rw"


def write_mountinfo(tmp_path: Path, points: list[str]) -> Path:
    info = tmp_path / "mountinfo"
    info.write_text("".join(mountinfo_line(i, p) + "\n" for i, p in enumerate(points, 20)))
    return info


def test_mounts_below_finds_the_path_and_what_is_under_it_deepest_first(tmp_path: Path) -> None:
    build = tmp_path / "build dir"
    build.mkdir()
    points = [
        "/", "/proc", str(tmp_path),
        str(build / "rootfs"), str(build / "rootfs/proc"), str(build / "rootfs/dev"),
        str(build / "rootfs/dev/pts"), str(build), str(build / "rootfs/dev/pts"),  # mounted twice
    ]  # fmt: skip
    found = mounts_below(build, write_mountinfo(tmp_path, points))
    assert set(found) == {
        build,
        build / "rootfs",
        build / "rootfs/proc",
        build / "rootfs/dev",
        build / "rootfs/dev/pts",
    }
    assert len(found) == 5  # each point once
    depths = [len(p.parts) for p in found]
    assert depths == sorted(depths, reverse=True)
    assert found[0] == build / "rootfs/dev/pts" and found[-1] == build


def test_a_sibling_with_the_same_prefix_is_not_below(tmp_path: Path) -> None:
    info = write_mountinfo(tmp_path, [str(tmp_path / "ct2/proc"), str(tmp_path / "ct-old"), str(tmp_path / "ct/run")])
    assert mounts_below(tmp_path / "ct", info) == [tmp_path / "ct/run"]


def test_escaped_characters_in_mount_points(tmp_path: Path) -> None:
    odd = tmp_path / "a b\tc\\d\ne"
    info = write_mountinfo(tmp_path, [str(odd / "proc"), str(tmp_path / "a b")])
    assert mounts_below(odd, info) == [odd / "proc"]
    # the escaped form of a point below the path must not be mistaken for another path
    assert mounts_below(tmp_path / r"a\040b", info) == []


def test_the_path_is_resolved_like_the_kernel_names_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "rootfs").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    info = write_mountinfo(tmp_path, [str(real / "rootfs/proc")])
    assert mounts_below(tmp_path / "link", info) == [real / "rootfs/proc"]


def test_root_holds_every_mount(tmp_path: Path) -> None:
    info = write_mountinfo(tmp_path, ["/", "/proc", "/sys/fs/cgroup"])
    assert set(mounts_below(Path("/"), info)) == {Path("/"), Path("/proc"), Path("/sys/fs/cgroup")}


def test_short_or_empty_lines_are_skipped(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(f"\n1 2 3\n{mountinfo_line(5, str(tmp_path / 'x'))}\n")
    assert mounts_below(tmp_path, info) == [tmp_path / "x"]


# -- unmounting (run() and the mount table faked) -------------------------------------------------


class FakeMounts:
    """A mount table that `umount` edits; `stuck` points refuse a plain umount, `lazy_fails` refuse both."""

    def __init__(self) -> None:
        self.points: list[Path] = []
        self.stuck: set[Path] = set()
        self.lazy_fails: set[Path] = set()
        self.calls: list[list[str]] = []

    def below(self, path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
        found = [p for p in self.points if p == path or path in p.parents]
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def run(self, argv: list[object], check: bool = True, **kwargs: object) -> CommandResult:
        args = [str(a) for a in argv]
        self.calls.append(args)
        point = Path(args[-1])
        lazy = "-l" in args
        if (point in self.stuck and not lazy) or (point in self.lazy_fails) or point not in self.points:
            return CommandResult(args, 32, "umount: target is busy\n")
        self.points.remove(point)
        return CommandResult(args, 0, "")

    def umount2(self, point: Path | str) -> bool:
        """sysmount.umount: umount2(2), then a lazy detach; recorded as the umount(8) lines they replace."""
        return self.run(["umount", point]).returncode == 0 or self.run(["umount", "-l", point]).returncode == 0


@pytest.fixture
def fake_mounts(monkeypatch: pytest.MonkeyPatch) -> FakeMounts:
    mounts = FakeMounts()
    monkeypatch.setattr(chroot_module, "mounts_below", mounts.below)
    monkeypatch.setattr(chroot_module, "run", mounts.run)
    monkeypatch.setattr(chroot_module, "sys_umount", mounts.umount2)
    return mounts


ROOT = Path("/b/rootfs")


def test_unmount_below_goes_deepest_first_and_falls_back_to_lazy(fake_mounts: FakeMounts) -> None:
    fake_mounts.points = [ROOT / "proc", ROOT / "dev", ROOT / "dev/pts", Path("/other")]
    fake_mounts.stuck = {ROOT / "dev"}
    unmount_below(ROOT)
    assert fake_mounts.calls == [
        ["umount", str(ROOT / "dev/pts")],
        ["umount", str(ROOT / "proc")],
        ["umount", str(ROOT / "dev")],
        ["umount", "-l", str(ROOT / "dev")],
    ]
    assert fake_mounts.points == [Path("/other")]


def test_unmount_below_raises_when_a_mount_stays(fake_mounts: FakeMounts) -> None:
    fake_mounts.points = [ROOT / "proc", ROOT / "sys"]
    fake_mounts.lazy_fails = {ROOT / "sys"}
    with pytest.raises(RuntimeError, match="could not unmount .*sys"):
        unmount_below(ROOT)
    assert fake_mounts.points == [ROOT / "sys"]


def test_chroot_unmounts_its_own_mounts_in_reverse_then_anything_left(fake_mounts: FakeMounts) -> None:
    chroot = Chroot(ROOT)
    chroot.mounted = [ROOT / "proc", ROOT / "sys", ROOT / "dev", ROOT / "dev/pts"]
    fake_mounts.points = [*chroot.mounted, ROOT / "mnt/extra"]  # a mount a package script made
    chroot.unmount_all()
    umounted = [c[-1] for c in fake_mounts.calls if c[:2] != ["umount", "-l"]]
    assert umounted == [str(ROOT / p) for p in ("dev/pts", "dev", "sys", "proc", "mnt/extra")]
    assert fake_mounts.points == [] and chroot.mounted == []


def test_chroot_leaves_a_mounted_rootfs_itself_to_its_owner(fake_mounts: FakeMounts) -> None:
    """--backing overlay mounts the rootfs; leaving the chroot must not take the overlay away."""
    chroot = Chroot(ROOT)
    chroot.mounted = [ROOT / "proc"]
    fake_mounts.points = [ROOT, ROOT / "proc", ROOT / "mnt/extra"]
    chroot.unmount_all()
    assert fake_mounts.points == [ROOT]
    unmount_below(ROOT)  # the build directory's removal still takes everything
    assert fake_mounts.points == []
