"""The debian plugin's tweak table: the shared Debian-family tweaks and Debian's own network
configuration (systemd-networkd), as data filtered by release. docs/tweaks-debian.md lists them
per release.
"""

from __future__ import annotations

from vmbuilder_lxc.tweakactions import Enable, File
from vmbuilder_lxc.tweaks import Tweak, When

from . import common_tweaks as common

NETWORK_NETWORKD = Tweak(
    "network-networkd",
    "eth0 by DHCP (or --ip) with systemd-networkd, which Debian ships disabled: enable it (with its "
    "socket and D-Bus alias, as systemctl enable does). RequiredForOnline=no, and "
    "systemd-networkd-wait-online stays disabled, so a container without eth0 (--network none) "
    "does not wait for it at boot. systemd-network-generator (Also= of networkd) is left off: it "
    "reads ip= from /proc/cmdline, which in a container is the host's.",
    (
        File("/etc/systemd/network/10-lxc-eth0.network", "networkd/10-lxc-eth0.network.j2"),
        Enable("systemd-networkd.service", aliases=("dbus-org.freedesktop.network1.service",)),
        Enable("systemd-networkd.socket", "sockets.target"),
    ),
    When(init="systemd", network="networkd"),
)

TWEAKS: tuple[Tweak, ...] = common.distro_table(
    network=(NETWORK_NETWORKD,),
    # bookworm has systemd 252; trixie (257) and later link /etc/default/locale to /etc/locale.conf.
    locale=common.locale_tweaks(until="12", since="13"),
)
