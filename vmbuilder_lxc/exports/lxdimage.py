"""`lxd` and `incus`: container images in the forms `lxc image import` / `incus image import` take.

Unified (the default, --lxd-image unified): NAME.lxd.tar.zst with metadata.yaml, templates/ and
rootfs/. Split (--lxd-image split or both; write_split for other callers): NAME.lxd/lxd.tar.zst
(metadata.yaml and templates/) plus NAME.lxd/rootfs.squashfs (zstd by default; --compression xz
gives .tar.xz). Each form compresses the rootfs once, so the default writes one: it is all
`lxc image import` needs. lxd and incus in one run share their compressed rootfs (sharing.py). The
metadata templates give each instance its own /etc/hostname and 127.0.1.1 line on create and copy
(never a package's file).
LXD 5.0 offers the instance to templates as `container` and `instance`; Incus only as `instance`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from ..arches import kernel_arch
from .base import ExportFormat, ExportJob
from .identity import identity_files
from .plain import SQUASHFS_DEFAULT, write_squashfs
from .sharing import write_once, write_unified
from .tarball import SUFFIX, write_tar

EXPIRY_DAYS = 30
TEMPLATE_NAMES = {"etc/hostname": "hostname.tpl", "etc/hosts": "hosts.tpl"}
# "." (the root itself) becomes rootfs, "./x" rootfs/x.
ROOTFS_PREFIX = r"s,^\.$,rootfs,;s,^\./,rootfs/,"
INSTANCE_VAR = {"lxd": "container", "incus": "instance"}


def metadata_yaml(job: ExportJob) -> str:
    return job.render(
        "exports/lxd-metadata.yaml.j2",
        {
            "job": job,
            "architecture": kernel_arch(job.arch),
            "expiry": job.epoch + EXPIRY_DAYS * 86400,
            "variant": "buildd" if job.profile == "buildd" else "default",
            "image_name": f"{job.distro}-{job.suite}-{job.arch}-default-{job.serial}",
            "templates": {f"/{rel}": tpl for rel, tpl in TEMPLATE_NAMES.items()},
        },
    )


def write_metadata_dir(job: ExportJob, flavour: str, into: Path) -> list[str]:
    """metadata.yaml and templates/ in `into`; returns the top-level names for tar."""
    (into / "metadata.yaml").write_text(metadata_yaml(job))
    templates = into / "templates"
    templates.mkdir()
    placeholder = "{{ " + INSTANCE_VAR[flavour] + ".name }}"
    for rel, text in identity_files(job.root, placeholder).items():
        (templates / TEMPLATE_NAMES[rel]).write_text(text)
    for path in (into, templates, *templates.iterdir(), into / "metadata.yaml"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return ["metadata.yaml", "templates"]


SQUASHFS_PART = "rootfs.squashfs"
# The split image's squashfs is compressed on its own: zstd unless --compression is given.
PARTS = ((SQUASHFS_PART, SQUASHFS_DEFAULT),)


def unified_name(job: ExportJob, flavour: str) -> str:
    """The unified image, relative to --export-dir: NAME.lxd.tar.zst."""
    return f"{job.name}.{flavour}.tar{SUFFIX[job.compression]}"


def split_names(job: ExportJob, flavour: str) -> tuple[str, str]:
    """The split image's metadata tarball and squashfs, relative to --export-dir (NAME.lxd/...)."""
    return f"{job.name}.{flavour}/{flavour}.tar{SUFFIX[job.compression]}", f"{job.name}.{flavour}/{SQUASHFS_PART}"


def forms(job: ExportJob) -> tuple[bool, bool]:
    """(unified, split): which forms job.lxd_image asks for."""
    return job.lxd_image in ("unified", "both"), job.lxd_image in ("split", "both")


def _names(job: ExportJob, flavour: str) -> list[str]:
    unified, split = forms(job)
    return ([unified_name(job, flavour)] if unified else []) + (list(split_names(job, flavour)) if split else [])


def write_split(job: ExportJob, flavour: str, meta_out: Path, squashfs_out: Path) -> None:
    """The split image: `meta_out` (metadata.yaml and templates/, compressed as job.compression says)
    and `squashfs_out` (the rootfs; zstd unless job.compression_explicit). Also for callers outside
    `--export` that need this form, e.g. a simplestreams image server."""
    with tempfile.TemporaryDirectory(prefix="lxd-meta.", dir=meta_out.parent) as meta_dir:
        _write_split_meta(job, Path(meta_dir), write_metadata_dir(job, flavour, Path(meta_dir)), meta_out)
    _write_split_squashfs(job, squashfs_out)


def _write_split_meta(job: ExportJob, meta_dir: Path, names: list[str], out: Path) -> None:
    write_tar(None, out, epoch=job.epoch, compression=job.compression, extra=(meta_dir, names),
              level=job.compression_level)  # fmt: skip


def _write_split_squashfs(job: ExportJob, out: Path) -> None:
    # The squashfs keeps its own default (zstd: fast to build and to unpack) unless asked.
    own = dict(PARTS)[SQUASHFS_PART]
    squashfs_job = job if job.compression_explicit else dataclasses.replace(job, compression=own)
    write_once(squashfs_job, "squashfs", out, lambda path: write_squashfs(squashfs_job, path))


def _writer(flavour: str):  # type: ignore[no-untyped-def]
    def write(job: ExportJob, tmp: Path) -> None:
        unified, split = forms(job)
        meta, squashfs = split_names(job, flavour)
        if split:
            (tmp / meta).parent.mkdir()
        with tempfile.TemporaryDirectory(prefix="lxd-meta.", dir=tmp) as meta_dir:
            names = write_metadata_dir(job, flavour, Path(meta_dir))
            if unified:
                label = unified_name(job, flavour)
                write_unified(job, Path(meta_dir), names, tmp / label, transform=ROOTFS_PREFIX, label=label)
            if split:
                _write_split_meta(job, Path(meta_dir), names, tmp / meta)
        if split:
            _write_split_squashfs(job, tmp / squashfs)

    return write


def _tools(job: ExportJob) -> tuple[str, ...]:
    return ("mksquashfs",) if forms(job)[1] else ()


# zstd: LXD 5.0 and Incus both import .tar.zst (checked with LXD 5.0.2: unified and split), and it
# compresses several times faster than xz for a slightly larger image. xz stays available.
DEFAULT_COMPRESSION = "zstd"


def _format(flavour: str, product: str) -> ExportFormat:
    comp = SUFFIX[DEFAULT_COMPRESSION]
    return ExportFormat(
        name=flavour,
        description=f"{product} image: NAME.{flavour}.tar{comp} (unified); with --lxd-image split or both "
        f"NAME.{flavour}/{flavour}.tar{comp} + rootfs.squashfs (split)",
        default_compression=DEFAULT_COMPRESSION,
        compressions=("zstd", "xz", "gzip", "none"),
        profile="container",
        outputs=lambda job: _names(job, flavour),
        write=_writer(flavour),
        tools=_tools,
        parts=PARTS,
    )


LXD = _format("lxd", "LXD")
INCUS = _format("incus", "Incus")
