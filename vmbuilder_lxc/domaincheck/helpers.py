"""Helpers that several areas of rules (and the entry points) share: element text and labels,
filesystem parts, and path resolution inside the guest's rootfs."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .model import LXC_NS

MAX_SYMLINKS = 40  # as the kernel's path walk


def text_of(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def tag_of(el: ET.Element, *attrs: str) -> str:
    """`<interface type='user'>`: the element with the attributes that identify it."""
    shown = "".join(f" {a}='{el.get(a)}'" for a in attrs if el.get(a) is not None)
    name = el.tag.replace(f"{{{LXC_NS}}}", "lxc:")
    return f"<{name}{shown}>"


def fs_type(fs: ET.Element) -> str:
    return fs.get("type", "mount")


def fs_target(fs: ET.Element) -> str | None:
    target = fs.find("target")
    return target.get("dir") if target is not None else None


def fs_label(fs: ET.Element) -> str:
    target = fs_target(fs)
    return f"<devices><filesystem type='{fs_type(fs)}'>" + (f"<target dir='{target}'>" if target else "")


def fs_source(fs: ET.Element) -> tuple[str, str | None]:
    """The attribute naming the host path of a filesystem and its value."""
    attr = {"mount": "dir", "block": "dev", "file": "file", "bind": "dir"}.get(fs_type(fs), "dir")
    source = fs.find("source")
    return attr, (source.get(attr) if source is not None else None)


def root_filesystems(root: ET.Element) -> list[ET.Element]:
    return [fs for fs in root.findall("devices/filesystem") if fs_target(fs) == "/"]


def root_mount_source(root: ET.Element) -> Path | None:
    for fs in root_filesystems(root):
        _, value = fs_source(fs)
        if fs_type(fs) == "mount" and value:
            return Path(value)
    return None


class NotResolvable(Exception):
    """A path in the rootfs whose symlinks do not end (a loop, or more than MAX_SYMLINKS)."""


def resolve_in_root(rootfs: Path, path: str, max_links: int = MAX_SYMLINKS) -> Path:
    """The host path of `path` as the container sees it once the rootfs is its /.

    Symlinks are followed inside the rootfs: an absolute target (/sbin/init -> /lib/systemd/systemd)
    starts again at the rootfs, and '..' stops at it, so a host path is never consulted.
    """
    pending = [p for p in reversed(path.split("/")) if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = rootfs.joinpath(*done, part)
        if not candidate.is_symlink():
            done.append(part)
            continue
        links += 1
        if links > max_links:
            raise NotResolvable(f"more than {max_links} symlinks")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
    return rootfs.joinpath(*done)
