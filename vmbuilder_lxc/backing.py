"""--backing dir|overlay|btrfs: how a container's rootfs is made from the cached base.

- `dir` (the default): the base is copied into DEST/rootfs (`cp -a --reflink=auto`).
- `overlay`: nothing is copied. The cache entry's tree itself is the read-only lower layer (the
  cache never replaces or prunes a tree a container uses: pins.py); DEST/overlay/delta holds what
  configure changed and DEST/overlay/work is overlayfs's work directory: liblxc's own layout, the
  one `lxc-copy -s -B overlay` makes, with `lxc.rootfs.path = overlay:BASE:DEST/overlay/delta`.
  During the build the overlay is mounted at the build's rootfs in its private mount namespace.
- `btrfs`: when DEST's parent is on btrfs, a read-only subvolume PARENT/.vmbuilder-bases/KEY.ID
  is made once from the cache tree (one real copy per base and filesystem), and each build
  snapshots it to DEST/rootfs (`lxc.rootfs.path = btrfs:DEST/rootfs`). A snapshot does not depend
  on its source: deleting an old base subvolume never harms a container.

Either way DEST holds a marker (pins.MARKER) and the cache a pin, so `cache prune` keeps the base.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from . import pins, sysmount
from .chroot import enter_private_mount_namespace, unmount
from .context import Context
from .log import LOG, UserError, die
from .run import clean_env, run

BACKINGS = ("dir", "overlay", "btrfs")
BACKING_HELP = (
    "how DEST/rootfs is made from the cached base: dir (a full copy), overlay (the cached base as a "
    "read-only lower layer plus a small delta; needs the cache, not with --libvirt), or btrfs (a "
    "subvolume snapshot; DEST's parent must be on btrfs)"
)
OVERLAY = "overlay"  # DEST/overlay/{delta,work}: liblxc's layout for an overlay rootfs
BTRFS_BASES = ".vmbuilder-bases"
BTRFS_MAGIC = "btrfs"
# liblxc splits overlay:LOWER:UPPER at ':' and builds "lowerdir=...,upperdir=..." mount options.
_OVERLAY_BAD = (":", ",", "\\", "\n", "\r", "\t")


class CacheEntry(Protocol):
    """What the backings use of a cache entry (cache.Entry)."""

    key: str

    @property
    def root(self) -> Path: ...

    def load_meta(self) -> dict[str, Any] | None: ...


def backing_of(settings: Any) -> str:
    return str(settings["backing"]) if "backing" in settings.table else "dir"


# statfs(2) f_type -> the name `stat -f -c %T` prints, for the types preflight decides on.
FS_MAGICS = {0x9123683E: "btrfs", 0x794C7630: "overlayfs", 0x6969: "nfs", 0x65735546: "fuseblk",
             0xEF53: "ext2/ext3", 0x58465342: "xfs", 0x01021994: "tmpfs"}  # fmt: skip


def _statfs_type(path: Path) -> int | None:
    """statfs(2)'s f_type (the struct's first field, a long), or None where it cannot be read."""
    buf = ctypes.create_string_buffer(256)  # larger than struct statfs on every Linux architecture
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.statfs(os.fsencode(path), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def fs_type(path: Path) -> str:
    """The filesystem type of `path` or of its nearest existing ancestor (as `stat -f` names it);
    statfs(2) for the usual types (no `stat` process on every overlay or btrfs build)."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    magic = _statfs_type(probe)
    if magic in FS_MAGICS:
        return FS_MAGICS[magic]
    out = subprocess.run(["stat", "-f", "-c", "%T", "--", str(probe)], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def check_overlay_path(path: Path, what: str) -> str:
    """A path that liblxc's overlay:LOWER:UPPER and overlayfs's mount options can carry, or ValueError."""
    text = str(path)
    bad = next((c for c in _OVERLAY_BAD if c in text), None)
    if bad is not None or any(ord(c) < 32 or ord(c) == 127 for c in text):
        shown = repr(bad) if bad is not None else "a control character"
        raise ValueError(f"{what} {text!r} contains {shown}, which an LXC overlay rootfs path cannot hold")
    return text


def rootfs_spec(kind: str, dest: Path, base: Path | None = None) -> str:
    """The value of lxc.rootfs.path for DEST with this backing."""
    if kind == "overlay":
        assert base is not None
        lower = check_overlay_path(base, "the base")
        upper = check_overlay_path(dest / OVERLAY / "delta", "the destination")
        return f"overlay:{lower}:{upper}"
    if kind == "btrfs":
        return f"btrfs:{dest / 'rootfs'}"
    return f"dir:{dest / 'rootfs'}"


def preflight(ctx: Context) -> None:
    """Refuse a backing this build cannot have, before anything slow."""
    s = ctx.settings
    kind = backing_of(s)
    if kind == "dir":
        return
    flag = f"--backing {kind}"
    if not s.get_bool("cache"):
        die(f"{flag} needs the base cache (its base is a cache entry)", "drop --no-cache, or use --backing dir")
    if "from-template" in s.table and s["from-template"]:
        die(f"{flag} needs a base from the cache; --from-template images are unpacked", "use --backing dir")
    if not ctx.keep_dest:
        die(f"{flag} with --export-only keeps no container to back", "drop --backing or --export-only")
    if ctx.hook_env.get("PROFILE") == "buildd":
        die(f"{flag}: a buildd chroot (--variant buildd) must be a plain directory", "use --backing dir")
    if kind == "overlay":
        if "libvirt" in s.table and s["libvirt"]:
            die("--backing overlay: libvirt's LXC driver needs DEST/rootfs as a plain directory",
                "use --backing dir or btrfs with --libvirt")  # fmt: skip
        if "overlay" not in Path("/proc/filesystems").read_text():
            die("--backing overlay: this kernel has no overlay filesystem", "modprobe overlay, or use --backing dir")
        found = fs_type(ctx.dest.parent)
        if found in ("overlayfs", "nfs", "fuseblk", "fuse"):  # overlayfs refuses these as its upper layer
            die(f"--backing overlay: {ctx.dest.parent} is on {found}, which cannot hold an overlay's delta",
                "put -d on a local disk (ext4, xfs, btrfs), or use --backing dir")  # fmt: skip
        try:
            check_overlay_path(Path(str(s["cache-dir"])).absolute(), "--cache-dir")
            check_overlay_path(ctx.dest, "-d")
        except ValueError as exc:
            die(f"--backing overlay: {exc}", "choose a path without it, or use --backing dir")
    else:
        found = fs_type(ctx.dest.parent)
        if found != BTRFS_MAGIC:
            die(f"--backing btrfs: {ctx.dest.parent} is on {found or 'an unknown filesystem'}, not btrfs",
                "put -d on a btrfs filesystem, or use --backing dir")  # fmt: skip
        if shutil.which("btrfs", path=clean_env()["PATH"]) is None:
            die("--backing btrfs needs the btrfs command", "apt-get install btrfs-progs")


def _entry_id(entry: CacheEntry) -> str:
    """Which store of KEY this is: a refreshed entry gets a new btrfs base, never an old one."""
    created = (entry.load_meta() or {}).get("created", 0)
    return hashlib.sha256(repr(created).encode()).hexdigest()[:12]


def attach(ctx: Context, entry: CacheEntry, fresh: bool = False) -> bool:
    """Give the build its rootfs from `entry` with the chosen backing; False for `dir` (copy it).

    Call with the cache's lock on the key held, so the entry cannot be pruned before it is pinned.
    `fresh`: the rootfs was just bootstrapped and stored, so that copy is dropped for the backing.
    """
    kind = backing_of(ctx.settings)
    if kind == "dir":
        return False
    assert ctx.workdir is not None
    if fresh:
        run(["rm", "-rf", "--one-file-system", "--", ctx.rootfs])
    cache_dir = Path(str(ctx.settings["cache-dir"]))
    # Absolute: the LXC config and the marker name it, and --cache-dir may be relative.
    base = entry.root.absolute() if kind == "overlay" else _btrfs_base(ctx.dest.parent, entry)
    pins.write_marker(ctx.workdir, entry.key, kind, base)  # before the pin: users() checks it
    pins.pin(cache_dir, entry.key, ctx.workdir)
    if kind == "overlay":
        upper, work = ctx.workdir / OVERLAY / "delta", ctx.workdir / OVERLAY / "work"
        for d in (upper, work, ctx.rootfs):
            d.mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={base},upperdir={upper},workdir={work}"
        sysmount.mount(["-t", "overlay", "-o", opts, "overlay"], ctx.rootfs)
    else:
        with contextlib.suppress(FileNotFoundError):
            ctx.rootfs.rmdir()
        run(["btrfs", "-q", "subvolume", "snapshot", base, ctx.rootfs])
    ctx.summary["backing"] = {"kind": kind, "base": str(base), "key": entry.key}
    LOG.info("rootfs backed by %s on %s", kind, base)
    return True


def not_stored(ctx: Context) -> None:
    """The cache kept an older entry in use instead of storing this base: this build stays a plain copy."""
    kind = backing_of(ctx.settings)
    if kind != "dir":
        LOG.warning("--backing %s: the cache entry for this base is still used by other containers and could "
                    "not be replaced, so this container gets a plain directory (--backing dir)", kind)  # fmt: skip


def _btrfs_base(parent: Path, entry: CacheEntry) -> Path:
    """PARENT/.vmbuilder-bases/KEY.ID, a read-only subvolume made once from the cache tree."""
    bases = parent / BTRFS_BASES
    base = bases / f"{entry.key}.{_entry_id(entry)}"
    if base.is_dir():
        return base
    bases.mkdir(parents=True, exist_ok=True)
    partial = bases / f"{base.name}.partial"
    if partial.exists():  # an interrupted earlier attempt (we hold the key's lock)
        delete_subvolume(partial)
    run(["btrfs", "-q", "subvolume", "create", partial])
    run(["cp", "-a", "--reflink=auto", "--no-target-directory", "--", entry.root, partial],
        progress="copying the cached base into a btrfs subvolume")  # fmt: skip
    run(["btrfs", "-q", "property", "set", "-ts", partial, "ro", "true"])
    os.replace(partial, base)
    return base


def is_subvolume(path: Path) -> bool:
    """A btrfs subvolume's root directory has inode number 256."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_ino == 256 and fs_type(path) == BTRFS_MAGIC


def delete_subvolume(path: Path) -> None:
    run(["btrfs", "-q", "property", "set", "-ts", path, "ro", "false"], check=False)
    run(["btrfs", "-q", "subvolume", "delete", path])


def delete_subvolumes(tree: Path) -> None:
    """Before a recursive delete of a build tree: its rootfs may be a snapshot that `rm
    --one-file-system` would skip (a subvolume has its own device number)."""
    rootfs = tree / "rootfs"
    if is_subvolume(rootfs):
        delete_subvolume(rootfs)


def detach(ctx: Context) -> None:
    """Before the build directory moves into place: unmount the overlay (the delta stays)."""
    if backing_of(ctx.settings) == "overlay" and ctx.workdir is not None:
        unmount(ctx.workdir / "rootfs")


def committed(ctx: Context, build_dir: Path | None) -> None:
    """DEST is in place: pin DEST itself, then drop the build directory's pin."""
    marker = pins.read_marker(ctx.dest) if backing_of(ctx.settings) != "dir" else None
    if marker is None or build_dir is None:
        return
    cache_dir = Path(str(ctx.settings["cache-dir"]))
    pins.pin(cache_dir, marker["key"], ctx.dest)
    pins.unpin(cache_dir, marker["key"], build_dir)


@contextlib.contextmanager
def merged_view(dest: Path) -> Iterator[None]:
    """For reading an overlay-backed DEST (exports): its merged view mounted read-only at DEST/rootfs,
    in a private mount namespace, so neither the host nor a later lxc-start sees the mount."""
    marker = pins.read_marker(dest)
    if marker is None or marker.get("backing") != "overlay":
        yield
        return
    base = Path(str(marker.get("base", "")))
    delta = dest / OVERLAY / "delta"
    if not base.is_dir() or not delta.is_dir():
        raise UserError(f"{dest} is overlay-backed but its base {base} or delta {delta} is missing",
                        "rebuild it with --overwrite")  # fmt: skip
    try:
        opts = f"ro,lowerdir={check_overlay_path(delta, 'the delta')}:{check_overlay_path(base, 'the base')}"
    except ValueError as exc:
        raise UserError(str(exc), "move the container to a plain path") from None
    enter_private_mount_namespace()
    sysmount.mount(["-t", "overlay", "-o", opts, "overlay"], dest / "rootfs")
    try:
        yield
    finally:
        unmount(dest / "rootfs")
