"""The `debian` distro plugin: Debian 12 bookworm, 13 trixie, the testing suite and sid.

Like the ubuntu plugin, it is data on top of DebianFamily: RELEASE_TRAITS says what a release looks
like inside, BASE_PACKAGES what a server container needs, and debian_tweaks.py what makes it
container-safe. The only behaviour of its own is where Debian keeps things that Ubuntu keeps
elsewhere: the security archive is a sibling of the main one, sid has no -updates or -security
suites, and Debian has no LTS releases to name with `--suite lts` (see docs/debian.md).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import ClassVar

from vmbuilder_lxc.distro import DebianFamily, PackagesTable, TraitsTable
from vmbuilder_lxc.keyring import DEBIAN_KEYRING
from vmbuilder_lxc.suites import Release
from vmbuilder_lxc.tweaks import Tweak

from .buildd_tweaks import BUILDD_TWEAKS
from .debian_tweaks import TWEAKS

# (first version, traits) – later rows override earlier ones; sid (no version) gets every row.
# systemd versions are those of each suite's Packages index (sid and forky: 262 in November 2026).
RELEASE_TRAITS: TraitsTable = [
    ("12", {"init": "systemd", "network": "networkd", "sources": "one-line", "resolved": True,
            "overrides": False, "container_detect": False, "systemd_version": 252}),
    ("13", {"sources": "deb822", "systemd_version": 257}),
    ("14", {"systemd_version": 262}),
]  # fmt: skip

# (first version, last version or None, packages) – the base of a server container. minbase is
# Priority: required only, so netbase (/etc/services, /etc/protocols) and procps (ps, free) are
# named; systemd-resolved is its own package from bookworm on; networkd is part of systemd.
BASE_PACKAGES: PackagesTable = [
    ("12", None, ("apt", "debian-archive-keyring", "systemd-sysv", "libpam-systemd", "dbus", "systemd-resolved",
                  "iproute2", "iputils-ping", "netbase", "procps", "sudo", "openssh-server", "locales", "tzdata",
                  "ca-certificates", "less", "vim-tiny")),
]  # fmt: skip

# (first version, last version or None, packages) – a buildd chroot (--variant buildd): the
# bootstrap's buildd variant (build-essential) plus what sbuild needs in it. apt is listed because
# mmdebstrap's buildd variant leaves it out; fakeroot and the keyring are sbuild's core
# dependencies and what verifies the archive, so neither has to be installed per build.
BUILDD_PACKAGES: PackagesTable = [
    ("12", None, ("apt", "build-essential", "fakeroot", "debian-archive-keyring", "ca-certificates")),
]

# (first version, last version or None, architectures) – the release architectures of each suite
# (mips64el and mipsel were dropped after bookworm, riscv64 joined with trixie).
ARCHITECTURES: PackagesTable = [
    ("12", None, ("amd64", "arm64", "armel", "armhf", "i386", "ppc64el", "s390x")),
    ("12", "12", ("mips64el", "mipsel")),
    ("13", None, ("riscv64",)),
]

UNRELEASED = ("sid", "experimental")  # no version, no -updates, no -security


class Debian(DebianFamily):
    name: ClassVar[str] = "debian"
    description: ClassVar[str] = "Debian: bookworm 12, trixie 13, testing and sid (systemd, networkd)"
    keyring_path: ClassVar[Path] = DEBIAN_KEYRING
    debootstrap_script: ClassVar[str] = "sid"  # every Debian script is a symlink to sid
    default_components: ClassVar[tuple[str, ...]] = ("main",)
    default_user: ClassVar[str] = "debian"
    min_version: ClassVar[tuple[int, ...]] = (12,)
    traits_table: ClassVar[TraitsTable] = RELEASE_TRAITS
    packages_table: ClassVar[PackagesTable] = BASE_PACKAGES
    buildd_packages_table: ClassVar[PackagesTable] = BUILDD_PACKAGES
    arch_table: ClassVar[PackagesTable] = ARCHITECTURES
    buildd_tweaks: ClassVar[tuple[Tweak, ...]] = BUILDD_TWEAKS
    tweaks: ClassVar[tuple[Tweak, ...]] = TWEAKS
    mmdebstrap_since: ClassVar[str] = ""  # mmdebstrap bootstraps every supported suite

    # Debian's own suite names for distro-info-data's aliases.
    SUITE_ALIASES: ClassVar[dict[str, str]] = {"lts": "stable", "testing": "devel"}

    def resolve_suite(self, text: str, today: dt.date | None = None) -> Release:
        """`lts` is `stable`: Debian has no LTS releases of its own (distro-info-data marks none);
        every stable release gets Debian LTS support after its regular security support, so the
        newest release is also the one supported longest. `--suite lts` is the default.
        `testing` is the versioned suite in development (forky in 2026), built under its codename."""
        key = text.strip().lower()
        return super().resolve_suite(self.SUITE_ALIASES.get(key, text), today)

    def unsupported(self, release: Release) -> str | None:
        if release.series == "experimental":
            return "Debian experimental is not a complete suite; use --suite sid"
        if release.version_key < self.min_version:
            return f"{release.describe()} predates bookworm 12, the oldest release this plugin builds"
        return None

    def security_mirror_for(self, mirror: str) -> str:
        """Debian's security archive is a sibling of the main one: .../debian -> .../debian-security.

        The suite is then SUITE-security, as in Ubuntu. A mirror laid out otherwise needs
        --security-mirror (and --install-security-mirror for a build-time cache).
        """
        return mirror.rstrip("/") + "-security"

    def pockets_for(self, release: Release) -> tuple[str, ...]:
        """sid has neither -updates nor -security. The testing suite has both (empty until its
        release; the archive serves them), so a testing guest keeps getting updates once released."""
        return () if release.series in UNRELEASED else ("updates", "security")
