"""Every export format by name, in the order they are written."""

from __future__ import annotations

from ..log import die
from .base import ExportFormat
from .lxcimage import LXC
from .lxdimage import INCUS, LXD
from .plain import SQUASHFS, TAR
from .sbuild import SBUILD

FORMATS: dict[str, ExportFormat] = {f.name: f for f in (TAR, LXC, LXD, INCUS, SQUASHFS, SBUILD)}


def default_compressions() -> str:
    """Each format's own compression, as --help and the docs say it: "tar none, lxc xz, lxd/incus zstd,
    ...; rootfs.squashfs of lxd/incus zstd". Generated from FORMATS, which the exports read."""
    by_value: dict[str, list[str]] = {}
    by_part: dict[tuple[str, str], list[str]] = {}
    for fmt in FORMATS.values():
        by_value.setdefault(fmt.default_compression, []).append(fmt.name)
        for part, value in fmt.parts:
            by_part.setdefault((part, value), []).append(fmt.name)
    text = ", ".join(f"{'/'.join(names)} {value}" for value, names in by_value.items())
    parts = ", ".join(f"{part} of {'/'.join(names)} {value}" for (part, value), names in by_part.items())
    return f"{text}; {parts}" if parts else text


def parse_formats(items: list[str]) -> list[ExportFormat]:
    """--export values (already split on commas) to formats, in the order given, without repeats."""
    chosen: list[ExportFormat] = []
    for item in items:
        name = item.strip().lower()
        if name not in FORMATS:
            die(f"unknown export format '{item}'", f"use --export with one or more of: {', '.join(FORMATS)}")
        if FORMATS[name] not in chosen:
            chosen.append(FORMATS[name])
    return chosen
