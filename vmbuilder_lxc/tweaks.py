"""Container tweaks as data: each tweak says why, when (release range, init system, network stack,
installed package) and what (actions), and the engine applies the ones that match.

Every action is upgrade-safe by construction: it writes files that no package owns (the engine
checks dpkg's file lists and refuses otherwise), systemd masks and drop-ins or upstart `.override`
files under /etc, moves a packaged file aside with `dpkg-divert --local --rename` (dpkg then
installs every later version at the diverted name), or runs a small packaged shell hook. Nothing
here edits a file that a package ships, so `apt-get upgrade` and `apt-get install --reinstall`
cannot undo a tweak.

This module is the model (ReleaseTraits, When, Tweak) and the engine (select, apply); the actions
are in tweakactions.py and the rootfs they act on, Guest, in tweakguest.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .suites import Release
from .tweakactions import Action
from .tweakguest import Guest


@dataclass(frozen=True)
class ReleaseTraits:
    """What a release looks like inside, as far as tweaks care."""

    init: str = "systemd"  # systemd | upstart
    network: str = "netplan"  # netplan | ifupdown | networkd
    sources: str = "deb822"  # deb822 | one-line
    resolved: bool = True  # /etc/resolv.conf is systemd-resolved's stub
    systemd_version: int = 0
    upstart_version: str = ""
    overrides: bool = False  # upstart reads /etc/init/JOB.override (upstart 1.3, oneiric, on)
    container_detect: bool = False  # upstart ships container-detect.conf (precise on)
    initctl: bool = False  # something listens on /run/initctl (systemd-initctl up to systemd 257)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class When:
    since: str | None = None  # first release version it applies to
    until: str | None = None  # last release version it applies to (inclusive)
    init: str | None = None
    network: str | None = None
    sources: str | None = None
    resolved: bool | None = None
    overrides: bool | None = None
    container_detect: bool | None = None
    initctl: bool | None = None  # False: nothing in the release listens on /run/initctl
    installed: str | None = None  # a package that must be installed in the guest
    # Build facts, not release traits: read from the guest's variables (distro.guest_vars).
    userns: bool | None = None  # True: the guest runs under an id map (--idmap, or a build without root)
    emulated: bool | None = None  # True: --arch is foreign and runs through qemu-user (binfmt)

    def matches(self, release: Release, traits: ReleaseTraits, guest: Guest) -> bool:
        if not release.in_range(self.since, self.until):
            return False
        if self.init and traits.init != self.init:
            return False
        if self.network and traits.network != self.network:
            return False
        if self.sources and traits.sources != self.sources:
            return False
        if self.resolved is not None and traits.resolved != self.resolved:
            return False
        if self.overrides is not None and traits.overrides != self.overrides:
            return False
        if self.container_detect is not None and traits.container_detect != self.container_detect:
            return False
        if self.initctl is not None and traits.initctl != self.initctl:
            return False
        if self.userns is not None and bool(guest.vars.get("userns")) != self.userns:
            return False
        if self.emulated is not None and bool(guest.vars.get("emulated")) != self.emulated:
            return False
        return not (self.installed and not guest.is_installed(self.installed))


@dataclass(frozen=True)
class Tweak:
    name: str
    why: str
    actions: tuple[Action, ...]
    when: When = When()


def apply_action(action: Action, guest: Guest) -> list[str]:
    """Apply one action; returns the guest paths it touched."""
    if not isinstance(action, Action):
        raise TypeError(f"unknown tweak action {action!r}")
    return action.apply(guest)


def select(tweaks: Iterable[Tweak], release: Release, traits: ReleaseTraits, guest: Guest) -> list[Tweak]:
    return [t for t in tweaks if t.when.matches(release, traits, guest)]


def apply(tweaks: Sequence[Tweak], guest: Guest) -> list[dict[str, Any]]:
    """Apply the selected tweaks in order; returns a record per tweak for the build summary."""
    record = []
    for tweak in tweaks:
        touched: list[str] = []
        for action in tweak.actions:
            touched += apply_action(action, guest)
        record.append({"name": tweak.name, "why": tweak.why, "paths": touched})
    return record
