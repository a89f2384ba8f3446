"""The `ubuntu` distro plugin: every Ubuntu release from lucid 10.04 (upstart) to the devel series.

Everything release-specific is data: RELEASE_TRAITS says what a release looks like inside (init
system and its features, network stack, sources format), BASE_PACKAGES what a server container
needs, and the tweak table in ubuntu_tweaks.py what makes it container-safe. The code is
DebianFamily's, shared with the debian plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from vmbuilder_lxc.distro import DebianFamily, PackagesTable, TraitsTable
from vmbuilder_lxc.keyring import UBUNTU_KEYRING
from vmbuilder_lxc.suites import Release
from vmbuilder_lxc.tweaks import Tweak

from .buildd_tweaks import BUILDD_TWEAKS
from .ubuntu_tweaks import TWEAKS
from .upstart_tweaks import MANAGER_MOUNTS

# (first version, traits) – later rows override earlier ones from their version on. Sources: the
# upstart and systemd packages of each release (see docs/releases.md).
RELEASE_TRAITS: TraitsTable = [
    ("10.04", {"init": "upstart", "upstart_version": "0.6.5", "network": "ifupdown", "sources": "one-line",
               "resolved": False, "overrides": False, "container_detect": False}),
    ("10.10", {"upstart_version": "0.6.6"}),
    ("11.04", {"upstart_version": "0.9.7"}),
    ("11.10", {"upstart_version": "1.3", "overrides": True}),
    ("12.04", {"upstart_version": "1.5", "container_detect": True}),
    ("12.10", {"upstart_version": "1.5"}),
    ("13.04", {"upstart_version": "1.8"}),
    ("13.10", {"upstart_version": "1.10"}),
    ("14.04", {"upstart_version": "1.12.1"}),
    ("14.10", {"upstart_version": "1.13.2"}),
    ("15.04", {"init": "systemd", "upstart_version": "", "overrides": False, "container_detect": False,
               "systemd_version": 219}),
    ("15.10", {"systemd_version": 225}),
    ("16.04", {"systemd_version": 229}),
    ("16.10", {"systemd_version": 231}),
    ("17.04", {"resolved": True, "systemd_version": 232}),
    ("17.10", {"network": "netplan", "systemd_version": 234}),
    ("18.04", {"systemd_version": 237}),
    ("18.10", {"systemd_version": 239}),
    ("19.04", {"systemd_version": 240}),
    ("19.10", {"systemd_version": 242}),
    ("20.04", {"systemd_version": 245}),
    ("20.10", {"systemd_version": 246}),
    ("21.04", {"systemd_version": 247}),
    ("21.10", {"systemd_version": 248}),
    ("22.04", {"systemd_version": 249}),
    ("22.10", {"systemd_version": 251}),
    ("23.04", {"systemd_version": 252}),
    ("23.10", {"systemd_version": 253}),
    ("24.04", {"sources": "deb822", "systemd_version": 255}),
    ("24.10", {"systemd_version": 256}),
    ("25.04", {"systemd_version": 257}),
    ("26.04", {"systemd_version": 259}),
    ("26.10", {"systemd_version": 261}),
]  # fmt: skip

# (first version, last version or None, packages) – the base of a server container.
BASE_PACKAGES: PackagesTable = [
    # apt is listed because mmdebstrap's minbase leaves it out on Ubuntu.
    ("10.04", None, ("apt", "ubuntu-keyring", "iputils-ping", "sudo", "openssh-server", "locales", "tzdata",
                     "ca-certificates", "less", "vim-tiny")),
    ("10.04", "14.10", ("upstart", "ifupdown", "netbase")),
    ("10.04", "10.10", ("dhcp3-client", "iproute")),
    ("11.04", "17.04", ("isc-dhcp-client",)),
    ("11.04", "13.10", ("iproute",)),
    ("14.04", None, ("iproute2",)),
    ("15.04", None, ("systemd-sysv", "libpam-systemd", "dbus")),
    ("15.04", "17.04", ("ifupdown",)),
    ("17.10", None, ("netplan.io",)),
    ("22.10", None, ("systemd-resolved",)),
]  # fmt: skip

# (first version, last version or None, packages) – a buildd chroot (--variant buildd): the
# bootstrap's buildd variant (build-essential) plus what sbuild needs in it. apt is listed because
# mmdebstrap's buildd variant leaves it out; fakeroot and the keyring are sbuild's core
# dependencies and what verifies the archive, so neither has to be installed per build.
BUILDD_PACKAGES: PackagesTable = [
    ("10.04", None, ("apt", "build-essential", "fakeroot", "ubuntu-keyring", "ca-certificates")),
]

# (first version, last version or None, packages) – pulled in by debootstrap's resolver, which takes
# the first alternative: xenial's libpam-systemd depends on "systemd-shim | systemd-sysv", and the
# shim brings cgmanager, whose cgproxy.service fails in a container at the first login.
UNWANTED_PACKAGES: PackagesTable = [
    ("15.04", "16.10", ("systemd-shim", "cgmanager")),
]


# (first version, last version or None, architectures) – what the archive and its ports archive have a
# base system for. i386 became a partial architecture (multilib libraries only) with 19.10. Where a
# boundary is uncertain the row allows the architecture: the bootstrap then names what is missing.
ARCHITECTURES: PackagesTable = [
    ("10.04", None, ("amd64",)),
    ("10.04", "19.04", ("i386",)),
    ("10.04", "12.10", ("armel",)),
    ("10.04", "16.10", ("powerpc",)),
    ("12.04", None, ("armhf",)),
    ("13.04", None, ("arm64",)),
    ("14.04", None, ("ppc64el",)),
    ("16.04", None, ("s390x",)),
    ("20.04", None, ("riscv64",)),
]

# (first version, last version or None, architectures) – listed in the Release files' Architectures
# line but partial: from 19.10 on, i386 carries only the libraries 64-bit systems need for 32-bit
# programs, no base system, so a release that lists it still cannot be bootstrapped for it.
PARTIAL_ARCHITECTURES: PackagesTable = [
    ("19.10", None, ("i386",)),
]


class Ubuntu(DebianFamily):
    name: ClassVar[str] = "ubuntu"
    description: ClassVar[str] = "Ubuntu: lucid 10.04 (upstart) to the development series (systemd)"
    keyring_path: ClassVar[Path] = UBUNTU_KEYRING
    debootstrap_script: ClassVar[str] = "gutsy"
    default_components: ClassVar[tuple[str, ...]] = ("main", "restricted", "universe")
    default_user: ClassVar[str] = "ubuntu"
    min_version: ClassVar[tuple[int, ...]] = (10, 4)
    traits_table: ClassVar[TraitsTable] = RELEASE_TRAITS
    packages_table: ClassVar[PackagesTable] = BASE_PACKAGES
    buildd_packages_table: ClassVar[PackagesTable] = BUILDD_PACKAGES
    buildd_tweaks: ClassVar[tuple[Tweak, ...]] = BUILDD_TWEAKS
    unwanted_table: ClassVar[PackagesTable] = UNWANTED_PACKAGES
    arch_table: ClassVar[PackagesTable] = ARCHITECTURES
    partial_arch_table: ClassVar[PackagesTable] = PARTIAL_ARCHITECTURES
    tweaks: ClassVar[tuple[Tweak, ...]] = TWEAKS
    template_vars: ClassVar[dict[str, Any]] = {"manager_mounts": MANAGER_MOUNTS}
    # xenial's systemd postinst runs chfn, which fails in mmdebstrap's essential phase.
    mmdebstrap_since: ClassVar[str] = "18.04"

    def unsupported(self, release: Release) -> str | None:
        if release.version_key < self.min_version:
            return f"{release.describe()} predates lucid 10.04, the first release whose upstart can boot in a container"
        return None
