"""The buildd profile (`--variant buildd`): a chroot for sbuild and schroot, not a container.

Nothing boots it, so none of the container tweaks apply; instead it gets what sbuild-createchroot
and Launchpad's buildd chroots set up (docs/sbuild.md). The apt sources are the same tweaks a
container gets, so both profiles point at the same suite, pockets and keyring. Shared by every
Debian-family distro plugin, as data like common_tweaks.py.
"""

from __future__ import annotations

from vmbuilder_lxc.tweakactions import File, Remove
from vmbuilder_lxc.tweaks import Tweak

from . import common_tweaks as common

POLICY_RC_D = Tweak(
    "policy-rc-d",
    "Build-dependencies must never start daemons in a build chroot: invoke-rc.d asks "
    "/usr/sbin/policy-rc.d, which denies everything (exit 101), as sbuild-createchroot's does.",
    (File("/usr/sbin/policy-rc.d", "buildd/policy-rc.d.j2", 0o755),),
)

DPKG_UNSAFE_IO = Tweak(
    "dpkg-unsafe-io",
    "A build chroot is thrown away after each build: dpkg need not fsync every unpacked file "
    "(Launchpad's buildd chroots do the same).",
    (File("/etc/dpkg/dpkg.cfg.d/vmbuilder-buildd", "buildd/dpkg.cfg.j2"),),
)

APT_BUILDD = Tweak(
    "apt-buildd",
    "No recommends, so build-dependencies stay minimal (sbuild's resolver asks the same), and no "
    "pseudo-terminal for dpkg, so build logs stay plain.",
    (File("/etc/apt/apt.conf.d/99vmbuilder-buildd", "buildd/apt.conf.j2"),),
)

NO_HOST_IDENTITY = Tweak(
    "no-host-identity",
    "sbuild and schroot give each session its hostname and resolvers: the image has an empty "
    "resolv.conf, no /etc/hostname and a hosts file that only names localhost.",
    (
        File("/etc/resolv.conf", "buildd/resolv.conf.j2"),
        Remove(("/etc/hostname",)),
        File("/etc/hosts", "buildd/hosts.j2"),
    ),
)

BUILDD_TWEAKS: tuple[Tweak, ...] = (
    POLICY_RC_D,
    DPKG_UNSAFE_IO,
    APT_BUILDD,
    common.APT_SOURCES_DEB822,
    common.APT_SOURCES_ONE_LINE,
    NO_HOST_IDENTITY,
    common.INSTANCE_SECRETS,
)
