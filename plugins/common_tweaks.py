"""Container tweaks every Debian-family distro shares, as data. The distro plugins compose their
tweak tables from these and their own entries; nothing is written twice.

Each entry names the problem it solves; docs/tweaks-*.md list them per release with the evidence.
"""

from __future__ import annotations

import dataclasses

from vmbuilder_lxc.tweakactions import DropIn, Enable, File, Hook, Mask, Remove, Symlink, Truncate
from vmbuilder_lxc.tweaks import Tweak, When

from .emulated_tweaks import EMULATED_TWEAKS
from .userns_tweaks import USERNS_TWEAKS

FSTAB = Tweak(
    "fstab",
    "The manager mounts /proc, /sys and /dev (with lxcfs or libvirt's views on top); a guest "
    "fstab entry for them would hide those views, and block devices or swap do not exist.",
    (File("/etc/fstab", "common/fstab.j2"),),
    When(init="systemd"),
)

HOSTNAME = Tweak(
    "hostname",
    "The guest's own name, and 127.0.1.1 for it so sudo and mail can resolve it offline.",
    (File("/etc/hostname", "common/hostname.j2"), File("/etc/hosts", "common/hosts.j2")),
)

MACHINE_ID = Tweak(
    "machine-id",
    "Empty but present: systemd writes a fresh id at first boot, so clones differ (DHCP client "
    "ids derive from it); 'uninitialized' would trigger preset-all and change the unit set.",
    (Truncate("/etc/machine-id"), Remove(("/var/lib/dbus/machine-id",))),
    When(init="systemd"),
)

DBUS_MACHINE_ID = Tweak(
    "dbus-machine-id",
    "No D-Bus machine id in the image: the dbus job makes a fresh one at boot, so clones differ.",
    (Remove(("/var/lib/dbus/machine-id",)),),
    When(init="upstart"),
)

INSTANCE_SECRETS = Tweak(
    "instance-secrets",
    "No random seed or credential secret may be shared between containers built from one cache.",
    (Remove(("/var/lib/systemd/random-seed", "/var/lib/systemd/credential.secret", "/var/lib/urandom/random-seed")),),
)

SSH_HOST_KEYS = Tweak(
    "ssh-host-keys",
    "Keys are removed so every container gets its own; sshd does not create missing keys "
    "(ExecStartPre=sshd -t fails), so a oneshot runs ssh-keygen -A at boot and before sshd.",
    (
        Remove(("/etc/ssh/ssh_host_*",)),
        File("/etc/systemd/system/vmbuilder-ssh-hostkeys.service", "systemd/ssh-hostkeys.service.j2"),
        Enable("vmbuilder-ssh-hostkeys.service"),
        DropIn("ssh.service", "systemd/ssh-hostkeys-dropin.conf.j2", "10-vmbuilder-hostkeys.conf"),
    ),
    When(init="systemd", installed="openssh-server"),
)

NETWORK_IFUPDOWN = Tweak(
    "network-ifupdown",
    "eth0 by DHCP (or --ip) with ifupdown; allow-hotplug so that a missing eth0 never blocks boot.",
    (File("/etc/network/interfaces", "ifupdown/interfaces.j2"),),
    When(network="ifupdown"),
)

# The guest end of libvirt-lxc's `virsh shutdown` and `virsh reboot` (docs/shutdown.md): a POSIX sh
# script that reads SysV init requests from its standard input. Shared by the systemd tweak below
# and the upstart job (upstart_tweaks.py).
INITCTL_LISTENER_SCRIPT = File("/usr/local/lib/vmbuilder-lxc/initctl-listener", "initctl/initctl-listener.j2", 0o755)

INITCTL_LISTENER = Tweak(
    "initctl-listener",
    "libvirt-lxc's `virsh shutdown` and `reboot` write a SysV request to /run/initctl and report "
    "success even when no FIFO exists; from systemd 258 on nothing listens there (systemd-initctl "
    "is gone). On those releases (or with --initctl-listener always) a socket unit of ours keeps "
    "the FIFO and a small sh listener turns runlevel 0 and 6 into `systemctl poweroff` and "
    "`reboot`; systemd-initctl.socket is masked so that exactly one reader gets each request, even "
    "if a later package brings it back.",
    (
        INITCTL_LISTENER_SCRIPT,
        File("/etc/systemd/system/vmbuilder-initctl.socket", "systemd/initctl.socket.j2"),
        File("/etc/systemd/system/vmbuilder-initctl.service", "systemd/initctl.service.j2"),
        Enable("vmbuilder-initctl.socket", "sockets.target"),
        Mask(("systemd-initctl.socket",)),
    ),
    When(init="systemd", initctl=False),
)

RESOLV_CONF_RESOLVED = Tweak(
    "resolv-conf-resolved",
    "The guest resolves through systemd-resolved's stub, not the build host's resolvers.",
    (Symlink("/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf"),),
    When(init="systemd", resolved=True),
)

RESOLV_CONF_STATIC = Tweak(
    "resolv-conf-static",
    "Without systemd-resolved the guest gets its name servers from --dns or from DHCP.",
    (File("/etc/resolv.conf", "common/resolv.conf.j2"),),
    When(resolved=False),
)

APT_SOURCES_DEB822 = Tweak(
    "apt-sources-deb822",
    "Release, -updates and -security in deb822 form with Signed-By (the default from Ubuntu 24.04 and Debian 13 on).",
    (
        File("/etc/apt/sources.list.d/{distro}.sources", "apt/deb822.sources.j2"),
        File("/etc/apt/sources.list", "apt/sources.list-deb822.j2"),
    ),
    When(sources="deb822"),
)

APT_SOURCES_ONE_LINE = Tweak(
    "apt-sources-one-line",
    "Release, -updates and -security as one-line sources (the older format).",
    (File("/etc/apt/sources.list", "apt/sources.list.j2"),),
    When(sources="one-line"),
)

# The locale has two layouts; each distro's table picks the one its releases ship, by version range.
LOCALE_DEFAULT = Tweak(
    "locale",
    "C.UTF-8 unless --lang says otherwise; the host's LANG never leaks in. Before systemd 253 the "
    "locales package keeps LANG in /etc/default/locale, which pam_env, update-locale and localed read.",
    (File("/etc/default/locale", "common/locale.j2"),),
)

LOCALE_CONF = Tweak(
    "locale-conf",
    "C.UTF-8 unless --lang says otherwise; the host's LANG never leaks in. From systemd 253 on, a "
    "tmpfiles rule of systemd (debian.conf) makes /etc/default/locale a link to ../locale.conf at every "
    "boot, so LANG written only there is lost at first boot; localed reads /etc/locale.conf, and so does "
    "update-locale from noble and trixie on. Write /etc/locale.conf and make the link now, as the locales "
    "package does: pam_env (through the link), localed and update-locale then read the one file.",
    (File("/etc/locale.conf", "common/locale.j2"), Symlink("/etc/default/locale", "../locale.conf")),
)

TIMEZONE = Tweak(
    "timezone",
    "UTC unless --timezone says otherwise, recorded by tzdata itself so that its upgrades keep it.",
    (Hook("timezone", ("/etc/localtime",)),),
)


def locale_tweaks(until: str, since: str) -> tuple[Tweak, Tweak]:
    """The locale layout by release: /etc/default/locale up to version `until`, /etc/locale.conf
    (with /etc/default/locale linked to it) from version `since` on."""
    return (
        dataclasses.replace(LOCALE_DEFAULT, when=When(until=until)),
        dataclasses.replace(LOCALE_CONF, when=When(since=since)),
    )


def distro_table(
    *, network: tuple[Tweak, ...], locale: tuple[Tweak, ...], upstart: tuple[Tweak, ...] = ()
) -> tuple[Tweak, ...]:
    """A distro's tweak table: the shared tweaks with the distro's own in between, in the order
    they apply. `network` is the distro's network configuration, `locale` its locale_tweaks();
    `upstart` (the upstart era's jobs) come right after fstab and bring the upstart releases' D-Bus
    machine-id tweak with them."""
    return (
        FSTAB,
        *upstart,
        HOSTNAME,
        MACHINE_ID,
        *((DBUS_MACHINE_ID,) if upstart else ()),
        INSTANCE_SECRETS,
        SSH_HOST_KEYS,
        INITCTL_LISTENER,
        *network,
        RESOLV_CONF_RESOLVED,
        RESOLV_CONF_STATIC,
        APT_SOURCES_DEB822,
        APT_SOURCES_ONE_LINE,
        *locale,
        TIMEZONE,
        *USERNS_TWEAKS,
        *EMULATED_TWEAKS,
    )
