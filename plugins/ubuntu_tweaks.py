"""The ubuntu plugin's tweak table: the shared Debian-family tweaks, Ubuntu's netplan, and the
upstart era's jobs, as data filtered by release. docs/tweaks-ubuntu.md lists them per release.
"""

from __future__ import annotations

from vmbuilder_lxc.tweakactions import DropIn, File, Hook
from vmbuilder_lxc.tweaks import Tweak, When

from . import common_tweaks as common
from .upstart_tweaks import UPSTART_TWEAKS

NETWORK_NETPLAN = Tweak(
    "network-netplan",
    "eth0 by DHCP (or --ip), marked optional so that a container without eth0 "
    "(--network none) does not wait for it at boot.",
    (File("/etc/netplan/10-lxc.yaml", "netplan/10-lxc.yaml.j2", 0o600), Hook("netplan-check")),
    When(network="netplan"),
)

NETPLAN_CONFIGURE_UDEV = Tweak(
    "netplan-configure-udev",
    "netplan >= 1.1 reloads udev after writing the networkd config; udevd does not run in a "
    "container (read-only /sys), so the reload fails and the unit with it. Make it non-fatal.",
    (DropIn("netplan-configure.service", "systemd/netplan-configure-dropin.conf.j2", "10-vmbuilder-container.conf"),),
    When(since="25.04", network="netplan"),
)

TWEAKS: tuple[Tweak, ...] = common.distro_table(
    upstart=UPSTART_TWEAKS,
    network=(NETWORK_NETPLAN, common.NETWORK_IFUPDOWN, NETPLAN_CONFIGURE_UDEV),
    # mantic 23.10 has systemd 253, whose Debian packaging added the /etc/default/locale tmpfiles link.
    locale=common.locale_tweaks(until="23.04", since="23.10"),
)
