"""Input checks: each rejects a mistake with a message that tells the user what to give instead."""

from __future__ import annotations

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuilder_lxc import validators as v

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host\n"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host\n"
ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= me\n"
PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


# -- hostname / domain / user ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("web1", "web1"), ("Web-01", "web-01"), ("a", "a"),
                                                 ("x" * 63, "x" * 63), ("1host", "1host")])  # fmt: skip
def test_hostname_accepts(value: str, expected: str) -> None:
    assert v.hostname(value) == expected


def test_hostname_with_dots_points_to_domain() -> None:
    """VMBuilder users pass FQDNs; the message must say where the domain part goes."""
    with pytest.raises(ValueError, match="--domain"):
        v.hostname("web.example.com")


@pytest.mark.parametrize("value", ["web_1", "x" * 64, "-web", "web-", "", "wéb", "web 1"])
def test_hostname_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="1-63 letters, digits or '-'"):
        v.hostname(value)


@pytest.mark.parametrize(("value", "expected"), [("example.com", "example.com"), ("Example.COM.", "example.com"),
                                                 ("lan", "lan")])  # fmt: skip
def test_domain_accepts(value: str, expected: str) -> None:
    assert v.domain(value) == expected


@pytest.mark.parametrize("value", ["", "exa_mple.com", "a..b", "-a.com", ("a" * 60 + ".") * 5 + "com"])
def test_domain_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid DNS domain"):
        v.domain(value)


@pytest.mark.parametrize("value", ["ubuntu", "_svc", "deploy-bot", "a" * 32])
def test_username_accepts(value: str) -> None:
    assert v.username(value) == value


def test_username_root_is_rejected() -> None:
    with pytest.raises(ValueError, match="--rootpass and --ssh-key"):
        v.username("root")


@pytest.mark.parametrize("value", ["Bob", "1user", "a" * 33, "us er", ""])
def test_username_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="a user name starts with"):
        v.username(value)


# -- network ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("dhcp", "dhcp"), ("10.0.3.10", "10.0.3.10")])
def test_ipv4_accepts(value: str, expected: str) -> None:
    assert v.ipv4(value) == expected


@pytest.mark.parametrize("value", ["10.0.3.256", "fe80::1", "DHCP", "10.0.3", "host"])
def test_ipv4_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4 address"):
        v.ipv4(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("255.255.255.0", "24"), ("/24", "24"), ("24", "24"), ("255.255.0.0", "16"), ("/32", "32"), ("0", "0")],
)
def test_netmask_forms(value: str, expected: str) -> None:
    assert v.netmask(value) == expected


@pytest.mark.parametrize("value", ["33", "255.255.0.255", "255.255.255.1", "abc", "/", "-1"])
def test_netmask_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a netmask"):
        v.netmask(value)


@pytest.mark.parametrize(("value", "expected"), [("10.0.3.1", "10.0.3.1"), ("2001:DB8::1", "2001:db8::1")])
def test_ip_address(value: str, expected: str) -> None:
    assert v.ip_address(value) == expected


def test_ip_address_rejects() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        v.ip_address("10.0.0.0/8")


@pytest.mark.parametrize(("value", "expected"), [("00:16:3e:12:34:56", "00:16:3e:12:34:56"),
                                                 ("00:16:3E:AB:CD:EF", "00:16:3e:ab:cd:ef"),
                                                 ("02:00:00:00:00:01", "02:00:00:00:00:01")])  # fmt: skip
def test_mac_accepts(value: str, expected: str) -> None:
    assert v.mac(value) == expected


@pytest.mark.parametrize("value", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01"])
def test_mac_multicast_is_rejected(value: str) -> None:
    """A multicast (group) address on eth0 makes the kernel refuse the veth."""
    with pytest.raises(ValueError, match="multicast"):
        v.mac(value)


@pytest.mark.parametrize("value", ["00-16-3e-12-34-56", "00:16:3e:12:34", "0016.3e12.3456", "gg:16:3e:12:34:56"])
def test_mac_rejects_other_forms(value: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        v.mac(value)


# -- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(512, 512), ("512", 512), ("512M", 512), ("512m", 512), ("512MB", 512), ("2G", 2048), ("2g", 2048),
     ("1GB", 1024), (" 64 ", 64), ("32", 32)],
)  # fmt: skip
def test_memory_mb(value: int | str, expected: int) -> None:
    assert v.memory_mb(value) == expected


@pytest.mark.parametrize("value", ["16", "31M", "0", "-1G"])
def test_memory_mb_too_small(value: str) -> None:
    with pytest.raises(ValueError, match="less than 32 MB"):
        v.memory_mb(value)


@pytest.mark.parametrize("value", ["lots", "1.5G", "2T", "", "G"])
def test_memory_mb_not_a_size(value: str) -> None:
    with pytest.raises(ValueError, match="expected megabytes"):
        v.memory_mb(value)


def test_positive_and_non_negative() -> None:
    assert v.positive(1) == 1
    assert v.non_negative(0) == 0
    with pytest.raises(ValueError, match="1 or more"):
        v.positive(0)
    with pytest.raises(ValueError, match="0 or more"):
        v.non_negative(-1)


# -- locale / time zone -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["C.UTF-8", "C", "POSIX", "en_US.UTF-8", "de_DE", "sr_RS@latin", "en_US.utf8"])
def test_locale_accepts(value: str) -> None:
    assert v.locale(value) == value


@pytest.mark.parametrize("value", ["english", "en-US", "en_us.UTF-8", "", "en_US.UTF-8; rm -rf /"])
def test_locale_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a locale name"):
        v.locale(value)


@pytest.fixture
def zoneinfo(fs: FakeFilesystem) -> FakeFilesystem:
    for zone in ("UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        fs.create_file(f"/usr/share/zoneinfo/{zone}", contents="TZif2")
    return fs


@pytest.mark.parametrize("value", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_timezone_known(zoneinfo: FakeFilesystem, value: str) -> None:
    assert v.timezone(value) == value


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", "Europe", "europe/berlin"])
def test_timezone_unknown_when_zoneinfo_exists(zoneinfo: FakeFilesystem, value: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        v.timezone(value)


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/localtime", "Europe/../UTC", "UTC ", ""])
def test_timezone_malformed(zoneinfo: FakeFilesystem, value: str) -> None:
    with pytest.raises(ValueError, match="not a time zone name"):
        v.timezone(value)


def test_timezone_without_zoneinfo_on_the_host(fs: FakeFilesystem) -> None:
    """A host without tzdata cannot check the name; the guest's tzdata decides then."""
    assert v.timezone("Mars/Olympus_Mons") == "Mars/Olympus_Mons"


# -- files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("contents", [ED25519, RSA + ED25519, "# my keys\n\n" + ECDSA, ED25519.rstrip("\n")])
def test_public_key_file_accepts(fs: FakeFilesystem, contents: str) -> None:
    fs.create_file("/home/me/.ssh/id.pub", contents=contents)
    assert v.public_key_file("/home/me/.ssh/id.pub") == "/home/me/.ssh/id.pub"


def test_public_key_file_expands_home(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    fs.create_file("/home/me/.ssh/id_ed25519.pub", contents=ED25519)
    assert v.public_key_file("~/.ssh/id_ed25519.pub") == "/home/me/.ssh/id_ed25519.pub"


def test_private_key_is_rejected_naming_the_pub_file(fs: FakeFilesystem) -> None:
    """Passing id_ed25519 instead of id_ed25519.pub would copy a secret into every container."""
    fs.create_file("/home/me/.ssh/id_ed25519", contents=PRIVATE)
    with pytest.raises(ValueError) as err:
        v.public_key_file("/home/me/.ssh/id_ed25519")
    assert "/home/me/.ssh/id_ed25519 is a private key" in str(err.value)
    assert ".pub" in str(err.value)


@pytest.mark.parametrize(
    "contents",
    ["hello world\n", "", "# only a comment\n", ED25519 + "not a key\n", "ssh-ed25519\n",
     "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"],
)  # fmt: skip
def test_non_key_text_is_rejected(fs: FakeFilesystem, contents: str) -> None:
    fs.create_file("/tmp/keys", contents=contents)
    with pytest.raises(ValueError, match="does not contain OpenSSH public keys"):
        v.public_key_file("/tmp/keys")


def test_missing_key_file(fs: FakeFilesystem) -> None:
    with pytest.raises(ValueError, match="file /nope.pub does not exist"):
        v.public_key_file("/nope.pub")


def test_existing_file_and_dir(fs: FakeFilesystem) -> None:
    fs.create_file("/srv/a/file")
    assert v.existing_file("/srv/a/../a/file") == "/srv/a/file"
    assert v.existing_dir("/srv/a/") == "/srv/a"
    with pytest.raises(ValueError, match="/srv/a is a directory, not a regular file"):
        v.existing_file("/srv/a")  # a directory is not a file
    with pytest.raises(ValueError, match="directory /srv/a/file does not exist"):
        v.existing_dir("/srv/a/file")


@pytest.mark.parametrize("value", ["web1", "Web.1", "a_b-c", "x" * 63])
def test_container_name_accepts(value: str) -> None:
    assert v.container_name(value) == value


@pytest.mark.parametrize("value", [".hidden", "x" * 64, "a/b", "", "a b"])
def test_container_name_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="container name"):
        v.container_name(value)
