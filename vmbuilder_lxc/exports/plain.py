"""`tar`: a plain rootfs tarball (files at the archive root), which doubles as a CloudStack LXC
template with its template.properties; `squashfs`: the same tree as a squashfs image."""

from __future__ import annotations

from pathlib import Path

from ..arches import kernel_arch
from ..run import clean_env, run
from .base import COMPRESSIONS, ExportFormat, ExportJob
from .tarball import DEFAULT_LEVEL, SUFFIX, write_tar_digest


def tar_name(job: ExportJob) -> str:
    return f"{job.name}.tar{SUFFIX[job.compression]}"


def _tar_outputs(job: ExportJob) -> list[str]:
    return [tar_name(job), f"{job.name}.template.properties"]


def _write_tar(job: ExportJob, tmp: Path) -> None:
    out = tmp / tar_name(job)
    size, sha256 = write_tar_digest(job.root, out, epoch=job.epoch, compression=job.compression,
                                    level=job.compression_level, exclude=job.exclude)  # fmt: skip
    properties = job.render(
        "exports/template.properties.j2",
        {
            "job": job,
            "filename": f"{job.name}.tar",
            "size": size,
            "sha256": sha256,
            "download": out.name,
            "arch": kernel_arch(job.arch),
        },
    )
    (tmp / f"{job.name}.template.properties").write_text(properties)


TAR = ExportFormat(
    name="tar",
    description="plain rootfs tarball (files at the root); also a CloudStack LXC template with template.properties",
    default_compression="none",
    compressions=COMPRESSIONS,
    profile="any",
    outputs=_tar_outputs,
    write=_write_tar,
    excludes=True,
)

SQUASHFS_DEFAULT = "zstd"
SQUASHFS_COMP = {"zstd": ["-comp", "zstd"], "xz": ["-comp", "xz"], "gzip": ["-comp", "gzip"],
                 "none": ["-noI", "-noD", "-noF", "-noX"]}  # fmt: skip


def squashfs_argv(job: ExportJob, out: Path) -> list[str]:
    """mksquashfs of the staged view: sorted and reproducible by default, xattrs kept; run with
    SOURCE_DATE_EPOCH it clamps every time to the epoch as the tarballs do. (sqfstar, reading our
    tar stream, would ignore -root-mode and -root-time and give a world-writable root.)
    Compressor options come after the output file."""
    level: list[str] = []
    if job.compression_level is not None and job.compression in ("zstd", "gzip"):
        level = ["-Xcompression-level", str(job.compression_level)]
    elif job.compression == "zstd":  # the tarballs' zstd level: mksquashfs's own (15) takes ~1.8x as long for 0.3% less
        level = ["-Xcompression-level", str(DEFAULT_LEVEL["zstd"])]
    return ["mksquashfs", str(job.root), str(out), "-noappend", *SQUASHFS_COMP[job.compression], "-b", "1M",
            "-quiet", "-no-progress", *level]  # fmt: skip


def write_squashfs(job: ExportJob, out: Path) -> Path:
    run(squashfs_argv(job, out), env=clean_env({"SOURCE_DATE_EPOCH": str(job.epoch)}), progress=f"writing {out.name}")
    return out


def _write_squashfs(job: ExportJob, tmp: Path) -> None:
    write_squashfs(job, tmp / f"{job.name}.squashfs")


SQUASHFS = ExportFormat(
    name="squashfs",
    description="the rootfs as a squashfs image (files at its root)",
    default_compression=SQUASHFS_DEFAULT,
    compressions=COMPRESSIONS,
    profile="any",
    outputs=lambda job: [f"{job.name}.squashfs"],
    write=_write_squashfs,
    tools=("mksquashfs",),
)
