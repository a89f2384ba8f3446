"""DebianFamily: what Debian-family distro plugins (Ubuntu, Debian) share, composed of the build
steps' modules: distro_options.py (the settings), suites.py (suite resolution, --list-suites),
arches.py (architecture checks), source/ (the base system: bootstrap and cache, or an image),
packages.py (the package phase), tweaks.py (the tweak table) and guestsetup.py (locale, users, keys).

A distro plugin subclasses DebianFamily and supplies only data: its keyring, debootstrap script,
components, release traits, base packages and tweak table. Ubuntu and Debian share every line of
code below.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from . import __version__, aptargs, arches, packages, suites
from . import validators as v
from .bootstrap import BootstrapRequest
from .chroot import Chroot
from .distro_options import BUILDD_IGNORES, VARIANT_PROFILE, debian_family_settings
from .guestsetup import GuestSetup
from .log import LOG, note
from .mirrors import default_mirror
from .packages import PackagesTable, from_table
from .plugin import Distro
from .settings import Setting, Settings
from .source import Source
from .source.archive import ArchiveSource
from .source.image import ImageSource
from .suites import Release, ReleaseTable, version_key
from .tweakguest import Guest
from .tweaks import ReleaseTraits, Tweak, apply, select

# (first version, traits): later rows override earlier ones from their version on.
TraitsTable = Sequence[tuple[str, dict[str, object]]]


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
    # (first version, last version or None, architectures): listed in a Release file, but partial
    # there (libraries only, no base system).
    partial_arch_table: ClassVar[PackagesTable] = ()
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
        return debian_family_settings(hostname=self._default_hostname, mirror=self._default_mirror,
                                      keyring=self._default_keyring, components=self.default_components,
                                      user=self.default_user)  # fmt: skip

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
        return from_table(table, self.release)

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
        """--suite as a release this plugin builds (suites.py asks the archive about a new series)."""
        return suites.resolve_suite(self.name, self.releases(), text, today or dt.date.today(), self.unsupported,
                                    self.archive_fields)  # fmt: skip

    def archive_fields(self, name: str) -> dict[str, str]:
        """The Release fields of dists/NAME on the mirror; empty when the mirror does not serve it.
        Fetched once per build (suite resolution and the architecture check share the answer)."""
        mirror = str(self.settings["install-mirror"] or self.settings["mirror"])
        cache: dict[tuple[str, str], dict[str, str]] = self.__dict__.setdefault("_release_fields", {})
        if (mirror, name) not in cache:
            cache[(mirror, name)] = suites.archive_fields(mirror, name, self.settings.get_str("proxy"))
        return cache[(mirror, name)]

    def report(self, today: dt.date | None = None) -> str | None:
        """--list-suites: the table of suites.py's rows instead of a build."""
        if not self.settings.get_bool("list-suites"):
            return None
        rows = suites.suite_rows(self.name, self.releases(), today or dt.date.today(), self.unsupported,
                                 self.release_traits, self.archive_fields)  # fmt: skip
        return suites.format_rows(rows, self.settings.get_bool("json"))

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

    def suite_arches(self) -> tuple[list[str], str]:
        """The architectures the archive publishes a base system of this release for ([]: unknown),
        and where that was read: the `Architectures:` of the suite's Release file on the build's
        mirror, less the partial ones; the plugin's table when the mirror does not answer."""
        fields = self.archive_fields(self.release.series)
        listed = arches.release_architectures(fields, self._from_table(self.partial_arch_table))
        if listed:
            mirror = str(self.settings["install-mirror"] or self.settings["mirror"])
            return listed, f"{mirror.rstrip('/')}/dists/{self.release.series}/InRelease"
        return sorted(set(self._from_table(self.arch_table))), ""

    def check_suite_arch(self, arch: str) -> None:
        listed, where = self.suite_arches()
        arches.check_suite_arch(self.release.describe(), listed, arch, where)

    def check_package_inputs(self) -> None:
        packages.check_inputs(self.settings)

    def check_arch(self, arch: str) -> None:
        arches.check_arch(arch)

    # -- the base system: the source (source/) ---------------------------------------------------

    def pockets(self) -> tuple[str, ...]:
        return self.pockets_for(self.release)

    def bootstrap(self) -> None:
        """The source puts the base system into the rootfs: the archive's (through the cache) or an image's."""
        self.source.provide_rootfs()

    def package_phase(self, chroot: Chroot, req: BootstrapRequest) -> None:
        """The package phase on the bootstrapped base (packages.py)."""
        packages.package_phase(self.context, self.settings, chroot, req, self.unwanted_packages())

    def scrub_base(self) -> None:
        packages.scrub_base(self.context)

    def package_list(self) -> dict[str, str]:
        return packages.package_list(self.context.rootfs)

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
            "emulated": arches.foreign(str(s["arch"])),  # runs through qemu-user: When(emulated=True) rows
            # --idmap or a build without root: the guest boots in a user namespace (When(userns=True)
            # rows); the map is summary["idmap"], set in preflight (idmap.py, userns.py)
            "userns": self.context.summary.get("idmap") is not None,
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

    def guest_setup(self) -> GuestSetup:
        """The locale, user and key steps (guestsetup.py) for this build; the source adds the user."""
        return GuestSetup(self.settings, lambda: self.release.describe(), self.context.guestfs, self.run_in_target,
                          self.install_file, self.source.add_user)  # fmt: skip

    def configure_locale(self) -> None:
        self.guest_setup().configure_locale()

    def configure_users(self) -> None:
        self.guest_setup().configure_users()

    def post_install(self) -> None:
        """Remove what must not survive into the image (shadow backups made by useradd)."""
        with self.context.guestfs() as fs:
            for backup in ("passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-"):
                fs.unlink(f"/etc/{backup}", missing_ok=True)
