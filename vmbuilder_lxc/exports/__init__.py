"""Image exports: one stripped, reproducible view of a rootfs, written in each consumer's format
(plain tar and CloudStack, LXC, LXD, Incus, squashfs, sbuild)."""

from .base import COMPRESSIONS, DEFAULT_LXD_IMAGE, LXD_IMAGE_FORMS, ExportFormat, ExportJob
from .registry import FORMATS, default_compressions, parse_formats
from .runner import export, planned_outputs

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_LXD_IMAGE",
    "LXD_IMAGE_FORMS",
    "FORMATS",
    "ExportFormat",
    "default_compressions",
    "ExportJob",
    "export",
    "parse_formats",
    "planned_outputs",
]
