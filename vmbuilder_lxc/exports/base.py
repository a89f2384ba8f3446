"""What every export format gets (an ExportJob) and what it declares (an ExportFormat)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPRESSIONS = ("zstd", "xz", "gzip", "none")
# The values of ExportFormat.profile: the --variant a format needs (a bootable container, a buildd chroot,
# or either).
FORMAT_PROFILES = ("container", "buildd", "any")
# The forms of an LXD/Incus image: unified (one tarball, which `lxc image import` takes alone) and split
# (a metadata tarball plus rootfs.squashfs, as image servers publish). Each form compresses the rootfs
# on its own (a tar and a squashfs cannot share a stream), so only the unified one is written by default.
LXD_IMAGE_FORMS = ("unified", "split", "both")
DEFAULT_LXD_IMAGE = "unified"


def _no_render(name: str, variables: dict[str, Any]) -> str:
    raise RuntimeError(f"no template renderer for {name}")


@dataclass(frozen=True)
class ExportJob:
    """One export of one staged rootfs. `root` is read-only for formats: it is shared by all."""

    root: Path
    out_dir: Path
    name: str
    distro: str
    suite: str
    version: str
    arch: str
    variant: str
    hostname: str
    epoch: int
    compression: str
    dest_rootfs: Path | None = None
    hook_env: dict[str, str] = field(default_factory=dict, compare=False)  # the build's (INIT, ...)
    compression_level: int | None = None
    compression_explicit: bool = False  # --compression was given (not each format's default)
    lxd_image: str = DEFAULT_LXD_IMAGE  # which LXD/Incus image forms to write (LXD_IMAGE_FORMS)
    render: Callable[[str, dict[str, Any]], str] = field(default=_no_render, compare=False, repr=False)
    # What one export run compressed once for several formats (lxd and incus share their rootfs
    # stream and squashfs): key -> where it is. The runner gives each run a fresh one.
    shared: dict[tuple[object, ...], Any] = field(default_factory=dict, compare=False, repr=False)
    # Relative paths of `root` that the stripped rootfs does not have (a direct export: stage.Staged);
    # only formats with `excludes` are given a job with some.
    exclude: tuple[str, ...] = ()

    @property
    def profile(self) -> str:
        return "buildd" if self.variant == "buildd" else "container"

    @property
    def serial(self) -> str:
        """The image serial, as distrobuilder spells it: the clamp time, YYYYMMDD_HH:MM (UTC)."""
        return dt.datetime.fromtimestamp(self.epoch, dt.UTC).strftime("%Y%m%d_%H:%M")

    @property
    def description(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.distro.capitalize()}{version} {self.suite} {self.arch} ({self.serial})"


@dataclass(frozen=True)
class ExportFormat:
    """A consumer's format: the files it writes and how. `write` fills a private temp directory
    with exactly the names `outputs` lists; the runner moves them into --export-dir afterwards."""

    name: str
    description: str
    default_compression: str
    compressions: tuple[str, ...]
    profile: str
    outputs: Callable[[ExportJob], list[str]]
    write: Callable[[ExportJob, Path], None]
    # Commands it needs besides tar and the compressor: fixed, or what this job needs (lxd's split
    # form needs mksquashfs, its unified form does not).
    tools: tuple[str, ...] | Callable[[ExportJob], tuple[str, ...]] = ()
    # (file, its default compression) for a file compressed apart from the rest (LXD's
    # rootfs.squashfs): the writer reads its default here, so --help can say what it is.
    parts: tuple[tuple[str, str], ...] = ()
    # Its writer leaves job.exclude out of what it reads (a plain tar of job.root does): then the
    # runner may hand it the rootfs itself instead of a stripped view.
    excludes: bool = False

    def tools_for(self, job: ExportJob) -> tuple[str, ...]:
        return self.tools(job) if callable(self.tools) else self.tools
