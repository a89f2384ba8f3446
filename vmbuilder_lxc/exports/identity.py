"""The per-instance identity files of an image (/etc/hostname, the 127.0.1.1 line of /etc/hosts)
with a placeholder where the instance's name goes: LXC_NAME for lxc-local, a Pongo2 expression
for LXD and Incus."""

from __future__ import annotations

from pathlib import Path


def hosts_with(root: Path, placeholder: str) -> str:
    """The image's /etc/hosts with its 127.0.1.1 line naming `placeholder` (added if missing)."""
    path = root / "etc/hosts"
    try:
        lines = path.read_text().splitlines() if path.is_file() else []
    except OSError:
        lines = []
    if not lines:
        lines = ["127.0.0.1\tlocalhost"]
    out: list[str] = []
    done = False
    for line in lines:
        fields = line.split()
        if fields and fields[0] == "127.0.1.1":
            if not done:
                out.append(f"127.0.1.1\t{placeholder}")
                done = True
            continue
        out.append(line)
    if not done:
        at = next((i + 1 for i, ln in enumerate(out) if ln.split()[:1] == ["127.0.0.1"]), 0)
        out.insert(at, f"127.0.1.1\t{placeholder}")
    return "\n".join(out) + "\n"


def identity_files(root: Path, placeholder: str) -> dict[str, str]:
    return {"etc/hostname": f"{placeholder}\n", "etc/hosts": hosts_with(root, placeholder)}
