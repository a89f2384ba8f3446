"""The rootfs as tweak actions see it: confined file access, dpkg's state and the template variables.

Guest refuses a write to a path that a package owns, and a dpkg-divert through a symlinked
directory: the checks that make every tweak action upgrade-safe and confined (tweakactions.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .dpkg import divert, installed_packages, owned_paths
from .guestfs import GuestFS


class UnsafePathError(RuntimeError):
    """A tweak tried to write somewhere it must not."""


class OwnedFileError(UnsafePathError):
    """A tweak tried to write a file that a package ships (not upgrade-safe)."""


class Guest:
    """The rootfs being tweaked: confined file access (guestfs.py), dpkg state, template variables."""

    def __init__(
        self,
        root: Path,
        render: Callable[[str, dict[str, Any]], str],
        variables: dict[str, Any],
        hook_env: dict[str, str],
    ) -> None:
        self.root = root
        self.render = render
        self.vars = variables
        self.hook_env = hook_env
        self._owned: set[str] | None = None
        self._installed: set[str] | None = None
        self._fs: GuestFS | None = None

    @property
    def fs(self) -> GuestFS:
        """Every read and write of a tweak goes through here: resolved inside the rootfs, like a chroot."""
        if self._fs is None:
            self._fs = GuestFS(self.root)
        return self._fs

    def path(self, guest_path: str) -> Path:
        """The host path for a guest path, its directory resolved inside the rootfs (for naming and
        for tools that take a path; write through `fs`)."""
        return self.fs.host_path(guest_path)

    def check_plain(self, guest_path: str) -> None:
        """Refuse a path with a symlink in its directories, for tools that open paths on the host
        (dpkg-divert --root): the path they open must be the one resolved inside the rootfs."""
        if not self.fs.is_plain(guest_path):
            raise UnsafePathError(f"refusing {guest_path}: a symlink in its directories leads elsewhere")

    def owned_files(self) -> set[str]:
        """Every path that dpkg says a package ships (diverted paths included, as dpkg lists them)."""
        if self._owned is None:
            self._owned = owned_paths(self.root)
        return self._owned

    def is_installed(self, package: str) -> bool:
        if self._installed is None:
            self._installed = set(installed_packages(self.root))
        return package in self._installed

    def check_not_owned(self, guest_path: str) -> None:
        # merged /usr: /lib/x and /usr/lib/x are the same file, whichever name dpkg lists
        if guest_path.startswith("/usr/"):
            candidates = {guest_path, guest_path[len("/usr") :]}
        else:
            candidates = {guest_path, "/usr" + guest_path}
        if candidates & self.owned_files():
            raise OwnedFileError(f"refusing to write {guest_path}: a package owns it (not upgrade-safe)")

    def diversions(self) -> dict[str, str]:
        """dpkg's diversions in the guest: original path -> diverted-to path."""
        db = "/var/lib/dpkg/diversions"
        lines = self.fs.read_text(db, errors="replace").splitlines() if self.fs.is_file(db) else []
        return {lines[i]: lines[i + 1] for i in range(0, len(lines) - 2, 3)}

    def is_diverted(self, guest_path: str) -> bool:
        return guest_path in self.diversions()

    def divert(self, guest_path: str, to: str) -> None:
        """Move a packaged file aside for good (idempotent)."""
        current = self.diversions().get(guest_path)
        if current == to:
            return
        if current is not None:
            raise UnsafePathError(f"{guest_path} is already diverted to {current}")
        self.check_plain(guest_path)
        self.check_plain(to)
        divert(self.root, guest_path, to)

    def write(self, guest_path: str, text: str, mode: int, diverted: bool = False) -> None:
        if not (diverted and self.is_diverted(guest_path)):
            self.check_not_owned(guest_path)
        self.fs.write_text(guest_path, text, mode)  # replaces a symlink there; never follows one out

    def symlink(self, guest_path: str, target: str) -> None:
        self.check_not_owned(guest_path)
        self.fs.symlink(target, guest_path)
