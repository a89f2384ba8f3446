"""common_tweaks.distro_table: both distros' tables are the shared tweaks in one order, with each
distro's own (network, locale range, upstart jobs) in their places."""

from __future__ import annotations

import importlib
from typing import Any

common: Any = importlib.import_module("vmbuilder_lxc.plugins.common_tweaks")
debian: Any = importlib.import_module("vmbuilder_lxc.plugins.debian_tweaks")
ubuntu: Any = importlib.import_module("vmbuilder_lxc.plugins.ubuntu_tweaks")
upstart: Any = importlib.import_module("vmbuilder_lxc.plugins.upstart_tweaks")

SHARED = ("fstab", "hostname", "machine-id", "instance-secrets", "ssh-host-keys", "initctl-listener",
          "resolv-conf-resolved", "resolv-conf-static", "apt-sources-deb822", "apt-sources-one-line",
          "locale", "locale-conf", "timezone",
          # build facts last: the id-map rows (--idmap) and the foreign-architecture rows (qemu-user)
          *(t.name for t in (*common.USERNS_TWEAKS, *common.EMULATED_TWEAKS)))  # fmt: skip


def _names(table: tuple[Any, ...]) -> list[str]:
    return [t.name for t in table]


def test_both_distros_share_the_common_tweaks_in_one_order() -> None:
    for table in (debian.TWEAKS, ubuntu.TWEAKS):
        assert [n for n in _names(table) if n in SHARED] == list(SHARED)


def test_each_distro_adds_its_own_in_place() -> None:
    assert _names(debian.TWEAKS) == [*SHARED[:6], "network-networkd", *SHARED[6:]]
    jobs = _names(upstart.UPSTART_TWEAKS)
    assert _names(ubuntu.TWEAKS) == [
        "fstab", *jobs, "hostname", "machine-id", "dbus-machine-id", *SHARED[3:6],
        "network-netplan", "network-ifupdown", "netplan-configure-udev", *SHARED[6:],
    ]  # fmt: skip


def test_locale_ranges_meet() -> None:
    for table, until, since in ((debian.TWEAKS, "12", "13"), (ubuntu.TWEAKS, "23.04", "23.10")):
        by_name = {t.name: t for t in table}
        assert (by_name["locale"].when.until, by_name["locale-conf"].when.since) == (until, since)
        assert by_name["locale"].actions == common.LOCALE_DEFAULT.actions
