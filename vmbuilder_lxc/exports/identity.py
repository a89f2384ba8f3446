"""The per-instance identity files of an image (/etc/hostname, the 127.0.1.1 line of /etc/hosts)
with a placeholder where the instance's name goes: LXC_NAME for lxc-local, a Pongo2 expression
for LXD and Incus."""

from __future__ import annotations

from pathlib import Path

from ..guestfs import GuestFS


def hosts_text(current: str, names: str) -> str:
    """/etc/hosts with its 127.0.1.1 line naming `names` (added after localhost if missing); every
    other line is kept as it is. Used by the exports and by --from-template."""
    out: list[str] = []
    done = False
    for line in current.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == "127.0.1.1":
            if not done:
                out.append(f"127.0.1.1\t{names}")
                done = True
            continue
        out.append(line)
    if not done:
        localhost = [i for i, line in enumerate(out) if line.split("#", 1)[0].split()[:1] == ["127.0.0.1"]]
        out.insert(localhost[-1] + 1 if localhost else 0, f"127.0.1.1\t{names}")
    return "\n".join(out) + "\n"


def hosts_with(root: Path, placeholder: str) -> str:
    """The image's /etc/hosts with its 127.0.1.1 line naming `placeholder`."""
    try:  # read inside the rootfs: a template's /etc/hosts may be a symlink to a host file
        with GuestFS(root) as fs:
            current = fs.read_text("/etc/hosts", errors="replace") if fs.is_file("/etc/hosts") else ""
    except OSError:
        current = ""
    return hosts_text(current or "127.0.0.1\tlocalhost\n", placeholder)


def identity_files(root: Path, placeholder: str) -> dict[str, str]:
    return {"etc/hostname": f"{placeholder}\n", "etc/hosts": hosts_with(root, placeholder)}
