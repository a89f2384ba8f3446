"""Acceptance 4: the container tweaks survive `apt-get install --reinstall` of the packages they
relate to, and the container still boots to `running` afterwards."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Builder, Container

# Directories that every package touches; their owners say nothing about a tweak.
GENERIC_DIRS = {"/", "/etc", "/etc/default", "/var", "/var/lib", "/usr", "/usr/lib", "/lib"}
ALWAYS = {"base-files", "systemd", "systemd-sysv", "dbus", "tzdata", "locales", "sudo"}

CHROOT_SCRIPT = """
import sys
from pathlib import Path
from vmbuilder_lxc.chroot import Chroot
from vmbuilder_lxc.log import setup_logging
setup_logging(1)
root, packages = Path(sys.argv[1]), sys.argv[2:]
with Chroot(root) as chroot:
    chroot.run("apt-get", "-q", "update")
    chroot.run("apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confold", "install", "--reinstall", *packages)
"""


def dpkg_owners(rootfs: Path, path: str) -> set[str]:
    result = subprocess.run(["chroot", str(rootfs), "dpkg", "-S", path], capture_output=True, text=True)
    if result.returncode != 0:
        return set()
    owners: set[str] = set()
    for line in result.stdout.splitlines():
        names, _, _ = line.partition(": ")
        if "diversion" not in names:
            owners.update(n.strip().split(":")[0] for n in names.split(","))
    return owners


def related_packages(rootfs: Path, tweak_paths: list[str]) -> set[str]:
    """Packages that ship the units a tweak masks or extends, or the directory it writes into."""
    packages = {p for p in ALWAYS if (rootfs / "var/lib/dpkg/info" / f"{p}.list").exists()}
    for path in tweak_paths:
        m = re.match(r"^/etc/systemd/system/(?:[^/]+\.wants/)?([^/]+?)(?:\.d/[^/]+)?$", path)
        if m:
            for base in ("/usr/lib/systemd/system/", "/lib/systemd/system/"):
                packages |= dpkg_owners(rootfs, base + m.group(1))
        parent = os.path.dirname(path)
        if parent not in GENERIC_DIRS:
            packages |= dpkg_owners(rootfs, parent)
    return packages


def snapshot(rootfs: Path, paths: list[str]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for path in paths:
        host = rootfs / path.lstrip("/")
        if host.is_symlink():
            state[path] = ("symlink", os.readlink(host))
        elif host.is_file():
            state[path] = ("file", hashlib.sha256(host.read_bytes()).hexdigest(), host.stat().st_mode)
        else:
            state[path] = ("missing",)
    return state


@pytest.mark.parametrize("suite", ["noble", "resolute"])
def test_tweaks_survive_reinstall(
    suite: str, builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    build = builder.run("--suite", suite, "--network", "none", "-d", str(tmp_path / "re1")).check()
    paths = sorted({p for t in build.summary["tweaks"] for p in t["paths"]})
    # First boot: machine-id and SSH host keys get written; that is the state to preserve.
    c = container(build.dest)
    assert c.wait_running(30) == "running"
    c.stop()
    before = snapshot(build.rootfs, paths)

    packages = sorted(related_packages(build.rootfs, paths))
    assert {"openssh-server", "systemd"} <= set(packages)
    if suite == "resolute":
        owner = dpkg_owners(build.rootfs, "/usr/lib/systemd/system/netplan-configure.service")
        assert owner and owner <= set(packages), "netplan-configure.service's package must be reinstalled too"
    subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", CHROOT_SCRIPT,
         str(build.rootfs), *packages],
        check=True, timeout=900, capture_output=True, text=True,
    )  # fmt: skip

    after = snapshot(build.rootfs, paths)
    changed = {p: (before[p], after[p]) for p in paths if before[p] != after[p]}
    assert not changed, f"reinstalling {packages} undid tweaks: {changed}"
    assert not (build.rootfs / "usr/sbin/policy-rc.d").exists()

    c = container(build.dest)
    assert c.wait_running(30) == "running", c.failed_units()
    assert c.failed_units() == []
