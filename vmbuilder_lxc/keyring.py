"""Archive keyrings: find them, fingerprint them, and fetch the Ubuntu one on Debian hosts.

Debian 12 has no ubuntu-keyring package. `vmbuilder-fetch-keyring` downloads the ubuntu-keyring
.deb from the default Ubuntu mirror (taken from debootstrap's scripts), checks it against a pinned
SHA-256, and installs only the keyrings under /usr/share/keyrings. It never adds the keys to the
host's apt trust (/etc/apt/trusted.gpg.d), unlike installing the .deb with dpkg.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .cliparse import CommandParser
from .log import LOG, UserError
from .mirrors import default_mirror
from .run import run

UBUNTU_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
KEYRING_DIR = Path("/usr/share/keyrings")

# The ubuntu-keyring package that noble ships; pinned by digest (see ../shared/testbed.md).
UBUNTU_KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
UBUNTU_KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"
UBUNTU_KEYRING_FILES = ("ubuntu-archive-keyring.gpg", "ubuntu-archive-removed-keys.gpg")

FETCH_HINT = (
    "on Ubuntu run 'apt-get install ubuntu-keyring'; on Debian run 'vmbuilder-fetch-keyring' "
    "(downloads ubuntu-keyring and checks its pinned SHA-256); --insecure skips verification"
)


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """Split binary OpenPGP data into (tag, body) packets (RFC 4880 section 4.2)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise ValueError("truncated packet header")
        head = data[i]
        if not head & 0x80:
            raise ValueError("not an OpenPGP binary keyring")
        if head & 0x40:  # new format
            tag = head & 0x3F
            first = data[i + 1]
            if first < 192:
                length, i = first, i + 2
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i + 2] + 192, i + 3
            elif first == 255:
                length, i = int.from_bytes(data[i + 2 : i + 6], "big"), i + 6
            else:
                raise ValueError("partial-length packets are not used in keyrings")
        else:  # old format
            tag = (head >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(head & 3)
            if size is None:
                raise ValueError("indeterminate-length packet in keyring")
            length = int.from_bytes(data[i + 1 : i + 1 + size], "big")
            i += 1 + size
        if i + length > len(data):
            raise ValueError("truncated packet (the keyring file is incomplete)")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def fingerprints(path: Path) -> list[str]:
    """Fingerprints of the primary keys in a binary keyring (v4 keys: SHA-1 over the key packet)."""
    data = path.read_bytes()
    fprs = []
    for tag, body in _packets(data):
        if tag == 6 and body and body[0] == 4:
            fprs.append(hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper())
    return fprs


def require_keyring(path: Path, distro: str) -> list[str]:
    """Fail with the way to get the keyring when it is missing or unreadable."""
    if not path.is_file():
        hint = FETCH_HINT if distro == "ubuntu" else "run 'apt-get install debian-archive-keyring'"
        raise UserError(f"the {distro} archive keyring {path} is missing, so signatures cannot be checked", hint)
    try:
        fprs = fingerprints(path)
    except (ValueError, IndexError, OSError) as exc:
        raise UserError(f"cannot read keyring {path}: {exc}", "reinstall the keyring package") from None
    if not fprs:
        raise UserError(f"keyring {path} holds no public keys", "reinstall the keyring package")
    return fprs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_ubuntu_keyring(mirror: str | None = None, dest: Path = KEYRING_DIR) -> Path:
    """Download ubuntu-keyring, verify the pinned digest, and install its keyrings into dest."""
    import urllib.request  # here: a build never downloads the keyring itself

    base = (mirror or default_mirror("gutsy", "amd64", "noble")).rstrip("/")
    url = f"{base}/{UBUNTU_KEYRING_DEB}"
    with tempfile.TemporaryDirectory(prefix="vmbuilder-keyring-") as tmp:
        deb = Path(tmp) / "ubuntu-keyring.deb"
        LOG.info("Downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, deb.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as exc:
            raise UserError(f"cannot download {url}: {exc}", "check the network or pass --mirror") from None
        digest = sha256_file(deb)
        if digest != UBUNTU_KEYRING_SHA256:
            raise UserError(
                f"{url} has SHA-256 {digest}, expected {UBUNTU_KEYRING_SHA256}; refusing to install it",
                "check the mirror; the package may have been tampered with",
            )
        run(["dpkg-deb", "-x", deb, Path(tmp) / "x"])
        dest.mkdir(parents=True, exist_ok=True)
        for name in UBUNTU_KEYRING_FILES:
            src = Path(tmp) / "x/usr/share/keyrings" / name
            target = dest / name
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(src, partial)
            os.chmod(partial, 0o644)
            os.replace(partial, target)
    installed = dest / UBUNTU_KEYRING_FILES[0]
    LOG.info("Installed %s (keys: %s)", installed, ", ".join(fingerprints(installed)))
    return installed


def fetch_parser() -> CommandParser:
    """The parser of vmbuilder-fetch-keyring (built apart so that the man page can list it)."""
    parser = CommandParser(
        prog="vmbuilder-fetch-keyring",
        description="Install the Ubuntu archive keyring on a host that has no ubuntu-keyring package.",
    )
    parser.add_argument("--mirror", help="Ubuntu mirror (default: debootstrap's default for amd64)")
    parser.add_argument("--dest", type=Path, default=KEYRING_DIR, help="target directory")
    return parser


def fetch_main(argv: list[str] | None = None) -> int:
    """Console script: vmbuilder-fetch-keyring [--mirror URL] [--dest DIR]."""
    try:
        args = fetch_parser().parse_command(argv)
    except UserError as exc:  # a mistake in the arguments: one line, exit 2, as in vmbuilder
        print(f"vmbuilder-fetch-keyring: error: {exc}", file=sys.stderr)
        return 2
    try:
        fetch_ubuntu_keyring(args.mirror, args.dest)
    except UserError as exc:
        print(f"vmbuilder-fetch-keyring: error: {exc}", file=sys.stderr)
        return 1
    return 0
