"""`sbuild`: a buildd chroot (--variant buildd) for sbuild, as a tarball and a schroot entry.

sbuild's unshare mode (no root, sbuild 0.85) looks in ~/.cache/sbuild for a file named
SUITE-ARCH.t*, unpacks it with tar (the archive root must be the filesystem root; it skips the
./dev nodes itself) and picks the decompressor by extension, zstd included. schroot users get a
chroot.d entry in the form sbuild-createchroot writes: a `directory` chroot with an overlay when
the rootfs directory is kept (DEST/rootfs), else a `file` chroot on the tarball, which schroot can
only unpack when it is not zstd. docs/sbuild.md shows both.
"""

from __future__ import annotations

from pathlib import Path

from ..log import LOG
from .base import COMPRESSIONS, ExportFormat, ExportJob
from .tarball import SUFFIX, write_tar

# The compressions schroot's `file` chroots can unpack (schroot.conf(5): .tar, .tar.gz, .tar.xz, ...).
SCHROOT_READS = ("none", "gzip", "xz")


def chroot_name(job: ExportJob) -> str:
    """SUITE-ARCH: the first name sbuild's unshare mode looks for with `-d SUITE`."""
    return f"{job.suite}-{job.arch}"


def tarball_name(job: ExportJob) -> str:
    return f"{chroot_name(job)}.tar{SUFFIX[job.compression]}"


def conf_name(job: ExportJob) -> str:
    return f"{chroot_name(job)}-sbuild.conf"


def _outputs(job: ExportJob) -> list[str]:
    return [tarball_name(job), conf_name(job)]


def schroot_conf(job: ExportJob) -> str:
    """The chroot.d entry [SUITE-ARCH-sbuild], as sbuild-createchroot would write it."""
    version = f" {job.version}" if job.version else ""
    return job.render(
        "exports/sbuild-schroot.conf.j2",
        {
            "job": job,
            "chroot": f"{chroot_name(job)}-sbuild",
            "conf": conf_name(job),  # no directory: exports of one rootfs are identical wherever they go
            "description": f"{job.distro.capitalize()}{version} {job.suite}/{job.arch} autobuilder (vmbuilder-lxc)",
            "directory": str(job.dest_rootfs) if job.dest_rootfs else "",
            "file": str(job.out_dir / tarball_name(job)),
            "readable": job.dest_rootfs is not None or job.compression in SCHROOT_READS,
            "suffix": SUFFIX[job.compression],
        },
    )


def _write(job: ExportJob, tmp: Path) -> None:
    write_tar(job.root, tmp / tarball_name(job), epoch=job.epoch, compression=job.compression,
              level=job.compression_level, exclude=job.exclude)  # fmt: skip
    (tmp / conf_name(job)).write_text(schroot_conf(job), encoding="utf-8")
    if job.dest_rootfs is None and job.compression not in SCHROOT_READS:
        LOG.warning(
            "%s names %s, which schroot cannot unpack (sbuild's unshare mode can); for schroot, export "
            "again with --compression xz",
            conf_name(job),
            tarball_name(job),
        )


SBUILD = ExportFormat(
    name="sbuild",
    description="buildd chroot for sbuild --chroot-mode=unshare (SUITE-ARCH.tar.zst) and a schroot chroot.d entry",
    default_compression="zstd",
    compressions=COMPRESSIONS,
    profile="buildd",
    outputs=_outputs,
    write=_write,
    excludes=True,
)
