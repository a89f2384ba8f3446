"""Rules on <devices>: emulator, consoles, the root and other filesystems, disks, host devices and the
devices the LXC driver ignores."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator

from .helpers import fs_label, fs_source, fs_target, fs_type, root_filesystems, tag_of
from .model import ERROR, WARNING, Domain, Issue, Rule, RuleTable

IGNORED_DEVICES = tuple(
    "graphics video sound audio input serial parallel channel controller watchdog rng memballoon tpm redirdev "
    "smartcard panic hub shmem iommu vsock".split()
)
ROOT_FS_TYPES = ("mount", "block", "file")
NEVER_FS_TYPES = ("template", "volume")
KNOWN_FS_TYPES = ("mount", "block", "file", "ram", "bind", "template", "volume")
HOSTDEV_TYPES = {"subsystem": ("usb",), "capabilities": ("storage", "misc", "net")}

_rule = RuleTable()


def _attr(el: ET.Element, path: str, name: str) -> str:
    """The attribute `name` of the child at `path`, or "" when either is missing."""
    child = el.find(path)
    return child.get(name, "") if child is not None else ""


@_rule(
    "emulator",
    WARNING,
    "start",
    "no <emulator>",
    "libvirt executes the path as the controller; it differs between distributions",
)
def _emulator(d: Domain) -> Iterator[Issue]:
    if d.devices("emulator"):
        yield Issue(
            "<devices><emulator>",
            "the controller's path differs between distributions "
            "(/usr/lib/libvirt/libvirt_lxc, /usr/libexec/libvirt_lxc); libvirt knows its own",
            "leave <emulator> out",
        )


@_rule(
    "console",
    ERROR,
    "start",
    "at least one <console>, all of type pty",
    "'At least one PTY console is required' / 'Only PTY console types are supported'",
)
def _console(d: Domain) -> Iterator[Issue]:
    consoles = d.devices("console")
    if not consoles:
        yield Issue(
            "<devices><console>",
            "libvirt needs at least one PTY console to start a container",
            "add <console type='pty'/>",
        )
    for el in consoles:
        if el.get("type", "pty") != "pty":
            yield Issue(
                f"<devices>{tag_of(el, 'type')}",
                "the LXC driver supports only PTY consoles",
                "use <console type='pty'/>",
            )


@_rule(
    "root-filesystem",
    ERROR,
    "start / container start",
    "one <filesystem> with <target dir='/'/>, of type mount, block or file, not the host's /",
    "without it libvirt silently mounts the host's / as the container's root; "
    "other types: 'Unsupported root filesystem type ...'",
)
def _root_filesystem(d: Domain) -> Iterator[Issue]:
    roots = root_filesystems(d.root)
    if not roots:
        yield Issue(
            "<devices><filesystem><target dir='/'>",
            "without a root filesystem libvirt shares the host's / with the container",
            "add <filesystem type='mount'><source dir='/path/to/rootfs'/><target dir='/'/></filesystem>",
        )
    for fs in roots:
        kind = fs_type(fs)
        attr, source = fs_source(fs)
        if kind not in ROOT_FS_TYPES:
            yield Issue(
                fs_label(fs),
                f"the root filesystem cannot be of type '{kind}'",
                "use type='mount' with the rootfs directory (or block/file for an image)",
            )
        elif not source:
            yield Issue(fs_label(fs), f"the root filesystem has no <source {attr}=...>", f"add <source {attr}='...'/>")
        elif kind == "mount" and os.path.normpath(source) in ("/", "//"):
            yield Issue(
                fs_label(fs),
                "the source is the host's /, so the container would share the host's root",
                "point <source dir=...> at the container's rootfs directory",
            )


@_rule(
    "filesystem-type",
    ERROR,
    "container start",
    "other filesystems are of type mount, block, file, ram or bind",
    "'Cannot mount filesystem type template/volume'",
)
def _filesystem_type(d: Domain) -> Iterator[Issue]:
    for fs in d.filesystems():
        kind = fs_type(fs)
        if kind not in KNOWN_FS_TYPES:
            yield Issue(fs_label(fs), f"'{kind}' is not a filesystem type", "use mount, block, file, ram or bind")
        elif kind in NEVER_FS_TYPES and fs_target(fs) != "/":
            yield Issue(
                fs_label(fs),
                f"the LXC driver cannot mount a filesystem of type '{kind}'",
                "use type='mount' with a host directory, or block/file for an image",
            )


@_rule(
    "filesystem-target",
    ERROR,
    "define / start",
    "every <filesystem> has a <target dir>, and no two share one",
    "libvirt requires the target; a second filesystem on a target hides the first (not rejected)",
)
def _filesystem_target(d: Domain) -> Iterator[Issue]:
    seen: Counter[str] = Counter()
    for fs in d.filesystems():
        target = fs_target(fs)
        if not target:
            yield Issue(
                f"<devices><filesystem type='{fs_type(fs)}'>",
                "it has no <target dir=...>",
                "add <target dir='/PATH/IN/CONTAINER'/>",
            )
            continue
        seen[os.path.normpath(target)] += 1
        if seen[os.path.normpath(target)] == 2:
            yield Issue(
                fs_label(fs),
                f"two filesystems are mounted on {target}; the later one hides the other",
                "keep one filesystem per target",
            )


@_rule(
    "filesystem-source",
    ERROR,
    "start / container start",
    "host paths of mount/block/file filesystems exist on this host (checked when the definition is for this host)",
    "libvirt accepts the definition and fails at start, when it mounts the source",
)
def _filesystem_source(d: Domain) -> Iterator[Issue]:
    if not d.local:
        return
    for fs in d.filesystems():
        if d.rootfs_given and fs_target(fs) == "/":
            continue  # a build checks its domain before the new rootfs is moved to the source path
        attr, source = fs_source(fs)
        if fs_type(fs) in ROOT_FS_TYPES and source and source.startswith("/") and not os.path.lexists(source):
            yield Issue(
                f"<devices><filesystem type='{fs_type(fs)}'><source {attr}='{source}'>",
                f"{source} (mounted on {fs_target(fs)}) does not exist on this host; "
                "libvirt accepts this but the container fails to start",
                f"create {source} or fix the path",
            )


@_rule(
    "filesystem-driver",
    ERROR,
    "start",
    "a file filesystem or disk uses driver loop (format raw) or nbd (explicit format)",
    "'fs driver ... is not supported' / 'fs format ... is not supported' / 'An explicit disk format must be specified'",
)
def _filesystem_driver(d: Domain) -> Iterator[Issue]:
    images = [fs for fs in d.filesystems() if fs_type(fs) == "file"]
    images += [disk for disk in d.devices("disk") if disk.get("type", "file") == "file"]
    for el in images:
        driver = el.find("driver")
        if driver is None:
            continue
        kind = driver.get("type") if el.tag == "filesystem" else driver.get("name")
        fmt = driver.get("format") if el.tag == "filesystem" else driver.get("type")
        label = f"<devices>{tag_of(el, 'type')}{tag_of(driver, 'name', 'type', 'format')}"
        if kind not in (None, "loop", "nbd"):
            yield Issue(
                label,
                f"the LXC driver attaches image files only with loop or nbd, not '{kind}'",
                "use <driver type='loop' format='raw'/>",
            )
        elif kind == "loop" and fmt not in (None, "raw"):
            yield Issue(
                label,
                f"a loop device reads raw images only, not '{fmt}'",
                f"use <driver type='nbd' format='{fmt}'/> (needs qemu-nbd) or a raw image",
            )
        elif kind == "nbd" and not fmt:
            yield Issue(label, "qemu-nbd needs the image format", "add format='qcow2' (or the image's format)")


@_rule(
    "disk",
    ERROR,
    "start",
    "<disk> is of type block or file and has a <source>",
    "'Can't setup disk for non-block device' / 'Can't setup disk without media'",
)
def _disk(d: Domain) -> Iterator[Issue]:
    for el in d.devices("disk"):
        kind = el.get("type", "file")
        attr = {"block": "dev", "file": "file"}.get(kind)
        if attr is None:
            yield Issue(
                f"<devices>{tag_of(el, 'type')}",
                "the LXC driver exposes only block devices and image files",
                "use type='block' or type='file'",
            )
        elif not _attr(el, "source", attr):
            yield Issue(
                f"<devices>{tag_of(el, 'type')}",
                "a disk without a source cannot be set up",
                f"add <source {attr}='...'/>",
            )


@_rule(
    "hostdev",
    ERROR,
    "start",
    "<hostdev> is subsystem usb, or capabilities storage, misc or net",
    "'Unsupported hostdev type ...' / 'Unsupported hostdev mode ...'",
)
def _hostdev(d: Domain) -> Iterator[Issue]:
    for el in d.devices("hostdev"):
        mode = el.get("mode", "subsystem")
        if el.get("type") not in HOSTDEV_TYPES.get(mode, ()):
            yield Issue(
                f"<devices>{tag_of(el, 'mode', 'type')}",
                "the LXC driver passes through only USB devices "
                "(mode subsystem) and block, char or network devices (mode capabilities)",
                "remove it, or use <hostdev mode='capabilities' type='storage'|'misc'|'net'>",
            )


@_rule(
    "ignored-device",
    WARNING,
    "never",
    "no graphics, video, sound, input, serial, channel, controller, watchdog, ... devices",
    "parsed, stored and ignored by the LXC driver",
)
def _ignored_device(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("devices/*"):
        if el.tag in IGNORED_DEVICES:
            yield Issue(f"<devices><{el.tag}>", "the LXC driver ignores it", "remove it")


RULES: tuple[Rule, ...] = tuple(_rule.rules)
