"""The files the build chroot swaps in for its duration: policy-rc.d, resolv.conf, the apt proxy.

Swapped in, they stop daemons from starting and give apt the host's resolvers; swapped out, the
guest's own files (often symlinks, e.g. to systemd-resolved's stub) come back exactly, and a file
a package installed meanwhile is kept. A policy-rc.d left behind would stop every service of the
finished container from starting, so the way out is tested after an exception too. Mounts are
faked (mount_all/unmount_all record only); the rootfs is a real directory under tmp_path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vmbuilder_lxc import chroot as chroot_module
from vmbuilder_lxc.chroot import APT_PROXY_CONF, POLICY_RC_D, SAVED_SUFFIX, Chroot, proxy_conf

HOST_RESOLV = "nameserver 127.0.0.53\nsearch host.test\n"
STUB = "../run/systemd/resolve/stub-resolv.conf"
PROXY = "http://proxy.test:3142"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A guest with a resolv.conf symlink (as systemd-resolved leaves it) and no policy-rc.d."""
    host = tmp_path / "host-resolv.conf"
    host.write_text(HOST_RESOLV)
    monkeypatch.setattr(chroot_module, "HOST_RESOLV_CONF", host)
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc/apt/apt.conf.d").mkdir(parents=True)
    (rootfs / "usr/sbin").mkdir(parents=True)
    (rootfs / "etc/resolv.conf").symlink_to(STUB)
    return rootfs


@pytest.fixture
def mounts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """mount_all/unmount_all replaced by a log: no mount is made."""
    log: list[str] = []
    monkeypatch.setattr(Chroot, "mount_all", lambda self: log.append("mount"))
    monkeypatch.setattr(Chroot, "unmount_all", lambda self: log.append("unmount"))
    return log


def snapshot(root: Path) -> dict[str, tuple[str, str | bytes, int]]:
    """Every file and symlink below root: kind, content or target, and mode."""
    out: dict[str, tuple[str, str | bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path), 0)
        elif path.is_file():
            out[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def assert_swapped_in(root: Path) -> None:
    policy = root / "usr/sbin/policy-rc.d"
    assert policy.read_text() == POLICY_RC_D and not policy.is_symlink()
    assert stat.S_IMODE(policy.stat().st_mode) == 0o755
    resolv = root / "etc/resolv.conf"
    assert not resolv.is_symlink()
    assert resolv.read_text().endswith(HOST_RESOLV)
    assert os.readlink(root / f"etc/resolv.conf{SAVED_SUFFIX}") == STUB


def test_swap_in_and_out_restores_the_guest_exactly(root: Path) -> None:
    before = snapshot(root)
    chroot = Chroot(root)
    chroot.prepare()
    assert_swapped_in(root)
    assert not (root / f"usr/sbin/policy-rc.d{SAVED_SUFFIX}").exists()  # there was none to save
    chroot.unprepare()
    assert snapshot(root) == before
    assert os.readlink(root / "etc/resolv.conf") == STUB


def test_a_guest_policy_rc_d_comes_back(root: Path) -> None:
    own = root / "usr/sbin/policy-rc.d"
    own.write_text("#!/bin/sh\nexit 0\n")
    own.chmod(0o700)
    before = snapshot(root)
    chroot = Chroot(root)
    chroot.prepare()
    assert (root / f"usr/sbin/policy-rc.d{SAVED_SUFFIX}").read_text() == "#!/bin/sh\nexit 0\n"
    assert own.read_text() == POLICY_RC_D
    chroot.unprepare()
    assert snapshot(root) == before


def test_a_file_a_package_installed_meanwhile_is_kept(root: Path) -> None:
    """resolvconf (or a tweak) replacing resolv.conf during the build wins over the saved copy."""
    chroot = Chroot(root)
    chroot.prepare()
    (root / "etc/resolv.conf").unlink()
    (root / "etc/resolv.conf").symlink_to("/run/resolvconf/resolv.conf")
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\n# a package's own\nexit 0\n")
    chroot.unprepare()
    assert os.readlink(root / "etc/resolv.conf") == "/run/resolvconf/resolv.conf"
    assert (root / "usr/sbin/policy-rc.d").read_text() == "#!/bin/sh\n# a package's own\nexit 0\n"
    assert not list(root.rglob(f"*{SAVED_SUFFIX}"))


def test_a_file_a_package_removed_meanwhile_is_restored_from_the_saved_copy(root: Path) -> None:
    chroot = Chroot(root)
    chroot.prepare()
    (root / "etc/resolv.conf").unlink()
    chroot.unprepare()
    assert os.readlink(root / "etc/resolv.conf") == STUB
    assert not list(root.rglob(f"*{SAVED_SUFFIX}"))


def test_a_guest_without_resolv_conf_gets_none_back(root: Path) -> None:
    (root / "etc/resolv.conf").unlink()
    chroot = Chroot(root)
    chroot.prepare()
    assert (root / "etc/resolv.conf").is_file()
    chroot.unprepare()
    assert not os.path.lexists(root / "etc/resolv.conf")


def test_a_host_without_resolv_conf_still_swaps(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(chroot_module, "HOST_RESOLV_CONF", tmp_path / "missing")
    before = snapshot(root)
    chroot = Chroot(root)
    chroot.prepare()
    assert (root / "etc/resolv.conf").read_text().startswith("# vmbuilder-lxc")
    chroot.unprepare()
    assert snapshot(root) == before


def test_the_apt_proxy_file_only_with_a_proxy(root: Path) -> None:
    conf = root / APT_PROXY_CONF
    before = snapshot(root)
    plain = Chroot(root)
    plain.prepare()
    assert not conf.exists()
    plain.unprepare()
    chroot = Chroot(root, apt_proxy=PROXY)
    chroot.prepare()
    assert conf.read_text() == proxy_conf(PROXY)
    chroot.unprepare()
    assert snapshot(root) == before


def test_a_symlinked_usr_sbin_is_followed_inside_the_rootfs_only(root: Path, tmp_path: Path) -> None:
    """/usr/sbin as an absolute symlink is resolved in the guest, never on the host."""
    outside = tmp_path / "host-sbin"
    outside.mkdir()
    (root / "usr/sbin").rmdir()
    (root / "usr/sbin").symlink_to(str(outside))  # inside the guest this names ROOT/<tmp_path>/host-sbin
    chroot = Chroot(root)
    chroot.prepare()
    assert list(outside.iterdir()) == []
    inside = root / str(outside).lstrip("/") / "policy-rc.d"
    assert inside.read_text() == POLICY_RC_D
    chroot.unprepare()
    assert not inside.exists() and list(outside.iterdir()) == []


# -- with the context manager: restore after an exception -------------------------------------------


def test_an_exception_in_the_block_restores_the_guest_and_unmounts(root: Path, mounts: list[str]) -> None:
    before = snapshot(root)
    with pytest.raises(RuntimeError, match="apt-get failed"), Chroot(root, apt_proxy=PROXY):
        assert_swapped_in(root)
        assert (root / APT_PROXY_CONF).exists()
        raise RuntimeError("apt-get failed")
    assert snapshot(root) == before
    assert mounts == ["mount", "unmount"]


def test_ctrl_c_in_the_block_restores_the_guest(root: Path, mounts: list[str]) -> None:
    before = snapshot(root)
    with pytest.raises(KeyboardInterrupt), Chroot(root):
        raise KeyboardInterrupt("SIGINT")
    assert snapshot(root) == before
    assert mounts == ["mount", "unmount"]


def test_a_failure_while_swapping_in_undoes_what_was_swapped(
    root: Path, mounts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """policy-rc.d is in, reading the host's resolv.conf fails: policy-rc.d must go again."""
    before = snapshot(root)

    def broken(self: Chroot) -> bytes:
        raise PermissionError(13, "Permission denied", "/etc/resolv.conf")

    monkeypatch.setattr(Chroot, "_host_resolv_conf", broken)
    with pytest.raises(PermissionError), Chroot(root):
        pytest.fail("the block must not run")
    assert snapshot(root) == before
    assert mounts == ["mount", "unmount"]


def test_a_failing_mount_still_unmounts_and_leaves_the_guest_alone(
    root: Path, mounts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(root)

    def mount_fails(self: Chroot) -> None:
        mounts.append("mount")
        raise RuntimeError("mount: permission denied")

    monkeypatch.setattr(Chroot, "mount_all", mount_fails)
    with pytest.raises(RuntimeError, match="mount"), Chroot(root):
        pytest.fail("the block must not run")
    assert snapshot(root) == before
    assert mounts == ["mount", "unmount"]


def test_unmounting_happens_even_when_restoring_fails(
    root: Path, mounts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unprepare_fails(self: Chroot) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Chroot, "unprepare", unprepare_fails)
    with pytest.raises(OSError, match="Input/output"), Chroot(root):
        pass
    assert mounts == ["mount", "unmount"]
