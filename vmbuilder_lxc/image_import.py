"""`--from-template FILE`: deploy an image, a rootfs tarball (ours or another tool's), instead of bootstrapping.

Here "image" is the imported archive; "template" in this code base names only Jinja templates
(the option and the messages keep the user's word, template).

The distro plugin calls in here from four places, so that an imported rootfs goes through the same
pipeline as a bootstrapped one (the LXC config, --libvirt, --copy, hooks and the summary all work
unchanged):

- set_defaults: `prepare()` reads the whole archive once: every member is checked with
  archive_safety (an unsafe archive is refused with one line before anything is written), the
  layout is detected, and os-release, passwd and group are read on the way. The image's release
  and architecture become --suite and --arch unless those were given.
- preflight_check: `preflight()` instead of the keyring and bootstrapper checks.
- bootstrap: `extract()` unpacks the rootfs with safe_extract() (which checks it once more).
- configure_os: `configure()` gives the container its own identity (hostname, 127.0.1.1, an empty
  machine-id, no shared secrets) and sets up the initial user; packages, network, locale and the
  other tweaks are the image's. docs/import.md explains the choices.
"""

from __future__ import annotations

import re
import shlex
import tarfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import shellhooks
from . import validators as v
from .archive_safety import (
    BZIP2_MAGIC,
    GZIP_MAGIC,
    XZ_MAGIC,
    ZSTD_MAGIC,
    Limits,
    UnsafeArchive,
    check_members,
    free_space,
    read_members,
    safe_extract,
)
from .exports.identity import hosts_text
from .formats import word
from .guestfs import GuestFS
from .keyring import sha256_file
from .log import LOG, die, note
from .settings import Needs, Setting
from .tweaks import Guest, apply

if TYPE_CHECKING:
    from .distro import DebianFamily

# Layouts: where the rootfs is inside the archive.
ROOTFS = "rootfs"  # files at the archive root: our tar export, CloudStack, sbuild's unshare tarballs
LXC = "lxc"  # the same, named rootfs.tar.xz: the LXC image format's rootfs
LXD = "lxd"  # LXD/Incus unified image: metadata.yaml, templates/, rootfs/
BUILDD = "buildd"  # Launchpad buildd chroot: everything under chroot-autobuild/
CONTAINER_DIR = "container-dir"  # a tarred LXC container directory: rootfs/ beside config

STRIPS = {ROOTFS: "", LXC: "", LXD: "rootfs", BUILDD: "chroot-autobuild", CONTAINER_DIR: "rootfs"}
# Top-level directories that only a root filesystem has.
ROOT_DIRS = frozenset({"etc", "usr", "bin", "sbin", "lib", "var", "boot", "root"})

# Small files read while the archive is checked, relative to the rootfs.
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
LSB_RELEASE = "etc/lsb-release"
PASSWD = "etc/passwd"
GROUP = "etc/group"
READ_FILES = (*OS_RELEASE, LSB_RELEASE, PASSWD, GROUP)
READ_LIMIT = 1 << 20

HOSTKEYS_UNIT = "etc/systemd/system/vmbuilder-ssh-hostkeys.service"  # our ssh-host-keys tweak's unit
INITS = ("sbin/init", "usr/sbin/init")
HOST_KEY = re.compile(r"etc/ssh/ssh_host_[^/]*key$")
DPKG_INFO_ARCH = re.compile(r"var/lib/dpkg/info/libc6:([a-z0-9]+)\.list$")

# The identity tweaks every container needs even from a ready-made rootfs (plugins/common_tweaks.py).
IDENTITY_TWEAKS = ("machine-id", "dbus-machine-id", "instance-secrets")

# Settings that shape a bootstrap or the guest's configuration: an imported rootfs has its own.
NOT_FOR_IMPORT = (
    "addpkg", "removepkg", "seedfile", "variant", "mirror", "install-mirror", "security-mirror",
    "install-security-mirror", "components", "proxy", "keyring", "bootstrapper", "ip", "mask", "gw", "dns",
    "lang", "timezone", "initctl-listener",
)  # fmt: skip

MAGICS = ((ZSTD_MAGIC, "zstd"), (XZ_MAGIC, "xz"), (GZIP_MAGIC, "gzip"), (BZIP2_MAGIC, "bzip2"))
SQUASHFS_MAGIC = b"hsqs"  # little-endian squashfs superblock: LXD's split rootfs, our squashfs export

HINT = "use a template from a source you trust, or repack it from a clean root (tar -C ROOT -cf FILE .)"


def import_settings(group: str) -> list[Setting]:
    """The import settings, declared in the distro's installation group."""
    return [
        Setting("from-template", "deploy this template tarball instead of bootstrapping: ours, a plain rootfs "
                "tarball, LXC's rootfs.tar.xz, an LXD/Incus unified image or a buildd chroot; unsafe "
                "archives are refused before anything is extracted (see docs/import.md)", metavar="FILE",
                validate=v.existing_file, group=group),
        Setting("template-setuid", "accept setuid and setgid files in --from-template "
                "(--no-template-setuid refuses a template that has any)", "bool", True, group=group,
                needs=(Needs(lambda s: bool(s["from-template"]), "without --from-template"),)),
    ]  # fmt: skip


# -- reading the archive ----------------------------------------------------------------------------


def compression(path: Path) -> str:
    """How the file is compressed, by its first bytes (names lie): zstd, xz, gzip, bzip2 or none."""
    with path.open("rb") as fh:
        head = fh.read(len(XZ_MAGIC))
    return next((name for magic, name in MAGICS if head.startswith(magic)), "none")


def normalize(name: str) -> str:
    """A member name without './', doubled or trailing slashes: './etc//x/' -> 'etc/x'."""
    return "/".join(piece for piece in name.split("/") if piece not in ("", "."))


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) fields; values may be quoted with shell quoting. Bad lines are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(2))
        except ValueError:
            words = [m.group(2).strip("\"'")]
        fields[m.group(1)] = " ".join(words)
    return fields


def os_release_from_lsb(text: str) -> dict[str, str]:
    """os-release fields from /etc/lsb-release, for releases that predate os-release (lucid)."""
    lsb = parse_os_release(text)
    out = {
        "ID": lsb.get("DISTRIB_ID", "").lower(),
        "VERSION_ID": lsb.get("DISTRIB_RELEASE", ""),
        "VERSION_CODENAME": lsb.get("DISTRIB_CODENAME", ""),
        "PRETTY_NAME": lsb.get("DISTRIB_DESCRIPTION", ""),
    }
    return {k: val for k, val in out.items() if val}


def detect_layout(names: Collection[str], filename: str) -> tuple[str, str | None]:
    """(layout, problem): where the rootfs is, from the normalized member names.

    A problem (the archive is a kind we cannot deploy) is reported only after the safety check, so
    that an unsafe archive is always refused as such.
    """
    tops = {name.split("/", 1)[0] for name in names if name}
    if "rootfs" in tops and "metadata.yaml" in names:
        return LXD, None
    if tops & ROOT_DIRS:
        return (LXC if filename == "rootfs.tar.xz" else ROOTFS), None
    if "chroot-autobuild" in tops:
        return BUILDD, None
    if "rootfs" in tops:
        return CONTAINER_DIR, None
    if "metadata.yaml" in names:
        return ROOTFS, (
            "is an LXD/Incus metadata tarball (the split image form) without a rootfs; "
            "import the unified tarball (metadata.yaml plus rootfs/) instead"
        )
    if {"config", "templates"} & tops and {"create-message", "expiry", "excludes-user"} & tops:
        return ROOTFS, "is LXC's meta.tar.xz, which holds no rootfs; import the rootfs.tar.xz beside it instead"
    return ROOTFS, "holds no root filesystem (no etc/, usr/, rootfs/ or chroot-autobuild/); check the file"


@dataclass
class ImportedImage:
    """What the preflight pass learned about an imported image (a tarball)."""

    path: Path
    layout: str
    compression: str
    members: int
    os_release: dict[str, str] = field(default_factory=dict)
    arch: str | None = None
    accounts: dict[str, int] = field(default_factory=dict)  # user name -> uid
    groups: set[str] = field(default_factory=set)
    ours: bool = False  # it has our ssh-host-keys unit, so keys are made at first boot
    host_keys: list[str] = field(default_factory=list)
    has_init: bool = True
    sha256: str = ""

    @property
    def strip(self) -> str:
        return STRIPS[self.layout]

    @property
    def distro_id(self) -> str:
        return self.os_release.get("ID", "").lower()

    @property
    def series(self) -> str:
        """The release as --suite takes it: the codename, else the version."""
        return self.os_release.get("VERSION_CODENAME") or self.os_release.get("VERSION_ID", "")

    @property
    def description(self) -> str:
        return self.os_release.get("PRETTY_NAME") or f"{self.distro_id} {self.series}".strip()

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "layout": self.layout,
            "compression": self.compression,
            "members": self.members,
            "os_release": dict(self.os_release),
            "arch": self.arch,
            "ours": self.ours,
        }


def _wanted(member: tarfile.TarInfo) -> bool:
    if member.size > READ_LIMIT:
        return False
    name = normalize(member.name)
    return any(name == prefix + rel for prefix in ("", "rootfs/", "chroot-autobuild/") for rel in READ_FILES)


def _passwd(text: str) -> dict[str, int]:
    accounts = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            accounts[fields[0]] = int(fields[2])
    return accounts


def inspect(path: Path, *, allow_setuid: bool = True, limits: Limits | None = None) -> ImportedImage:
    """Check every member of the image at `path` and learn what the build needs, in one pass.

    Raises UnsafeArchive (one line: the member and why) if anything would land outside the rootfs
    or the archive exceeds a limit (archive_safety.Limits; `limits.data` is the free space at DEST),
    and UserError if it is truncated or not a root filesystem.
    """
    with path.open("rb") as fh:
        if fh.read(len(SQUASHFS_MAGIC)) == SQUASHFS_MAGIC:
            die(
                f"template {path} is a squashfs image, not a tarball",
                "import a tarball (a rootfs tarball, rootfs.tar.xz or an LXD/Incus unified image), "
                "or unsquashfs it and tar the result",
            )
    headers: list[tarfile.TarInfo] = []
    files: dict[str, bytes] = {}
    for member, data in read_members(path, _wanted, limits=limits, label=f"template {path}"):
        headers.append(member)
        if data is not None:
            files[normalize(member.name)] = data
    names = {normalize(m.name) for m in headers}
    layout, problem = detect_layout(names, path.name)
    strip = STRIPS[layout]
    problems = check_members(headers, strip=strip, allow_setuid=allow_setuid, gnu_tar=True)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise UnsafeArchive(f"template {path}: unsafe member {first.name!r}: {first.why}{more}", first.hint)
    if problem:
        die(f"template {path} {problem}", None)
    prefix = f"{strip}/" if strip else ""
    inside = {name[len(prefix) :] for name in names if name.startswith(prefix)}
    image = ImportedImage(path, layout, compression(path), len(headers))
    for rel in OS_RELEASE:
        if prefix + rel in files:
            image.os_release = parse_os_release(files[prefix + rel].decode(errors="replace"))
            break
    else:
        if prefix + LSB_RELEASE in files:
            image.os_release = os_release_from_lsb(files[prefix + LSB_RELEASE].decode(errors="replace"))
    image.accounts = _passwd(files.get(prefix + PASSWD, b"").decode(errors="replace"))
    group_text = files.get(prefix + GROUP, b"").decode(errors="replace")
    image.groups = {line.split(":", 1)[0] for line in group_text.splitlines() if ":" in line}
    image.ours = HOSTKEYS_UNIT in inside
    image.host_keys = sorted(name for name in inside if HOST_KEY.match(name))
    image.has_init = any(init in inside for init in INITS)
    arches = {m.group(1) for name in inside if (m := DPKG_INFO_ARCH.match(name))}
    image.arch = arches.pop() if len(arches) == 1 else None
    return image


# -- the distro's hooks -----------------------------------------------------------------------------


def _refuse_inapplicable(distro: DebianFamily) -> None:
    s = distro.settings
    # explicit() first: source() would compute a default (the mirror's) before the release is known.
    given = [
        name for name in NOT_FOR_IMPORT if name in s.table and s.explicit(name) and s.source(name) == "command line"
    ]
    if given:
        flags = ", ".join(f"--{name}" for name in given)
        die(
            f"{flags} {'does' if len(given) == 1 else 'do'} not apply to --from-template: the template is deployed "
            "with its own packages, network, locale and time zone",
            "drop it, or build from the archive without --from-template",
        )
    for name in NOT_FOR_IMPORT:
        if name in s.table and s.explicit(name):
            LOG.debug("--from-template: %s from %s is not used", name, s.source(name))


def prepare(distro: DebianFamily) -> ImportedImage:
    """set_defaults: check and inspect the image, then adopt its release and architecture."""
    s = distro.settings
    _refuse_inapplicable(distro)
    path = Path(str(s["from-template"]))
    image = inspect(path, allow_setuid=s.get_bool("template-setuid"), limits=free_space(distro.context.dest))
    image.sha256 = sha256_file(path)
    if not image.os_release:
        if not s.explicit("suite"):
            die(f"template {path} has no etc/os-release, so its release is unknown", "pass --suite with its release")
        LOG.warning("template %s has no etc/os-release; trusting --suite %s", path, s["suite"])
    elif image.distro_id != distro.name:
        die(
            f"template {path} is {image.description} (ID={image.distro_id or '?'}), not {distro.name}",
            f"import it with its own distro: vmbuilder {distro.context.hypervisor_name} "
            f"{image.distro_id or 'DISTRO'} --from-template {path}",
        )
    elif not s.explicit("suite"):
        if not image.series:
            die(f"template {path}: its os-release names no VERSION_CODENAME or VERSION_ID", "pass --suite")
        s.set("suite", image.series, "--from-template")
    else:
        chosen = distro.resolve_suite(str(s["suite"]))
        if image.series and image.series not in (chosen.series, chosen.version):
            LOG.warning(
                "--suite %s, but the template is %s; the container is configured as %s",
                s["suite"],
                image.description,
                chosen.describe(),
            )
    if image.arch:
        if not s.explicit("arch"):
            s.set("arch", image.arch, "--from-template")
        elif s["arch"] != image.arch:
            die(f"--arch {s['arch']}, but template {path} is {image.arch}", "drop --arch")
    distro.context.summary["template"] = image.summary()
    distro.context.hook_env["TEMPLATE"] = str(path)
    return image


def preflight(distro: DebianFamily, image: ImportedImage) -> None:
    """preflight_check: what the import itself can refuse or warn about (no keyring is needed)."""
    s = distro.settings
    user = str(s["user"])
    uid = s.get_int("uid")
    if user in image.accounts and uid is not None and image.accounts[user] != uid:
        die(
            f"--uid {uid}: user {user} already exists in the template with uid {image.accounts[user]}",
            "drop --uid, or choose another --user",
        )
    if not image.has_init:
        LOG.warning(
            "template %s has no /sbin/init (a build chroot?): lxc-start cannot boot it; install an init system "
            "(e.g. systemd-sysv) in the template first",
            image.path,
        )
    if image.host_keys and not image.ours:
        LOG.warning(
            "template %s ships SSH host keys (%s), and nothing of ours regenerates them: every container made "
            "from it shares them; remove them and run ssh-keygen -A in the container (e.g. with --firstboot)",
            image.path,
            ", ".join(Path(k).name for k in image.host_keys[:3]) + (", ..." if len(image.host_keys) > 3 else ""),
        )
    dirs = [Path(p) for p in s.get_list("hook-dir")]
    early = [p for stage in ("setup", "essential") for p in shellhooks.stage_scripts(dirs, stage)]
    if early:
        LOG.warning(
            "--from-template: nothing is bootstrapped, so the setup and essential hooks (%s) do not run",
            ", ".join(p.name for p in early),
        )


def extract(distro: DebianFamily, image: ImportedImage) -> None:
    """bootstrap: unpack the rootfs (safe_extract checks the archive once more, then runs GNU tar)."""
    ctx = distro.context
    note("unpacking %s (%s layout, %s) from %s", image.description, image.layout, image.compression,
         image.path)  # fmt: skip
    allow_setuid = distro.settings.get_bool("template-setuid")
    safe_extract(image.path, ctx.rootfs, strip=image.strip, allow_setuid=allow_setuid,
                 label=f"template {image.path}")  # fmt: skip


def _identity(guest: Guest, variables: dict[str, Any]) -> list[str]:
    """/etc/hostname, and the 127.0.1.1 line of /etc/hosts (the image's other lines stay)."""
    hostname = word(variables["hostname"], "--hostname", "/etc/hostname")  # one field: no spaces, no line breaks
    names = f"{word(variables['fqdn'], 'the FQDN', '/etc/hosts')} {hostname}" if variables.get("domain") else hostname
    guest.write("/etc/hostname", hostname + "\n", 0o644)
    if guest.fs.is_file("/etc/hosts") and not guest.fs.is_symlink("/etc/hosts"):  # read inside the rootfs
        text = hosts_text(guest.fs.read_text("/etc/hosts", errors="replace"), names)
    else:
        text = guest.render("common/hosts.j2", variables)
    guest.write("/etc/hosts", text, 0o644)
    return ["/etc/hostname", "/etc/hosts"]


def configure(distro: DebianFamily, image: ImportedImage) -> None:
    """configure_os: the container's own identity and the initial user; the rest is the image's."""
    ctx = distro.context
    if ctx.chroot is not None:  # commands in the image's rootfs get their own /proc (see Chroot)
        ctx.chroot.pid_namespace = True
    variables = distro.guest_vars()
    guest = Guest(ctx.rootfs, lambda name, values: ctx.render(name, values), variables, ctx.hook_env)
    names: Sequence[str] = IDENTITY_TWEAKS + (("ssh-host-keys",) if image.ours else ())
    chosen = [t for t in distro.select_tweaks(guest) if t.name in names]
    record: list[dict[str, Any]] = [
        {
            "name": "hostname",
            "why": "The container's own name in /etc/hostname and on the template's 127.0.1.1 line.",
            "paths": _identity(guest, variables),
        }
    ]
    record += apply(chosen, guest)
    ctx.summary["tweaks"] = record
    note("gave the imported %s its own identity (%s)", image.description, ", ".join(r["name"] for r in record))
    distro.configure_users()


def add_user(distro: DebianFamily, argv: Iterable[str], user: str) -> None:
    """configure_users' useradd on an imported rootfs: an account the image has is kept as it is.

    (Our own exports have the initial user already; useradd would fail on it.) The password, sudo
    and SSH key settings that follow apply either way. An image without a sudo group gets the user
    without that group.
    """
    root = distro.context.rootfs
    with GuestFS(root) as fs:  # the image's files are read inside the rootfs, never through a symlink out
        passwd = fs.read_text(PASSWD, errors="replace") if fs.is_file(PASSWD) else ""
        group_text = fs.read_text(GROUP, errors="replace") if fs.is_file(GROUP) else ""
    accounts = _passwd(passwd) if passwd else {}
    s = distro.settings
    if user in accounts:
        note("user %s exists in the template; keeping it", user)
        if s["name"]:
            distro.run_in_target("usermod", "--comment", str(s["name"]), user)
        return
    args = list(argv)
    groups = {line.split(":", 1)[0] for line in group_text.splitlines()}
    if "sudo" not in groups and "--groups" in args:
        LOG.warning("the template has no sudo group; user %s is created without it", user)
        i = args.index("--groups")
        del args[i : i + 2]
    distro.run_in_target(*args, user)
