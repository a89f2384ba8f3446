"""Container tweaks for Ubuntu's systemd era, as data filtered by release.

Each entry names the problem it solves; docs/tweaks.md lists them per release range with the
evidence. All of them write files no package owns, so upgrades cannot undo them.
"""

from __future__ import annotations

from vmbuilder_lxc.tweaks import DropIn, Enable, File, Hook, Remove, Symlink, Truncate, Tweak, When

TWEAKS: tuple[Tweak, ...] = (
    Tweak(
        "fstab",
        "The manager mounts /proc, /sys and /dev (with lxcfs or libvirt's views on top); a guest "
        "fstab entry for them would hide those views, and block devices or swap do not exist.",
        (File("/etc/fstab", "common/fstab.j2"),),
    ),
    Tweak(
        "hostname",
        "The guest's own name, and 127.0.1.1 for it so sudo and mail can resolve it offline.",
        (File("/etc/hostname", "common/hostname.j2"), File("/etc/hosts", "common/hosts.j2")),
    ),
    Tweak(
        "machine-id",
        "Empty but present: systemd writes a fresh id at first boot, so clones differ (DHCP client "
        "ids derive from it); 'uninitialized' would trigger preset-all and change the unit set.",
        (Truncate("/etc/machine-id"), Remove(("/var/lib/dbus/machine-id",))),
    ),
    Tweak(
        "instance-secrets",
        "No random seed or credential secret may be shared between containers built from one cache.",
        (Remove(("/var/lib/systemd/random-seed", "/var/lib/systemd/credential.secret")),),
    ),
    Tweak(
        "ssh-host-keys",
        "Keys are removed so every container gets its own; Ubuntu's sshd does not create missing "
        "keys (ExecStartPre=sshd -t fails), so a oneshot runs ssh-keygen -A at boot and before sshd.",
        (
            Remove(("/etc/ssh/ssh_host_*",)),
            File("/etc/systemd/system/vmbuilder-ssh-hostkeys.service", "systemd/ssh-hostkeys.service.j2"),
            Enable("vmbuilder-ssh-hostkeys.service"),
            DropIn("ssh.service", "systemd/ssh-hostkeys-dropin.conf.j2", "10-vmbuilder-hostkeys.conf"),
        ),
        When(init="systemd", installed="openssh-server"),
    ),
    Tweak(
        "network-netplan",
        "eth0 by DHCP (or --ip), marked optional so that a container without eth0 "
        "(--network none) does not wait for it at boot.",
        (File("/etc/netplan/10-lxc.yaml", "netplan/10-lxc.yaml.j2", 0o600), Hook("netplan-check")),
        When(network="netplan"),
    ),
    Tweak(
        "network-ifupdown",
        "eth0 by DHCP (or --ip) with ifupdown; allow-hotplug so that a missing eth0 never blocks boot.",
        (File("/etc/network/interfaces", "ifupdown/interfaces.j2"),),
        When(network="ifupdown"),
    ),
    Tweak(
        "netplan-configure-udev",
        "netplan >= 1.1 reloads udev after writing the networkd config; udevd does not run in a "
        "container (read-only /sys), so the reload fails and the unit with it. Make it non-fatal.",
        (
            DropIn(
                "netplan-configure.service", "systemd/netplan-configure-dropin.conf.j2", "10-vmbuilder-container.conf"
            ),
        ),
        When(since="25.04", network="netplan"),
    ),  # fmt: skip
    Tweak(
        "resolv-conf-resolved",
        "The guest resolves through systemd-resolved's stub, not the build host's resolvers.",
        (Symlink("/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf"),),
        When(init="systemd", resolved=True),
    ),
    Tweak(
        "resolv-conf-static",
        "Without systemd-resolved the guest gets its name servers from --dns or from DHCP.",
        (File("/etc/resolv.conf", "common/resolv.conf.j2"),),
        When(resolved=False),
    ),
    Tweak(
        "apt-sources-deb822",
        "Release, -updates and -security in deb822 form with Signed-By (the noble+ default).",
        (
            File("/etc/apt/sources.list.d/ubuntu.sources", "ubuntu/ubuntu.sources.j2"),
            File("/etc/apt/sources.list", "ubuntu/sources.list-deb822.j2"),
        ),
        When(sources="deb822"),
    ),
    Tweak(
        "apt-sources-one-line",
        "Release, -updates and -security as one-line sources (the pre-noble format).",
        (File("/etc/apt/sources.list", "ubuntu/sources.list.j2"),),
        When(sources="one-line"),
    ),
    Tweak(
        "locale",
        "C.UTF-8 unless --lang says otherwise; the host's LANG never leaks in.",
        (File("/etc/default/locale", "common/locale.j2"),),
    ),
    Tweak(
        "timezone",
        "UTC unless --timezone says otherwise, recorded by tzdata itself so that its upgrades keep it.",
        (Hook("timezone", ("/etc/localtime",)),),
    ),
)
