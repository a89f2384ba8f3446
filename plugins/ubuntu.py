"""The `ubuntu` distro plugin: Ubuntu releases of the systemd era, from xenial 16.04 on.

Everything release-specific is data: RELEASE_FACTS says what a release looks like inside (init,
network stack, sources format, systemd version), BASE_PACKAGES what a server container needs, and
the tweak table in ubuntu_tweaks.py what makes it container-safe.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.keyring import UBUNTU_KEYRING
from vmbuilder_lxc.log import LOG
from vmbuilder_lxc.suites import Release, ReleaseTable
from vmbuilder_lxc.tweaks import GuestFacts, Tweak

from .ubuntu_tweaks import TWEAKS

# (first version, facts) – later rows override earlier ones from their version on.
RELEASE_FACTS: list[tuple[str, dict[str, object]]] = [
    ("15.04", {"init": "systemd", "network": "ifupdown", "sources": "one-line", "resolved": False,
               "systemd_version": 219}),
    ("16.04", {"systemd_version": 229}),
    ("17.04", {"resolved": True, "systemd_version": 232}),
    ("17.10", {"network": "netplan", "systemd_version": 234}),
    ("18.04", {"systemd_version": 237}),
    ("20.04", {"systemd_version": 245}),
    ("22.04", {"systemd_version": 249}),
    ("22.10", {"systemd_version": 251}),
    ("24.04", {"sources": "deb822", "systemd_version": 255}),
    ("24.10", {"systemd_version": 256}),
    ("25.04", {"systemd_version": 257}),
    ("26.04", {"systemd_version": 259}),
    ("26.10", {"systemd_version": 261}),
]  # fmt: skip

# (first version, last version or None, packages) – the base of a server container.
BASE_PACKAGES: list[tuple[str, str | None, tuple[str, ...]]] = [
    # apt is listed because mmdebstrap's minbase leaves it out on Ubuntu.
    ("15.04", None, ("apt", "systemd-sysv", "libpam-systemd", "dbus", "ubuntu-keyring", "iproute2",
                     "iputils-ping", "sudo", "openssh-server", "locales", "tzdata", "ca-certificates", "less",
                     "vim-tiny")),
    ("15.04", "17.04", ("ifupdown", "isc-dhcp-client")),
    ("17.10", None, ("netplan.io",)),
    ("22.10", None, ("systemd-resolved",)),
]  # fmt: skip


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class Ubuntu(DebianFamily):
    name: ClassVar[str] = "ubuntu"
    description: ClassVar[str] = "Ubuntu, systemd era: xenial 16.04 to the development series"
    keyring_path: ClassVar[Path] = UBUNTU_KEYRING
    debootstrap_script: ClassVar[str] = "gutsy"
    default_components: ClassVar[tuple[str, ...]] = ("main", "restricted", "universe")
    default_user: ClassVar[str] = "ubuntu"
    min_version: ClassVar[tuple[int, ...]] = (16, 4)

    def unsupported(self, release: Release) -> str | None:
        if release.version_key < _key("15.04"):
            return (
                f"{release.describe()} boots with upstart, which this version of the ubuntu plugin "
                "does not configure yet"
            )
        if release.version_key < self.min_version:
            return f"{release.describe()} is a pre-xenial systemd release that is not supported"
        return None

    def release_facts(self, release: Release) -> GuestFacts:
        values: dict[str, object] = {}
        for since, facts in RELEASE_FACTS:
            if release.version_key >= _key(since):
                values.update(facts)
        return GuestFacts(
            init=str(values["init"]),
            network=str(values["network"]),
            sources=str(values["sources"]),
            resolved=bool(values["resolved"]),
            systemd_version=int(str(values["systemd_version"])),
        )

    def base_packages(self) -> list[str]:
        key = self.release.version_key
        out: list[str] = []
        for since, until, packages in BASE_PACKAGES:
            if key >= _key(since) and (until is None or key[:2] <= _key(until)):
                out += packages
        return out

    def tweak_table(self) -> Sequence[Tweak]:
        return TWEAKS

    def mmdebstrap_ok(self) -> bool:
        # xenial's systemd postinst runs chfn, which fails in mmdebstrap's essential phase.
        return self.release.version_key >= _key("18.04")

    def probe_unknown_suite(self, text: str, table: ReleaseTable) -> Release | None:
        """A suite distro-info-data does not know yet, but the archive serves (a new devel series)."""
        name = text.strip().lower()
        if not re.fullmatch(r"[a-z]+", name):
            return None
        mirror = str(self.settings["install-mirror"] or self.settings["mirror"])
        info = fetch_release_fields(f"{mirror.rstrip('/')}/dists/{name}/InRelease")
        if not info:
            return None
        codename = info.get("Codename", name)
        version = info.get("Version", "")
        LOG.warning(
            "%s %s is not in distro-info-data yet; the archive serves it, so it is treated as the "
            "newest release (update distro-info-data to silence this)",
            codename,
            version,
        )
        return table.newer_than_all(codename, version)


def fetch_release_fields(url: str) -> dict[str, str]:
    """The header fields of a (clear-signed) Release file; only used to learn a suite's name.

    The signature is not checked here; the bootstrap verifies the same file with the keyring.
    """
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            text = resp.read(65536).decode("utf-8", "replace")
    except OSError:
        return {}
    if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        text = text.split("\n\n", 1)[-1]  # skip the armor header ("Hash: ...")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() and fields:
            break
        m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields
