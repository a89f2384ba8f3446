"""Architectures: Debian's names, the kernel's (uname -m) names for them, and whether this host can
run a guest of one. One table serves LXC's lxc.arch, libvirt's <type arch>, LXD/Incus image
metadata, --arch's choices and the preflight checks."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from .log import LOG, die
from .run import run

KERNEL_ARCH = {"amd64": "x86_64", "i386": "i686", "arm64": "aarch64", "armhf": "armv7l", "armel": "armv5tel",
               "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip

# Debian architecture -> what `uname -m` says on a host that runs it natively.
NATIVE_MACHINES = {
    "amd64": ("x86_64",),
    "i386": ("x86_64", "i686", "i586", "i386"),
    "arm64": ("aarch64",),
    "armhf": ("aarch64", "armv7l"),
    "armel": ("armv7l", "armv6l", "armv5tel"),
    "ppc64el": ("ppc64le",),
    "s390x": ("s390x",),
    "riscv64": ("riscv64",),
}
# Debian architecture -> the name of its qemu-user emulator (and binfmt_misc entry).
QEMU_NAMES = {"amd64": "x86_64", "i386": "i386", "arm64": "aarch64", "armhf": "arm", "armel": "arm",
              "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip


def kernel_arch(debian_arch: str) -> str:
    return KERNEL_ARCH.get(debian_arch, debian_arch)


def host_arch() -> str:
    """The host's Debian architecture (dpkg's answer, else derived from uname)."""
    if shutil.which("dpkg"):
        return run(["dpkg", "--print-architecture"]).output.strip()
    machine = platform.machine()
    return next((arch for arch, names in NATIVE_MACHINES.items() if names[0] == machine), machine)


def check_suite_arch(release: str, arches: list[str], arch: str) -> None:
    """Refuse --arch for a release (described) whose base systems are `arches` ([]: unknown), before
    anything is downloaded."""
    if arches and arch not in arches:
        die(f"{release} has no {arch} base system (its architectures: {', '.join(arches)})",
            "choose one of those with --arch, or another --suite")  # fmt: skip


def check_arch(arch: str) -> None:
    """Refuse an --arch this host cannot run: neither native nor registered with qemu-user's binfmt."""
    if arch not in NATIVE_MACHINES:
        die(f"unknown architecture '{arch}'", f"use --arch with one of: {', '.join(NATIVE_MACHINES)}")
    if platform.machine() in NATIVE_MACHINES[arch]:
        return
    binfmt = Path(f"/proc/sys/fs/binfmt_misc/qemu-{QEMU_NAMES[arch]}")
    if not binfmt.exists():
        die(
            f"this host cannot run {arch} binaries (no {binfmt})",
            "install qemu-user-static and binfmt-support, or build for the host's architecture",
        )
    flags = next((ln.split(":", 1)[1] for ln in binfmt.read_text().splitlines() if ln.startswith("flags:")), "")
    if "F" not in flags:
        LOG.warning("%s lacks the F flag; the chroot may not find the emulator", binfmt)
