"""Architectures: Debian's names, the kernel's (uname -m) names for them, and whether this host can
run a guest of one. One table serves LXC's lxc.arch, libvirt's <type arch>, LXD/Incus image
metadata, --arch's choices and the preflight checks."""

from __future__ import annotations

import platform
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import binfmt
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


def foreign(arch: str, machine: str | None = None) -> bool:
    """True when this host (uname -m: MACHINE) runs ARCH only through an emulator."""
    return (machine or platform.machine()) not in NATIVE_MACHINES.get(arch, (arch,))


def release_architectures(fields: Mapping[str, str], partial: Iterable[str] = ()) -> list[str]:
    """The architectures a suite's Release file lists (`Architectures:`), without `all` and without
    those the distro knows to be partial there (Ubuntu's i386 after 19.04: multilib only, no base)."""
    skip = {"all", *partial}
    return sorted({a for a in fields.get("Architectures", "").split() if a not in skip})


def check_suite_arch(release: str, arches: list[str], arch: str, where: str = "") -> None:
    """Refuse --arch for a release (described) whose base systems are `arches` ([]: unknown), before
    anything is downloaded. WHERE names the Release file the list was read from, if any."""
    if arches and arch not in arches:
        source = f" in {where}" if where else ""
        die(f"{release} has no {arch} base system{source} (its architectures: {', '.join(arches)})",
            "choose one of those with --arch, or another --suite or --mirror")  # fmt: skip


def check_arch(arch: str, directory: Path = binfmt.BINFMT_DIR) -> None:
    """Refuse an --arch this host cannot run: neither native nor registered with qemu-user's binfmt
    with the F flag (nothing is ever copied into the guest to make up for a missing one)."""
    if arch not in NATIVE_MACHINES:
        die(f"unknown architecture '{arch}'", f"use --arch with one of: {', '.join(NATIVE_MACHINES)}")
    if not foreign(arch):
        return
    trouble = binfmt.problem(QEMU_NAMES[arch], directory)
    if trouble is not None:
        die(f"this {platform.machine()} host cannot run {arch} binaries: {trouble.what}", trouble.fix)
    LOG.debug("--arch %s runs through qemu-%s (binfmt_misc, F flag)", arch, QEMU_NAMES[arch])
