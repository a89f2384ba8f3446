"""binfmt_misc: whether the kernel hands a foreign architecture's binaries to qemu-user, and what
fixes it when it does not.

A foreign build runs the guest's own programs (maintainer scripts, apt, the tweaks' commands, and
under lxc-start the guest's init) through the registered emulator. Only the `F` (fix-binary) flag
makes that work inside a chroot or a container without copying the emulator into the guest: the
kernel opens the interpreter when it is registered, not at each exec in the guest's root. So an
entry without `F` is refused like a missing one, rather than copying qemu into the rootfs (where it
would end up in the image).

Preflight (arches.check_arch) and `vmbuilder lxc doctor` (doctor_host.check_binfmt) both read the
registrations here; nothing here changes the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
PACKAGES = "qemu-user-static binfmt-support"
INSTALL = f"apt-get install {PACKAGES}"


@dataclass(frozen=True)
class Entry:
    """One registration, as /proc/sys/fs/binfmt_misc/NAME shows it."""

    name: str
    enabled: bool
    interpreter: str
    flags: str


@dataclass(frozen=True)
class Problem:
    """Why this host cannot run an architecture's binaries in a chroot, and the commands that fix it."""

    what: str
    fix: str


def mounted(directory: Path = BINFMT_DIR) -> bool:
    """binfmt_misc's control files are there (it is mounted; Debian 12 does not mount it without systemd)."""
    return (directory / "status").exists() or (directory / "register").exists()


def read_entry(name: str, directory: Path = BINFMT_DIR) -> Entry | None:
    """The registration NAME (e.g. qemu-aarch64), or None when there is none."""
    try:
        text = (directory / name).read_text()
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines()]
    fields = {line.partition(" ")[0].rstrip(":"): line.partition(" ")[2].strip() for line in lines if line}
    return Entry(name, "enabled" in fields, fields.get("interpreter", ""), fields.get("flags", ""))


def problem(qemu: str, directory: Path = BINFMT_DIR) -> Problem | None:
    """What stops qemu-QEMU binaries from running in a chroot (None: nothing does)."""
    entry_name = f"qemu-{qemu}"
    enable = f"update-binfmts --enable {entry_name}"
    if not mounted(directory):
        return Problem(f"binfmt_misc is not mounted at {directory}",
                       f"mount -t binfmt_misc binfmt_misc {directory}; {INSTALL}; {enable}")  # fmt: skip
    entry = read_entry(entry_name, directory)
    if entry is None:
        return Problem(f"no {entry_name} registration ({directory / entry_name} is missing)",
                       f"{INSTALL}; {enable}")  # fmt: skip
    if not entry.enabled:
        return Problem(f"{entry_name} is registered but disabled", enable)
    if "F" not in entry.flags:
        return Problem(f"{entry_name} is registered without the F flag (fix-binary), so a chroot cannot find "
                       f"its interpreter {entry.interpreter or '(unknown)'}",
                       f"{INSTALL} (its entries set F); update-binfmts --disable {entry_name}; {enable}")  # fmt: skip
    return None
