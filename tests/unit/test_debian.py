"""The debian plugin: suites, release traits, base packages, and its tweaks on a (fake) rootfs.

Like test_tweaks.py for Ubuntu, the variables come from the real DebianFamily.guest_vars() of a
context configured like `vmbuilder lxc debian --suite SUITE ...`, rendered with the packaged
templates. distro-info-data's debian.csv is a fixed, trimmed copy.
"""

from __future__ import annotations

import configparser
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ROOT, Plugins, RootView
from vmbuilder_lxc import cli, tweakactions
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.docgen import tweaks_markdown
from vmbuilder_lxc.keyring import DEBIAN_KEYRING
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.mirrors import DEBOOTSTRAP_BIN, DEBOOTSTRAP_SCRIPTS
from vmbuilder_lxc.render import Templates
from vmbuilder_lxc.source.archive import ArchiveSource
from vmbuilder_lxc.suites import DISTRO_INFO_DIR
from vmbuilder_lxc.tweakactions import DropIn, File
from vmbuilder_lxc.tweakguest import Guest
from vmbuilder_lxc.tweaks import ReleaseTraits, apply

MIRROR = "http://mirror.test/debian"
SECURITY = "http://mirror.test/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
TODAY = dt.date(2026, 11, 21)  # trixie is stable, forky testing, duke not opened yet

# A fixed copy of distro-info-data's debian.csv (trimmed; the real one starts with buzz 1.1).
DEBIAN_CSV = """\
version,codename,series,created,release,eol,eol-lts,eol-elts
10,Buster,buster,2017-06-17,2019-07-06,2022-09-10,2024-06-30,2029-06-30
11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2031-06-30
12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30
13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30
14,Forky,forky,2025-08-09
15,Duke,duke,2027-08-01
,Sid,sid,1993-08-16
,Experimental,experimental,1993-08-16
"""

# Where each suite's systemd ships its units (bookworm's systemd still uses /lib).
UNIT_DIR = {"bookworm": "/lib/systemd/system", "trixie": "/usr/lib/systemd/system", "sid": "/usr/lib/systemd/system"}


def make_rootfs(fs: FakeFilesystem, unit_dir: str = "/usr/lib/systemd/system") -> None:
    """What a bootstrapped Debian base looks like, as far as the tweaks care (merged /usr)."""
    fs.create_file(
        ROOT / "var/lib/dpkg/status",
        contents="".join(
            f"Package: {p}\nStatus: install ok installed\nVersion: 1\n\n"
            for p in ("systemd", "systemd-resolved", "openssh-server", "base-files", "netbase")
        ),
    )
    units = ("systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service")
    fs.create_file(
        ROOT / "var/lib/dpkg/info/systemd.list",
        contents="/.\n/etc/systemd/networkd.conf\n" + "".join(f"{unit_dir}/{u}\n" for u in units),
    )
    for unit in units:
        fs.create_file(ROOT / "usr/lib/systemd/system" / unit, contents="[Unit]\n")
    fs.create_symlink(ROOT / "lib", "usr/lib")
    fs.create_file(ROOT / "var/lib/dpkg/info/netbase.list", contents="/.\n/etc/protocols\n/etc/services\n")
    fs.create_file(
        ROOT / "var/lib/dpkg/info/openssh-server.list",
        contents=f"/.\n/etc/ssh\n/usr/sbin/sshd\n{unit_dir}/ssh.service\n",
    )
    for t in ("rsa", "ecdsa", "ed25519"):
        fs.create_file(ROOT / f"etc/ssh/ssh_host_{t}_key", contents="secret key material")
    fs.create_file(ROOT / "etc/machine-id", contents="0123456789abcdef0123456789abcdef\n")
    fs.create_file(ROOT / "etc/resolv.conf", contents="nameserver 192.168.1.1\n")


@dataclass
class Tweaked(RootView):
    ctx: Context
    distro: DebianFamily
    chosen: list[str]
    record: list[dict[str, Any]]


TweakFactory = Callable[..., Tweaked]


@pytest.fixture
def debian_ctx(fake_fs: FakeFilesystem, plugins: Plugins) -> Callable[..., Context]:
    """A context configured like `vmbuilder lxc debian ARGS` (no build), on the fake debian.csv."""
    fake_fs.create_file(DISTRO_INFO_DIR / "debian.csv", contents=DEBIAN_CSV)

    def factory(*argv: str) -> Context:
        ctx = cli.make_context("lxc", "debian", plugins)
        cli.configure(ctx, list(argv))
        return ctx

    return factory


@pytest.fixture
def debian(debian_ctx: Callable[..., Context]) -> DebianFamily:
    distro = debian_ctx("--arch", "amd64", "--mirror", MIRROR).distro
    assert isinstance(distro, DebianFamily)
    return distro


@pytest.fixture
def tweak(fake_fs: FakeFilesystem, debian_ctx: Callable[..., Context], monkeypatch: pytest.MonkeyPatch) -> TweakFactory:
    """Configure a debian build from argv, then select and apply its tweaks to the fake rootfs."""
    monkeypatch.setattr(tweakactions, "run_builtin", lambda *args, **kwargs: None)  # the timezone hook

    def run(*argv: str, do_apply: bool = True) -> Tweaked:
        args = ["--arch", "amd64", "--mirror", MIRROR, "--hostname", "web1", *argv]
        ctx = debian_ctx(*args)
        ctx.workdir = ROOT.parent
        for plugin in ctx.plugins:
            plugin.set_defaults()
        distro = ctx.distro
        assert isinstance(distro, DebianFamily)
        if not ROOT.exists():
            make_rootfs(fake_fs, UNIT_DIR.get(distro.release.series, "/usr/lib/systemd/system"))
        guest = Guest(ctx.rootfs, ctx.render, distro.guest_vars(), ctx.hook_env)
        chosen = distro.select_tweaks(guest)
        record = apply(chosen, guest) if do_apply else []
        return Tweaked(ctx, distro, [t.name for t in chosen], record)

    return run


# -- suites ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "series"),
    [("bookworm", "bookworm"), ("12", "bookworm"), ("12.13", "bookworm"), ("Trixie", "trixie"), ("13", "trixie"),
     ("forky", "forky"), ("14", "forky"), ("sid", "sid"), ("stable", "trixie"), ("lts", "trixie"),
     ("devel", "forky"), ("testing", "forky"), ("Testing", "forky")],
)  # fmt: skip
def test_suites_resolve(debian: DebianFamily, text: str, series: str) -> None:
    assert debian.resolve_suite(text, TODAY).series == series


def test_lts_is_stable_so_the_default_suite_works(debian: DebianFamily) -> None:
    """distro-info-data marks no Debian release LTS; `--suite lts` (the default) means stable."""
    assert debian.settings["suite"] == "lts"
    assert debian.resolve_suite("lts", dt.date(2025, 1, 1)).series == "bookworm"
    assert debian.resolve_suite("LTS", TODAY).series == "trixie"


@pytest.mark.parametrize("text", ["bullseye", "11", "buster"])
def test_releases_before_bookworm_are_refused(debian: DebianFamily, text: str) -> None:
    with pytest.raises(UserError, match="predates bookworm 12"):
        debian.resolve_suite(text, TODAY)


def test_experimental_is_refused(debian: DebianFamily) -> None:
    with pytest.raises(UserError, match="experimental is not a complete suite"):
        debian.resolve_suite("experimental", TODAY)


def test_unknown_suite_lists_the_supported_ones(debian: DebianFamily, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", lambda url: {})
    with pytest.raises(UserError) as err:
        debian.resolve_suite("frobnicate", TODAY)
    assert err.value.message == "unknown debian suite 'frobnicate'"
    # only what builds now: no experimental (refused), no duke (no archive before its creation date)
    assert err.value.hint == "use --suite with one of: bookworm, trixie, forky, sid, devel, lts, stable"


# -- release traits, packages, defaults -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "sources", "systemd"),
    [("bookworm", "one-line", 252), ("trixie", "deb822", 257), ("forky", "deb822", 262), ("sid", "deb822", 262)],
)
def test_release_traits(debian: DebianFamily, suite: str, sources: str, systemd: int) -> None:
    traits = debian.release_traits(debian.resolve_suite(suite, TODAY))
    assert traits == ReleaseTraits(
        init="systemd", network="networkd", sources=sources, resolved=True, systemd_version=systemd,
        initctl=systemd < 258,
    )  # fmt: skip


@pytest.mark.parametrize("suite", ["bookworm", "trixie", "sid"])
def test_base_packages(debian: DebianFamily, suite: str) -> None:
    debian.release = debian.resolve_suite(suite, TODAY)
    packages = debian.base_packages()
    assert len(packages) == len(set(packages))
    for needed in ("apt", "systemd-sysv", "libpam-systemd", "dbus", "debian-archive-keyring", "iproute2",
                   "iputils-ping", "sudo", "openssh-server", "locales", "tzdata", "ca-certificates", "less",
                   "vim-tiny", "systemd-resolved"):  # fmt: skip
        assert needed in packages, needed
    for absent in ("ubuntu-keyring", "netplan.io", "ifupdown", "isc-dhcp-client", "upstart"):
        assert absent not in packages, absent


def test_defaults(debian: DebianFamily) -> None:
    s = debian.settings
    assert s["keyring"] == KEYRING == str(DEBIAN_KEYRING)
    assert s["user"] == "debian"
    assert s.get_list("components") == ["main"]
    assert debian.debootstrap_script == "sid"


def test_default_mirror_comes_from_debootstrap(fake_fs: FakeFilesystem, debian_ctx: Callable[..., Context]) -> None:
    """Debian's scripts are symlinks to sid, which names no mirror: debootstrap's DEF_MIRROR applies."""
    fake_fs.create_file(DEBOOTSTRAP_SCRIPTS / "sid", contents="mirror_style release\ndownload_style apt\n")
    fake_fs.create_file(DEBOOTSTRAP_BIN, contents='#!/bin/sh\nDEF_MIRROR="http://default.mirror.test/debian"\n')
    ctx = debian_ctx("--arch", "amd64", "--suite", "trixie")
    assert ctx.settings["mirror"] == "http://default.mirror.test/debian"


def test_mmdebstrap_for_every_suite(debian: DebianFamily) -> None:
    for suite in ("bookworm", "trixie", "sid"):
        debian.release = debian.resolve_suite(suite, TODAY)
        assert debian.mmdebstrap_ok()


# -- mirrors and pockets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mirror", "security"),
    [(MIRROR, SECURITY), (MIRROR + "/", SECURITY), ("http://cache.test:3142/debian", "http://cache.test:3142/debian-security")],
)  # fmt: skip
def test_security_mirror_is_the_sibling_archive(debian: DebianFamily, mirror: str, security: str) -> None:
    assert debian.security_mirror_for(mirror) == security


@pytest.mark.parametrize(
    ("suite", "pockets"),
    [("bookworm", ("updates", "security")), ("trixie", ("updates", "security")),
     ("forky", ("updates", "security")), ("sid", ())],
)  # fmt: skip
def test_pockets(debian: DebianFamily, suite: str, pockets: tuple[str, ...]) -> None:
    assert debian.pockets_for(debian.resolve_suite(suite, TODAY)) == pockets


def archive(distro: DebianFamily) -> ArchiveSource:
    """The distro's source, a bootstrap from the archive (set_defaults chose it)."""
    assert isinstance(distro.source, ArchiveSource)
    return distro.source


def test_bootstrap_sources_use_the_security_archive(tweak: TweakFactory) -> None:
    req = archive(tweak("--suite", "bookworm", do_apply=False).distro).bootstrap_request()
    assert req.source_lines() == [
        f"deb {MIRROR} bookworm main",
        f"deb {MIRROR} bookworm-updates main",
        f"deb {SECURITY} bookworm-security main",
    ]
    assert (req.script, req.keyring, req.mmdebstrap_ok) == ("sid", Path(KEYRING), True)


def test_install_mirror_derives_its_own_security_archive(tweak: TweakFactory) -> None:
    t = tweak("--suite", "trixie", "--install-mirror", "http://cache.test:3142/debian", do_apply=False)
    assert archive(t.distro).mirrors() == ("http://cache.test:3142/debian", "http://cache.test:3142/debian-security")
    t = tweak("--suite", "trixie", "--install-mirror", "http://cache.test:3142/debian",
              "--install-security-mirror", "http://sec.test/ds", do_apply=False)  # fmt: skip
    assert archive(t.distro).mirrors() == ("http://cache.test:3142/debian", "http://sec.test/ds")


def test_sid_bootstraps_from_one_suite(tweak: TweakFactory) -> None:
    req = archive(tweak("--suite", "sid", do_apply=False).distro).bootstrap_request()
    assert req.source_lines() == [f"deb {MIRROR} sid main"]


# -- tweaks ---------------------------------------------------------------------------------------------


ALWAYS = {"fstab", "hostname", "machine-id", "instance-secrets", "ssh-host-keys", "network-networkd",
          "resolv-conf-resolved", "timezone"}  # fmt: skip


@pytest.mark.parametrize(
    ("suite", "extra"),
    [
        ("bookworm", {"locale", "apt-sources-one-line"}),
        ("trixie", {"locale-conf", "apt-sources-deb822"}),
        ("forky", {"locale-conf", "apt-sources-deb822", "initctl-listener"}),  # systemd 262: no systemd-initctl
        ("sid", {"locale-conf", "apt-sources-deb822", "initctl-listener"}),
    ],
)
def test_tweaks_selected_per_release(tweak: TweakFactory, suite: str, extra: set[str]) -> None:
    assert set(tweak("--suite", suite, do_apply=False).chosen) == ALWAYS | extra


@pytest.mark.parametrize(("suite", "who"), [("trixie", "systemd"), ("forky", "vmbuilder"), ("sid", "vmbuilder")])
def test_initctl_listener_where_systemd_has_none(tweak: TweakFactory, suite: str, who: str) -> None:
    """systemd 258 and newer ship no systemd-initctl; libvirt's `virsh shutdown` then needs ours."""
    t = tweak("--suite", suite)
    assert t.ctx.hook_env["INITCTL_LISTENER"] == who
    socket = "/etc/systemd/system/vmbuilder-initctl.socket"
    if who == "systemd":
        assert not t.exists(socket) and not t.exists("/etc/systemd/system/systemd-initctl.socket")
        return
    assert "ListenFIFO=/run/initctl" in t.read(socket)
    assert t.link("/etc/systemd/system/sockets.target.wants/vmbuilder-initctl.socket") == socket
    assert t.link("/etc/systemd/system/systemd-initctl.socket") == "/dev/null"
    assert t.exists("/usr/local/lib/vmbuilder-lxc/initctl-listener")


def test_no_ubuntu_only_tweak_is_in_the_table(plugins: Plugins) -> None:
    """Debian has no netplan, no ifupdown in the base and no upstart."""
    names = {t.name for t in plugins["debian"].tweaks}  # type: ignore[attr-defined]
    assert not names & {"network-netplan", "netplan-configure-udev", "network-ifupdown", "dbus-machine-id"}
    assert not any(n.startswith("upstart") for n in names)


def test_the_plugins_share_their_code(plugins: Plugins) -> None:
    """Acceptance: one implementation, only data differs. Shared tweaks are the same objects."""
    debian, ubuntu = plugins["debian"], plugins["ubuntu"]
    assert debian.bootstrap is ubuntu.bootstrap is DebianFamily.bootstrap  # type: ignore[attr-defined]
    assert debian.configure_os is ubuntu.configure_os is DebianFamily.configure_os
    shared = [t for t in debian.tweaks if t in ubuntu.tweaks]  # type: ignore[attr-defined]
    assert {t.name for t in shared} >= {"fstab", "hostname", "machine-id", "ssh-host-keys", "apt-sources-deb822"}


def _network_file(t: Tweaked) -> dict[str, dict[str, list[str]]]:
    """The .network file as {section: {key: [values]}} (keys may repeat, e.g. DNS=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in t.lines("/etc/systemd/network/10-lxc-eth0.network"):
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_networkd_dhcp_and_enabled_like_systemctl_would(tweak: TweakFactory, suite: str) -> None:
    t = tweak("--suite", suite)
    assert _network_file(t) == {
        "Match": {"Name": ["eth0"]},
        "Link": {"RequiredForOnline": ["no"]},
        "Network": {"DHCP": ["ipv4"]},
        "DHCPv4": {"ClientIdentifier": ["mac"]},
    }
    unit = f"{UNIT_DIR[suite]}/systemd-networkd.service"
    assert t.link("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service") == unit
    assert t.link("/etc/systemd/system/dbus-org.freedesktop.network1.service") == unit
    socket = f"{UNIT_DIR[suite]}/systemd-networkd.socket"
    assert t.link("/etc/systemd/system/sockets.target.wants/systemd-networkd.socket") == socket
    # Nothing may wait for eth0: wait-online and the cmdline generator stay disabled.
    assert not t.exists("/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service")
    assert not t.exists("/etc/systemd/system/sysinit.target.wants/systemd-network-generator.service")
    assert not t.exists("/etc/network/interfaces") and not t.exists("/etc/netplan")


def test_networkd_static(tweak: TweakFactory) -> None:
    t = tweak(
        "--suite", "trixie", "--ip", "10.0.3.10", "--mask", "255.255.255.0", "--gw", "10.0.3.1",
        "--dns", "10.0.3.1", "--dns", "1.1.1.1", "--domain", "example.com",
    )  # fmt: skip
    assert _network_file(t) == {
        "Match": {"Name": ["eth0"]},
        "Link": {"RequiredForOnline": ["no"]},
        "Network": {"Address": ["10.0.3.10/24"], "Gateway": ["10.0.3.1"], "DNS": ["10.0.3.1", "1.1.1.1"],
                    "Domains": ["example.com"]},
    }  # fmt: skip


def test_networkd_static_without_gateway_or_dns(tweak: TweakFactory) -> None:
    t = tweak("--suite", "bookworm", "--ip", "10.0.3.10", "--mask", "/16")
    assert _network_file(t)["Network"] == {"Address": ["10.0.3.10/16"]}


def test_networkd_without_a_nic_is_harmless(tweak: TweakFactory) -> None:
    """--network none: the file matches no link, and nothing waits for one."""
    t = tweak("--suite", "trixie", "--network", "none")
    assert t.ctx.hook_env["NETWORK"] == "none"
    assert _network_file(t)["Link"] == {"RequiredForOnline": ["no"]}
    assert not t.exists("/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service")


def test_network_file_parses_as_ini(tweak: TweakFactory) -> None:
    parser = configparser.ConfigParser(strict=False)
    parser.read_string(tweak("--suite", "trixie").read("/etc/systemd/network/10-lxc-eth0.network"))
    assert parser["Match"]["Name"] == "eth0"


def test_one_line_sources_on_bookworm(tweak: TweakFactory) -> None:
    t = tweak("--suite", "bookworm")
    assert t.lines("/etc/apt/sources.list") == [
        f"deb {MIRROR} bookworm main",
        f"deb {MIRROR} bookworm-updates main",
        f"deb {SECURITY} bookworm-security main",
    ]
    assert not t.exists("/etc/apt/sources.list.d/debian.sources")


def _stanzas(t: Tweaked) -> list[dict[str, str]]:
    text = t.read("/etc/apt/sources.list.d/debian.sources")
    return [
        dict(ln.split(": ", 1) for ln in s.splitlines() if ": " in ln and not ln.startswith("#"))
        for s in text.split("\n\n")
        if "Types:" in s
    ]


def test_deb822_sources_on_trixie(tweak: TweakFactory) -> None:
    t = tweak("--suite", "trixie", "--components", "main,contrib")
    assert _stanzas(t) == [
        {"Types": "deb", "URIs": MIRROR, "Suites": "trixie trixie-updates", "Components": "main contrib",
         "Signed-By": KEYRING},
        {"Types": "deb", "URIs": SECURITY, "Suites": "trixie-security", "Components": "main contrib",
         "Signed-By": KEYRING},
    ]  # fmt: skip
    assert t.lines("/etc/apt/sources.list") == []  # only a pointer to debian.sources
    assert "debian.sources" in t.read("/etc/apt/sources.list")


def test_security_mirror_option_overrides_the_derived_one(tweak: TweakFactory) -> None:
    t = tweak("--suite", "trixie", "--security-mirror", "http://security.mirror.test/debian-security")
    assert _stanzas(t)[1]["URIs"] == "http://security.mirror.test/debian-security"
    assert archive(t.distro).mirrors() == (MIRROR, "http://security.mirror.test/debian-security")


def test_sid_sources_have_no_pockets(tweak: TweakFactory) -> None:
    t = tweak("--suite", "sid")
    assert _stanzas(t) == [
        {"Types": "deb", "URIs": MIRROR, "Suites": "sid", "Components": "main", "Signed-By": KEYRING}
    ]


def test_ssh_host_keys_are_removed_and_made_at_boot(tweak: TweakFactory) -> None:
    """Debian's ssh.service runs `sshd -t`, which fails without keys; trixie's own sshd-keygen.service
    only runs on a first boot (ConditionFirstBoot), which an empty machine-id is not."""
    t = tweak("--suite", "trixie")
    assert not t.exists("/etc/ssh/ssh_host_ed25519_key")
    assert t.exists("/etc/systemd/system/vmbuilder-ssh-hostkeys.service")
    wants = t.link("/etc/systemd/system/multi-user.target.wants/vmbuilder-ssh-hostkeys.service")
    assert wants == "/etc/systemd/system/vmbuilder-ssh-hostkeys.service"


def test_resolv_conf_is_the_resolved_stub(tweak: TweakFactory) -> None:
    assert tweak("--suite", "bookworm").link("/etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"


def test_every_debian_tweak_explains_itself_and_its_templates_exist(plugins: Plugins) -> None:
    table = plugins["debian"].tweaks  # type: ignore[attr-defined]
    templates = Templates()
    assert len({t.name for t in table}) == len(table)
    for t in table:
        assert len(t.why) > 30 and t.actions, t.name
        for action in t.actions:
            if isinstance(action, File | DropIn):
                assert templates.origin(action.template).is_file(), action


def test_tweaks_doc_names_the_distro() -> None:
    text = tweaks_markdown("debian")
    assert text.startswith("# Container tweaks of the `debian` plugin")
    assert "network-networkd" in text and "netplan" not in text
