"""Keyrings: fingerprints without gpg, and clear errors when the Ubuntu keyring is absent or broken."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuilder_lxc.keyring import UBUNTU_KEYRING, fingerprints, require_keyring, sha256_file
from vmbuilder_lxc.log import UserError

UBUNTU_FPRS = [
    "790BC7277767219C42C86F933B4FE6ACC0B21F32",  # Ubuntu Archive Automatic Signing Key <ftpmaster@ubuntu.com>
    "843938DF228D22F7B3742BC0D94AA3F0EFE21092",  # Ubuntu CD Image Automatic Signing Key (2012)
    "F6ECB3762474EDA9D21B7022871920D1991BC93C",  # Ubuntu Archive Automatic Signing Key (2018)
]
# Read before pyfakefs is active; None when the host has no ubuntu-keyring.
REAL = UBUNTU_KEYRING.read_bytes() if UBUNTU_KEYRING.is_file() else None
needs_real = pytest.mark.skipif(REAL is None, reason=f"{UBUNTU_KEYRING} is not installed")


def v4_key_packet(seed: bytes, old_format: bool = True) -> tuple[bytes, str]:
    """A syntactically valid v4 public-key packet (not a usable key) and its fingerprint."""
    body = b"\x04" + b"\x00\x00\x00\x01" + b"\x16" + seed * 8
    fpr = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    header = bytes([0x99]) + len(body).to_bytes(2, "big") if old_format else bytes([0xC6, len(body)])
    return header + body, fpr


def user_id_packet(text: bytes) -> bytes:
    return bytes([0xB4, len(text)]) + text


@needs_real
def test_fingerprints_of_the_real_ubuntu_keyring() -> None:
    assert sorted(fingerprints(UBUNTU_KEYRING)) == UBUNTU_FPRS


@needs_real
def test_require_keyring_on_the_real_ubuntu_keyring_in_a_fake_fs(fs: FakeFilesystem) -> None:
    assert REAL is not None
    fs.create_file(UBUNTU_KEYRING, contents=REAL)
    assert sorted(require_keyring(UBUNTU_KEYRING, "ubuntu")) == UBUNTU_FPRS


def test_fingerprints_of_old_and_new_format_packets(fs: FakeFilesystem) -> None:
    """Only primary keys (tag 6) count; user ids and subkeys in between are skipped."""
    first, fpr1 = v4_key_packet(b"a")
    second, fpr2 = v4_key_packet(b"b", old_format=False)
    subkey = bytes([0xB9]) + first[1:]  # tag 14, same body: must not be listed
    fs.create_file("/k.gpg", contents=first + user_id_packet(b"A <a@test>") + subkey + second)
    assert fingerprints(Path("/k.gpg")) == [fpr1, fpr2]


def test_missing_ubuntu_keyring_explains_how_to_get_it(fs: FakeFilesystem) -> None:
    """Debian 12 has no ubuntu-keyring package: the hint must name vmbuilder-fetch-keyring."""
    with pytest.raises(UserError) as err:
        require_keyring(UBUNTU_KEYRING, "ubuntu")
    assert str(UBUNTU_KEYRING) in err.value.message
    assert "missing" in err.value.message
    hint = err.value.hint or ""
    assert "vmbuilder-fetch-keyring" in hint
    assert "apt-get install ubuntu-keyring" in hint
    assert "--insecure" in hint


def test_missing_debian_keyring_names_its_package(fs: FakeFilesystem) -> None:
    with pytest.raises(UserError) as err:
        require_keyring(Path("/usr/share/keyrings/debian-archive-keyring.gpg"), "debian")
    assert err.value.hint == "run 'apt-get install debian-archive-keyring'"


@pytest.mark.parametrize(
    "data",
    [
        b"garbage that is not a keyring\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF...\n",  # armored, not binary
        bytes([0xC6]),  # new-format header without its length
        bytes([0xC6, 0xE0]),  # partial body length
        bytes([0x9B, 0x00]),  # old-format indeterminate length
    ],
)
def test_garbage_is_a_user_error(fs: FakeFilesystem, data: bytes) -> None:
    fs.create_file("/k.gpg", contents=data)
    with pytest.raises(UserError) as err:
        require_keyring(Path("/k.gpg"), "ubuntu")
    assert err.value.message.startswith("cannot read keyring /k.gpg: ")
    assert err.value.hint == "reinstall the keyring package"


@pytest.mark.parametrize("data", [b"", user_id_packet(b"only a user id")])
def test_keyring_without_keys_is_a_user_error(fs: FakeFilesystem, data: bytes) -> None:
    fs.create_file("/k.gpg", contents=data)
    with pytest.raises(UserError, match="holds no public keys"):
        require_keyring(Path("/k.gpg"), "ubuntu")


def test_directory_instead_of_a_keyring(fs: FakeFilesystem) -> None:
    fs.create_dir("/k.gpg")
    with pytest.raises(UserError, match="missing"):
        require_keyring(Path("/k.gpg"), "ubuntu")


@pytest.mark.parametrize("cut", [10, 200])
def test_truncated_keyring_is_a_user_error(fs: FakeFilesystem, cut: int) -> None:
    """A partially written keyring (vmbuilder-fetch-keyring interrupted) is unreadable, not valid."""
    packet, _ = v4_key_packet(b"a")
    fs.create_file("/k.gpg", contents=packet[: max(1, len(packet) - cut)])
    with pytest.raises(UserError, match="cannot read keyring"):
        require_keyring(Path("/k.gpg"), "ubuntu")


def test_sha256_file(fs: FakeFilesystem) -> None:
    data = b"x" * (3 << 20)  # more than one read chunk
    fs.create_file("/blob", contents=data)
    assert sha256_file(Path("/blob")) == hashlib.sha256(data).hexdigest()
