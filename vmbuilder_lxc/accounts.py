"""Account names the guest's base system already has, so `--user` can never name one of them.

`useradd --user-group` fails when the user or its group exists, and an initial user that merged
with a system account would be worse. Sources: base-passwd's passwd.master and group.master (the
static ids of every Debian and Ubuntu system), and the system users and groups created by the
packages this tool installs (apt, openssh-server, dbus, systemd, systemd-resolved, sudo) or that
`--variant default` and the releases' standard seeds bring (rsyslog, uuid-runtime, tcpdump,
polkitd, cron, landscape, pollinate, tpm2, chrony, ntpsec, dnsmasq, lxd).
"""

from __future__ import annotations

# base-passwd: passwd.master (users) and group.master (groups), Debian 12 / Ubuntu 24.04;
# 'gnats' left base-passwd in 3.6 but older releases still have it.
BASE_PASSWD_USERS = ("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
                     "proxy", "www-data", "backup", "list", "irc", "gnats", "_apt", "nobody")  # fmt: skip
BASE_PASSWD_GROUPS = ("adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo",
                      "audio", "dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff",
                      "users", "nogroup")  # fmt: skip
# Created by packages in the guest: system users, and groups from systemd's sysusers and udev rules.
PACKAGE_ACCOUNTS = (
    "systemd-network", "systemd-resolve", "systemd-timesync", "systemd-journal", "systemd-coredump",
    "systemd-oom", "systemd-journal-remote", "systemd-bus-proxy", "messagebus", "sshd", "_ssh", "ssh",
    "syslog", "uuidd", "tcpdump", "polkitd", "landscape", "pollinate", "tss", "_chrony", "ntpsec", "ntp",
    "dnsmasq", "lxd", "netdev", "input", "kvm", "render", "sgx", "crontab", "ssl-cert", "fwupd-refresh",
    "usbmux", "_rpc", "statd", "avahi", "rtkit", "libuuid", "dhcpd", "_laurel", "clock", "mlocate", "plocate",
)  # fmt: skip
RESERVED_NAMES = frozenset(BASE_PASSWD_USERS + BASE_PASSWD_GROUPS + PACKAGE_ACCOUNTS)
