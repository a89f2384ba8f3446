"""The files of one published version, written by the export code from one stripped view.

- lxd.tar.xz: the split image's metadata (metadata.yaml + templates/), xz as its ftype says. One
  file serves LXD and Incus: its templates use `instance.name`, which both offer (LXD 5.0 offers
  `container` too, Incus only `instance`).
- rootfs.squashfs: the split image's root (zstd). Both are exports/lxdimage.py's split form.
- meta.tar.xz + rootfs.tar.xz: LXC's download files (the lxc export; always xz). rootfs.tar.xz is
  also LXD's root.tar.xz (files at the archive root) with --root-tar.
- unified.tar.* (--unified): the unified image, its own product.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..exports import FORMATS, ExportJob
from ..exports.lxdimage import ROOTFS_PREFIX, write_metadata_dir, write_split
from ..exports.sharing import write_unified
from ..exports.stage import staged
from ..exports.tarball import SUFFIX
from ..exports.unshift import zero_based
from ..log import die, step
from . import streams
from .streams import FileInfo

# zero_based: a finished --idmap build's rootfs seen 0-based, as every export reads it (plugins/publish.py).
__all__ = ["Built", "ExportJob", "build_files", "check_tools", "combined_sha256", "file_info", "is_xz", "zero_based"]
CHUNK = 1 << 20
XZ_MAGIC = b"\xfd7zXZ\x00"
META_FLAVOUR = "incus"  # templates say `instance.name`: LXD 5.0 and Incus both fill it in
TOOLS = ("mksquashfs", "xz", "tar")


@dataclass(frozen=True)
class Built:
    files: dict[str, FileInfo]
    combined: dict[str, str]
    unified: str | None = None  # the unified tarball's name in the version directory


def check_tools(unified_compression: str | None) -> None:
    needed = [*TOOLS, *(["zstd"] if unified_compression == "zstd" else [])]
    missing = [t for t in needed if not shutil.which(t)]
    if missing:
        die(f"publishing needs {', '.join(missing)}, which is not installed",
            "install it with: apt-get install squashfs-tools xz-utils zstd")  # fmt: skip


def file_info(path: Path) -> FileInfo:
    with path.open("rb") as fh:
        return FileInfo(os.fstat(fh.fileno()).st_size, hashlib.file_digest(fh, "sha256").hexdigest())


def combined_sha256(meta: Path, root: Path) -> str:
    """sha256 of the metadata bytes followed by the root's: the image's fingerprint in LXD and Incus."""
    digest = hashlib.sha256()
    for path in (meta, root):
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def is_xz(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(XZ_MAGIC)) == XZ_MAGIC


def build_files(rootfs: Path, job: ExportJob, out: Path, *, keep: frozenset[str], xz_level: int | None,
                unified_compression: str | None, root_tar: bool) -> Built:  # fmt: skip
    """Write every file of the version into `out` (an empty staging directory)."""
    with step("Staging the rootfs for publishing"), staged(rootfs, keep) as stage:
        base = dataclasses.replace(job, root=stage.root, out_dir=out, shared={})
        # The split image as exports/lxdimage.py writes it: the metadata xz (its ftype says so), the
        # squashfs its own default, zstd (compression_explicit False), at that format's own level.
        split = dataclasses.replace(base, compression="xz", compression_explicit=False, compression_level=None)
        with step("Writing the LXD/Incus split image (lxd.tar.xz, rootfs.squashfs)"):
            write_split(split, META_FLAVOUR, out / streams.META, out / streams.SQUASHFS)
        unified_name = None
        if unified_compression is not None:
            unified_name = streams.UNIFIED + SUFFIX[unified_compression]
            ujob = dataclasses.replace(base, compression=unified_compression, compression_level=None)
            with (
                step(f"Writing the unified image ({unified_compression})"),
                tempfile.TemporaryDirectory(prefix=".meta.", dir=out) as meta_dir,
            ):
                names = write_metadata_dir(ujob, META_FLAVOUR, Path(meta_dir))
                write_unified(ujob, Path(meta_dir), names, out / unified_name, transform=ROOTFS_PREFIX,
                              label=unified_name)  # fmt: skip
        lxc = FORMATS["lxc"]
        ljob = dataclasses.replace(base, name="lxc", compression="xz", compression_level=xz_level)
        with step("Writing LXC's meta.tar.xz and rootfs.tar.xz"), tempfile.TemporaryDirectory(dir=out) as tmp:
            lxc.write(ljob, Path(tmp))
            for rel in lxc.outputs(ljob):
                os.replace(Path(tmp) / rel, out / Path(rel).name)
    files = {name: file_info(out / name) for name in (streams.META, streams.SQUASHFS, streams.LXC_META,
                                                       streams.LXC_ROOTFS)}  # fmt: skip
    if unified_name:
        files[unified_name] = file_info(out / unified_name)
    if not is_xz(out / streams.META):
        raise RuntimeError(f"{streams.META} was not written as xz")
    combined = {"combined_squashfs_sha256": combined_sha256(out / streams.META, out / streams.SQUASHFS)}
    if root_tar:
        combined["combined_rootxz_sha256"] = combined_sha256(out / streams.META, out / streams.LXC_ROOTFS)
    return Built(files, combined, unified_name)
