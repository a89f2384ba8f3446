"""`--from-template FILE`: read and check an image, a rootfs tarball (ours or another tool's).

Here "image" is the imported archive; "template" in this code base names only Jinja templates
(the option and the messages keep the user's word, template).

inspect() reads the whole archive once: every member is checked with archive_safety (an unsafe
archive is refused with one line before anything is written), the layout is detected, and
os-release, passwd and group are read on the way. What the build does with the image (adopting its
release, unpacking it, giving it its own identity) is source/image.py's ImageSource; this module
knows nothing of the distro plugin.
"""

from __future__ import annotations

import re
import shlex
import tarfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import validators as v
from .archive_open import compression
from .archive_safety import Limits, UnsafeArchive, check_members, read_members
from .hostsfile import hosts_text
from .log import die
from .settings import Needs, Setting

__all__ = ["compression", "hosts_text"]  # importable from here as before (tests, plugins)

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


def passwd_accounts(text: str) -> dict[str, int]:
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
    image.accounts = passwd_accounts(files.get(prefix + PASSWD, b"").decode(errors="replace"))
    group_text = files.get(prefix + GROUP, b"").decode(errors="replace")
    image.groups = {line.split(":", 1)[0] for line in group_text.splitlines() if ":" in line}
    image.ours = HOSTKEYS_UNIT in inside
    image.host_keys = sorted(name for name in inside if HOST_KEY.match(name))
    image.has_init = any(init in inside for init in INITS)
    arches = {m.group(1) for name in inside if (m := DPKG_INFO_ARCH.match(name))}
    image.arch = arches.pop() if len(arches) == 1 else None
    return image
