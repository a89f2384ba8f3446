"""The settings every Debian-family distro plugin declares (DebianFamily.register_options): packages,
the OS, the installation source, the initial user, the network and the locale. The defaults that
depend on the plugin (its mirror, keyring, user, components) are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import image_import
from . import validators as v
from .arches import NATIVE_MACHINES, host_arch
from .options import each
from .settings import Needs, Setting, Settings

PACKAGES = "Package options"
OS = "General OS options"
INSTALL = "Installation options"
USER = "Settings for the initial user"
NETWORK = "Network options"
LOCALE = "Locale and time"

# --variant -> what is built: a bootable container, or a chroot for sbuild/schroot (docs/sbuild.md).
VARIANT_PROFILE = {"minbase": "container", "buildd": "buildd", "default": "container"}
# Settings a buildd chroot has no use for: it has only a locked root and never boots.
BUILDD_IGNORES = ("user", "name", "pass", "uid", "rootpass", "ssh-key", "ssh-user-key", "lang", "timezone",
                  "ip", "gw", "dns")  # fmt: skip


def default_variant(s: Settings) -> str:
    """buildd when the sbuild export asks for a buildd chroot, else minbase."""
    wants_sbuild = "export" in s.table and "sbuild" in [f.lower() for f in s.get_list("export")]
    return "buildd" if wants_sbuild else "minbase"


# --mask, --gw and --dns describe a static address; with DHCP the server provides them.
STATIC_IP = (Needs(lambda s: s["ip"] != "dhcp", "without a static --ip (the guest uses DHCP)"),)

# --initctl-listener: auto (where the release has no listener), always, never.
INITCTL_LISTENER_MODES = ("auto", "always", "never")


def debian_family_settings(*, hostname: Callable[[Settings], str], mirror: Callable[[Settings], str],
                           keyring: Callable[[Settings], str], components: Sequence[str],
                           user: str) -> list[Setting]:  # fmt: skip
    """The option table; the callables' docstrings say what their defaults are (--help, docs)."""
    return [
        # packages
        Setting("addpkg", "install PKG in the guest (repeatable, or comma separated)", "list", [],
                metavar="PKG", validate=each(v.package), group=PACKAGES),
        Setting("removepkg", "purge PKG from the guest (repeatable)", "list", [], metavar="PKG",
                validate=each(v.package), group=PACKAGES),
        Setting("seedfile", "preseed debconf with FILE before packages are installed",
                metavar="FILE", validate=v.existing_file, group=PACKAGES),
        # general
        Setting("arch", "target architecture", short="-a", default=lambda s: host_arch(),
                validate=v.one_of(NATIVE_MACHINES, "architecture"), group=OS),
        Setting("hostname", "host name of the guest", default=hostname,
                validate=v.hostname, group=OS),
        Setting("domain", "DNS domain of the guest (hosts file and search list)", validate=v.domain,
                group=OS),
        Setting("initctl-listener", "our listener on /run/initctl for libvirt-lxc's virsh shutdown and "
                "reboot: where the release has none (auto), in place of systemd-initctl too (always), "
                "or not at all (never)", default="auto", choices=INITCTL_LISTENER_MODES,
                needs=(Needs(lambda s: VARIANT_PROFILE.get(str(s["variant"])) != "buildd",
                             "with --variant buildd (a chroot has no init)"),), group=OS),
        # installation
        Setting("suite", "release to install: codename, version, or devel/lts/stable",
                default="lts", validate=v.suite, group=INSTALL),
        Setting("variant", "debootstrap variant of the base; buildd builds a chroot for sbuild and "
                "schroot instead of a container (docs/sbuild.md)", default=default_variant,
                choices=tuple(VARIANT_PROFILE), group=INSTALL),
        Setting("mirror", "archive mirror written into the guest's apt sources",
                default=mirror, metavar="URL", validate=v.mirror, group=INSTALL),
        Setting("install-mirror", "mirror used only while building (e.g. a local cache)",
                metavar="URL", validate=v.mirror, group=INSTALL),
        Setting("security-mirror", "mirror for the security pocket", metavar="URL", validate=v.mirror,
                group=INSTALL),
        Setting("install-security-mirror", "security mirror used only while building", metavar="URL",
                validate=v.mirror, group=INSTALL),
        Setting("components", "archive components", "list", list(components),
                metavar="COMP", validate=each(v.component), group=INSTALL),
        Setting("proxy", "HTTP proxy for package downloads during the build (not kept in the guest)",
                metavar="URL", validate=v.proxy, group=INSTALL),
        Setting("keyring", "OpenPGP keyring that verifies the archive (e.g. the removed-keys "
                "keyring for archived releases)", default=keyring,
                metavar="FILE", validate=v.existing_file,
                needs=(Needs(lambda s: not s.get_bool("insecure"), "with --insecure (nothing is verified)"),),
                group=INSTALL),
        Setting("list-suites", "print every release this plugin knows (init system, network, "
                "how the tests verify it, support) and exit", "bool", False, in_config=False, group=INSTALL),
        *image_import.import_settings(INSTALL),
        # users
        Setting("user", "name of the initial user (in the sudo group)", default=user,
                validate=v.username, group=USER),
        Setting("name", "full name of the initial user", validate=v.gecos, group=USER),
        Setting("pass", "password of the initial user (default: locked; log in with --ssh-user-key)",
                secret=True, validate=v.password, group=USER),
        Setting("uid", "UID of the initial user (1000-59999)", "int", validate=v.uid, group=USER),
        Setting("rootpass", "root password (default: root is locked)", secret=True, validate=v.password,
                group=USER),
        Setting("ssh-key", "authorize this public key file for root", metavar="FILE",
                validate=v.public_key_file, group=USER),
        Setting("ssh-user-key", "authorize this public key file for the initial user", metavar="FILE",
                validate=v.public_key_file, group=USER),
        # network
        Setting("ip", "IPv4 address of eth0, or dhcp", default="dhcp", validate=v.ipv4, group=NETWORK),
        Setting("mask", "netmask or prefix length for --ip", default="24", validate=v.netmask,
                needs=STATIC_IP, group=NETWORK),
        Setting("gw", "default gateway for --ip", validate=v.ip_address, needs=STATIC_IP, group=NETWORK),
        Setting("dns", "name server for --ip (repeatable)", "list", [], validate=each(v.ip_address),
                needs=STATIC_IP, group=NETWORK),
        # locale
        Setting("lang", "locale of the guest", default="C.UTF-8", validate=v.locale, group=LOCALE),
        Setting("timezone", "time zone of the guest", default="UTC", validate=v.timezone, group=LOCALE),
    ]  # fmt: skip
