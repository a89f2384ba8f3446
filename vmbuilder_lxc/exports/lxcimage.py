"""`lxc`: LXC's image format, rootfs.tar.xz plus meta.tar.xz, for `lxc-create -t local` (and the
layout lxc-download caches). lxc-local unpacks both with `tar -J`, so both are xz whatever
--compression says, and the names are fixed; they go into a NAME.lxc directory.

meta.tar.xz holds config and config-user (appended to the new container's config; LXC_* words
are substituted), create-message, expiry, excludes-user (device nodes an unprivileged create
cannot make) and templates (rootfs files in which LXC_NAME becomes the container's name).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..formats import line
from ..lxcconf import guest_config_vars
from .base import ExportFormat, ExportJob
from .identity import identity_files
from .stage import with_files
from .tarball import write_tar

EXPIRY_DAYS = 30


def _dir(job: ExportJob) -> str:
    return f"{job.name}.lxc"


def device_nodes(root: Path) -> list[str]:
    """./dev/... members that are device nodes, sorted (for excludes-user)."""
    found = []
    dev = root / "dev"
    if dev.is_dir() and not dev.is_symlink():
        for path in sorted(dev.rglob("*")):
            mode = path.lstat().st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                found.append("./" + str(path.relative_to(root)))
    return found


def meta_files(job: ExportJob) -> dict[str, str]:
    variables = {"job": job, **guest_config_vars(job.arch, job.hook_env)}
    files = {
        "config": job.render("exports/lxc-config.j2", {**variables, "userns": False}),
        "config-user": job.render("exports/lxc-config.j2", {**variables, "userns": True}),
        "create-message": job.render("exports/lxc-create-message.j2", variables),
        "expiry": f"{job.epoch + EXPIRY_DAYS * 86400}\n",
        "templates": "".join(f"/{rel}\n" for rel in identity_files(job.root, "LXC_NAME")),
    }
    excludes = device_nodes(job.root)
    if excludes:
        files["excludes-user"] = "".join(f"{line(name, 'a device node name', 'excludes-user')}\n" for name in excludes)
    return files


def _write(job: ExportJob, tmp: Path) -> None:
    out = tmp / _dir(job)
    out.mkdir()
    with tempfile.TemporaryDirectory(prefix="lxc-meta.", dir=tmp) as meta_dir:
        meta = Path(meta_dir)
        files = meta_files(job)
        for name, text in files.items():
            (meta / name).write_text(text)
            os.chmod(meta / name, 0o644)
        os.chmod(meta, 0o755)
        write_tar(meta, out / "meta.tar.xz", epoch=job.epoch, compression="xz", level=job.compression_level)
    placeholders = {rel: text.encode() for rel, text in identity_files(job.root, "LXC_NAME").items()}
    with with_files(job.root, placeholders, "lxc") as root:
        write_tar(root, out / "rootfs.tar.xz", epoch=job.epoch, compression="xz", level=job.compression_level)


LXC = ExportFormat(
    name="lxc",
    description="LXC image: NAME.lxc/rootfs.tar.xz + meta.tar.xz for lxc-create -t local",
    default_compression="xz",
    compressions=("xz",),
    profile="container",
    outputs=lambda job: [f"{_dir(job)}/rootfs.tar.xz", f"{_dir(job)}/meta.tar.xz"],
    write=_write,
)
