"""Container tweaks as data: each tweak says why, when (release range, init system, network stack,
installed package) and what (actions), and the engine applies the ones that match.

Every action is upgrade-safe by construction: it writes files that no package owns (the engine
checks dpkg's file lists and refuses otherwise), systemd masks and drop-ins under /etc, or runs a
small packaged shell hook. Nothing here edits a file that a package ships, so `apt-get upgrade`
and `apt-get install --reinstall` cannot undo a tweak.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dpkg import installed_packages, owned_paths
from .shellhooks import run_builtin
from .suites import Release


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@dataclass(frozen=True)
class GuestFacts:
    """What a release looks like inside, as far as tweaks care."""

    init: str = "systemd"  # systemd | upstart
    network: str = "netplan"  # netplan | ifupdown | networkd
    sources: str = "deb822"  # deb822 | one-line
    resolved: bool = True  # /etc/resolv.conf is systemd-resolved's stub
    systemd_version: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class When:
    since: str | None = None  # first release version it applies to
    until: str | None = None  # last release version it applies to (inclusive)
    init: str | None = None
    network: str | None = None
    sources: str | None = None
    resolved: bool | None = None
    installed: str | None = None  # a package that must be installed in the guest

    def matches(self, release: Release, facts: GuestFacts, guest: Guest) -> bool:
        key = release.version_key
        if self.since and key < version_key(self.since):
            return False
        if self.until and key[: len(version_key(self.until))] > version_key(self.until):
            return False
        if self.init and facts.init != self.init:
            return False
        if self.network and facts.network != self.network:
            return False
        if self.sources and facts.sources != self.sources:
            return False
        if self.resolved is not None and facts.resolved != self.resolved:
            return False
        return not (self.installed and not guest.is_installed(self.installed))


# -- actions ---------------------------------------------------------------------------------------
# Each action applies itself to a Guest (returning the guest paths it touched, for the build
# record) and describes itself for docs/tweaks.md.


@dataclass(frozen=True)
class File:
    """Render a template to a guest path that no package owns."""

    path: str
    template: str
    mode: int = 0o644

    def apply(self, guest: Guest) -> list[str]:
        guest.write(self.path, guest.render(self.template, guest.vars), self.mode)
        return [self.path]

    def describe(self) -> str:
        return f"write `{self.path}` (`{self.template}`)"


@dataclass(frozen=True)
class DropIn:
    """A systemd drop-in: /etc/systemd/system/UNIT.d/NAME."""

    unit: str
    template: str
    name: str = "50-vmbuilder-lxc.conf"

    def apply(self, guest: Guest) -> list[str]:
        path = f"/etc/systemd/system/{self.unit}.d/{self.name}"
        guest.write(path, guest.render(self.template, guest.vars), 0o644)
        return [path]

    def describe(self) -> str:
        return f"drop-in `{self.unit}.d/{self.name}` (`{self.template}`)"


@dataclass(frozen=True)
class Mask:
    """Link units to /dev/null in /etc/systemd/system; /etc wins over /lib and /usr/lib."""

    units: tuple[str, ...]

    def apply(self, guest: Guest) -> list[str]:
        paths = [f"/etc/systemd/system/{unit}" for unit in self.units]
        for path in paths:
            guest.symlink(path, "/dev/null")
        return paths

    def describe(self) -> str:
        return "mask " + ", ".join(f"`{u}`" for u in self.units)


@dataclass(frozen=True)
class Enable:
    """Enable a unit the way `systemctl enable` does: a symlink in TARGET.wants."""

    unit: str
    wanted_by: str = "multi-user.target"

    def apply(self, guest: Guest) -> list[str]:
        path = f"/etc/systemd/system/{self.wanted_by}.wants/{self.unit}"
        guest.symlink(path, f"/etc/systemd/system/{self.unit}")
        return [path]

    def describe(self) -> str:
        return f"enable `{self.unit}` in `{self.wanted_by}`"


@dataclass(frozen=True)
class Symlink:
    """A symlink; `target` may name template variables as {name}."""

    path: str
    target: str

    def apply(self, guest: Guest) -> list[str]:
        guest.symlink(self.path, self.target.format(**guest.vars))
        return [self.path]

    def describe(self) -> str:
        return f"symlink `{self.path}` -> `{self.target}`"


@dataclass(frozen=True)
class Remove:
    """Remove instance state (globs), e.g. SSH host keys or a random seed."""

    paths: tuple[str, ...]

    def apply(self, guest: Guest) -> list[str]:
        removed = []
        root = glob.escape(str(guest.root))
        for pattern in self.paths:
            for host_path in glob.glob(os.path.join(root, pattern.lstrip("/"))):
                p = Path(host_path)
                if p.is_symlink() or p.is_file():
                    p.unlink()
                    removed.append("/" + str(p.relative_to(guest.root)))
        return removed

    def describe(self) -> str:
        return "remove " + ", ".join(f"`{p}`" for p in self.paths)


@dataclass(frozen=True)
class Truncate:
    """Leave a file present but empty (machine-id)."""

    path: str

    def apply(self, guest: Guest) -> list[str]:
        target = guest.path(self.path)
        if target.is_symlink():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")
        os.chmod(target, 0o444)
        return [self.path]

    def describe(self) -> str:
        return f"empty `{self.path}`"


@dataclass(frozen=True)
class Hook:
    """Run hooks/NAME.sh with the build facts and the tweak variables in its environment.

    `paths` names the guest files the hook writes, for the build record.
    """

    name: str
    paths: tuple[str, ...] = ()

    def apply(self, guest: Guest) -> list[str]:
        env = {**guest.facts, **{f"VM_{k.upper()}": _env_value(v) for k, v in guest.vars.items()}}
        run_builtin(self.name, guest.root, env)
        return list(self.paths)

    def describe(self) -> str:
        return f"hook `hooks/{self.name}.sh`"


Action = File | DropIn | Mask | Enable | Symlink | Remove | Truncate | Hook


@dataclass(frozen=True)
class Tweak:
    name: str
    why: str
    actions: tuple[Action, ...]
    when: When = When()


class UnsafePathError(RuntimeError):
    """A tweak tried to write somewhere it must not."""


class OwnedFileError(UnsafePathError):
    """A tweak tried to write a file that a package ships (not upgrade-safe)."""


class Guest:
    """The rootfs being tweaked: path helpers, dpkg state, template variables."""

    def __init__(
        self,
        root: Path,
        render: Callable[[str, dict[str, Any]], str],
        variables: dict[str, Any],
        facts: dict[str, str],
    ) -> None:
        self.root = root
        self.render = render
        self.vars = variables
        self.facts = facts
        self._owned: set[str] | None = None
        self._installed: set[str] | None = None

    def path(self, guest_path: str) -> Path:
        """The host path for a guest path; refuses one whose directory leads out of the rootfs."""
        target = self.root / guest_path.lstrip("/")
        root = os.path.realpath(self.root)
        parent = os.path.realpath(target.parent)
        if parent != root and not parent.startswith(root + "/"):
            raise UnsafePathError(f"refusing to write {guest_path}: its directory leads out of the rootfs")
        return target

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

    def write(self, guest_path: str, text: str, mode: int) -> None:
        self.check_not_owned(guest_path)
        target = self.path(guest_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text(text, encoding="utf-8")
        os.chmod(target, mode)

    def symlink(self, guest_path: str, target: str) -> None:
        self.check_not_owned(guest_path)
        link = self.path(guest_path)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.is_file():
            link.unlink()
        os.symlink(target, link)


def apply_action(action: Action, guest: Guest) -> list[str]:
    """Apply one action; returns the guest paths it touched."""
    if not isinstance(action, File | DropIn | Mask | Enable | Symlink | Remove | Truncate | Hook):
        raise TypeError(f"unknown tweak action {action!r}")
    return action.apply(guest)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None or isinstance(value, dict) else str(value)


def select(tweaks: Iterable[Tweak], release: Release, facts: GuestFacts, guest: Guest) -> list[Tweak]:
    return [t for t in tweaks if t.when.matches(release, facts, guest)]


def apply(tweaks: Sequence[Tweak], guest: Guest) -> list[dict[str, Any]]:
    """Apply the selected tweaks in order; returns a record per tweak for the build summary."""
    record = []
    for tweak in tweaks:
        touched: list[str] = []
        for action in tweak.actions:
            touched += apply_action(action, guest)
        record.append({"name": tweak.name, "why": tweak.why, "paths": touched})
    return record
