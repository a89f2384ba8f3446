"""Refusing unsafe image tarballs (--from-template) before anything is extracted.

An image tarball (ours or another tool's: LXC's rootfs.tar.xz, an LXD unified tarball whose
rootfs is under rootfs/, a plain rootfs tar, sbuild's .tar.zst) is extracted as root, so one crafted
member could write anywhere on the host: an absolute or `..` name, a file written through a symlink
that an earlier member planted, a hardlink to a host file, a directory whose owner and mode land on
a symlink's target. check_archive() reads every member header once (tarstream.py: in bounded time and memory, whatever
the headers claim; it never extracts) and refuses the archive with one line naming the first such
member; safe_extract() does the same and only then lets GNU tar extract it.

GNU tar writes the files, so names are also judged the way GNU tar will use them:
with --strip-components it strips raw slash-separated pieces, so `rootfs//etc/passwd` would become
the absolute `/etc/passwd`; hardlink targets lose everything up to their last `..`; and a damaged
header, where a reader could stop, is skipped by GNU tar, which then extracts what follows
unchecked. Such archives are refused too. What remains assumed is that tarstream and GNU tar parse
intact headers alike (tarstream follows GNU tar 1.34's rules, measured).

Device nodes are accepted only under dev/ and are not extracted (LXC and libvirt create the ones a
container needs): safe_extract() excludes them and logs one line saying what it skipped. FIFOs are
extracted wherever they are: making one needs no privilege and opens nothing on the host.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .archive_open import BZIP2_MAGIC as BZIP2_MAGIC
from .archive_open import GZIP_MAGIC as GZIP_MAGIC
from .archive_open import READ_HINT as READ_HINT
from .archive_open import XZ_MAGIC as XZ_MAGIC
from .archive_open import ZSTD_MAGIC as ZSTD_MAGIC
from .archive_open import Member, Wanted, read_headers
from .log import LOG, UserError
from .run import run
from .tarstream import Limits as Limits
from .tarstream import UnsafeArchive as UnsafeArchive

# A path inside the archive after normalisation: its components, () being the top.
Parts = tuple[str, ...]

HINT = "use a template from a source you trust, or repack it from a clean root (tar -C ROOT -cf FILE .)"
SETUID_HINT = "allow setuid and setgid files if this template needs them, or clear those bits before packing it"
TAR_HINT = "repack it with plain member names (tar -C ROOT -cf FILE .) so that GNU tar extracts each member as checked"

# Device nodes under dev/ that one archive may have (each becomes an --exclude of GNU tar).
MAX_SKIPPED_DEVICES = 4096
DEVICES = ("character device", "block device")


@dataclass(frozen=True)
class MemberProblem:
    """Why one member makes the archive unsafe; `hint` (not compared) is what the user can do."""

    name: str
    why: str
    hint: str = field(default=HINT, compare=False, repr=False)


def _walk(path: str, start: Parts = ()) -> Parts | None:
    """`path` resolved lexically from `start`, '.' and empty components dropped.

    None when a `..` climbs above the top: lexical is enough because the symlink rules below make
    sure that nothing is ever extracted through a symlink.
    """
    out = list(start)
    for piece in path.split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(piece)
    return tuple(out)


def _show(parts: Parts) -> str:
    return "/".join(parts) or "."


def _gnu_link_name(name: str) -> str:
    """A hardlink target as GNU tar uses it: everything up to its last `..` and leading slashes go."""
    pieces = name.split("/")
    last = max((i for i, piece in enumerate(pieces) if piece == ".."), default=-1)
    return "/".join(pieces[last + 1 :]).lstrip("/") or "."


def _kind(member: tarfile.TarInfo) -> str | None:
    """What the member creates; None for types GNU tar would not extract as a plain file system object."""
    if member.isreg():  # regular, contiguous and GNU sparse files
        return "file"
    if member.isdir():
        return "directory"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.ischr():
        return "character device"
    if member.isblk():
        return "block device"
    if member.isfifo():
        return "fifo"
    return None


def _strip_parts(strip: str) -> Parts:
    parts = None if strip.startswith("/") else _walk(strip)
    if parts is None:
        raise UserError(f"invalid strip prefix {strip!r}", "name a directory inside the archive, such as rootfs")
    return parts


class _Scanner:
    """Follows the archive member by member: several rules depend on what earlier members created."""

    def __init__(self, strip: Parts, allow_setuid: bool, gnu_tar: bool) -> None:
        self.strip = strip
        self.allow_setuid = allow_setuid
        # safe_extract(): also refuse names with `..`, which GNU tar (1.34) refuses to extract or
        # (other versions) extracts elsewhere, possibly selected by --strip-components' member name.
        self.gnu_tar = gnu_tar
        self.kinds: dict[Parts, str] = {}  # earlier members; a hardlink has its target's kind
        self.dirs: set[Parts] = set()  # earlier directories, explicit or implied by a member's path
        self.symlinks: dict[Parts, str] = {}  # every path that ever was a symlink, with its target
        self.spelling: str | None = None  # how members spell `strip`: "rootfs" or "./rootfs"
        self.devices: list[str] = []  # device nodes under dev/, as spelled: not extracted

    def add(self, member: tarfile.TarInfo) -> MemberProblem | None:
        """Judge the next member and remember what it creates."""
        name = member.name
        kind = _kind(member)
        if kind is None:
            return MemberProblem(name, f"unsupported member type {member.type.decode(errors='replace')!r}")
        if "\0" in name or "\0" in member.linkname:
            return MemberProblem(name, "NUL byte in its name or link target (GNU tar would cut the name there)")
        if name.startswith("/"):
            return MemberProblem(name, "absolute member name")
        full = _walk(name)
        if full is None:
            return MemberProblem(name, "its '..' components lead outside the archive root")
        eff_kind, target = self._effective(member, kind)
        problem = self._judge(member, kind, full, eff_kind, target)
        self._record(full, eff_kind, target)
        if problem is None and eff_kind in DEVICES:
            self.devices.append(name)
            if len(self.devices) > MAX_SKIPPED_DEVICES:
                return MemberProblem(name, f"more than {MAX_SKIPPED_DEVICES} device nodes in dev/")
        return problem

    def _in_rootfs(self, full: Parts) -> bool:
        return full[: len(self.strip)] == self.strip

    def _effective(self, member: tarfile.TarInfo, kind: str) -> tuple[str | None, str | None]:
        """What the member really is and, for symlinks, its target: a hardlink is what it links to."""
        if kind == "symlink":
            return kind, member.linkname
        if kind != "hardlink":
            return kind, None
        lfull = None if member.linkname.startswith("/") else _walk(member.linkname)
        if lfull is None or lfull not in self.kinds:
            return None, None
        return self.kinds[lfull], self.symlinks.get(lfull)

    def _through_symlink(self, path: str) -> Parts | None:
        """The first earlier symlink that `path` passes through on its way to its last component."""
        pieces = [piece for piece in path.split("/") if piece not in ("", ".")]
        stack: list[str] = []
        for piece in pieces[:-1]:
            if piece == "..":
                if stack:
                    stack.pop()
                continue
            stack.append(piece)
            if tuple(stack) in self.symlinks:
                return tuple(stack)
        return None

    def _judge(
        self, member: tarfile.TarInfo, kind: str, full: Parts, eff_kind: str | None, target: str | None
    ) -> MemberProblem | None:
        name = member.name

        def problem(why: str, hint: str = HINT) -> MemberProblem:
            return MemberProblem(name, why, hint)

        # Members outside `strip` are not part of the rootfs: they are judged against the archive root.
        in_rootfs = self._in_rootfs(full)
        rel = full[len(self.strip) :] if in_rootfs else full
        extracted = in_rootfs or not self.strip

        if self.strip and in_rootfs and rel:
            why = self._spelling_problem(name, rel)
            if why:
                return problem(why, TAR_HINT)
        if self.gnu_tar and ".." in name.split("/"):
            return problem("GNU tar refuses member names containing '..'", TAR_HINT)
        link = self._through_symlink(name)
        if link is not None:
            return problem(
                f"extracting through the symlink {_show(link)!r} (to {self.symlinks[link]!r}) would write "
                "outside the root"
            )
        if not rel and kind != "directory":
            return problem(f"the root directory itself is a {kind}")
        if eff_kind == "symlink" and full in self.dirs:
            return problem("it replaces an earlier directory of the same name with a symlink")
        if kind == "directory" and full in self.symlinks:
            return problem(
                "it turns an earlier symlink of the same name into a directory, whose owner and mode tar "
                "would apply where the link points"
            )
        if kind == "hardlink":
            found = self._hardlink_problem(member.linkname, full, extracted)
            if found:
                return problem(*found)
        if eff_kind == "symlink" and target is not None and not target.startswith("/"):
            if _walk(target, rel[:-1]) is None:
                return problem(f"symlink to {target!r} leads outside the root")
        if eff_kind in ("character device", "block device"):
            if self.strip and not in_rootfs:
                return problem(f"{eff_kind} outside the {_show(self.strip)}/ directory")
            if len(rel) < 2 or rel[0] != "dev":
                return problem(f"{eff_kind} outside dev/")
        if kind == "file" and not self.allow_setuid and member.mode & (stat.S_ISUID | stat.S_ISGID):
            return problem(f"setuid or setgid file (mode {member.mode:04o})", SETUID_HINT)
        return None

    def _spelling_problem(self, name: str, rel: Parts) -> str | None:
        """GNU tar --strip-components strips raw pieces, so rootfs members must spell the prefix alike."""
        strip = "/".join(self.strip)
        spelling = next((sp for sp in (strip, f"./{strip}") if name.startswith(f"{sp}/")), None)
        if spelling is None:
            return f"it spells the {strip}/ prefix unusually; GNU tar would not extract it as {_show(rel)!r}"
        if self.spelling is None:
            self.spelling = spelling
        elif spelling != self.spelling:
            return (
                f"it spells the prefix {spelling!r} but earlier members {self.spelling!r}; GNU tar strips "
                "only one spelling"
            )
        rest = name[len(spelling) + 1 :]
        if rest.startswith("/"):
            return f"GNU tar --strip-components would extract it as the absolute path {rest!r}"
        return None

    def _hardlink_problem(self, linkname: str, full: Parts, extracted: bool) -> tuple[str, str] | None:
        """Why a hardlink to `linkname` at `full` is unsafe, and the hint; hardlinks can reach host files."""
        if linkname.startswith("/"):
            return f"hardlink to the absolute path {linkname!r}", HINT
        lfull = _walk(linkname)
        if lfull is None:
            return f"hardlink target {linkname!r} leads outside the archive root", HINT
        if self.strip and self._in_rootfs(lfull) != self._in_rootfs(full):
            return f"hardlink target {linkname!r} is on the other side of the {_show(self.strip)}/ boundary", HINT
        link = self._through_symlink(linkname)
        if link is not None:
            return f"hardlink target {linkname!r} passes through the symlink {_show(link)!r}", HINT
        if lfull not in self.kinds:
            return f"hardlink target {linkname!r} is not an earlier member", HINT
        if self.kinds[lfull] == "directory":
            return f"hardlink to the directory {linkname!r}", HINT
        if not extracted:
            return None
        # What GNU tar links to must be the member checked above, not another file.
        gnu = _gnu_link_name(linkname)
        lrel = lfull[len(self.strip) :]
        if self.strip:
            spelling = self.spelling or "/".join(self.strip)
            if not gnu.startswith(f"{spelling}/"):
                return f"GNU tar --strip-components would not find the hardlink target {linkname!r}", TAR_HINT
            gnu = gnu[len(spelling) + 1 :]
            if gnu.startswith("/"):
                return f"GNU tar --strip-components would link it to the absolute path {gnu!r}", TAR_HINT
        if _walk(gnu) != lrel:
            return f"GNU tar would link it to {gnu!r}, not {_show(lrel)!r}", TAR_HINT
        return None

    def _record(self, full: Parts, eff_kind: str | None, target: str | None) -> None:
        for i in range(1, len(full)):
            if full[:i] not in self.symlinks:
                self.dirs.add(full[:i])  # tar creates missing parents as directories
        if eff_kind is None:
            return
        self.kinds[full] = eff_kind
        if eff_kind == "directory":
            self.dirs.add(full)
        elif eff_kind == "symlink" and target is not None:
            self.symlinks[full] = target


def check_members(
    members: Iterable[tarfile.TarInfo], *, strip: str = "", allow_setuid: bool = True, gnu_tar: bool = False
) -> list[MemberProblem]:
    """Every member that makes the archive unsafe to extract, in archive order.

    `strip` is a leading directory (LXD's "rootfs") whose contents are the rootfs; members outside
    it (metadata.yaml, templates/) are allowed, judged against the archive root, and never extracted.
    `gnu_tar` also refuses what safe_extract() refuses because GNU tar would (names with `..`), so
    a check made ahead of safe_extract() agrees with it.
    """
    scanner = _Scanner(_strip_parts(strip), allow_setuid, gnu_tar=gnu_tar)
    return [problem for member in members if (problem := scanner.add(member)) is not None]


def _scan(path: Path, scanner: _Scanner, limits: Limits | None, label: str | None) -> None:
    """Feed every member to `scanner`; raise UnsafeArchive for the first problem, counting the rest."""
    first: MemberProblem | None = None
    more = 0
    for member, _ in read_headers(path, limits=limits, label=label):
        problem = scanner.add(member)
        if problem is None:
            continue
        if first is None:
            first = problem
        else:
            more += 1
    if first is not None:
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UnsafeArchive(f"{label or path}: unsafe member {first.name!r}: {first.why}{extra}", first.hint)


def read_members(
    path: Path, wanted: Wanted, *, limits: Limits | None = None, label: str | None = None
) -> Iterator[Member]:
    """Every member header in order, with the contents of the regular members `wanted` selects.

    The archive is read once, as strictly as check_archive() reads it (a damaged header or stream is
    an error), and nothing is extracted: a caller learns what it needs (os-release, say) in the same
    pass as it checks the members with check_members(). Keep what `wanted` selects small (sparse
    members and members over 16 MiB are never read). `label` names the file in messages.
    """
    return read_headers(path, wanted, limits, label)


def free_space(dest: Path) -> Limits:
    """Limits whose `data` is the free space where `dest` is (or will be): its nearest existing ancestor."""
    place = dest.absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        vfs = os.statvfs(place)
    except OSError:
        return Limits()
    inodes = vfs.f_favail if vfs.f_files else None  # btrfs and others report no inode count
    return Limits(data=vfs.f_bavail * vfs.f_frsize, data_where=f"free at {place}", inodes=inodes)


def check_archive(
    path: Path, *, strip: str = "", allow_setuid: bool = True, limits: Limits | None = None, label: str | None = None
) -> None:
    """Raise UnsafeArchive unless every member of the tarball at `path` is safe to extract.

    Plain, gzip, bzip2, xz and zstd archives are read; nothing is ever extracted. The work is
    bounded by tarstream's limits and the file's real size, whatever its headers claim.
    """
    _scan(path, _Scanner(_strip_parts(strip), allow_setuid, gnu_tar=False), limits, label)


def safe_extract(
    path: Path, dest: Path, *, strip: str = "", allow_setuid: bool = True, label: str | None = None
) -> list[str]:
    """Check the tarball at `path`, then extract it (or its `strip` directory) into `dest` with GNU tar.

    `dest` must be new or empty, so that nothing already there can redirect a member. Nothing is
    written before the whole archive has been checked, including that its contents fit in the free
    space at `dest`. Device nodes (only allowed under dev/) are not extracted; their names are
    returned and logged. The archive must not change between the check and the extraction: keep
    images where only root can write.
    """
    strip_parts = _strip_parts(strip)
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or any(dest.iterdir()):
            raise UserError(f"{dest} is not an empty directory", "extract the template into a new or empty directory")
    scanner = _Scanner(strip_parts, allow_setuid, gnu_tar=True)
    _scan(path, scanner, free_space(dest), label)
    argv: list[str | os.PathLike[str]] = [
        "tar", "-x", "--force-local", "-f", path, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-p",
        "-C", dest, "--anchored", "--no-wildcards",
    ]  # fmt: skip
    # As spelled in the archive: GNU tar matches --exclude against the member name before stripping.
    argv += [f"--exclude={name}" for name in scanner.devices]
    if strip_parts:
        if scanner.spelling is None:
            raise UserError(
                f"{path} has nothing under {_show(strip_parts)}/",
                "check that the template is an archive of this kind, or extract it without stripping",
            )
        components = len(scanner.spelling.split("/"))
        argv += [f"--strip-components={components}", "--", scanner.spelling]
    dest.mkdir(parents=True, exist_ok=True)
    run(argv, progress="unpacking template")
    if scanner.devices:
        shown = ", ".join(scanner.devices[:5]) + (", ..." if len(scanner.devices) > 5 else "")
        LOG.info(
            "skipped %d device node%s in dev/ (%s): LXC and libvirt create the ones a container needs",
            len(scanner.devices),
            "s" if len(scanner.devices) > 1 else "",
            shown,
        )
    return scanner.devices
