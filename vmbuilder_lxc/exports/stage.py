"""A stripped view of a rootfs for export that costs milliseconds, not a copy.

The view is an overlay mount beside the rootfs, with the rootfs as its read-only lower layer and an
empty upper layer that takes whatever the strip rules remove or replace; where overlayfs cannot be
mounted it is `cp -al` of the rootfs beside it (hard links: a second or so for a 230 MB tree).
Leftovers of the build and of the build host are unlinked or replaced in the view only. Files are
never written in place: a hard-linked file shares its inode with the rootfs, so every change is
unlink-then-create.
The rules are data (STRIP), each with the reason an image must not carry it. The changes are
planned first, reading only; when all are removals and every format can leave paths out (a plain
tarball), no view is made: tar reads the rootfs with those paths excluded, for the same bytes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..chroot import unmount_below
from ..guestedit import rewrite, without_proxy_lines
from ..guestfs import GuestFS
from ..locks import lock_or_wait
from ..log import LOG
from ..run import run

STAGE_SUFFIX = ".vmbuilder-export"
HOST_RESOLV = Path("/etc/resolv.conf")


@dataclass(frozen=True)
class Strip:
    """Paths (globs relative to the root) and what to do with them: remove, empty, or unproxy."""

    name: str
    patterns: tuple[str, ...]
    action: str  # "remove" (files and links; directories kept), "empty" (a 0-byte file), "unproxy"
    why: str
    unless: str = ""  # a setting that keeps them (e.g. keep-apt-lists)


STRIP: tuple[Strip, ...] = (
    Strip("ssh-host-keys", ("etc/ssh/ssh_host_*",), "remove", "every instance needs its own SSH host keys"),
    Strip("machine-id", ("etc/machine-id",), "empty", "an empty file makes systemd create a fresh one at first boot"),
    Strip("dbus-machine-id", ("var/lib/dbus/machine-id",), "remove", "a copy of the machine-id"),
    Strip("random-seed", ("var/lib/systemd/random-seed", "var/lib/systemd/credential.secret"), "remove",
          "secrets and entropy are per instance"),
    Strip("resolv-conf", ("etc/resolv.conf",), "host-resolv", "the build host's resolvers do not belong to the image"),
    Strip("resolv-conf-backup", ("etc/.resolv.conf.systemd-resolved.bak",), "remove",
          "systemd-resolved's postinst saved the build host's resolv.conf there"),
    Strip("proxy", ("etc/apt/apt.conf.d/*", "etc/apt/apt.conf", "etc/environment", "etc/profile.d/*"), "unproxy",
          "the build's proxy is not the consumer's"),
    Strip("logs", ("var/log/**",), "remove", "logs of the build are not the instance's"),
    Strip("tmp", ("tmp/**", "var/tmp/**"), "remove", "temporary files of the build"),
    Strip("apt-lists", ("var/lib/apt/lists/**",), "remove", "stale package indexes; apt-get update fetches fresh ones",
          unless="keep_apt_lists"),
    Strip("apt-caches", ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"), "remove", "caches apt rebuilds"),
    Strip("backups", ("etc/*-", "var/lib/dpkg/*-old", "var/cache/debconf/*-old"), "remove",
          "backup copies made by useradd, dpkg and debconf during the build"),
    Strip("ldconfig-aux", ("var/cache/ldconfig/aux-cache",), "remove", "records inode numbers and times of the build"),
    Strip("histories", ("root/.bash_history", "home/*/.bash_history"), "remove", "shell history of the build"),
)  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One planned change of the view: `path` (relative) removed, or replaced by `data`."""

    path: str
    remove: bool
    data: bytes = b""


def plan_strip(fs: GuestFS, keep: frozenset[str] = frozenset()) -> dict[str, list[Change]]:
    """What the rules change in the tree of `fs`, by rule name, found without changing anything
    (guestfs: no symlink leads a match out of the tree). A path is changed by the first rule that
    matches it only."""
    plan: dict[str, list[Change]] = {}
    seen: set[str] = set()
    for rule in STRIP:
        if rule.unless and rule.unless in keep:
            continue
        changes = [c for c in _rule_changes(fs, rule) if c.path not in seen]
        seen.update(c.path for c in changes)
        if changes:
            plan[rule.name] = changes
    return plan


def _rule_changes(fs: GuestFS, rule: Strip) -> Iterator[Change]:
    for pattern in rule.patterns:
        for path in fs.glob(pattern):
            st = fs.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            rel = path.lstrip("/")
            regular = stat.S_ISREG(st.st_mode)  # a symlink, FIFO or device is never read or emptied
            if rule.action == "remove":
                yield Change(rel, remove=True)
            elif rule.action == "empty":
                if regular and st.st_size:
                    yield Change(rel, remove=False)
            elif rule.action == "host-resolv":
                if regular and _same_as_host_resolv(fs, path):
                    yield Change(rel, remove=False)
            elif rule.action == "unproxy":
                kept = without_proxy_lines(fs, path)
                if kept is not None:
                    yield Change(rel, remove=not kept.strip(), data=kept.encode())
            else:
                raise ValueError(f"unknown strip action {rule.action}")


def _same_as_host_resolv(fs: GuestFS, path: str) -> bool:
    try:
        return fs.read_bytes(path, follow=False) == HOST_RESOLV.read_bytes()
    except OSError:
        return False


def apply_plan(view: Path, plan: dict[str, list[Change]], original: Path) -> None:
    """Make the planned changes in the view (unlink, or a new inode renamed over the file), then
    give each changed directory back the times it has in `original`: the archives then carry the
    rootfs's directory times, as when the same paths are left out of a tar of the rootfs itself."""
    changes = [c for rule in plan.values() for c in rule]
    with GuestFS(view) as fs, GuestFS(original) as orig:
        for change in changes:
            if change.remove:
                fs.unlink(change.path)
            else:
                rewrite(fs, change.path, change.data)
        for parent in sorted({os.path.dirname(c.path) for c in changes}):
            if parent:
                st = orig.lstat(parent)
                fs.utime(parent, (st.st_atime_ns, st.st_mtime_ns))
            else:  # the top: the view's own directory
                st = os.lstat(original)
                os.utime(view, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    if os.path.lexists(path):
        if path.is_dir() and not path.is_symlink():
            unmount_below(path)  # an overlay view (also one left by a killed export)
        run(["rm", "-rf", "--one-file-system", "--", path])


OVERLAY_UNSAFE = re.compile(r"[,:\\\s]")  # would be misread in overlayfs' mount options


def _copy_root_attributes(src: Path, upper: Path) -> None:
    """The view's root directory is the upper layer's: give it the rootfs root's owner, mode, xattrs
    and times, so that the archives' "./" entry is the same as with a copy."""
    st = os.lstat(src)
    os.chown(upper, st.st_uid, st.st_gid)
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        if not name.startswith("trusted.overlay."):
            os.setxattr(upper, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
    os.utime(upper, ns=(st.st_atime_ns, st.st_mtime_ns))


def overlay_view(src: Path, view: Path) -> Path | None:
    """Mount an overlay of `src` at view/root (upper and work dirs in `view`); None if it cannot be
    mounted here (no overlayfs, a filesystem it refuses as upper layer, no privilege)."""
    if OVERLAY_UNSAFE.search(str(src)) or OVERLAY_UNSAFE.search(str(view)):
        return None
    upper, work, root = view / "upper", view / "work", view / "root"
    try:
        view.mkdir(mode=0o700)
        for path in (upper, work, root):
            path.mkdir(mode=0o700)
        _copy_root_attributes(src, upper)
    except OSError as exc:
        LOG.debug("no overlay view of %s: %s", src, exc)
        return None
    options = f"lowerdir={src},upperdir={upper},workdir={work}"
    # volatile: no syncs of the upper layer, which is thrown away (without it, umount syncs the whole
    # filesystem the exports were just written to: a third of a second); kernels before 5.10 lack it.
    for extra in (",volatile", ""):
        if run(["mount", "-t", "overlay", "overlay", "-o", options + extra, root], check=False).returncode == 0:
            return root
    return None


def remove_stale_views(parent: Path) -> None:
    """Views left by a killed export (its PID is gone) are removed."""
    for stale in parent.glob(f".*{STAGE_SUFFIX}"):
        m = re.search(r"\.(\d+)\.", stale.name)
        if m and Path(f"/proc/{m.group(1)}").exists() and int(m.group(1)) != os.getpid():
            continue
        LOG.info("removing %s left by an interrupted export", stale)
        _remove(stale)


@contextmanager
def hardlink_view(src: Path, label: str) -> Iterator[Path]:
    """A writable view of `src` that leaves `src` alone, beside it: an overlay mount (milliseconds),
    else a hard-linked copy; unmounted and removed again on exit (also on errors and Ctrl-C)."""
    view = src.parent / f".{label}.{os.getpid()}{STAGE_SUFFIX}"
    _remove(view)
    try:
        root = overlay_view(src, view)
        if root is None:
            _remove(view)
            # A mounted rootfs (the merged view of an overlay-backed container) cannot be linked from
            # beside it: hard links never cross a mount, so that view is copied instead.
            how = ["-a", "--reflink=auto"] if os.path.ismount(src) else ["-al", "--preserve=all"]
            run(["cp", *how, "--", src, view], progress=f"staging {label}")
        yield root or view
    finally:
        _remove(view)


@contextmanager
def exclusive(rootfs: Path) -> Iterator[None]:
    """One export of a rootfs at a time. Making or removing a hard-linked view changes the ctime of
    every inode it links, and GNU tar reading another export's view then fails with "file changed
    as we read it"; so a second export waits (flock on the rootfs directory, gone with the process)."""
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        lock_or_wait(fd, "waiting for another export of %s to finish", rootfs)
        yield
    finally:
        os.close(fd)


# Above this many removals a direct export would pass tar a long exclude list: the view is used.
MAX_EXCLUDES = 4096


def _excludable(paths: list[str]) -> bool:
    """Whether tar can be told to leave these out on its command line: not too many, and each name
    valid UTF-8 (a name with other bytes is stripped in a view instead)."""
    if len(paths) > MAX_EXCLUDES:
        return False
    try:
        for path in paths:
            path.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Staged:
    """What the formats read: `root`, less the relative paths in `exclude` (a direct export), and
    what was stripped (rule name -> paths)."""

    root: Path
    stripped: dict[str, list[str]]
    exclude: tuple[str, ...] = ()


@contextmanager
def staged(rootfs: Path, keep: frozenset[str] = frozenset(), *, direct: bool = False) -> Iterator[Staged]:
    """The stripped rootfs. With `direct` (every format can leave paths out) and only removals to
    make, that is the rootfs itself with those paths excluded: no view is mounted, and tar reads the
    rootfs, not an overlay. Otherwise it is a view with the changes made; both give the same archives."""
    with exclusive(rootfs):
        remove_stale_views(rootfs.parent)
        with GuestFS(rootfs) as fs:
            plan = plan_strip(fs, keep)
        stripped = {name: [c.path for c in changes] for name, changes in plan.items()}
        changes = [c for rule in plan.values() for c in rule]
        removals = [c.path for c in changes]
        if direct and all(c.remove for c in changes) and _excludable(removals):
            yield Staged(rootfs, stripped, tuple(sorted(removals)))
            return
        with hardlink_view(rootfs, "stage") as view:
            apply_plan(view, plan, rootfs)
            yield Staged(view, stripped)


@contextmanager
def with_files(root: Path, files: dict[str, bytes], label: str) -> Iterator[Path]:
    """A view of `root` with some files replaced (e.g. LXC's LXC_NAME placeholders)."""
    with hardlink_view(root, label) as view:
        with GuestFS(view) as fs:
            for rel, data in files.items():
                if fs.is_symlink(rel) or not fs.is_file(rel):
                    fs.write_bytes(rel, data, 0o644)  # replaces a symlink; never writes through it
                else:
                    rewrite(fs, rel, data)
        yield view
