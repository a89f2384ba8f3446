"""The build's shift step for `--idmap` (issue 16): when and where the rootfs's ids are shifted.

The rootfs is shifted once, at the end of the build: after configure (tweaks, users, postinst),
the customize and finalize hooks and the `--export` archives (which must be 0-based, so they are
written before), and before DEST is moved into place. Everything that feeds the build stays
0-based: the cache entry (a `dir` build shifts its own copy, a `btrfs` build its snapshot) and
`--from-template` images. A build without root (userns.py) needs no shift: its user namespace
writes the mapped ids itself. The engine is idshift.py; the map is the lxc plugin's (idmap.py).
"""

from __future__ import annotations

from .context import Context
from .idmap import IdMap
from .idshift import shift_tree
from .log import LOG, die, step


def idmap_to_shift(ctx: Context) -> IdMap | None:
    """The map this build shifts its rootfs to; None without --idmap or without root."""
    data = ctx.summary.get("idmap")  # set by the lxc plugin's preflight (idmap.SUMMARY_KEY)
    if data is None or ctx.summary.get("rootless"):
        return None
    return IdMap.from_json(data)


def preflight(ctx: Context) -> None:
    """Refuse what the shift cannot do well, before anything slow."""
    if idmap_to_shift(ctx) is None:
        return
    s = ctx.settings
    if "backing" in s.table and s.get_str("backing") == "overlay":
        die("--idmap with --backing overlay: shifting copies every file of the shared, 0-based base up into the "
            "delta", "use --backing btrfs (its snapshot is shifted) or --backing dir")  # fmt: skip


def shift_rootfs(ctx: Context) -> None:
    """Shift the finished rootfs to the build's map (a no-op without one, or with --export-only)."""
    ids = idmap_to_shift(ctx)
    if ids is None or not ctx.keep_dest:
        return
    with step(f"Shifting the rootfs's ids ({ids.describe()})"):
        report = shift_tree(ctx.rootfs, ids.uid_start, ids.gid_start, ids.count)
    for point in report.mounts:  # the chroot's mounts are gone by now: this is someone else's
        LOG.warning("%s/%s is a mount point; what is mounted there was not shifted", ctx.rootfs, point)
    ctx.summary["shift"] = {"inodes": report.inodes, "caps": report.caps, "acls": report.acls}
