"""The default container rootfs also works as a plain chroot (the natty spec: a debootstrapped image
must work on the host and in a container): apt and dpkg work in it, and no tweak breaks that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Builder

# Run in a private mount namespace, like a build: the chroot's mounts never reach the host.
CHROOT_SCRIPT = """
import sys
from pathlib import Path
from vmbuilder_lxc.chroot import Chroot
from vmbuilder_lxc.log import setup_logging
setup_logging(1)
with Chroot(Path(sys.argv[1])) as chroot:
    chroot.run("apt-get", "-q", "update")
    chroot.run("apt-get", "-y", "-q", "install", "hello")
    print("hello:", chroot.run("hello").output.strip())
    print("audit:", repr(chroot.run("dpkg", "--audit").output.strip()))
    chroot.run("apt-get", "check")
    print("check: ok")
"""


def test_default_rootfs_is_a_working_chroot(builder: Builder, tmp_path: Path) -> None:
    build = builder.run("--suite", "noble", "-d", str(tmp_path / "x"), "--network", "none").check()
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", CHROOT_SCRIPT, str(build.rootfs)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert "hello: Hello, world!" in lines
    assert "audit: ''" in lines, "dpkg --audit found half-configured packages"
    assert "check: ok" in lines
    status = (build.rootfs / "var/lib/dpkg/status").read_text()
    assert "Package: hello\nStatus: install ok installed" in status
    # the chroot's own helpers are gone again: nothing of the session stays in the guest
    assert not (build.rootfs / "usr/sbin/policy-rc.d").exists()
    assert (build.rootfs / "etc/resolv.conf").is_symlink()  # systemd-resolved's stub, as the tweak left it
