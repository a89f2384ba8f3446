"""Input checks used by the settings table; each raises ValueError with a message for the user.

A check may raise `Invalid(message, hint)` to say how to fix the value; the settings table puts
the hint after the message (`vmbuilder: error: <problem>; <fix>`). Every check also refuses
control characters, so it is safe when called on its own, not only through the table.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from . import pathchecks
from .accounts import RESERVED_NAMES
from .formats import CHPASSWD_MAX
from .pathchecks import copy_list as copy_list
from .textchecks import Invalid as Invalid
from .textchecks import control_char as control_char
from .textchecks import no_control as no_control
from .textchecks import one_line as one_line
from .textchecks import shown as shown
from .urlchecks import libvirt_uri as libvirt_uri
from .urlchecks import mirror as mirror
from .urlchecks import proxy as proxy

HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)
USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", re.I)
PUBKEY = re.compile(r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+")
LOCALE = re.compile(r"^[A-Za-z]{1,3}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@\w+)?$|^C\.UTF-8$|^C$|^POSIX$")
# Debian policy 5.6.1: lowercase letters, digits, '+', '-', '.', two or more, starting alphanumeric.
# apt-get also takes NAME:ARCH and NAME=VERSION. NAME/RELEASE is refused: apt-get reads an argument
# with a '/' as a path to a local, unsigned .deb. A trailing '-' would make apt remove the package.
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*[a-z0-9+.](:[a-z0-9][a-z0-9-]*)?(=[0-9][A-Za-z0-9.+~:-]*)?$")
COMPONENT = re.compile(r"^[a-z0-9][a-z0-9/_-]*$")
SUITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*( [A-Za-z0-9][A-Za-z0-9.+_-]*)?$")
# A Linux interface name: at most 15 bytes (IFNAMSIZ - 1), here from a charset every tool accepts.
BRIDGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
MAX_MEM_MB = 16 << 20  # 16 TB
UID_RANGE = (1000, 59999)  # Debian policy 9.2.2: dynamically allocated user accounts


def hostname(value: str) -> str:
    if "." in value:
        raise ValueError("give the short host name only and put the rest in --domain")
    if not HOSTNAME_LABEL.match(value):
        raise ValueError("a host name has 1-63 letters, digits or '-', and does not start or end with '-'")
    return value.lower()


def domain(value: str) -> str:
    labels = value.rstrip(".").split(".")
    if not value or not all(HOSTNAME_LABEL.match(label) for label in labels) or len(value) > 253:
        raise ValueError("not a valid DNS domain")
    return value.rstrip(".").lower()


def username(value: str) -> str:
    if not USERNAME.match(value):
        raise ValueError("a user name starts with a lowercase letter or '_' and has up to 32 of a-z, 0-9, '_', '-'")
    if value == "root":
        raise ValueError("root always exists; use --rootpass and --ssh-key for root")
    if value in RESERVED_NAMES:
        other = (value.strip("_") + "1")[:32] if value.strip("_") else "admin1"
        raise Invalid(
            f"'{value}' is a user or group the base system already has",
            f"choose another --user, e.g. '{other}'",
        )
    return value


def uid(value: int) -> int:
    low, high = UID_RANGE
    if not low <= value <= high:
        what = "root's" if value == 0 else "nobody's" if value == 65534 else "outside the range for user accounts"
        raise Invalid(
            f"{value} is {what}" + ("" if what.startswith("outside") else " id"),
            f"give a --uid from {low} to {high} (Debian's range for user accounts), or leave it out",
        )
    return value


def gecos(value: str) -> str:
    """The full name: one GECOS field of /etc/passwd, where ':' ends the field and ',' and '='
    separate or mark its subfields."""
    no_control(value)
    bad = sorted({c for c in value if c in ":,="})
    if bad:
        raise Invalid(f"a full name cannot contain {' '.join(repr(c) for c in bad)}",
                      "give the name only, e.g. --name 'Ada Lovelace'")  # fmt: skip
    if len(value) > 255:
        raise ValueError("a full name has at most 255 characters")
    return value


def password(value: str) -> str:
    """A password goes to chpasswd as one 'user:password' line; chpasswd splits at the first ':',
    so any printable text is safe, and a control character (a newline) is not; the line has a
    length limit, taken with the longest user name (32) and the ':'."""
    no_control(value)
    limit = CHPASSWD_MAX - 33
    if len(value.encode()) > limit:
        raise Invalid(f"longer than the {limit} bytes chpasswd reads in one line", "choose a shorter password")
    return value


def ipv4(value: str) -> str:
    if value == "dhcp":
        return value
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError("not an IPv4 address (or 'dhcp')") from None


def netmask(value: str) -> str:
    """Accept 255.255.255.0, /24 or 24; store the prefix length."""
    text = value.lstrip("/")
    try:
        net = ipaddress.IPv4Network(f"0.0.0.0/{text}")
    except ValueError:
        raise ValueError("not a netmask (255.255.255.0) or prefix length (24)") from None
    return str(net.prefixlen)


def ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IP address") from None


def existing_file(value: str) -> str:
    """An existing regular file (not a FIFO, device or /proc file) that we may read."""
    path = pathchecks.regular_file(value)
    try:
        path.open("rb").close()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return str(path.resolve())


def existing_dir(value: str) -> str:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"directory {path} does not exist")
    return str(path.resolve())


def public_key_file(value: str) -> str:
    """OpenSSH public keys, one per line; it becomes authorized_keys, so no control characters."""
    path = Path(existing_file(value))
    text = pathchecks.read_small_text(path)
    bad = control_char(text.replace("\n", "").replace("\r", "").replace("\t", " "))
    if bad:
        raise ValueError(f"{path} holds a control character ({bad}); it is not an OpenSSH public key file")
    if "PRIVATE KEY" in text:
        raise ValueError(f"{path} is a private key; pass the public key (the .pub file)")
    keys = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys or not all(PUBKEY.search(k) for k in keys):
        raise ValueError(f"{path} does not contain OpenSSH public keys")
    return str(path)


def mac(value: str) -> str:
    if not MAC.match(value):
        raise ValueError("not a MAC address like 00:16:3e:12:34:56")
    if int(value[:2], 16) & 1:
        raise ValueError("a multicast MAC cannot be used for a network card")
    return value.lower()


def memory_mb(value: int | str) -> int:
    """Megabytes; accepts 512, 512M, 2G."""
    text = str(value).strip().upper().removesuffix("B")
    factor = 1
    if text.endswith("G"):
        factor, text = 1024, text[:-1]
    elif text.endswith("M"):
        text = text[:-1]
    try:
        mb = int(text) * factor
    except ValueError:
        raise ValueError("expected megabytes, e.g. 512, 512M or 2G") from None
    if mb < 32:
        raise ValueError("less than 32 MB cannot boot a container")
    if mb > MAX_MEM_MB:
        raise ValueError("more than 16 TB is not a memory limit any host has")
    return mb


def positive(value: int) -> int:
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def locale(value: str) -> str:
    if not LOCALE.match(value):
        raise ValueError("not a locale name like en_US.UTF-8 or C.UTF-8")
    return value


def timezone(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$", value) or ".." in value:
        raise ValueError("not a time zone name like UTC or Europe/Berlin")
    zoneinfo = Path("/usr/share/zoneinfo")
    if zoneinfo.is_dir() and not (zoneinfo / value).is_file():
        raise ValueError(f"unknown time zone (no {zoneinfo / value})")
    return value


def container_name(value: str) -> str:
    if not CONTAINER_NAME.match(value):
        raise ValueError("a container name has up to 63 letters, digits, '.', '_' or '-'")
    return value


# -- packages and the archive -----------------------------------------------------------------------


def package(value: str) -> str:
    no_control(value)
    if value.startswith("-"):
        raise Invalid(f"'{shown(value)}' is an option, not a package", "give package names only")
    if not PACKAGE.match(value):
        raise Invalid(
            "not a Debian package name",
            "use lowercase letters, digits, '+', '-' and '.' (e.g. nginx, g++), optionally :ARCH or =VERSION",
        )
    return value


def component(value: str) -> str:
    no_control(value)
    if not COMPONENT.match(value):
        raise Invalid(f"'{shown(value)}' is not an archive component",
                      "use names like main, restricted, non-free-firmware or updates/main")  # fmt: skip
    return value


def suite(value: str) -> str:
    no_control(value)
    if len(value) > 64 or not SUITE.match(value.strip()):
        raise Invalid("not a release name", "give a codename (noble), a version (24.04) or devel, lts, stable")
    return value.strip()


# -- network ----------------------------------------------------------------------------------------


def bridge(value: str) -> str:
    no_control(value)
    if not BRIDGE.match(value):
        raise Invalid("an interface name has 1-15 letters, digits, '_', '.' or '-'", "name an existing host bridge")
    return value


def network_name(value: str) -> str:
    """--network: none, or the name of a libvirt network."""
    no_control(value)
    if not NETWORK_NAME.match(value):
        raise Invalid("a network name has up to 64 letters, digits, '_', '.', '+' or '-'",
                      "give 'none' or the name of a libvirt network (virsh net-list --all)")  # fmt: skip
    return value


# -- numbers, names and choices ---------------------------------------------------------------------


def int_range(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return check


# What each compressor takes (zstd above 19 with --ultra, which the tarball writer adds).
COMPRESSION_LEVELS = {"zstd": (1, 22), "xz": (0, 9), "gzip": (1, 9)}


def compression_level(level: int, compressions: Iterable[str]) -> None:
    """Refuse a level that one of the compressors that will run does not take."""
    for name in sorted(set(compressions)):
        low, high = COMPRESSION_LEVELS.get(name, (level, level))
        if not low <= level <= high:
            raise Invalid(f"{name} takes levels from {low} to {high}",
                          f"give --compression-level {low}-{high}, or choose another --compression")  # fmt: skip


def one_of(names: Iterable[str], what: str, *, fold: bool = False) -> Callable[[str], str]:
    """A name from a fixed set, for lists (choices= covers single values)."""
    known = tuple(names)

    def check(value: str) -> str:
        key = value.strip().lower() if fold else value
        if key not in known:
            raise Invalid(f"unknown {what} '{shown(value)}'", f"use one of: {', '.join(known)}")
        return key

    return check


def path_text(value: str) -> str:
    """A path as text: not empty, one line."""
    no_control(value)
    if not value.strip():
        raise ValueError("an empty path")
    return value


def writable_dir(what: str, hint: str) -> Callable[[str], str]:
    """--cache-dir, --export-dir, --lxc-path: a directory on a real, writable filesystem."""

    def check(value: str) -> str:
        path_text(value)
        return pathchecks.writable_dir(value, what, hint)

    return check


def dest(value: str) -> str:
    """-d: a new directory (or our earlier build) in a writable directory on a real filesystem."""
    path_text(value)
    path = Path(value).expanduser().absolute()
    if path == Path("/") or Path(os.path.realpath(path)) == Path("/"):
        raise ValueError("refusing to build into /")
    hint = "choose -d in a writable directory on a disk"
    if path.exists() and not path.is_dir():
        raise Invalid(f"{path} exists and is not a directory", hint)
    pathchecks.writable_dir(str(path.parent), "-d", hint, shown=path)
    return value
