"""binfmt_misc detection (pyfakefs over /proc/sys/fs/binfmt_misc): preflight refuses a foreign
--arch whose qemu-user registration is missing, disabled or lacks the F flag, in one line that
names the package and the command that fix it."""

from __future__ import annotations

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuilder_lxc import arches, binfmt
from vmbuilder_lxc.log import UserError

DIR = binfmt.BINFMT_DIR
# What binfmt-support registers for Debian 12's qemu-user-static.
AARCH64 = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


@pytest.fixture
def amd64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arches.platform, "machine", lambda: "x86_64")


@pytest.fixture
def mounted(fs: FakeFilesystem) -> FakeFilesystem:
    fs.create_file(DIR / "status", contents="enabled\n")
    fs.create_file(DIR / "register")
    return fs


def refusal(arch: str) -> UserError:
    with pytest.raises(UserError) as err:
        arches.check_arch(arch)
    return err.value


def test_registered_with_f_flag(mounted: FakeFilesystem, amd64_host: None) -> None:
    mounted.create_file(DIR / "qemu-aarch64", contents=AARCH64)
    assert binfmt.read_entry("qemu-aarch64") == binfmt.Entry(
        "qemu-aarch64", True, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF"
    )
    assert binfmt.problem("aarch64") is None
    arches.check_arch("arm64")  # no error


def test_missing_entry(mounted: FakeFilesystem, amd64_host: None) -> None:
    mounted.create_file(DIR / "qemu-aarch64", contents=AARCH64)  # arm64 is there, riscv64 is not
    err = refusal("riscv64")
    assert "cannot run riscv64 binaries" in err.message and "no qemu-riscv64 registration" in err.message
    assert err.hint is not None
    assert "apt-get install qemu-user-static binfmt-support" in err.hint
    assert "update-binfmts --enable qemu-riscv64" in err.hint


def test_missing_f_flag(mounted: FakeFilesystem, amd64_host: None) -> None:
    mounted.create_file(DIR / "qemu-aarch64", contents=AARCH64.replace("flags: PF", "flags: P"))
    err = refusal("arm64")
    assert "without the F flag" in err.message and "aarch64-binfmt-P" in err.message
    assert err.hint is not None and "update-binfmts --enable qemu-aarch64" in err.hint
    assert "qemu-user-static" in err.hint


def test_disabled_entry(mounted: FakeFilesystem, amd64_host: None) -> None:
    mounted.create_file(DIR / "qemu-arm", contents=AARCH64.replace("enabled", "disabled", 1))
    err = refusal("armhf")
    assert "qemu-arm is registered but disabled" in err.message
    assert err.hint == "update-binfmts --enable qemu-arm"


def test_not_mounted(fs: FakeFilesystem, amd64_host: None) -> None:
    fs.create_dir(DIR)  # the kernel's empty directory, as on Debian 12 without systemd
    err = refusal("arm64")
    assert "binfmt_misc is not mounted" in err.message
    assert err.hint is not None and err.hint.startswith(f"mount -t binfmt_misc binfmt_misc {DIR}")


@pytest.mark.parametrize("arch", ["amd64", "i386"])
def test_native_needs_no_binfmt(fs: FakeFilesystem, amd64_host: None, arch: str) -> None:
    arches.check_arch(arch)  # nothing mounted, nothing registered, and no error


def test_unknown_architecture(fs: FakeFilesystem, amd64_host: None) -> None:
    assert "unknown architecture 'vax'" in refusal("vax").message
