"""The per-instance identity files of an image (/etc/hostname, the 127.0.1.1 line of /etc/hosts)
with a placeholder where the instance's name goes: LXC_NAME for lxc-local, a Pongo2 expression
for LXD and Incus."""

from __future__ import annotations

from pathlib import Path

from ..guestfs import GuestFS
from ..hostsfile import hosts_text


def hosts_with(root: Path, placeholder: str) -> str:
    """The image's /etc/hosts with its 127.0.1.1 line naming `placeholder`."""
    try:  # read inside the rootfs: an imported image's /etc/hosts may be a symlink to a host file
        with GuestFS(root) as fs:
            current = fs.read_text("/etc/hosts", errors="replace") if fs.is_file("/etc/hosts") else ""
    except OSError:
        current = ""
    return hosts_text(current or "127.0.0.1\tlocalhost\n", placeholder)


def identity_files(root: Path, placeholder: str) -> dict[str, str]:
    return {"etc/hostname": f"{placeholder}\n", "etc/hosts": hosts_with(root, placeholder)}
