"""Machinery shared by Debian-family distro plugins (Ubuntu, Debian): settings, suite resolution,
bootstrap through the cache, the package phase, users, and applying the distro's tweak table.

A distro plugin subclasses DebianFamily and supplies only data: its keyring, debootstrap script,
components, release traits, base packages and tweak table. Ubuntu and Debian share every line of
code below.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import platform
import re
import shutil
import stat
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from . import __version__, aptargs, aptnet, image_import
from . import validators as v
from .bootstrap import INSECURE_APTOPTS, BootstrapRequest
from .chroot import Chroot
from .dpkg import installed_packages
from .exports.stage import drop_proxy_lines
from .formats import chpasswd_line, sudoers_user
from .guestfs import GuestFS
from .localegen import enable_locale, locale_a_name, supported_entry
from .log import LOG, die, note
from .mirrors import default_mirror
from .options import each
from .plugin import Distro
from .run import run
from .settings import Needs, Setting, Settings
from .source import Source
from .source.archive import ArchiveSource
from .source.image import ImageSource
from .suites import Release, ReleaseTable
from .tweaks import Guest, ReleaseTraits, Tweak, apply, select, version_key
from .verified import verified

# (first version, traits): later rows override earlier ones from their version on.
TraitsTable = Sequence[tuple[str, dict[str, object]]]
# (first version, last version or None, packages).
PackagesTable = Sequence[tuple[str, str | None, tuple[str, ...]]]

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

APT_GET = ["apt-get", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Install-Recommends=false",
           "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
           *aptnet.apt_get_options()]  # fmt: skip

# Debian architecture -> what `uname -m` says on a host that runs it natively.
NATIVE_MACHINES = {
    "amd64": ("x86_64",),
    "i386": ("x86_64", "i686", "i586", "i386"),
    "arm64": ("aarch64",),
    "armhf": ("aarch64", "armv7l"),
    "armel": ("armv7l", "armv6l", "armv5tel"),
    "ppc64el": ("ppc64le",),
    "s390x": ("s390x",),
    "riscv64": ("riscv64",),
}
QEMU_NAMES = {"amd64": "x86_64", "i386": "i386", "arm64": "aarch64", "armhf": "arm", "armel": "arm",
              "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip


def host_arch() -> str:
    """The host's Debian architecture (dpkg's answer, else derived from uname)."""
    if shutil.which("dpkg"):
        return run(["dpkg", "--print-architecture"]).output.strip()
    machine = platform.machine()
    return next((arch for arch, names in NATIVE_MACHINES.items() if names[0] == machine), machine)


class DebianFamily(Distro):
    keyring_path: ClassVar[Path]
    debootstrap_script: ClassVar[str]
    default_components: ClassVar[tuple[str, ...]] = ("main",)
    default_user: ClassVar[str] = "ubuntu"
    min_version: ClassVar[tuple[int, ...]] = ()
    traits_table: ClassVar[TraitsTable] = ()
    packages_table: ClassVar[PackagesTable] = ()
    unwanted_table: ClassVar[PackagesTable] = ()
    # (first version, last version or None, architectures): what the archive has a base system for.
    arch_table: ClassVar[PackagesTable] = ()
    tweaks: ClassVar[Sequence[Tweak]] = ()
    # The buildd profile (--variant buildd): its packages and its tweaks, instead of the above.
    buildd_packages_table: ClassVar[PackagesTable] = ()
    buildd_tweaks: ClassVar[Sequence[Tweak]] = ()
    mmdebstrap_since: ClassVar[str] = ""  # first version mmdebstrap can bootstrap with our packages
    template_vars: ClassVar[dict[str, Any]] = {}  # extra data for the tweak templates

    release: Release
    traits: ReleaseTraits
    source: Source  # where the base system comes from (chosen in set_defaults): the archive or an image

    # -- settings -------------------------------------------------------------------------------

    def register_options(self) -> Sequence[Setting]:
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
            Setting("hostname", "host name of the guest", default=self._default_hostname,
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
                    default=self._default_mirror, metavar="URL", validate=v.mirror, group=INSTALL),
            Setting("install-mirror", "mirror used only while building (e.g. a local cache)",
                    metavar="URL", validate=v.mirror, group=INSTALL),
            Setting("security-mirror", "mirror for the security pocket", metavar="URL", validate=v.mirror,
                    group=INSTALL),
            Setting("install-security-mirror", "security mirror used only while building", metavar="URL",
                    validate=v.mirror, group=INSTALL),
            Setting("components", "archive components", "list", list(self.default_components),
                    metavar="COMP", validate=each(v.component), group=INSTALL),
            Setting("proxy", "HTTP proxy for package downloads during the build (not kept in the guest)",
                    metavar="URL", validate=v.proxy, group=INSTALL),
            Setting("keyring", "OpenPGP keyring that verifies the archive (e.g. the removed-keys "
                    "keyring for archived releases)", default=self._default_keyring,
                    metavar="FILE", validate=v.existing_file,
                    needs=(Needs(lambda s: not s.get_bool("insecure"), "with --insecure (nothing is verified)"),),
                    group=INSTALL),
            Setting("list-suites", "print every release this plugin knows (init system, network, "
                    "how the tests verify it, support) and exit", "bool", False, in_config=False, group=INSTALL),
            *image_import.import_settings(INSTALL),
            # users
            Setting("user", "name of the initial user (in the sudo group)", default=self.default_user,
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

    def _default_hostname(self, s: Settings) -> str:
        """the destination's name"""
        if s.explicit("dest") and s.get_str("dest"):
            candidate = re.sub(r"[^a-z0-9-]", "-", Path(str(s.get_str("dest"))).name.lower()).strip("-")
            if candidate and v.HOSTNAME_LABEL.match(candidate):
                return candidate
        return self.name

    def _default_keyring(self, s: Settings) -> str:
        """the distro's archive keyring"""
        return str(self.keyring_path)

    def _default_mirror(self, s: Settings) -> str:
        """from debootstrap's scripts"""
        release = getattr(self, "release", None)  # not resolved yet while probing an unknown suite
        series = release.series if release is not None else "devel"
        return default_mirror(self.debootstrap_script, s.get_str("arch") or "amd64", series)

    # -- release data ---------------------------------------------------------------------------

    def release_traits(self, release: Release) -> ReleaseTraits:
        """Merge the traits table up to the release; systemd-initctl ships up to systemd 257."""
        values: dict[str, object] = {}
        for since, traits in self.traits_table:
            if release.version_key >= version_key(since):
                values.update(traits)
        if "initctl" not in values and values.get("init") == "systemd":
            values["initctl"] = int(str(values.get("systemd_version", 0))) < 258
        return ReleaseTraits(**values)  # type: ignore[arg-type]

    def _from_table(self, table: PackagesTable) -> list[str]:
        key = self.release.version_key
        out: list[str] = []
        for since, until, packages in table:
            if key >= version_key(since) and (until is None or key[: len(version_key(until))] <= version_key(until)):
                out += packages
        return out

    def profile(self) -> str:
        """container or buildd, from --variant."""
        return VARIANT_PROFILE[str(self.settings["variant"])]

    def base_packages(self) -> list[str]:
        return self._from_table(self.buildd_packages_table if self.profile() == "buildd" else self.packages_table)

    def unwanted_packages(self) -> list[str]:
        """Packages the bootstrap's resolver pulls in that break a container; purged after it."""
        return self._from_table(self.unwanted_table)

    def tweak_table(self) -> Sequence[Tweak]:
        return self.buildd_tweaks if self.profile() == "buildd" else self.tweaks

    def tweak_traits(self) -> ReleaseTraits:
        """The traits that select the tweaks: the release's, with --initctl-listener applied.

        `initctl` says whether the release itself listens on /run/initctl; the listener tweaks
        apply where it is False. `always` installs ours in place of the release's, `never` nowhere.
        """
        mode = self.settings.get_str("initctl-listener") or "auto"
        if mode == "always":
            return dataclasses.replace(self.traits, initctl=False)
        if mode == "never":
            return dataclasses.replace(self.traits, initctl=True)
        return self.traits

    def initctl_listener(self) -> str:
        """Who reads /run/initctl in the guest: vmbuilder (ours), systemd (systemd-initctl) or none."""
        if not self.tweak_traits().initctl:
            return "vmbuilder"
        return "systemd" if self.traits.initctl else "none"

    def select_tweaks(self, guest: Guest) -> list[Tweak]:
        return select(self.tweak_table(), self.release, self.tweak_traits(), guest)

    def mmdebstrap_ok(self) -> bool:
        return not self.mmdebstrap_since or self.release.version_key >= version_key(self.mmdebstrap_since)

    def unsupported(self, release: Release) -> str | None:
        """Why a release cannot be built (None: it can)."""
        if self.min_version and release.version_key < self.min_version:
            return f"{release.describe()} predates what this plugin supports"
        return None

    def security_mirror_for(self, mirror: str) -> str:
        """Where the security pocket lives when no --security-mirror is given: the same archive."""
        return mirror

    def pockets_for(self, release: Release) -> tuple[str, ...]:
        return ("updates", "security")

    # -- hooks ----------------------------------------------------------------------------------

    def releases(self) -> ReleaseTable:
        return ReleaseTable.load(self.name)

    def resolve_suite(self, text: str, today: dt.date | None = None) -> Release:
        today = today or dt.date.today()
        table = self.releases()
        release = table.find(text, today)
        if release is None:
            release = self.probe_unknown_suite(text, table)
        buildable = table.buildable(today, self.unsupported)  # suggestions: never eol, refused or unopened
        if release is None:
            known = ", ".join([*buildable, "devel", "lts", "stable"])
            die(f"unknown {self.name} suite '{text}'", f"use --suite with one of: {known}")
        why = self.unsupported(release)
        if why:
            die(why, f"choose a newer --suite ({', '.join(buildable[-4:])}, ...)")
        why = release.not_open(today)
        if why and not self.archive_fields(release.series):  # distro-info's dates are plans: the archive decides
            die(why, f"choose a suite the archive has ({', '.join(buildable[-4:])}, ...)")
        return release

    def archive_fields(self, name: str) -> dict[str, str]:
        """The Release fields of dists/NAME on the mirror; empty when the mirror does not serve it."""
        mirror = str(self.settings["install-mirror"] or self.settings["mirror"])
        return fetch_release_fields(f"{mirror.rstrip('/')}/dists/{name}/InRelease")

    def probe_unknown_suite(self, text: str, table: ReleaseTable) -> Release | None:
        """A suite distro-info-data does not know yet, but the archive serves (a new devel series)."""
        name = text.strip().lower()
        if not re.fullmatch(r"[a-z]+", name):
            return None
        info = self.archive_fields(name)
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

    def suite_rows(self, today: dt.date | None = None) -> list[dict[str, str]]:
        """One row per known release for --list-suites."""
        today = today or dt.date.today()
        table = self.releases()
        releases = list(table.releases)
        devel = table.find("devel", today)
        if devel is None:
            # distro-info-data lags behind a new development series; the archive knows it.
            devel = self.probe_unknown_suite("devel", table)
            if devel is not None and devel.series not in table.names():
                releases.append(devel)
            elif devel is not None:  # listed with a future date, but the archive already serves it
                devel = next(r for r in releases if r.series == devel.series)
        rows = []
        for release in releases:
            opened = release is devel  # the archive said so, whatever distro-info-data's dates say
            why = self.unsupported(release) or (None if opened else release.not_open(today))
            traits = self.release_traits(release) if not why else None
            rows.append(
                {
                    "series": release.series,
                    "version": release.version or "-",
                    "codename": release.codename,
                    "released": str(release.released or "-"),
                    "status": "devel" if opened else release.status(today),
                    "init": traits.init if traits else "-",
                    "network": traits.network if traits else "-",
                    "verified": verified(self.name, release.series, devel=release is devel).label,
                    "supported": "no: " + why if why else "yes",
                }
            )
        return rows

    def report(self, today: dt.date | None = None) -> str | None:
        if not self.settings.get_bool("list-suites"):
            return None
        rows = self.suite_rows(today)
        if self.settings.get_bool("json"):
            return json.dumps(rows, indent=2)
        heads = list(rows[0]) if rows else []
        widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads if h != "supported"}
        lines = ["  ".join(h.upper().ljust(widths.get(h, 0)) for h in heads).rstrip()]
        lines += ["  ".join(r[h].ljust(widths.get(h, 0)) for h in heads).rstrip() for r in rows]
        return "\n".join(lines) + "\n"

    def set_defaults(self) -> None:
        s = self.settings
        # --from-template checks the whole image and adopts its release unless --suite was given.
        self.source = ImageSource(self) if s["from-template"] else ArchiveSource(self)
        self.source.set_defaults()
        self.release = self.resolve_suite(str(s["suite"]))
        self.traits = self.release_traits(self.release)
        ctx = self.context
        ctx.hook_env.update(
            {
                "DISTRO": self.name,
                "SUITE": self.release.series,
                "RELEASE": self.release.describe(),
                "RELEASE_VERSION": self.release.version,
                "ARCH": str(s["arch"]),
                "HOSTNAME": str(s["hostname"]),
                "INIT": self.traits.init,
                "UPSTART_VERSION": self.traits.upstart_version,
                "SYSTEMD_VERSION": str(self.traits.systemd_version or ""),
                "CONTAINER_DETECT": "yes" if self.traits.container_detect else "no",
                "INITCTL_LISTENER": self.initctl_listener(),
                "PROFILE": self.profile(),
                "HYPERVISOR": ctx.hypervisor_name,
                "VMBUILDER_VERSION": __version__,
            }
        )
        ctx.summary["release"] = {
            "distro": self.name,
            "series": self.release.series,
            "version": self.release.version,
            "codename": self.release.codename,
            "init": self.traits.init,
            "network": self.traits.network,
        }
        ctx.summary["initctl_listener"] = self.initctl_listener()
        ctx.summary["profile"] = self.profile()

    def preflight_check(self) -> None:
        s = self.settings
        if self.profile() == "buildd":
            ignored = [f"--{name}" for name in BUILDD_IGNORES if s.explicit(name)]
            if ignored:
                LOG.warning("--variant buildd ignores %s: a buildd chroot has only a locked root and never "
                            "boots (sbuild adds its build user per session)", ", ".join(ignored))  # fmt: skip
        self.source.preflight()  # the archive's keyring, inputs, cache and bootstrapper; or the image's checks
        self.check_arch(str(s["arch"]))
        if s["ip"] != "dhcp" and not s["gw"]:
            LOG.warning("--ip without --gw: the guest gets no default route")
        self.check_initctl_listener()
        if self.profile() == "container" and not s["pass"] and not s["ssh-user-key"]:
            # A fact about the result: shown in the summary after the build (pipeline.summary_lines).
            ctx_notes = self.context.summary.setdefault("notes", [])
            ctx_notes.append(f"user '{s['user']}' has no password and no SSH key; use lxc-attach to get in")

    def check_initctl_listener(self) -> None:
        if self.initctl_listener() == "none":
            LOG.warning(
                "--initctl-listener never: nothing in this %s guest reads /run/initctl, so libvirt-lxc's "
                "`virsh shutdown` and `virsh reboot` will report success and do nothing",
                self.release.describe(),
            )

    def suite_arches(self) -> list[str]:
        """The architectures the archive publishes a base system of this release for ([]: unknown)."""
        return sorted(set(self._from_table(self.arch_table)))

    def check_suite_arch(self, arch: str) -> None:
        """Refuse --arch for a release that has no base system for it, before anything is downloaded."""
        arches = self.suite_arches()
        if arches and arch not in arches:
            die(f"{self.release.describe()} has no {arch} base system (its architectures: {', '.join(arches)})",
                "choose one of those with --arch, or another --suite")  # fmt: skip

    def check_package_inputs(self) -> None:
        """--addpkg/--removepkg names, the --seedfile text and the guest's sources, checked before
        the bootstrap (the bootstrap request checks its own mirrors in choose_backend)."""
        s = self.settings
        aptargs.mirror(str(s["mirror"]))
        if s["security-mirror"]:
            aptargs.mirror(str(s["security-mirror"]), "--security-mirror")
        for comp in s.get_list("components"):
            aptargs.component(comp)
        aptargs.packages(s.get_list("addpkg"), "--addpkg")
        aptargs.packages(s.get_list("removepkg"), "--removepkg")
        seed = s.get_str("seedfile")
        if seed:
            read_seedfile(Path(seed))

    def check_arch(self, arch: str) -> None:
        if arch not in NATIVE_MACHINES:
            die(f"unknown architecture '{arch}'", f"use --arch with one of: {', '.join(NATIVE_MACHINES)}")
        if platform.machine() in NATIVE_MACHINES[arch]:
            return
        binfmt = Path(f"/proc/sys/fs/binfmt_misc/qemu-{QEMU_NAMES[arch]}")
        if not binfmt.exists():
            die(
                f"this host cannot run {arch} binaries (no {binfmt})",
                "install qemu-user-static and binfmt-support, or build for the host's architecture",
            )
        flags = next((ln.split(":", 1)[1] for ln in binfmt.read_text().splitlines() if ln.startswith("flags:")), "")
        if "F" not in flags:
            LOG.warning("%s lacks the F flag; the chroot may not find the emulator", binfmt)

    # -- the base system: the source (source/) ---------------------------------------------------

    def pockets(self) -> tuple[str, ...]:
        return self.pockets_for(self.release)

    def bootstrap(self) -> None:
        """The source puts the base system into the rootfs: the archive's (through the cache) or an image's."""
        self.source.provide_rootfs()

    def package_phase(self, chroot: Chroot, req: BootstrapRequest) -> None:
        s = self.settings
        with self.context.guestfs() as fs:
            fs.write_text("/etc/apt/sources.list", "\n".join(req.source_lines()) + "\n")
        # --insecure (no keyring) is the only way the apt options that skip signature checks get here.
        apt = [*APT_GET, *(insecure_apt_options() if req.keyring is None else [])]
        chroot.run(*apt, "update", progress="apt-get update")
        chroot.run(*apt, "dist-upgrade", progress="apt-get dist-upgrade")
        seed = s.get_str("seedfile")
        if seed:
            chroot.run("debconf-set-selections", input=read_seedfile(Path(seed)))
        # Package names are operands after `--` (apt-get's end of options), and checked once more.
        if s["addpkg"]:
            addpkg = aptargs.packages(s.get_list("addpkg"), "--addpkg")
            chroot.run(*apt, "install", "--", *addpkg, progress="apt-get install")
        unwanted = sorted(set(self.unwanted_packages()) & set(installed_packages(self.context.rootfs)))
        removepkg = aptargs.packages(s.get_list("removepkg"), "--removepkg") + unwanted
        if removepkg:
            chroot.run(*apt, "purge", "--autoremove", "--", *removepkg, progress="apt-get purge")
        chroot.run(*apt, "clean")

    def scrub_base(self) -> None:
        """What the bootstrap copied from the host must not reach the cache or the guest."""
        with self.context.guestfs() as fs:  # confined: nothing here follows a symlink out of the rootfs
            for path in ("/etc/hostname", "/etc/resolv.conf"):
                if fs.is_file(path) and not fs.is_symlink(path):
                    host = Path(path)
                    if host.is_file() and fs.read_bytes(path) == host.read_bytes():
                        fs.unlink(path)
            for path in fs.glob("/var/lib/apt/lists/*") + fs.glob("/var/cache/apt/archives/*.deb"):
                if stat.S_ISREG(fs.lstat(path).st_mode) and not path.endswith("/lock"):
                    fs.unlink(path)
            # mmdebstrap keeps its --aptopt lines, --proxy's among them; the cache key has no proxy.
            aptopts = "/etc/apt/apt.conf.d/99mmdebstrap"
            drop_proxy_lines(aptopts, fs)
            # --insecure applies to the build only: the guest's apt checks signatures again.
            if fs.is_file(aptopts) and not fs.is_symlink(aptopts):
                drop_insecure_lines(fs, aptopts)

    def package_list(self) -> dict[str, str]:
        return installed_packages(self.context.rootfs)

    # -- configuration --------------------------------------------------------------------------

    def guest_vars(self) -> dict[str, Any]:
        """Variables for templates and hooks (the tweak context)."""
        s = self.settings
        hostname = str(s["hostname"])
        domain = s.get_str("domain")
        static = s["ip"] != "dhcp"
        mirror = str(s["mirror"])
        security = str(s["security-mirror"] or self.security_mirror_for(mirror))
        return {
            "hostname": hostname,
            "domain": domain or "",
            "fqdn": f"{hostname}.{domain}" if domain else hostname,
            "iface": "eth0",
            "nic": self.context.hook_env.get("NETWORK", "") != "none",
            "dhcp": not static,
            "address": s["ip"] if static else "",
            "prefix": s["mask"],
            "netmask": str(ipaddress.IPv4Network(f"0.0.0.0/{s['mask']}").netmask),
            "gateway": s.get_str("gw") or "",
            "dns": s.get_list("dns"),
            "lang": s["lang"],
            "timezone": s["timezone"],
            "suite": self.release.series,
            "version": self.release.version,
            # What the guest's apt sources are built from: plain URLs and names, never apt options.
            "components": [aptargs.component(c) for c in s.get_list("components")],
            "mirror": aptargs.mirror(mirror),
            "security_mirror": aptargs.mirror(security, "--security-mirror"),
            "distro": self.name,
            "init": self.traits.init,
            "pockets": list(self.pockets()),
            "keyring": str(self.keyring_path),  # where the guest's own keyring package puts it
            "user": s["user"],
            "systemd_version": self.traits.systemd_version,
            **self.template_vars,
        }

    def configure_os(self) -> None:
        """As far as the source's base needs it: an image is container-ready and gets only its identity
        and the initial user; a bootstrapped base gets configure_guest()."""
        self.source.configure()

    def configure_guest(self) -> None:
        """A bootstrapped base: the tweak table, then (in a container) locale and users."""
        ctx = self.context
        guest = Guest(ctx.rootfs, lambda name, variables: ctx.render(name, variables), self.guest_vars(), ctx.hook_env)
        chosen = self.select_tweaks(guest)
        LOG.debug("tweaks for %s: %s", self.release.series, ", ".join(t.name for t in chosen))
        ctx.summary["tweaks"] = apply(chosen, guest)
        note("applied %d %s tweaks for %s", len(chosen), self.profile(), self.release.describe())
        if self.profile() == "buildd":
            self.run_in_target("usermod", "--lock", "root")  # no users, no locale: sbuild brings its own
            return
        self.configure_locale()
        self.configure_users()

    def configure_locale(self) -> None:
        """Generate --lang the way the guest's locales package keeps it through its upgrades.

        LANG itself is written by the locale tweaks (the file each release reads). The locales
        package of Debian (and of Ubuntu from noble on) rebuilds what /etc/locale.gen enables at every
        upgrade, and Debian's locale-gen ignores its arguments: so the locale is enabled there first
        (a file the postinst made, which no package owns), then locale-gen runs (Ubuntu's takes the
        name as well). `locale -a` tells whether the guest has it now; a name it cannot build is refused.
        """
        lang = str(self.settings["lang"])
        if lang in ("C.UTF-8", "C", "POSIX"):
            return
        gen, listed = "/etc/locale.gen", "/usr/share/i18n/SUPPORTED"
        with self.context.guestfs() as fs:
            supported = fs.read_text(listed, errors="replace") if fs.is_file(listed) else ""
            entry = supported_entry(supported, lang)
            if entry and fs.is_file(gen) and not fs.is_symlink(gen):  # a link to SUPPORTED builds them all
                fs.write_text(gen, enable_locale(fs.read_text(gen, errors="replace"), entry), 0o644)
        self.run_in_target("locale-gen", lang)
        if locale_a_name(lang) not in self.run_in_target("locale", "-a").lines:
            die(f"--lang {lang} is not a locale that {self.release.describe()} can generate",
                f"use a name listed in the guest's {listed}, e.g. en_US.UTF-8")  # fmt: skip

    def configure_users(self) -> None:
        s = self.settings
        user = str(s["user"])
        argv = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "--groups", "sudo"]
        if s["name"]:
            argv += ["--comment", str(s["name"])]
        if s["uid"] is not None:
            argv += ["--uid", str(s["uid"])]
        self.source.add_user(argv, user)  # an imported image keeps an account it already has
        passwords = []
        if s["pass"]:
            passwords.append(chpasswd_line(user, str(s["pass"])))  # one line whatever the password holds
        else:
            self.run_in_target("usermod", "--lock", user)
            self.install_file(
                f"/etc/sudoers.d/90-vmbuilder-{user}",
                f"# {user} has no password (--pass was not given): sudo without one.\n"
                f"{sudoers_user(user)} ALL=(ALL) NOPASSWD:ALL\n",
                0o440,
            )
        if s["rootpass"]:
            passwords.append(chpasswd_line("root", str(s["rootpass"])))
        if passwords:
            self.run_in_target("chpasswd", input="\n".join(passwords) + "\n")
        if not s["rootpass"]:
            self.run_in_target("usermod", "--lock", "root")
        for key_setting, account in (("ssh-key", "root"), ("ssh-user-key", user)):
            key_file = s.get_str(key_setting)
            if key_file:
                self.authorize_key(account, Path(key_file))

    def authorize_key(self, account: str, key_file: Path) -> None:
        """~account/.ssh/authorized_keys, owned by the account, all through guestfs: a chown or chmod
        run in the chroot would follow an imported image's .ssh link through /proc/1/root to the host."""
        keys = key_file.read_text()
        keys += "" if keys.endswith("\n") else "\n"
        with self.context.guestfs() as fs:
            passwd = fs.read_text("/etc/passwd", errors="replace") if fs.is_file("/etc/passwd") else ""
            entry = next((f for f in (ln.split(":") for ln in passwd.splitlines()) if len(f) >= 7 and f[0] == account),
                         None)  # fmt: skip
            if entry is None or not (entry[2].isdigit() and entry[3].isdigit()):
                raise RuntimeError(f"user {account} is not in the guest's /etc/passwd")
            uid, gid, ssh = int(entry[2]), int(entry[3]), entry[5].rstrip("/") + "/.ssh"
            fs.mkdir(ssh, 0o700, parents=True, exist_ok=True)
            fs.chmod_dir(ssh, 0o700, uid=uid, gid=gid)
            fs.write_text(f"{ssh}/authorized_keys", keys, 0o600, uid=uid, gid=gid)

    def post_install(self) -> None:
        """Remove what must not survive into the image (shadow backups made by useradd)."""
        with self.context.guestfs() as fs:
            for backup in ("passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-"):
                fs.unlink(f"/etc/{backup}", missing_ok=True)


def insecure_apt_options() -> list[str]:
    """apt-get options for an --insecure build's package phase (the same as mmdebstrap's --aptopt)."""
    out: list[str] = []
    for opt in INSECURE_APTOPTS:
        key, value = opt.split(" ", 1)
        out += ["-o", f"{key}={value.strip(chr(34))}"]
    return out


def drop_insecure_lines(fs: GuestFS, path: str) -> None:
    """Remove the --insecure apt options mmdebstrap kept in the base (unlink the file if it empties)."""
    lines = fs.read_text(path, errors="replace").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip().rstrip(";") not in INSECURE_APTOPTS]
    if len(kept) == len(lines):
        return
    if any(ln.strip() for ln in kept):
        fs.write_text(path, "".join(kept))
    else:
        fs.unlink(path)


SEEDFILE_MAX = 1 << 20  # debconf selections are text; a megabyte is far more than any preseed


def read_seedfile(path: Path) -> str:
    """The --seedfile text: a regular UTF-8 file of sane size, read without following into FIFOs."""
    hint = "give a debconf selections file (debconf-get-selections output)"
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            die(f"--seedfile {path} is not a regular file", hint)
        if st.st_size > SEEDFILE_MAX:
            die(f"--seedfile {path} is larger than {SEEDFILE_MAX // 1024} KiB", hint)
        with path.open("rb") as fh:
            data = fh.read(SEEDFILE_MAX + 1)
        if len(data) > SEEDFILE_MAX:
            die(f"--seedfile {path} is larger than {SEEDFILE_MAX // 1024} KiB", hint)
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        die(f"--seedfile {path} is not UTF-8 text", hint)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        die(f"cannot read --seedfile {str(path)!r}: {getattr(exc, 'strerror', None) or exc}", hint)
    if "\0" in text:
        die(f"--seedfile {path} is not text (it holds NUL bytes)", hint)
    return text


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
