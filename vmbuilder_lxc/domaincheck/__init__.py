"""Pre-flight checks for libvirt-lxc domain XML, run before every `virsh define`.

The LXC driver of libvirt 9.0 has no validate callback of its own: most mistakes are accepted at
define time and either silently ignored or reported only at `virsh start`, some only in the
container's log. These checks catch them first, each with the element concerned, why LXC rejects
or ignores it, and the fix. The rules are data (RULES, one small function each); the reference in
docs/libvirt-validation.md is generated from them (`python3 -m vmbuilder_lxc.docgen libvirt-validation`).

Severities: "error" when libvirt rejects the definition (at define, with `--validate`, at start or
inside the container) or when it would share the host's root or network; "warning" when the LXC
driver silently ignores something or the XML is not portable.
"""

from __future__ import annotations

import os
import platform
import re
import stat
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..log import UserError

LXC_NS = "http://libvirt.org/schemas/domain/lxc/1.0"
ERROR = "error"
WARNING = "warning"

# The capabilities of the LXC driver list `exe` for the host architecture and, where the kernel
# offers a 32-bit personality, for that one too (libvirt's lxc_container.c).
ALT_32BIT_ARCH: dict[str, str] = {
    "x86_64": "i686",
    "aarch64": "armv7l",
    "s390x": "s390",
    "ppc64": "ppc",
    "mips64": "mips",
    "mips64el": "mipsel",
    "sparc64": "sparc",
    "parisc64": "parisc",
}
# `uname -m` spellings that libvirt files under another name.
HOST_ARCH_ALIASES: dict[str, str] = {"i386": "i686", "i486": "i686", "i586": "i686", "arm64": "aarch64"}

BOOT_ELEMENTS = ("kernel", "initrd", "cmdline", "dtb", "root", "loader", "boot", "bootmenu", "smbios", "nvram")
IGNORED_DEVICES = tuple(
    "graphics video sound audio input serial parallel channel controller watchdog rng memballoon tpm redirdev "
    "smartcard panic hub shmem iommu vsock".split()
)
USED_FEATURES = ("privnet", "capabilities")
INTERFACE_TYPES = ("network", "bridge", "ethernet", "direct")
ROOT_FS_TYPES = ("mount", "block", "file")
NEVER_FS_TYPES = ("template", "volume")
KNOWN_FS_TYPES = ("mount", "block", "file", "ram", "bind", "template", "volume")
HOSTDEV_TYPES = {"subsystem": ("usb",), "capabilities": ("storage", "misc", "net")}
NAMESPACE_CHILDREN = ("sharenet", "shareipc", "shareuts")
NAMESPACE_SOURCES = ("name", "pid", "netns")
# Variables libvirt sets for init itself; an <initenv> of the same name replaces libvirt's value.
INIT_ENV_FROM_LIBVIRT = tuple(
    "PATH TERM HOME container container_uuid container_ttys LIBVIRT_LXC_UUID LIBVIRT_LXC_NAME "
    "LIBVIRT_LXC_CMDLINE".split()
)
MAX_ID_MAPS = 340
MIN_MEMORY = 64 * 1024**2
MAX_SYMLINKS = 40  # as the kernel's path walk
# Domain XML is untrusted input: bounded before it is parsed (parse_domain_xml, _parse).
MAX_XML_BYTES = 1 << 20  # libvirt's own domain definitions are a few KiB
MAX_XML_DEPTH = 64  # element nesting; a domain needs about 6
XML_HINT = "give a libvirt domain XML file (UTF-8 text, at most 1 MiB, without a DOCTYPE)"

ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
UUID_TEXT = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MAC_TEXT = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
WHOLE_NUMBER = re.compile(r"[0-9]+")
NUMERIC_ID = re.compile(r"\+?[0-9]+")

# libvirt's memory units (case-insensitive): bytes, powers of 1024 (k, KiB) and of 1000 (KB).
MEMORY_UNITS: dict[str, int] = {"b": 1, "byte": 1, "bytes": 1}
for _power, _prefix in enumerate("kmgtpe", start=1):
    MEMORY_UNITS |= {_prefix: 1024**_power, f"{_prefix}ib": 1024**_power, f"{_prefix}b": 1000**_power}


@dataclass(frozen=True)
class Finding:
    """One problem in a domain definition, phrased so that the user can act on it."""

    rule: str
    severity: str
    element: str
    why: str
    fix: str

    def line(self) -> str:
        """The finding on one line, for logs and the CLI (newlines in user data are escaped)."""
        text = f"{self.severity}: {self.element}: {self.why}; fix: {self.fix}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class DomainXMLError(ValueError):
    """The text is not well-formed XML or not a <domain>; the message is one line."""


class Issue(NamedTuple):
    """What a rule function reports; the rule adds its id and severity to make a Finding."""

    element: str
    why: str
    fix: str


@dataclass
class Domain:
    """A parsed definition plus what the checks may know about the host."""

    root: ET.Element
    rootfs: Path | None  # where the guest's / is on this host, when known
    local: bool  # the definition is for this host, so its host paths can be checked
    other_domains: Mapping[str, str] | None
    host_arch: str
    rootfs_given: bool = False  # the caller named the rootfs: the root mount's source may not exist yet

    @property
    def os(self) -> ET.Element | None:
        return self.root.find("os")

    def devices(self, tag: str) -> list[ET.Element]:
        return self.root.findall(f"devices/{tag}")

    def filesystems(self) -> list[ET.Element]:
        return self.devices("filesystem")

    def namespace_children(self) -> list[ET.Element]:
        return [child for ns in self.root.findall(f"{{{LXC_NS}}}namespace") for child in ns]


CheckFn = Callable[[Domain], Iterable[Issue]]


@dataclass(frozen=True)
class Rule:
    """A rule descriptor: what it checks and what libvirt does about it, for the generated doc."""

    id: str
    severity: str
    stage: str  # when libvirt notices: define, define --validate, start, container start, never, tool policy
    checks: str
    libvirt: str  # libvirt's message or behaviour
    check: CheckFn = field(repr=False, compare=False)
    needs_rootfs: bool = False  # looks into the guest's rootfs (skipped while it is unknown)


_registry: list[Rule] = []


def _rule(
    rule_id: str, severity: str, stage: str, checks: str, libvirt: str, *, needs_rootfs: bool = False
) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        _registry.append(Rule(rule_id, severity, stage, checks, libvirt, fn, needs_rootfs))
        return fn

    return register


# -- helpers ---------------------------------------------------------------------------------------


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _tag(el: ET.Element, *attrs: str) -> str:
    """`<interface type='user'>`: the element with the attributes that identify it."""
    shown = "".join(f" {a}='{el.get(a)}'" for a in attrs if el.get(a) is not None)
    name = el.tag.replace(f"{{{LXC_NS}}}", "lxc:")
    return f"<{name}{shown}>"


def _attr(el: ET.Element, path: str, name: str) -> str:
    """The attribute `name` of the child at `path`, or "" when either is missing."""
    child = el.find(path)
    return child.get(name, "") if child is not None else ""


def _raw_name(d: Domain) -> str:
    """<name> as libvirt reads it (not stripped: a newline around the name counts too)."""
    el = d.root.find("name")
    return (el.text or "") if el is not None else ""


def _fs_type(fs: ET.Element) -> str:
    return fs.get("type", "mount")


def _fs_target(fs: ET.Element) -> str | None:
    target = fs.find("target")
    return target.get("dir") if target is not None else None


def _fs_label(fs: ET.Element) -> str:
    target = _fs_target(fs)
    return f"<devices><filesystem type='{_fs_type(fs)}'>" + (f"<target dir='{target}'>" if target else "")


def _fs_source(fs: ET.Element) -> tuple[str, str | None]:
    """The attribute naming the host path of a filesystem and its value."""
    attr = {"mount": "dir", "block": "dev", "file": "file", "bind": "dir"}.get(_fs_type(fs), "dir")
    source = fs.find("source")
    return attr, (source.get(attr) if source is not None else None)


def _root_filesystems(root: ET.Element) -> list[ET.Element]:
    return [fs for fs in root.findall("devices/filesystem") if _fs_target(fs) == "/"]


def _root_mount_source(root: ET.Element) -> Path | None:
    for fs in _root_filesystems(root):
        _, value = _fs_source(fs)
        if _fs_type(fs) == "mount" and value:
            return Path(value)
    return None


def _memory_bytes(el: ET.Element) -> int:
    """The size in bytes; ValueError saying what is wrong (libvirt's default unit is KiB)."""
    text = _text(el)
    if not WHOLE_NUMBER.fullmatch(text):
        raise ValueError(f"'{text}' is not a whole number")
    unit = el.get("unit", "KiB")
    scale = MEMORY_UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(f"unit '{unit}' is not one of b, KiB, MiB, GiB, TiB, KB, MB, GB, TB")
    return int(text) * scale


def _size(size: int) -> str:
    """A memory size for messages: MiB, or KiB/bytes for tiny ones."""
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def _uuid_key(text: str) -> str:
    return text.strip().replace("-", "").lower()


def _has_net_hostdev(d: Domain) -> bool:
    return any(h.get("mode") == "capabilities" and h.get("type") == "net" for h in d.devices("hostdev"))


def _sharenet(d: Domain) -> ET.Element | None:
    return next((c for c in d.namespace_children() if c.tag == f"{{{LXC_NS}}}sharenet"), None)


class _NotResolvable(Exception):
    pass


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
            raise _NotResolvable(f"more than {max_links} symlinks")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
    return rootfs.joinpath(*done)


def _names_in(rootfs: Path, table: str) -> set[str] | None:
    """User or group names of /etc/passwd or /etc/group in the rootfs; None if it has no such file."""
    try:
        text = resolve_in_root(rootfs, table).read_text(errors="replace")
    except (OSError, _NotResolvable):
        return None
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line and not line.startswith("#")}


# -- the domain itself -----------------------------------------------------------------------------


@_rule(
    "domain-type",
    ERROR,
    "define",
    "<domain type=...> is 'lxc'",
    "the lxc:/// connection has capabilities only for type lxc: 'could not find capabilities for ... domaintype=...'",
)
def _domain_type(d: Domain) -> Iterator[Issue]:
    kind = d.root.get("type")
    if kind != "lxc":
        yield Issue(
            _tag(d.root, "type") if kind else "<domain>",
            "the LXC driver defines only domains of type 'lxc'",
            "use <domain type='lxc'>",
        )


@_rule(
    "name",
    ERROR,
    "define",
    "<name> is present, not empty and has no newline",
    "the schema requires a name; lxcDomainDefineXMLFlags rejects a newline in it",
)
def _name(d: Domain) -> Iterator[Issue]:
    name = _raw_name(d)
    if not name.strip():
        yield Issue("<name>", "a domain needs a name", "add <name>HOSTNAME</name>")
    elif "\n" in name:
        yield Issue("<name>", "libvirt rejects a domain name containing a newline", "put the name on one line")


@_rule(
    "name-hostname",
    WARNING,
    "container start",
    "<name> has only letters, digits and '-', not leading",
    "the container's hostname is the name with other characters dropped",
)
def _name_hostname(d: Domain) -> Iterator[Issue]:
    name = _raw_name(d)
    if name.strip() and "\n" not in name and (re.search(r"[^A-Za-z0-9-]", name) or name.startswith("-")):
        hostname = re.sub(r"[^A-Za-z0-9-]", "", name).lstrip("-")
        yield Issue(
            "<name>",
            f"libvirt makes the container's hostname from the name '{name}' by dropping other "
            f"characters than letters, digits and '-' and a leading '-', giving '{hostname}'",
            "use a name of letters, digits and '-' that does not start with '-'",
        )


@_rule(
    "uuid",
    ERROR,
    "define --validate",
    "<uuid>, if given, is 32 hex digits (optionally as 8-4-4-4-12)",
    "the schema and libvirt's UUID parser reject anything else",
)
def _uuid(d: Domain) -> Iterator[Issue]:
    el = d.root.find("uuid")
    if el is not None and not UUID_TEXT.fullmatch(_text(el)):
        yield Issue(
            "<uuid>",
            f"'{_text(el)}' is not a UUID",
            "give a UUID like 6a1f2c4e-2d7b-4f0e-9a55-3c0b8f2b9d11 or leave <uuid> out",
        )


@_rule(
    "duplicate-name",
    ERROR,
    "define",
    "no other domain on the connection has this name (another UUID)",
    "'domain 'X' already exists with uuid ...'",
)
def _duplicate_name(d: Domain) -> Iterator[Issue]:
    name = _text(d.root.find("name"))
    if d.other_domains is None or name not in d.other_domains:
        return
    uuid = _text(d.root.find("uuid"))
    if not uuid or _uuid_key(uuid) != _uuid_key(d.other_domains[name]):
        yield Issue(
            "<name>",
            f"a domain named {name} already exists (uuid {d.other_domains[name]})",
            "pick another --hostname/name, or use --overwrite to replace it",
        )


@_rule(
    "duplicate-uuid",
    ERROR,
    "define",
    "no other domain on the connection has this UUID",
    "'domain 'Y' is already defined with uuid ...'",
)
def _duplicate_uuid(d: Domain) -> Iterator[Issue]:
    uuid = _text(d.root.find("uuid"))
    if d.other_domains is None or not uuid:
        return
    name = _text(d.root.find("name"))
    for other, other_uuid in d.other_domains.items():
        if other != name and _uuid_key(other_uuid) == _uuid_key(uuid):
            yield Issue(
                "<uuid>",
                f"the domain {other} already uses uuid {uuid}",
                "leave <uuid> out so that libvirt generates one, or give a new one",
            )


# -- <os> and init ---------------------------------------------------------------------------------


@_rule(
    "os-type",
    ERROR,
    "define",
    "<os><type> is 'exe'",
    "LXC has capabilities only for os type exe: 'could not find capabilities for ostype=...'",
)
def _os_type(d: Domain) -> Iterator[Issue]:
    os_type = _text(d.os.find("type") if d.os is not None else None)
    if os_type != "exe":
        yield Issue(
            "<os><type>",
            f"a container runs an init program (os type 'exe'), not '{os_type}'"
            if os_type
            else "the os type is missing; a container runs an init program (os type 'exe')",
            "use <os><type>exe</type></os>",
        )


@_rule(
    "os-arch",
    ERROR,
    "define",
    "<os><type arch=...>, if given, is the host's arch or its 32-bit personality",
    "'could not find capabilities for ostype=exe arch=...'; a container runs on the host's kernel",
)
def _os_arch(d: Domain) -> Iterator[Issue]:
    el = d.os.find("type") if d.os is not None else None
    arch = el.get("arch") if el is not None else None
    if el is None or arch is None:
        return
    allowed = [d.host_arch] + ([ALT_32BIT_ARCH[d.host_arch]] if d.host_arch in ALT_32BIT_ARCH else [])
    if arch not in allowed:
        yield Issue(
            f"<os><type arch='{arch}'>",
            f"a container shares the host's kernel, which runs {' or '.join(allowed)}",
            f"use arch='{d.host_arch}' or leave arch out",
        )


@_rule(
    "os-boot",
    ERROR,
    "define --validate",
    "no kernel/initrd/cmdline/dtb/root/loader/boot/bootmenu/smbios/nvram in <os>",
    "the schema rejects them for os type exe; without --validate the driver drops them silently",
)
def _os_boot(d: Domain) -> Iterator[Issue]:
    for el in d.os if d.os is not None else []:
        if el.tag in BOOT_ELEMENTS:
            fix = "remove it; pass arguments to init with <initarg>" if el.tag == "cmdline" else "remove it"
            yield Issue(f"<os><{el.tag}>", "a container boots no kernel, so the LXC driver has no use for it", fix)


@_rule(
    "init",
    ERROR,
    "define",
    "<os><init> is present and an absolute path",
    "'init binary must be specified'; the schema requires an absolute path",
)
def _init(d: Domain) -> Iterator[Issue]:
    path = _text(d.os.find("init") if d.os is not None else None)
    if not path:
        yield Issue(
            "<os><init>", "libvirt needs the program to start as the container's PID 1", "add <init>/sbin/init</init>"
        )
    elif not path.startswith("/"):
        yield Issue(
            "<os><init>",
            f"'{path}' is relative; init is looked up from the container's /",
            f"give the absolute path, e.g. /{path.lstrip('./')}",
        )


@_rule(
    "init-path",
    ERROR,
    "container start",
    "<os><init> is an executable regular file in the rootfs (symlinks followed inside it)",
    "'cannot find init path ... relative to container root'",
    needs_rootfs=True,
)
def _init_path(d: Domain) -> Iterator[Issue]:
    path = _text(d.os.find("init") if d.os is not None else None)
    if d.rootfs is None or not path.startswith("/"):
        return
    element = f"<os><init>{path}</init>"
    fix = "install the init system in the rootfs or point <init> at it (e.g. /lib/systemd/systemd)"
    if not d.rootfs.is_dir():
        yield Issue(element, f"the rootfs {d.rootfs} does not exist on this host", "build the rootfs first")
        return
    try:
        host_path = resolve_in_root(d.rootfs, path)
        st = os.stat(host_path, follow_symlinks=False)
    except _NotResolvable as exc:
        yield Issue(element, f"{path} cannot be resolved in the rootfs: {exc}", fix)
        return
    except OSError:
        yield Issue(element, f"{path} does not exist in the rootfs {d.rootfs}", fix)
        return
    if not stat.S_ISREG(st.st_mode):
        yield Issue(element, f"{path} is not a regular file in the rootfs", fix)
    elif not st.st_mode & 0o111:
        yield Issue(element, f"{path} is not executable in the rootfs", f"chmod +x {host_path}, or {fix}")


@_rule("initarg", ERROR, "define", "every <initarg> has text", "'No data supplied for <initarg> element'")
def _initarg(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initarg") if d.os is not None else []:
        if not el.text:
            yield Issue("<os><initarg>", "libvirt rejects an empty argument", "remove the empty <initarg/>")


@_rule(
    "initenv",
    ERROR,
    "define",
    "every <initenv> has a name matching `[a-zA-Z_][a-zA-Z0-9_]*` and a value",
    "'No name supplied for <initenv> element' / 'No value supplied for <initenv name=...> element'; "
    "the schema checks the name",
)
def _initenv(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initenv") if d.os is not None else []:
        name = el.get("name")
        if not name:
            yield Issue("<os><initenv>", "libvirt needs the variable's name", "add name='VARIABLE'")
        elif not ENV_NAME.fullmatch(name):
            yield Issue(
                f"<os>{_tag(el, 'name')}",
                "a variable name has letters, digits and '_' and does not start with a digit",
                "rename the variable",
            )
        if not el.text:
            yield Issue(
                f"<os>{_tag(el, 'name')}",
                "libvirt rejects a variable without a value",
                "give a value or remove the element",
            )


@_rule(
    "initenv-value",
    WARNING,
    "define",
    "<initenv> values have no `<`, `&` or quotes",
    "libvirt 9.0 writes the value back without XML escaping, so the stored definition breaks",
)
def _initenv_value(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initenv") if d.os is not None else []:
        if el.text and re.search(r"[<&'\"]", el.text):
            yield Issue(
                f"<os>{_tag(el, 'name')}",
                "libvirt 9.0 saves the value without XML escaping, "
                "so a <, &, ' or \" in it corrupts the stored definition",
                "avoid these characters in the value (set it in a file in the rootfs instead)",
            )


@_rule(
    "initenv-reserved",
    WARNING,
    "container start",
    "<initenv> does not set a variable libvirt sets for init",
    "the <initenv> value replaces libvirt's (container=lxc-libvirt, container_uuid, PATH, ...)",
)
def _initenv_reserved(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initenv") if d.os is not None else []:
        if el.get("name") in INIT_ENV_FROM_LIBVIRT:
            yield Issue(
                f"<os>{_tag(el, 'name')}",
                f"libvirt sets {el.get('name')} for init itself and this value would replace libvirt's"
                + (" (systemd reads it)" if el.get("name", "").startswith("container") else ""),
                "remove it and let libvirt set it",
            )


@_rule(
    "initdir",
    ERROR,
    "define --validate",
    "<initdir> is absolute and not '/'",
    "the schema type absFilePath rejects relative paths and '/' alone",
)
def _initdir(d: Domain) -> Iterator[Issue]:
    el = d.os.find("initdir") if d.os is not None else None
    if el is None:
        return
    path = _text(el)
    if path == "/":
        yield Issue("<os><initdir>", "the schema rejects '/' alone", "leave <initdir> out (init starts in /)")
    elif not path.startswith("/"):
        yield Issue("<os><initdir>", f"'{path}' is not an absolute path", "give an absolute path such as /root")


@_rule(
    "inituser",
    ERROR,
    "define --validate",
    "<inituser> and <initgroup> come together",
    "the schema requires both when one is given",
)
def _inituser(d: Domain) -> Iterator[Issue]:
    if d.os is None:
        return
    user, group = d.os.find("inituser"), d.os.find("initgroup")
    if (user is None) != (group is None):
        have, missing = ("inituser", "initgroup") if group is None else ("initgroup", "inituser")
        yield Issue(f"<os><{have}>", f"the schema requires <{missing}> with <{have}>", f"add <{missing}>")


@_rule(
    "inituser-exists",
    ERROR,
    "container start",
    "<inituser>/<initgroup> exist in the rootfs's /etc/passwd and /etc/group",
    "'User ... doesn't exist' / 'Group ... doesn't exist'",
    needs_rootfs=True,
)
def _inituser_exists(d: Domain) -> Iterator[Issue]:
    if d.os is None or d.rootfs is None or not d.rootfs.is_dir():
        return
    for tag, table in (("inituser", "/etc/passwd"), ("initgroup", "/etc/group")):
        value = _text(d.os.find(tag))
        if not value or NUMERIC_ID.fullmatch(value):
            continue
        names = _names_in(d.rootfs, table)
        if names is None or value not in names:
            yield Issue(
                f"<os><{tag}>",
                f"'{value}' is not in the rootfs's {table}; libvirt looks it up in the container",
                "create it in the rootfs or give a number",
            )


# -- resources -------------------------------------------------------------------------------------

MEMORY_ELEMENTS = (
    "memory",
    "currentMemory",
    "memtune/hard_limit",
    "memtune/soft_limit",
    "memtune/swap_hard_limit",
    "memtune/min_guarantee",
)


def _memory_label(path: str) -> str:
    return "".join(f"<{p}>" for p in path.split("/"))


@_rule(
    "memory",
    ERROR,
    "define",
    "<memory> is present and non-zero; memory sizes are whole numbers with a libvirt unit",
    "'Memory size must be specified via <memory> ...'; other sizes fail to parse",
)
def _memory(d: Domain) -> Iterator[Issue]:
    if d.root.find("memory") is None:
        yield Issue("<memory>", "the container's memory limit is required", "add <memory unit='MiB'>512</memory>")
    for path in MEMORY_ELEMENTS:
        for el in d.root.findall(path):
            try:
                size = _memory_bytes(el)
            except ValueError as exc:
                yield Issue(_memory_label(path), str(exc), "give a whole number and a unit such as MiB or GiB")
                continue
            if path == "memory" and size == 0:
                yield Issue("<memory>", "libvirt rejects a memory size of 0", "give the limit, e.g. 512 MiB")


def _two_sizes(d: Domain, first: str, second: str) -> tuple[int, int] | None:
    """Both sizes in bytes, or None when either is absent or unparsable (the "memory" rule says so)."""
    a, b = d.root.find(first), d.root.find(second)
    if a is None or b is None:
        return None
    try:
        return _memory_bytes(a), _memory_bytes(b)
    except ValueError:
        return None


@_rule(
    "current-memory",
    ERROR,
    "define",
    "<currentMemory> is not larger than <memory>",
    "libvirt silently lowers it to <memory>, so the definition does not say what runs",
)
def _current_memory(d: Domain) -> Iterator[Issue]:
    sizes = _two_sizes(d, "memory", "currentMemory")
    if sizes is None:
        return
    limit, cur = sizes
    if cur > limit:
        yield Issue(
            "<currentMemory>",
            f"{_size(cur)} is more than <memory> ({_size(limit)}); libvirt lowers it",
            "make <currentMemory> equal to <memory> or leave it out",
        )


@_rule(
    "memory-small",
    WARNING,
    "tool policy",
    "<memory> is at least 64 MiB",
    "accepted, but systemd guests do not boot reliably below it",
)
def _memory_small(d: Domain) -> Iterator[Issue]:
    el = d.root.find("memory")
    try:
        size = _memory_bytes(el) if el is not None else 0
    except ValueError:
        return
    if 0 < size < MIN_MEMORY:
        yield Issue(
            "<memory>",
            f"{_size(size)} is below 64 MiB, too little for a systemd guest to boot reliably",
            "give at least 64 MiB (256 MiB or more for a useful guest)",
        )


@_rule(
    "memtune-hard-limit",
    WARNING,
    "start",
    "<memtune><hard_limit> is not below <memory>",
    "both are applied; the lower hard limit wins while the guest sees <memory> as MemTotal",
)
def _memtune_hard_limit(d: Domain) -> Iterator[Issue]:
    sizes = _two_sizes(d, "memory", "memtune/hard_limit")
    if sizes is None:
        return
    limit, hard_limit = sizes
    if hard_limit < limit:
        yield Issue(
            "<memtune><hard_limit>",
            f"{_size(hard_limit)} is below <memory> ({_size(limit)}): the guest reports more memory than it may use",
            "set <memory> to the hard limit, or raise the limit",
        )


@_rule("vcpu", ERROR, "define", "<vcpu>, if given, is a positive whole number", "libvirt rejects other counts")
def _vcpu(d: Domain) -> Iterator[Issue]:
    el = d.root.find("vcpu")
    if el is not None and not (WHOLE_NUMBER.fullmatch(_text(el)) and int(_text(el)) > 0):
        yield Issue("<vcpu>", f"'{_text(el)}' is not a positive whole number", "give a count such as 2")


@_rule(
    "vcpu-quota",
    WARNING,
    "never",
    "<vcpu> above 1 comes with a <cputune><quota>",
    "the LXC driver only reports the vCPU count; it does not limit CPU use",
)
def _vcpu_quota(d: Domain) -> Iterator[Issue]:
    count = _text(d.root.find("vcpu"))
    if WHOLE_NUMBER.fullmatch(count) and int(count) > 1 and d.root.find("cputune/quota") is None:
        yield Issue(
            "<vcpu>",
            "the LXC driver does not limit CPU use by the vCPU count; the container may use every host CPU",
            f"add <cputune><period>100000</period><quota>{int(count) * 100000}</quota></cputune>",
        )


@_rule(
    "resource-partition",
    ERROR,
    "start",
    "<resource><partition> starts with '/'",
    "'Resource partition ... must start with '/''",
)
def _resource_partition(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("resource/partition"):
        if not _text(el).startswith("/"):
            yield Issue(
                "<resource><partition>",
                f"'{_text(el)}' is not an absolute cgroup path",
                "use /machine or leave <resource> out",
            )


@_rule(
    "idmap",
    ERROR,
    "define / start",
    "<idmap> maps both uid and gid, root first, at most 340 ranges, sane numbers",
    "'uid and gid should be mapped both' / 'You must map the root user of container' / 'Too many id mappings defined.'",
)
def _idmap(d: Domain) -> Iterator[Issue]:
    idmap = d.root.find("idmap")
    if idmap is None:
        return
    maps = {kind: idmap.findall(kind) for kind in ("uid", "gid")}
    if bool(maps["uid"]) != bool(maps["gid"]):
        missing = "gid" if maps["uid"] else "uid"
        yield Issue(
            "<idmap>",
            "uid and gid should be mapped both; with one alone libvirt uses no user namespace",
            f"add <{missing} start='0' target='100000' count='65536'/>",
        )
    for kind, entries in maps.items():
        ranges: list[tuple[int, int, int]] = []
        for el in entries:
            values = [el.get(a, "") for a in ("start", "target", "count")]
            if not all(WHOLE_NUMBER.fullmatch(v) for v in values) or int(values[2]) == 0:
                yield Issue(
                    f"<idmap>{_tag(el, 'start', 'target', 'count')}",
                    "start, target and count must be whole numbers and count above 0",
                    f"e.g. <{kind} start='0' target='100000' count='65536'/>",
                )
                continue
            ranges.append((int(values[0]), int(values[1]), int(values[2])))
        if ranges and min(ranges)[0] != 0:
            yield Issue(
                f"<idmap><{kind}>", "the container's root (id 0) must be mapped", f"add a <{kind} start='0' ...> range"
            )
        if len(entries) > MAX_ID_MAPS:
            yield Issue(
                f"<idmap><{kind}>",
                f"{len(entries)} ranges; the kernel takes at most {MAX_ID_MAPS}",
                "merge adjacent ranges",
            )


@_rule(
    "clock-timer",
    ERROR,
    "start",
    "<clock><timer> is rtc or hpet, or has present='no'",
    "'unsupported timer type (name) ...'",
)
def _clock_timer(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("clock/timer"):
        if el.get("name") not in ("rtc", "hpet") and el.get("present") != "no":
            yield Issue(
                f"<clock>{_tag(el, 'name')}",
                "the LXC driver can only expose the host's rtc or hpet",
                "remove the timer (or mark it present='no')",
            )


# -- features --------------------------------------------------------------------------------------


@_rule(
    "capabilities-policy",
    ERROR,
    "define",
    "<features><capabilities policy=...> is default, allow or deny; states are on/off",
    "the parser rejects other values",
)
def _capabilities_policy(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("features/capabilities"):
        if el.get("policy", "default") not in ("default", "allow", "deny"):
            yield Issue(
                f"<features>{_tag(el, 'policy')}", "the policy is one of default, allow, deny", "use policy='default'"
            )
        for cap in el:
            if cap.get("state") not in ("on", "off"):
                yield Issue(
                    f"<features><capabilities><{cap.tag}>",
                    "each capability needs state='on' or 'off'",
                    f"use <{cap.tag} state='off'/>",
                )


@_rule(
    "ignored-feature",
    WARNING,
    "never",
    "<features> has only privnet and capabilities",
    "other features (acpi, apic, pae, hyperv, ...) are parsed and ignored",
)
def _ignored_feature(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("features/*"):
        if el.tag not in USED_FEATURES:
            yield Issue(f"<features><{el.tag}>", "the LXC driver ignores it", "remove it")


@_rule("ignored-cpu", WARNING, "never", "no <cpu> model or mode", "parsed and ignored; the host's CPU runs the guest")
def _ignored_cpu(d: Domain) -> Iterator[Issue]:
    if d.root.find("cpu") is not None:
        yield Issue("<cpu>", "the LXC driver ignores it; a container runs on the host's CPU", "remove it")


# -- devices ---------------------------------------------------------------------------------------


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
                f"<devices>{_tag(el, 'type')}", "the LXC driver supports only PTY consoles", "use <console type='pty'/>"
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
    roots = _root_filesystems(d.root)
    if not roots:
        yield Issue(
            "<devices><filesystem><target dir='/'>",
            "without a root filesystem libvirt shares the host's / with the container",
            "add <filesystem type='mount'><source dir='/path/to/rootfs'/><target dir='/'/></filesystem>",
        )
    for fs in roots:
        kind = _fs_type(fs)
        attr, source = _fs_source(fs)
        if kind not in ROOT_FS_TYPES:
            yield Issue(
                _fs_label(fs),
                f"the root filesystem cannot be of type '{kind}'",
                "use type='mount' with the rootfs directory (or block/file for an image)",
            )
        elif not source:
            yield Issue(_fs_label(fs), f"the root filesystem has no <source {attr}=...>", f"add <source {attr}='...'/>")
        elif kind == "mount" and os.path.normpath(source) in ("/", "//"):
            yield Issue(
                _fs_label(fs),
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
        kind = _fs_type(fs)
        if kind not in KNOWN_FS_TYPES:
            yield Issue(_fs_label(fs), f"'{kind}' is not a filesystem type", "use mount, block, file, ram or bind")
        elif kind in NEVER_FS_TYPES and _fs_target(fs) != "/":
            yield Issue(
                _fs_label(fs),
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
        target = _fs_target(fs)
        if not target:
            yield Issue(
                f"<devices><filesystem type='{_fs_type(fs)}'>",
                "it has no <target dir=...>",
                "add <target dir='/PATH/IN/CONTAINER'/>",
            )
            continue
        seen[os.path.normpath(target)] += 1
        if seen[os.path.normpath(target)] == 2:
            yield Issue(
                _fs_label(fs),
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
        if d.rootfs_given and _fs_target(fs) == "/":
            continue  # a build checks its domain before the new rootfs is moved to the source path
        attr, source = _fs_source(fs)
        if _fs_type(fs) in ROOT_FS_TYPES and source and source.startswith("/") and not os.path.lexists(source):
            yield Issue(
                f"<devices><filesystem type='{_fs_type(fs)}'><source {attr}='{source}'>",
                f"{source} (mounted on {_fs_target(fs)}) does not exist on this host; "
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
    images = [fs for fs in d.filesystems() if _fs_type(fs) == "file"]
    images += [disk for disk in d.devices("disk") if disk.get("type", "file") == "file"]
    for el in images:
        driver = el.find("driver")
        if driver is None:
            continue
        kind = driver.get("type") if el.tag == "filesystem" else driver.get("name")
        fmt = driver.get("format") if el.tag == "filesystem" else driver.get("type")
        label = f"<devices>{_tag(el, 'type')}{_tag(driver, 'name', 'type', 'format')}"
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
                f"<devices>{_tag(el, 'type')}",
                "the LXC driver exposes only block devices and image files",
                "use type='block' or type='file'",
            )
        elif not _attr(el, "source", attr):
            yield Issue(
                f"<devices>{_tag(el, 'type')}",
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
                f"<devices>{_tag(el, 'mode', 'type')}",
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


# -- network ---------------------------------------------------------------------------------------


@_rule(
    "private-network",
    ERROR,
    "start",
    "an <interface>, <features><privnet/>, a net hostdev or <lxc:sharenet> is present",
    "without one the container silently shares the host's network namespace",
)
def _private_network(d: Domain) -> Iterator[Issue]:
    if d.devices("interface") or d.root.find("features/privnet") is not None:
        return
    if _has_net_hostdev(d) or _sharenet(d) is not None:
        return
    yield Issue(
        "<features><privnet/> or <devices><interface>",
        "without either the container shares the host's network namespace (and can reconfigure the host's network)",
        "add <features><privnet/></features> or an <interface>",
    )


def _interface_label(el: ET.Element, child: str = "") -> str:
    return f"<devices>{_tag(el, 'type')}{child}"


@_rule(
    "interface-type",
    ERROR,
    "start",
    "<interface> is of type network, bridge, ethernet or direct",
    "'Unsupported network type ...'",
)
def _interface_type(d: Domain) -> Iterator[Issue]:
    for el in d.devices("interface"):
        if el.get("type") not in INTERFACE_TYPES:
            yield Issue(
                _interface_label(el),
                "the LXC driver sets up only veth (network, bridge, ethernet) and macvlan (direct) interfaces",
                "use type='bridge' or type='network'",
            )


@_rule(
    "interface-script",
    ERROR,
    "start",
    "no <script> on an <interface>",
    "'scripts are not supported on LXC network interfaces'",
)
def _interface_script(d: Domain) -> Iterator[Issue]:
    for el in d.devices("interface"):
        if el.find("script") is not None:
            yield Issue(_interface_label(el, "<script>"), "the LXC driver runs no interface scripts", "remove <script>")


@_rule(
    "interface-direct",
    ERROR,
    "start",
    "a direct (macvlan) <interface> has no <bandwidth> and no <virtualport>",
    "'Unable to set network bandwidth on direct interfaces' / 'Unable to set port profile on direct interfaces'",
)
def _interface_direct(d: Domain) -> Iterator[Issue]:
    for el in d.devices("interface"):
        if el.get("type") != "direct":
            continue
        for child in ("bandwidth", "virtualport"):
            if el.find(child) is not None:
                yield Issue(
                    _interface_label(el, f"<{child}>"),
                    f"the LXC driver cannot apply <{child}> to a macvlan interface",
                    f"remove <{child}> or use a bridge",
                )


@_rule(
    "interface-source",
    ERROR,
    "define / start",
    "network has <source network>, bridge <source bridge>, direct <source dev>; never both network and bridge",
    "'No bridge name specified' at start, or a parse error",
)
def _interface_source(d: Domain) -> Iterator[Issue]:
    needs = {"network": "network", "bridge": "bridge", "direct": "dev"}
    for el in d.devices("interface"):
        source = el.find("source")
        attrs = source.attrib if source is not None else {}
        if "network" in attrs and "bridge" in attrs:
            yield Issue(
                _interface_label(el, "<source>"),
                "the source names both a bridge and a network",
                "keep the attribute that matches the interface type",
            )
        attr = needs.get(el.get("type", ""))
        if attr and not attrs.get(attr):
            yield Issue(
                _interface_label(el, "<source>"),
                f"a {el.get('type')} interface needs <source {attr}=...>",
                f"add <source {attr}='...'/>",
            )


@_rule(
    "interface-mac",
    ERROR,
    "define",
    "every <mac address> is a unicast MAC, used once",
    "the parser rejects malformed and multicast MACs; two equal MACs clash on the network",
)
def _interface_mac(d: Domain) -> Iterator[Issue]:
    seen: set[str] = set()
    for el in d.devices("interface"):
        mac_el = el.find("mac")
        mac = mac_el.get("address", "") if mac_el is not None else ""
        if mac_el is None:
            continue
        label = f"<devices><interface><mac address='{mac}'>"
        if not MAC_TEXT.fullmatch(mac):
            yield Issue(label, "not a MAC address (six hex pairs separated by ':')", "use e.g. 52:54:00:12:34:56")
        elif int(mac[:2], 16) & 1:
            yield Issue(
                label,
                "a multicast MAC (odd first byte) cannot be an interface's address",
                "use a unicast address, e.g. 52:54:00:...",
            )
        elif mac.lower() in seen:
            yield Issue(label, "two interfaces have the same MAC", "give each interface its own MAC or leave <mac> out")
        seen.add(mac.lower())


@_rule(
    "interface-guest-dev",
    ERROR,
    "container start",
    "guest interface names (<guest dev>, default eth0, eth1, ...) are unique",
    "two interfaces cannot have one name in the container",
)
def _interface_guest_dev(d: Domain) -> Iterator[Issue]:
    names: Counter[str] = Counter()
    unnamed = 0
    for el in d.devices("interface"):
        guest = el.find("guest")
        name = guest.get("dev") if guest is not None else None
        if not name:  # libvirt numbers the interfaces without a name: eth0, eth1, ...
            name, unnamed = f"eth{unnamed}", unnamed + 1
        names[name] += 1
        if names[name] == 2:
            yield Issue(
                f"<devices><interface><guest dev='{name}'>",
                f"two interfaces would be called {name} in the "
                "container (interfaces without <guest dev> are named eth0, eth1, ...)",
                "give each interface its own <guest dev=...>",
            )


@_rule(
    "lxc-namespace",
    ERROR,
    "define / start",
    "<lxc:namespace> has only sharenet/shareipc/shareuts with type name/pid/netns and a value; netns only for sharenet",
    "'unsupported Namespace feature' / 'Unknown LXC namespace source' / "
    "\"'netns' namespace source can only be used with sharenet\"",
)
def _lxc_namespace(d: Domain) -> Iterator[Issue]:
    for el in d.namespace_children():
        local = el.tag.replace(f"{{{LXC_NS}}}", "")
        label = f"<lxc:namespace><lxc:{local}>" if el.tag.startswith(f"{{{LXC_NS}}}") else f"<lxc:namespace><{el.tag}>"
        if not el.tag.startswith(f"{{{LXC_NS}}}") or local not in NAMESPACE_CHILDREN:
            yield Issue(label, "only sharenet, shareipc and shareuts can be shared", "remove it")
            continue
        kind, value = el.get("type"), el.get("value")
        if kind not in NAMESPACE_SOURCES or not value:
            yield Issue(label, "it needs type='name', 'pid' or 'netns' and a value", "e.g. type='name' value='other'")
        elif kind == "netns" and local != "sharenet":
            yield Issue(label, "a netns source can only be shared as the network namespace", "use type='name' or 'pid'")


@_rule(
    "lxc-sharenet",
    ERROR,
    "start",
    "<lxc:sharenet> is not combined with interfaces, privnet or net hostdevs",
    "'Config asks for inherit net namespace as well as private network interfaces'",
)
def _lxc_sharenet(d: Domain) -> Iterator[Issue]:
    if _sharenet(d) is None:
        return
    if d.devices("interface") or d.root.find("features/privnet") is not None or _has_net_hostdev(d):
        yield Issue(
            "<lxc:namespace><lxc:sharenet>",
            "a container cannot join another network namespace and have private interfaces too",
            "remove <lxc:sharenet>, or the interfaces and <privnet/>",
        )


RULES: tuple[Rule, ...] = tuple(_registry)
SEVERITY = {rule.id: rule.severity for rule in RULES}
# The rules that look into the guest's rootfs: a caller checking before the rootfs is built drops them.
ROOTFS_RULES = frozenset(rule.id for rule in RULES if rule.needs_rootfs)


# -- entry points ----------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised from inside expat's callbacks to stop at a DTD or at too deep a nesting."""


def _screen(xml_text: str) -> None:
    """Refuse, in bounded time and memory, what must not reach ElementTree: too large, DTDs, deep nesting.

    A DOCTYPE is refused whole (it is where entities are declared: billion laughs, external entities
    such as file:///etc/passwd, which are therefore never read); libvirt never writes one.
    """
    size = len(xml_text.encode("utf-8", "surrogateescape"))
    if size > MAX_XML_BYTES:
        raise DomainXMLError(f"the XML is {size} bytes, more than the limit of {MAX_XML_BYTES}")
    if "\0" in xml_text:
        raise DomainXMLError("the file is binary (it has NUL bytes), not XML text")
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0

    def doctype(*_: object) -> None:
        raise _Refused("it has a DOCTYPE declaration (DTDs and entities are refused)")

    def entity(*_: object) -> None:
        raise _Refused("it declares an entity (DTDs and entities are refused)")

    def start(*_: object) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise _Refused(f"its elements are nested more than {MAX_XML_DEPTH} deep")

    def end(*_: object) -> None:
        nonlocal depth
        depth -= 1

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = entity  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(xml_text, True)
    except UnicodeError:
        raise DomainXMLError("the text is not valid UTF-8") from None
    except _Refused as exc:
        raise DomainXMLError(str(exc)) from None
    except xml.parsers.expat.ExpatError as exc:
        raise DomainXMLError(" ".join(f"not well-formed XML: {exc}".split())) from None


def _parse(xml_text: str) -> ET.Element:
    _screen(xml_text)
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise DomainXMLError(" ".join(f"not well-formed XML: {exc}".split())) from None
    if root.tag != "domain":
        raise DomainXMLError(f"not a libvirt domain: the root element is <{root.tag}>, not <domain>")
    return root


def parse_domain_xml(data: bytes, source: str) -> str:
    """The text of a domain XML file's bytes, after the checks that make parsing it safe.

    For `--libvirt-xml FILE` and `vmbuilder lxc validate FILE`: a file over MAX_XML_BYTES (read at
    most one byte more), binary or non-UTF-8 data, a DOCTYPE or entity declaration, nesting deeper
    than MAX_XML_DEPTH, malformed XML or a root other than <domain> raise UserError with one line
    naming `source`. The text returned is what check_domain() and domain_name() take.
    """
    if len(data) > MAX_XML_BYTES:
        raise UserError(f"{source} is larger than {MAX_XML_BYTES} bytes; a domain XML is a few KiB", XML_HINT)
    if b"\0" in data:
        raise UserError(f"{source} is a binary file (it has NUL bytes), not domain XML", XML_HINT)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source} is not UTF-8 text (byte {exc.start} cannot be decoded)", XML_HINT) from None
    try:
        _parse(text)
    except DomainXMLError as exc:
        raise UserError(f"{source}: {exc}", "fix the XML" if "XML" in str(exc) else XML_HINT) from None
    return text


def domain_name(xml_text: str) -> str:
    """The domain's <name>; DomainXMLError if the XML is broken or has no name."""
    name = _text(_parse(xml_text).find("name"))
    if not name:
        raise DomainXMLError("the domain has no <name>")
    return name


def root_source(xml_text: str) -> Path | None:
    """The host directory of the root filesystem (<filesystem type='mount'> with <target dir='/'/>)."""
    return _root_mount_source(_parse(xml_text))


def check_domain(
    xml_text: str,
    rootfs: Path | None = None,
    *,
    other_domains: Mapping[str, str] | None = None,
    host_arch: str | None = None,
) -> list[Finding]:
    """Every finding of every rule, in rule order; raises DomainXMLError for text that is no <domain>.

    rootfs is the host directory of the guest's /; by default the root mount's source, if it exists
    here (otherwise the checks that look into the rootfs, or at host paths, are skipped).
    other_domains maps the names of the connection's other domains to their UUIDs; None skips the
    duplicate checks. host_arch defaults to this machine's.
    """
    root = _parse(xml_text)
    rootfs_given = rootfs is not None
    source = _root_mount_source(root)
    found = source is not None and source.is_absolute() and source.is_dir()
    if rootfs is None and found and source is not None and os.path.normpath(source) not in ("/", "//"):
        rootfs = source
    arch = host_arch or platform.machine()
    domain = Domain(
        root, rootfs, rootfs is not None or found, other_domains, HOST_ARCH_ALIASES.get(arch, arch), rootfs_given
    )
    return [
        Finding(rule.id, rule.severity, issue.element, issue.why, issue.fix)
        for rule in RULES
        for issue in rule.check(domain)
    ]


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that stop libvirt (or would share the host's root or network)."""
    return [f for f in findings if f.severity == ERROR]


def format_report(findings: Iterable[Finding]) -> str:
    """One line per finding, errors first, for the CLI."""
    ordered = sorted(findings, key=lambda f: f.severity != ERROR)
    return "\n".join(f.line() for f in ordered)


def rules_markdown() -> str:
    """docs/libvirt-validation.md, generated from RULES."""

    def cell(text: str) -> str:
        """XML in backticks, so that Markdown shows the elements instead of taking them for HTML."""
        return re.sub(r"(?:<[^<>]*>)+", lambda m: f"`{m.group(0)}`", text).replace("|", "\\|")

    lines = [
        "# Checks on libvirt-lxc domain XML",
        "",
        "Generated from the rule table by `python3 -m vmbuilder_lxc.docgen libvirt-validation`; do not edit.",
        "",
        "These checks run before every `virsh define` and with `vmbuilder lxc validate FILE`. libvirt 9.0's",
        "LXC driver accepts most definitions at define time and then ignores parts of them, or fails only at",
        "`virsh start` or inside the container; the checks report such problems first.",
        "",
        "- **error**: libvirt rejects the definition (at define, with `define --validate`, at start or inside",
        "  the container), or the container would share the host's root or network. A build refuses to define it.",
        "- **warning**: the LXC driver silently ignores the element, or the definition is not portable.",
        "",
        "Stage says when libvirt itself would notice: `define`, `define --validate` (the RNG schema),",
        "`start` (host side of `virsh start`), `container start` (in the container's log), `never`",
        "(silently ignored) or `tool policy` (our rule, not libvirt's). Checks that look into the rootfs",
        "or at host paths run only when the rootfs is on this host. `<on_poweroff>`, `<on_reboot>` and",
        "`<on_crash>` are ignored by the driver as well (a guest reboot always restarts the container), but",
        "they are harmless and not reported.",
        "",
        "| rule | severity | stage | checks that | libvirt |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{r.id}` | {r.severity} | {r.stage} | {cell(r.checks)} | {cell(r.libvirt)} |" for r in RULES]
    return "\n".join(lines) + "\n"
