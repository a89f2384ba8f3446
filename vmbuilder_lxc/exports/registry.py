"""Every export format by name, in the order they are written."""

from __future__ import annotations

from ..log import die
from .base import ExportFormat
from .lxcimage import LXC
from .lxdimage import INCUS, LXD
from .plain import SQUASHFS, TAR
from .sbuild import SBUILD

FORMATS: dict[str, ExportFormat] = {f.name: f for f in (TAR, LXC, LXD, INCUS, SQUASHFS, SBUILD)}


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
