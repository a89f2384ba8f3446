"""Input checks: each rejects a mistake with a message that tells the user what to give instead."""

from __future__ import annotations

import os
from pathlib import Path

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


# -- control characters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [("a\nb", "newline (U+000A)"), ("a\tb", "tab (U+0009)"), ("\x1b[31m", "escape (U+001B)"), ("a\x7f", "U+007F"),
     ("a\x9bb", "U+009B"), ("a\u2028b", "U+2028"), ("a\rb", "carriage return (U+000D)"), ("\0", "NUL (U+0000)")],
)  # fmt: skip
def test_control_characters_are_named(text: str, named: str) -> None:
    assert v.control_char(text) == named
    with pytest.raises(v.Invalid, match="control character"):
        v.no_control(text)


@pytest.mark.parametrize("text", ["plain", "Jörg Ünal", "web-1", "a b", "日本語"])
def test_printable_text_has_no_control_characters(text: str) -> None:
    assert v.control_char(text) is None


def test_one_line_escapes_every_control_character() -> None:
    assert v.one_line("unknown 'lx\nc'\x1b[2J") == "unknown 'lx\\nc'\\x1b[2J"


def test_shown_is_one_line_and_short() -> None:
    assert v.shown("a\nb\x1b") == "a\\nb\\x1b"
    assert len(v.shown("x" * 500)) == 60


# -- packages, components, suites ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["vim", "g++", "libc6", "python3.12", "linux-image-6.8.0-31-generic",
                                   "vim:amd64", "nginx=1.24.0-2ubuntu7", "libfoo1=1:2.0~rc1+dfsg-3", "a0"])  # fmt: skip
def test_package_accepts(value: str) -> None:
    assert v.package(value) == value


@pytest.mark.parametrize("value", ["--allow-unauthenticated", "-oAPT::Get::AllowUnauthenticated=1", "-y"])
def test_package_options_are_refused(value: str) -> None:
    with pytest.raises(v.Invalid, match="is an option, not a package"):
        v.package(value)


@pytest.mark.parametrize("value", ["Vim", "vim;reboot", "$(id)", "./evil.deb", "vim/noble-backports", "v",
                                   "openssh-server-", "vim=", "vim=latest", "a b", "vim*", "~nvim"])  # fmt: skip
def test_package_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a Debian package name"):
        v.package(value)


@pytest.mark.parametrize("value", ["main", "restricted", "non-free-firmware", "updates/main", "contrib"])
def test_component_accepts(value: str) -> None:
    assert v.component(value) == value


@pytest.mark.parametrize("value", ["Main", "[trusted=yes]", "main;", "-main", "a b", ""])
def test_component_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not an archive component"):
        v.component(value)


@pytest.mark.parametrize("value", ["noble", "24.04", "24.04 LTS", "Noble Numbat", "devel", "lts", "sid", "trixie"])
def test_suite_accepts(value: str) -> None:
    assert v.suite(value) == value


@pytest.mark.parametrize("value", ["no;ble", "../noble", "noble\n", "-noble", "", "a  b", "x" * 65])
def test_suite_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.suite(value)


# -- URLs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["http://mirror.example/ubuntu", "https://mirror.example/ubuntu/",
                                   "http://10.0.3.1:3142/ubuntu", "file:///srv/mirror", "file://localhost/srv/m",
                                   "http://user:p%40ss@mirror.example/debian",
                                   "http://mirror.example/~me/ubuntu"])  # fmt: skip
def test_mirror_accepts(value: str) -> None:
    assert v.mirror(value) == value


@pytest.mark.parametrize(
    ("value", "needle"),
    [("[trusted=yes] http://m.example/ubuntu", "brackets"), ("http://m.example/ubuntu main", "spaces"),
     ("ftp://m.example/ubuntu", "URL"), ("http:///ubuntu", "no host"), ("http://m.example/u?x=1", "query"),
     ("http://m.example/u#x", "fragment"), ('http://m.example/"x', "not accepted"), ("http://m.example:0/", "port"),
     ("http://m.example:99999/", "port"), ("file://srv/mirror", "absolute path"), ("HTTP//m", "URL"),
     ("http://m_x.example/", "not a host name"), ("http://[::1]:3142/ubuntu", "brackets"),
     ("http://u:p;x@m.example/", "not accepted"), ("mirror.example/ubuntu", "URL"), ("", "URL")],
)  # fmt: skip
def test_mirror_rejects(value: str, needle: str) -> None:
    with pytest.raises(v.Invalid, match=needle) as err:
        v.mirror(value)
    assert err.value.hint and "URL" in err.value.hint


@pytest.mark.parametrize("value", ["http://proxy.example:3128", "http://10.0.3.1:3142/", "https://p.example",
                                   "http://user:secret@proxy.example:8080"])  # fmt: skip
def test_proxy_accepts(value: str) -> None:
    assert v.proxy(value) == value


@pytest.mark.parametrize("value", ['http://p.example";Acquire::x "1', "http://p.example:3128 x", "file:///p",
                                   "socks5://p.example:1080", "http://", "http://p.example/'x",
                                   "p.example:3128"])  # fmt: skip
def test_proxy_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.proxy(value)


@pytest.mark.parametrize("value", ["lxc:///", "lxc:///system", "lxc+ssh://root@host.example/", "lxc+unix:///system"])
def test_libvirt_uri_accepts(value: str) -> None:
    assert v.libvirt_uri(value) == value


@pytest.mark.parametrize("value", ["qemu:///system", 'lxc:///"x', "lxc:/// x", "lxc", "LXC:///", "lxc+:///"])
def test_libvirt_uri_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.libvirt_uri(value)


# -- names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["lxcbr0", "br0", "virbr0", "br-lan", "a" * 15, "br.10"])
def test_bridge_accepts(value: str) -> None:
    assert v.bridge(value) == value


@pytest.mark.parametrize("value", ["a" * 16, "br/0", "br 0", "br:0", "br%d", "-br", ".", "", "br0\nlxc.x=1"])
def test_bridge_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.bridge(value)


@pytest.mark.parametrize("value", ["none", "bridge", "default", "lan_2", "my-net.v6"])
def test_network_name_accepts(value: str) -> None:
    assert v.network_name(value) == value


@pytest.mark.parametrize("value", ["my net", "a/b", "", "n\nx", "<x>"])
def test_network_name_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.network_name(value)


@pytest.mark.parametrize("value", ["daemon", "bin", "sys", "nobody", "www-data", "_apt", "sshd", "messagebus",
                                   "systemd-network", "systemd-resolve", "syslog", "sudo", "adm", "users",
                                   "nogroup", "tty"])  # fmt: skip
def test_username_of_the_base_system_is_refused(value: str) -> None:
    with pytest.raises(v.Invalid, match="already has") as err:
        v.username(value)
    assert err.value.hint is not None and "choose another --user" in err.value.hint


@pytest.mark.parametrize("value", ["ubuntu", "debian", "admin", "deploy", "ops"])
def test_usual_initial_user_names_are_accepted(value: str) -> None:
    """ubuntu is the default user; the code creates it, so it is no reserved name."""
    assert v.username(value) == value


@pytest.mark.parametrize("value", [1000, 1500, 59999])
def test_uid_accepts(value: int) -> None:
    assert v.uid(value) == value


@pytest.mark.parametrize(("value", "needle"), [(0, "root's id"), (65534, "nobody's id"), (999, "outside"),
                                               (60000, "outside"), (-1, "outside"), (100, "outside")])  # fmt: skip
def test_uid_rejects(value: int, needle: str) -> None:
    with pytest.raises(v.Invalid, match=needle) as err:
        v.uid(value)
    assert err.value.hint is not None and "1000 to 59999" in err.value.hint


@pytest.mark.parametrize("value", ["Ada Lovelace", "Jörg Ünal", "O'Brien", "Dr. Who (ops)"])
def test_gecos_accepts(value: str) -> None:
    assert v.gecos(value) == value


@pytest.mark.parametrize("value", ["a:b", "Ada, Room 1", "x=y", "Ada\nroot::0:0", "x" * 256])
def test_gecos_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        v.gecos(value)


def test_password_takes_any_printable_text_but_no_line_break() -> None:
    """chpasswd splits its line at the first ':', so a ':' in a password is safe; a newline is not."""
    assert v.password("p:a ss;\"'$(x)") == "p:a ss;\"'$(x)"
    with pytest.raises(ValueError, match="control character"):
        v.password("x\nroot:x")
    assert v.password("x" * 3967) == "x" * 3967
    with pytest.raises(ValueError, match="chpasswd reads in one line"):
        v.password("x" * 3968)


# -- numbers and choices ---------------------------------------------------------------------------------


def test_int_range() -> None:
    check = v.int_range(1, 8)
    assert check(1) == 1 and check(8) == 8
    with pytest.raises(ValueError, match="from 1 to 8"):
        check(9)


@pytest.mark.parametrize(("level", "compressions", "ok"),
                         [(19, ["zstd"], True), (22, ["zstd"], True), (0, ["zstd"], False), (9, ["xz"], True),
                          (10, ["xz"], False), (0, ["xz"], True), (0, ["gzip"], False), (5, ["none"], True),
                          (12, ["xz", "zstd"], False), (6, ["xz", "zstd", "gzip"], True)])  # fmt: skip
def test_compression_level_per_compressor(level: int, compressions: list[str], ok: bool) -> None:
    if ok:
        v.compression_level(level, compressions)
    else:
        with pytest.raises(v.Invalid, match="takes levels from"):
            v.compression_level(level, compressions)


def test_memory_upper_bound() -> None:
    assert v.memory_mb("16384G") == 16 << 20
    with pytest.raises(ValueError, match="16 TB"):
        v.memory_mb("16385G")


def test_one_of() -> None:
    check = v.one_of(("tar", "lxc"), "export format", fold=True)
    assert check(" LXC ") == "lxc"
    with pytest.raises(v.Invalid, match="unknown export format 'zip'"):
        check("zip")


# -- input files and places ---------------------------------------------------------------------------------


def test_existing_file_refuses_a_fifo_without_opening_it(tmp_path: Path) -> None:
    """Opening a FIFO for reading would block until a writer comes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO, not a regular file"):
        v.existing_file(str(fifo))


def test_existing_file_refuses_proc_files() -> None:
    with pytest.raises(ValueError, match="/proc"):
        v.existing_file("/proc/self/status")


def test_existing_file_refuses_devices() -> None:
    with pytest.raises(ValueError, match="a character device"):
        v.existing_file("/dev/null")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("'/etc/hostname /x\n", "No closing quotation"), ("/etc/hostname etc/x\n", "absolute guest path"),
     ("/etc/hostname /../x\n", "absolute guest path"), ("/etc/hostname\n", "got 1 fields"),
     ("/nonexistent/x /x\n", "does not exist"), ("/etc/hostname /a\x1bb\n", "control character"),
     ("# ok\n\n/etc/hostname /x /y\n", ":3: expected"), ("/dev/zero /x\n", "a character device"),
     ("/proc/self/status /x\n", "/proc holds kernel interfaces")],
)  # fmt: skip
def test_copy_list_rejects(tmp_path: Path, text: str, needle: str) -> None:
    listing = tmp_path / "copy.list"
    listing.write_text(text)
    with pytest.raises(ValueError, match=needle):
        v.copy_list(str(listing))


def test_copy_list_accepts(tmp_path: Path) -> None:
    listing = tmp_path / "copy.list"
    listing.write_text("# files\n/etc/hostname /etc/host-of-builder\n'/etc/hosts' /srv/dir/  # trailing\n")
    assert v.copy_list(str(listing)) == str(listing)


def test_copy_list_binary_file_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "copy.list"
    listing.write_bytes(b"\x00\x01\xff")
    with pytest.raises(ValueError, match="binary"):
        v.copy_list(str(listing))


def test_dest_refuses_kernel_filesystems_and_files(tmp_path: Path) -> None:
    for path in ("/proc/x", "/sys/fs/x", "/dev/x", "/"):
        with pytest.raises(ValueError):
            v.dest(path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        v.dest(str(tmp_path / "file" / "web1"))
    with pytest.raises(ValueError, match="exists and is not a directory"):
        v.dest(str(tmp_path / "file"))
    assert v.dest(str(tmp_path / "new" / "web1")) == str(tmp_path / "new" / "web1")


def test_writable_dir(tmp_path: Path) -> None:
    check = v.writable_dir("--cache-dir", "fix it")
    (tmp_path / "file").write_text("")
    with pytest.raises(v.Invalid, match="exists and is not a directory") as err:
        check(str(tmp_path / "file"))
    assert err.value.hint == "fix it"
    with pytest.raises(ValueError, match="kernel"):
        check("/proc/cache")
    assert check(str(tmp_path / "cache")) == str(tmp_path / "cache")


@pytest.mark.parametrize(("contents", "needle"), [(b"\x00\x01binary", "binary"),
                                                  (b"ssh-ed25519 AAAA\x1b[2J x\n", "control"),
                                                  (b"ssh-ed25519 AAAA " + b"x" * (2 << 20), "more than")])  # fmt: skip
def test_public_key_file_is_small_text(tmp_path: Path, contents: bytes, needle: str) -> None:
    key = tmp_path / "id.pub"
    key.write_bytes(contents)
    with pytest.raises(ValueError, match=needle):
        v.public_key_file(str(key))
