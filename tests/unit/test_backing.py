"""--backing: the lxc.rootfs.path each backing writes, the paths it refuses, and preflight's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ContextFactory
from vmbuilder_lxc import backing, pins
from vmbuilder_lxc.log import UserError

ARGV = ("--arch", "amd64", "--mirror", "http://archive.test/ubuntu")
BASE = Path("/var/cache/vmbuilder-lxc/bases/abc.tree/rootfs")


def test_rootfs_spec_per_backing() -> None:
    dest = Path("/srv/ct/web1")
    assert backing.rootfs_spec("dir", dest) == "dir:/srv/ct/web1/rootfs"
    assert backing.rootfs_spec("btrfs", dest) == "btrfs:/srv/ct/web1/rootfs"
    assert backing.rootfs_spec("overlay", dest, BASE) == f"overlay:{BASE}:/srv/ct/web1/overlay/delta"


@pytest.mark.parametrize("bad", ["/srv/a:b", "/srv/a,b", "/srv/a\\b", "/srv/a\nb", "/srv/a\x01b"])
def test_overlay_paths_that_liblxc_or_overlayfs_would_split_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="overlay rootfs path"):
        backing.rootfs_spec("overlay", Path(bad), BASE)
    with pytest.raises(ValueError):
        backing.rootfs_spec("overlay", Path("/srv/ok"), Path(bad))


def test_overlay_config_through_the_plugin(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = make_ctx(*ARGV, "-d", "/srv/ct/web1", "--backing", "overlay")
    ctx.hypervisor.set_defaults()
    ctx.workdir = Path("/build")
    fake_fs.create_dir("/build/rootfs")
    ctx.summary["backing"] = {"kind": "overlay", "base": str(BASE), "key": "abc"}
    ctx.hypervisor.finalize()
    lines = Path("/build/config").read_text().splitlines()
    assert f"lxc.rootfs.path = overlay:{BASE}:/srv/ct/web1/overlay/delta" in lines


def test_a_base_path_the_lxc_config_cannot_hold_stops_the_build(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory
) -> None:
    ctx = make_ctx(*ARGV, "-d", "/srv/ct/web1", "--backing", "overlay")
    ctx.hypervisor.set_defaults()
    ctx.workdir = Path("/build")
    fake_fs.create_dir("/build/rootfs")
    ctx.summary["backing"] = {"kind": "overlay", "base": "/cache:x/rootfs", "key": "abc"}
    with pytest.raises(UserError, match="overlay rootfs path"):
        ctx.hypervisor.finalize()


def test_dir_is_the_default_and_writes_dir(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = make_ctx(*ARGV, "-d", "/srv/ct/web1")
    assert backing.backing_of(ctx.settings) == "dir"
    backing.preflight(ctx)  # nothing to refuse
    ctx.hypervisor.set_defaults()
    ctx.workdir = Path("/build")
    fake_fs.create_dir("/build/rootfs")
    ctx.hypervisor.finalize()
    assert "lxc.rootfs.path = dir:/srv/ct/web1/rootfs" in Path("/build/config").read_text().splitlines()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backing", "overlay", "--no-cache"], "--backing overlay needs the base cache"),
        (["--backing", "btrfs", "--no-cache"], "--backing btrfs needs the base cache"),
        (["--backing", "overlay", "--variant", "buildd"], "buildd chroot"),
        (["--backing", "overlay", "--cache-dir", "/tmp/a:b"], "cannot hold"),
    ],
)
def test_preflight_refusals(no_host_config: Path, make_ctx: ContextFactory, argv: list[str], message: str) -> None:
    ctx = make_ctx("--arch", "amd64", "-d", "/tmp/vmb-backing-test/web1", *argv)
    ctx.distro.set_defaults()
    with pytest.raises(UserError, match=message):
        backing.preflight(ctx)


def test_overlay_is_refused_with_libvirt(no_host_config: Path, make_ctx: ContextFactory) -> None:
    ctx = make_ctx("--arch", "amd64", "-d", "/tmp/vmb-backing-test/web1", "--backing", "overlay",
                   "--libvirt", "lxc:///system")  # fmt: skip
    with pytest.raises(UserError, match="libvirt's LXC driver needs DEST/rootfs as a plain directory"):
        backing.preflight(ctx)


def test_btrfs_is_refused_off_btrfs(tmp_path: Path, no_host_config: Path, make_ctx: ContextFactory) -> None:
    if backing.fs_type(tmp_path) == "btrfs":
        pytest.skip("tmp is on btrfs here")
    ctx = make_ctx("--arch", "amd64", "-d", str(tmp_path / "web1"), "--backing", "btrfs")
    with pytest.raises(UserError, match="not btrfs"):
        backing.preflight(ctx)


def test_merged_view_of_a_plain_build_mounts_nothing(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    with backing.merged_view(tmp_path):
        pass
    pins.write_marker(tmp_path, "k" * 32, "btrfs", tmp_path / "base")
    with backing.merged_view(tmp_path):  # a btrfs snapshot is a plain directory already
        pass


def test_merged_view_of_an_overlay_build_without_its_base_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    pins.write_marker(tmp_path, "k" * 32, "overlay", tmp_path / "gone")
    with pytest.raises(UserError, match="base .* or delta .* is missing"), backing.merged_view(tmp_path):
        pass


def test_overlay_is_refused_where_the_delta_cannot_live(
    no_host_config: Path, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backing, "fs_type", lambda path: "overlayfs")
    ctx = make_ctx("--arch", "amd64", "-d", "/tmp/vmb-backing-test/web1", "--backing", "overlay")
    with pytest.raises(UserError, match="is on overlayfs, which cannot hold an overlay's delta"):
        backing.preflight(ctx)


def test_fs_type_by_statfs_names_types_as_stat_does(tmp_path: Path) -> None:
    """statfs(2) replaces `stat -f -c %T` for the usual types; the name must be stat's own."""
    import subprocess

    for path in (tmp_path, Path("/proc"), Path("/dev/shm")):
        want = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True).stdout.strip()
        assert backing.fs_type(path) == want
    assert backing.fs_type(tmp_path / "not" / "yet") == backing.fs_type(tmp_path)  # the nearest existing parent
