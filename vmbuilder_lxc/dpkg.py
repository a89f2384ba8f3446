"""Reading a guest's dpkg database from the host (no chroot needed)."""

from __future__ import annotations

from pathlib import Path

from .run import run


def installed_packages(root: Path) -> dict[str, str]:
    """Installed packages of the rootfs at `root`, name -> version."""
    status = root / "var/lib/dpkg/status"
    text = status.read_text(errors="replace") if status.exists() else ""
    installed: dict[str, str] = {}
    for paragraph in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in paragraph.splitlines() if ": " in line and not line.startswith(" ")
        )
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            installed[fields["Package"]] = fields.get("Version", "")
    return installed


def owned_paths(root: Path) -> set[str]:
    """Every path some package ships, as dpkg's file lists name them."""
    owned: set[str] = set()
    for listing in (root / "var/lib/dpkg/info").glob("*.list"):
        owned.update(line for line in listing.read_text(errors="replace").splitlines() if line)
    return owned


def divert(root: Path, path: str, to: str) -> None:
    """`dpkg-divert --local --rename` in the rootfs at `root`, run by the host's dpkg (no chroot,
    so it works for foreign architectures too); the guest's dpkg reads the same database."""
    run(["dpkg-divert", f"--root={root}", "--local", "--rename", "--divert", to, "--add", path])
