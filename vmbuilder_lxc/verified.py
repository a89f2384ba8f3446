"""How this version's own tests verify each release: the one table behind --list-suites' VERIFIED column.

The integration tests read their suite lists from here (tests/integration/test_boot.py,
test_boot_debian.py, test_libvirt.py), and tests/unit/test_verified.py checks the fixture-only list
against the upstart fixtures, so the column cannot claim more than the tests do. A release missing
from the table is built by nothing in the test suite ("none").
"""

from __future__ import annotations

from dataclasses import dataclass

LXC = "lxc"  # booted with lxc-start
LIBVIRT = "libvirt"  # defined in and booted by a real libvirtd (libvirt-lxc)
MANAGERS = (LXC, LIBVIRT)
DEVEL = "devel"  # key for the series `--suite devel` resolves to, whatever it is called today


@dataclass(frozen=True)
class Verified:
    """One release's evidence: booted under some managers, only built, or only a fixture tree."""

    booted: tuple[str, ...] = ()
    built: bool = False
    fixture: bool = False

    @property
    def label(self) -> str:
        if self.booted:
            return f"booted ({', '.join(self.booted)})"
        if self.built:
            return "built"
        if self.fixture:
            return "fixture only"
        return "none"


NONE = Verified()
FIXTURE = Verified(fixture=True)
ON_LXC = Verified(booted=(LXC,))
ON_LXC_AND_LIBVIRT = Verified(booted=(LXC, LIBVIRT))

# distro -> series (or DEVEL) -> evidence. Changing a row means changing what the tests run.
VERIFIED: dict[str, dict[str, Verified]] = {
    "ubuntu": {
        # Not bootstrappable here; tests/unit/test_upstart_tweaks.py checks the tweaks on file-list fixtures.
        "lucid": FIXTURE,
        "maverick": FIXTURE,
        "natty": FIXTURE,
        "oneiric": FIXTURE,
        "precise": FIXTURE,
        "trusty": FIXTURE,
        "utopic": FIXTURE,
        "xenial": ON_LXC,
        "bionic": ON_LXC,
        "focal": ON_LXC,
        "jammy": ON_LXC_AND_LIBVIRT,
        "noble": ON_LXC_AND_LIBVIRT,
        "plucky": ON_LXC,
        "questing": ON_LXC,
        # systemd 258+ cannot boot under the test bed's libvirt 9.0; its initctl listener is tested
        # under lxc-start with the request libvirt writes (tests/integration/test_libvirt.py).
        "resolute": ON_LXC,
        DEVEL: ON_LXC,  # test_boot.py: --suite devel (xfail while the archive is not installable)
    },
    "debian": {
        "bookworm": ON_LXC,
        "trixie": ON_LXC,
    },
}


def verified(distro: str, series: str, devel: bool = False) -> Verified:
    """The evidence for a series; `devel` marks the series that `--suite devel` resolves to."""
    table = VERIFIED.get(distro, {})
    if series in table:
        return table[series]
    return table.get(DEVEL, NONE) if devel else NONE


def booted(distro: str, manager: str) -> list[str]:
    """The named series the integration tests boot under a manager, oldest first (DEVEL left out)."""
    return [s for s, v in VERIFIED.get(distro, {}).items() if manager in v.booted and s != DEVEL]


def fixture_only(distro: str) -> list[str]:
    return [s for s, v in VERIFIED.get(distro, {}).items() if v.fixture and not v.booted and not v.built]
