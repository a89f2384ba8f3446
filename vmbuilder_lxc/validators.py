"""Input checks used by the settings table; each raises ValueError with a message for the user."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)
USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", re.I)
PUBKEY = re.compile(r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+")
LOCALE = re.compile(r"^[A-Za-z]{1,3}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@\w+)?$|^C\.UTF-8$|^C$|^POSIX$")


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
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"file {path} does not exist")
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
    path = Path(existing_file(value))
    text = path.read_text(errors="replace")
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
