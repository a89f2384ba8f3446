"""Debian architecture names and the kernel's (uname -m) names for them: one table for LXC's
lxc.arch, libvirt's <type arch>, and LXD/Incus image metadata."""

from __future__ import annotations

KERNEL_ARCH = {"amd64": "x86_64", "i386": "i686", "arm64": "aarch64", "armhf": "armv7l", "armel": "armv5tel",
               "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip


def kernel_arch(debian_arch: str) -> str:
    return KERNEL_ARCH.get(debian_arch, debian_arch)
