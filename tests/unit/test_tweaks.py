"""Container tweaks: which ones each Ubuntu release gets, and what they do to a (fake) rootfs.

The variables come from the real DebianFamily.guest_vars() of a context configured like
`vmbuilder lxc ubuntu --suite SUITE ...`, and the files are rendered with the packaged Jinja2
templates, so a template or tweak-table change that breaks a guest shows up here.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import CSV, ROOT, ContextFactory, RootView
from vmbuilder_lxc import tweakactions
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.data import hooks_dir
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.render import Templates
from vmbuilder_lxc.suites import DISTRO_INFO_DIR, Release
from vmbuilder_lxc.tweakactions import DropIn, Enable, File, Hook, Mask, Remove, Symlink, Truncate, _env_value
from vmbuilder_lxc.tweakguest import Guest, OwnedFileError
from vmbuilder_lxc.tweaks import ReleaseTraits, Tweak, When, apply, apply_action, select

MIRROR = "http://archive.mirror.test/ubuntu"
KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
TWEAKS: tuple[Tweak, ...] = importlib.import_module("vmbuilder_lxc.plugins.ubuntu_tweaks").TWEAKS
SSH_KEYS = [f"/etc/ssh/ssh_host_{t}_key{ext}" for t in ("rsa", "ecdsa", "ed25519") for ext in ("", ".pub")]

DPKG_STATUS = """\
Package: openssh-server
Status: install ok installed
Priority: optional
Version: 1:9.6p1-3ubuntu13
Description: secure shell (SSH) server
 multi-line description: Status: deinstall ok config-files

Package: base-files
Status: install ok installed
Version: 13ubuntu10

Package: ifupdown
Status: deinstall ok config-files
Version: 0.8.41ubuntu1
"""


def make_rootfs(fs: FakeFilesystem, *, sshd: bool = True) -> None:
    """What a bootstrapped base looks like, as far as the tweaks care."""
    status = DPKG_STATUS if sshd else DPKG_STATUS.replace("openssh-server", "openssh-client")
    fs.create_file(ROOT / "var/lib/dpkg/status", contents=status)
    fs.create_file(
        ROOT / "var/lib/dpkg/info/base-files.list", contents="/.\n/etc\n/etc/os-release\n/usr/lib/os-release\n"
    )
    fs.create_file(
        ROOT / "var/lib/dpkg/info/openssh-server.list",
        contents="/.\n/etc/ssh\n/etc/ssh/sshd_config.d\n/usr/sbin/sshd\n/usr/lib/systemd/system/ssh.service\n",
    )
    fs.create_file(ROOT / "etc/ssh/sshd_config", contents="Include /etc/ssh/sshd_config.d/*.conf\n")
    for key in SSH_KEYS:
        fs.create_file(ROOT / key.lstrip("/"), contents="secret key material")
    fs.create_file(ROOT / "var/lib/systemd/random-seed", contents="seed")
    fs.create_file(ROOT / "var/lib/systemd/credential.secret", contents="secret")
    fs.create_file(ROOT / "etc/machine-id", contents="0123456789abcdef0123456789abcdef\n")
    fs.create_file(ROOT / "var/lib/dbus/machine-id", contents="0123456789abcdef0123456789abcdef\n")
    fs.create_file(
        ROOT / "etc/fstab",
        contents="proc /proc proc defaults 0 0\nsysfs /sys sysfs defaults 0 0\n/swapfile none swap sw 0 0\n",
    )
    fs.create_file(ROOT / "etc/hostname", contents="buildhost\n")
    fs.create_file(ROOT / "etc/resolv.conf", contents="nameserver 192.168.1.1  # the build host's\n")
    fs.create_symlink(ROOT / "etc/localtime", "/usr/share/zoneinfo/Etc/UTC")


@dataclass
class HookCall:
    name: str
    root: Path
    env: dict[str, str]


@dataclass
class Tweaked(RootView):
    ctx: Context
    distro: DebianFamily
    guest: Guest
    chosen: list[str]
    record: list[dict[str, Any]]
    hooks: list[HookCall]


TweakFactory = Callable[..., Tweaked]


@pytest.fixture
def tweak(fake_fs: FakeFilesystem, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch) -> TweakFactory:
    """Configure a build from argv, then select and apply the ubuntu tweaks to the fake rootfs.

    Packaged shell hooks (Hook actions) run processes, which cannot see a fake file system: they
    are recorded here, and test_shellhooks.py runs the real scripts on a real directory.
    """
    fake_fs.create_file(DISTRO_INFO_DIR / "ubuntu.csv", contents=CSV)
    hooks: list[HookCall] = []

    def fake_run_builtin(name: str, rootfs: Path, hook_env: dict[str, str], input: str | None = None) -> None:
        hooks.append(HookCall(name, rootfs, dict(hook_env)))

    monkeypatch.setattr(tweakactions, "run_builtin", fake_run_builtin)

    def run(*argv: str, sshd: bool = True, rootfs: bool = True, do_apply: bool = True) -> Tweaked:
        if rootfs:
            make_rootfs(fake_fs, sshd=sshd)
        ctx = make_ctx("--arch", "amd64", "--mirror", MIRROR, "--hostname", "web1", *argv)
        ctx.workdir = ROOT.parent
        for plugin in ctx.plugins:
            plugin.set_defaults()
        distro = ctx.distro
        assert isinstance(distro, DebianFamily)
        # What DebianFamily.configure_os() does before it needs a chroot.
        guest = Guest(ctx.rootfs, ctx.render, distro.guest_vars(), ctx.hook_env)
        chosen = distro.select_tweaks(guest)
        already = len(hooks)
        record = apply(chosen, guest) if do_apply else []
        return Tweaked(ctx, distro, guest, [t.name for t in chosen], record, hooks[already:])

    return run


# -- selection by release ------------------------------------------------------------------------


ALWAYS = {"fstab", "hostname", "machine-id", "instance-secrets", "timezone", "ssh-host-keys"}


@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        ("xenial", {"locale", "network-ifupdown", "resolv-conf-static", "apt-sources-one-line"}),
        ("bionic", {"locale", "network-netplan", "resolv-conf-resolved", "apt-sources-one-line"}),
        ("focal", {"locale", "network-netplan", "resolv-conf-resolved", "apt-sources-one-line"}),
        ("jammy", {"locale", "network-netplan", "resolv-conf-resolved", "apt-sources-one-line"}),
        ("noble", {"locale-conf", "network-netplan", "resolv-conf-resolved", "apt-sources-deb822"}),
        ("oracular", {"locale-conf", "network-netplan", "resolv-conf-resolved", "apt-sources-deb822"}),
        (
            "plucky",
            {"locale-conf", "network-netplan", "netplan-configure-udev", "resolv-conf-resolved", "apt-sources-deb822"},
        ),
        (
            "questing",
            {"locale-conf", "network-netplan", "netplan-configure-udev", "resolv-conf-resolved", "apt-sources-deb822"},
        ),
        (
            "resolute",
            {
                "locale-conf",
                "network-netplan",
                "netplan-configure-udev",
                "resolv-conf-resolved",
                "apt-sources-deb822",
                "initctl-listener",  # systemd 259: no systemd-initctl
            },
        ),
    ],
)
def test_tweaks_selected_per_release(tweak: TweakFactory, suite: str, expected: set[str]) -> None:
    chosen = tweak("--suite", suite, do_apply=False).chosen
    assert set(chosen) == ALWAYS | expected
    assert len(chosen) == len(set(chosen))


def test_tweaks_keep_the_table_order(tweak: TweakFactory) -> None:
    """Order matters: ssh keys are removed before the unit is written, files before symlinks."""
    chosen = tweak("--suite", "noble", do_apply=False).chosen
    assert chosen == [t.name for t in TWEAKS if t.name in chosen]


def test_ssh_tweak_needs_openssh_server(tweak: TweakFactory) -> None:
    """Without sshd there is nothing to start, and an ssh.service drop-in would be dangling."""
    t = tweak("--suite", "noble", sshd=False)
    assert "ssh-host-keys" not in t.chosen
    assert not t.exists("/etc/systemd/system/vmbuilder-ssh-hostkeys.service")


def test_installed_packages_are_read_from_dpkg_status(tweak: TweakFactory) -> None:
    guest = tweak("--suite", "noble", do_apply=False).guest
    assert guest.is_installed("openssh-server")
    assert guest.is_installed("base-files")
    assert not guest.is_installed("ifupdown")  # removed, only its config files are left
    assert not guest.is_installed("vim")


def test_guest_without_dpkg_status_has_nothing_installed(fs: FakeFilesystem) -> None:
    fs.create_dir(ROOT)
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    assert not guest.is_installed("openssh-server")
    assert guest.owned_files() == set()


@pytest.mark.parametrize(
    ("when", "version", "matches"),
    [
        (When(since="25.04"), "24.10", False),
        (When(since="25.04"), "25.04", True),
        (When(until="22.04"), "22.04", True),
        (When(until="22.04"), "22.04.5", True),
        (When(until="22.04"), "22.10", False),
        (When(until="22"), "22.10", True),
        (When(since="16.04", until="17.04"), "16.10", True),
    ],
)
def test_when_version_ranges(fs: FakeFilesystem, when: When, version: str, matches: bool) -> None:
    release = Release("ubuntu", "x", version, "X", None, None, None)
    assert when.matches(release, ReleaseTraits(), Guest(Path("/"), lambda n, v: "", {}, {})) is matches


def test_release_traits(tweak: TweakFactory) -> None:
    distro = tweak("--suite", "xenial", do_apply=False).distro
    assert distro.traits == ReleaseTraits(
        init="systemd", network="ifupdown", sources="one-line", resolved=False, systemd_version=229, initctl=True
    )
    distro = tweak("--suite", "noble", do_apply=False, rootfs=False).distro
    assert distro.traits == ReleaseTraits(
        init="systemd", network="netplan", sources="deb822", resolved=True, systemd_version=255, initctl=True
    )


def test_set_defaults_records_the_release_in_hook_env_and_summary(tweak: TweakFactory) -> None:
    ctx = tweak("--suite", "24.04", do_apply=False).ctx
    assert ctx.hook_env["SUITE"] == "noble"
    assert ctx.hook_env["RELEASE"] == "Ubuntu 24.04 (noble)"
    assert ctx.hook_env["ARCH"] == "amd64"
    assert ctx.hook_env["HOSTNAME"] == "web1"
    assert ctx.hook_env["NETWORK"] == "bridge:lxcbr0"
    assert ctx.summary["release"]["network"] == "netplan"


# -- applying to a rootfs -------------------------------------------------------------------------------


def test_fstab_has_no_proc_sysfs_or_swap(tweak: TweakFactory) -> None:
    """A proc or sysfs line would hide lxcfs' views; swap and block devices do not exist."""
    t = tweak("--suite", "noble")
    assert t.lines("/etc/fstab") == []
    assert "lxcfs" in t.read("/etc/fstab")  # the file explains why it is empty


def test_hostname_and_hosts(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble")
    assert t.read("/etc/hostname") == "web1\n"
    assert "127.0.1.1\tweb1" in t.lines("/etc/hosts")
    assert "127.0.0.1\tlocalhost" in t.lines("/etc/hosts")
    assert "buildhost" not in t.read("/etc/hosts")


def test_hosts_with_a_domain(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble", "--domain", "example.com")
    assert "127.0.1.1\tweb1.example.com web1" in t.lines("/etc/hosts")


def test_machine_id_is_empty_but_present(tweak: TweakFactory) -> None:
    """Empty: systemd writes a new id at first boot. Absent would make /etc read-only boots fail."""
    t = tweak("--suite", "noble")
    machine_id = ROOT / "etc/machine-id"
    assert machine_id.is_file() and not machine_id.is_symlink()
    assert machine_id.stat().st_size == 0
    assert stat.S_IMODE(machine_id.stat().st_mode) == 0o444
    assert not t.exists("/var/lib/dbus/machine-id")


def test_instance_secrets_are_removed(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble")
    assert not t.exists("/var/lib/systemd/random-seed")
    assert not t.exists("/var/lib/systemd/credential.secret")


def test_ssh_host_keys_are_removed_and_regenerated_at_boot(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble")
    for key in SSH_KEYS:
        assert not t.exists(key), key
    assert t.exists("/etc/ssh/sshd_config")  # only the keys go
    unit = t.read("/etc/systemd/system/vmbuilder-ssh-hostkeys.service")
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit
    assert "Before=ssh.service" in unit
    assert "WantedBy=multi-user.target" in unit
    wants = "/etc/systemd/system/multi-user.target.wants/vmbuilder-ssh-hostkeys.service"
    assert t.link(wants) == "/etc/systemd/system/vmbuilder-ssh-hostkeys.service"
    dropin = t.lines("/etc/systemd/system/ssh.service.d/10-vmbuilder-hostkeys.conf")
    assert dropin == ["[Unit]", "Wants=vmbuilder-ssh-hostkeys.service", "After=vmbuilder-ssh-hostkeys.service"]
    record = next(r for r in t.record if r["name"] == "ssh-host-keys")
    assert sorted(record["paths"][: len(SSH_KEYS)]) == sorted(SSH_KEYS)


def test_netplan_dhcp(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble")
    path = ROOT / "etc/netplan/10-lxc.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # netplan warns about world-readable files
    text = t.read("/etc/netplan/10-lxc.yaml")
    assert "optional: true" in text
    assert "dhcp4: true" in text
    assert "addresses" not in text
    import yaml  # PyYAML is a test dependency: the YAML must parse, not only contain the right words

    eth0 = yaml.safe_load(text)["network"]["ethernets"]["eth0"]
    assert eth0 == {"optional": True, "dhcp4": True, "dhcp-identifier": "mac"}


def test_netplan_static(tweak: TweakFactory) -> None:
    t = tweak(
        "--suite", "noble", "--ip", "10.0.3.10", "--mask", "255.255.255.0", "--gw", "10.0.3.1",
        "--dns", "10.0.3.1", "--dns", "1.1.1.1", "--domain", "example.com",
    )  # fmt: skip
    text = t.read("/etc/netplan/10-lxc.yaml")
    assert 'addresses: ["10.0.3.10/24"]' in text  # every value a quoted YAML scalar (formats.yaml)
    assert 'via: "10.0.3.1"' in text
    assert 'addresses: ["10.0.3.1", "1.1.1.1"]' in text
    assert 'search: ["example.com"]' in text
    assert "dhcp4" not in text
    import yaml  # PyYAML is a test dependency: the YAML must parse, not only contain the right words

    eth0 = yaml.safe_load(text)["network"]["ethernets"]["eth0"]
    assert eth0 == {
        "optional": True,
        "addresses": ["10.0.3.10/24"],
        "routes": [{"to": "0.0.0.0/0", "via": "10.0.3.1"}],
        "nameservers": {"addresses": ["10.0.3.1", "1.1.1.1"], "search": ["example.com"]},
    }


def test_netplan_static_without_gateway_or_dns(tweak: TweakFactory) -> None:
    text = tweak("--suite", "jammy", "--ip", "10.0.3.10", "--mask", "/16").read("/etc/netplan/10-lxc.yaml")
    assert 'addresses: ["10.0.3.10/16"]' in text
    assert "routes" not in text and "nameservers" not in text


def test_netplan_configure_dropin_from_25_04(tweak: TweakFactory) -> None:
    t = tweak("--suite", "plucky")
    text = t.read("/etc/systemd/system/netplan-configure.service.d/10-vmbuilder-container.conf")
    assert "ExecStartPost=-udevadm control --reload" in text
    assert "ExecStartPost=\n" in text  # resets the packaged ExecStartPost first


def test_no_netplan_configure_dropin_before_25_04(tweak: TweakFactory) -> None:
    t = tweak("--suite", "oracular")
    assert not t.exists("/etc/systemd/system/netplan-configure.service.d")


def test_ifupdown_on_xenial(tweak: TweakFactory) -> None:
    t = tweak("--suite", "xenial")
    lines = t.lines("/etc/network/interfaces")
    assert "auto eth0" in lines
    assert any("dhclient -4 -nw" in ln for ln in lines)  # never blocks boot waiting for a lease
    assert not t.exists("/etc/netplan/10-lxc.yaml")


def test_ifupdown_static_on_xenial(tweak: TweakFactory) -> None:
    t = tweak("--suite", "xenial", "--ip", "10.0.3.10", "--mask", "24", "--gw", "10.0.3.1", "--dns", "10.0.3.1")
    lines = [ln.strip() for ln in t.lines("/etc/network/interfaces")]
    assert lines[-4:] == ["iface eth0 inet static", "address 10.0.3.10", "netmask 255.255.255.0", "gateway 10.0.3.1"]


def test_ifupdown_without_a_nic(tweak: TweakFactory) -> None:
    """--network none: only lo, or ifup would wait for an eth0 that never appears."""
    t = tweak("--suite", "xenial", "--network", "none")
    assert t.lines("/etc/network/interfaces") == ["auto lo", "iface lo inet loopback"]


def test_resolv_conf_is_resolved_stub_from_bionic(tweak: TweakFactory) -> None:
    t = tweak("--suite", "bionic")
    assert (ROOT / "etc/resolv.conf").is_symlink()
    assert t.link("/etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"


def test_resolv_conf_is_a_static_file_on_xenial(tweak: TweakFactory) -> None:
    """The build host's resolvers must never end up in the guest."""
    t = tweak("--suite", "xenial", "--ip", "10.0.3.10", "--dns", "10.0.3.1", "--dns", "9.9.9.9", "--domain", "lan")
    assert not (ROOT / "etc/resolv.conf").is_symlink()
    assert t.lines("/etc/resolv.conf") == ["nameserver 10.0.3.1", "nameserver 9.9.9.9", "search lan"]
    t = tweak("--suite", "xenial", rootfs=False)
    assert t.lines("/etc/resolv.conf") == []
    assert "DHCP" in t.read("/etc/resolv.conf")


def test_deb822_sources_from_noble(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble", "--security-mirror", "http://security.mirror.test/ubuntu")
    stanzas = [s for s in t.read("/etc/apt/sources.list.d/ubuntu.sources").split("\n\n") if "Types:" in s]
    fields = [
        dict(ln.split(": ", 1) for ln in s.splitlines() if ": " in ln and not ln.startswith("#")) for s in stanzas
    ]
    assert fields == [
        {"Types": "deb", "URIs": MIRROR, "Suites": "noble noble-updates",
         "Components": "main restricted universe", "Signed-By": KEYRING},
        {"Types": "deb", "URIs": "http://security.mirror.test/ubuntu", "Suites": "noble-security",
         "Components": "main restricted universe", "Signed-By": KEYRING},
    ]  # fmt: skip
    assert t.lines("/etc/apt/sources.list") == []  # only a pointer to ubuntu.sources


def test_one_line_sources_before_noble(tweak: TweakFactory) -> None:
    t = tweak("--suite", "jammy", "--components", "main,universe")
    assert t.lines("/etc/apt/sources.list") == [
        f"deb {MIRROR} jammy main universe",
        f"deb {MIRROR} jammy-updates main universe",
        f"deb {MIRROR} jammy-security main universe",
    ]
    assert not t.exists("/etc/apt/sources.list.d/ubuntu.sources")


def test_install_mirror_is_not_written_into_the_guest(tweak: TweakFactory) -> None:
    """--install-mirror is for the build only (e.g. apt-cacher-ng); the guest keeps --mirror."""
    t = tweak("--suite", "jammy", "--install-mirror", "http://cache.lan:3142/ubuntu")
    assert "cache.lan" not in t.read("/etc/apt/sources.list")


def test_timezone_is_set_by_the_timezone_hook(tweak: TweakFactory) -> None:
    """tzdata records the zone itself, so that its upgrades keep it (hooks/timezone.sh)."""
    t = tweak("--suite", "noble", "--timezone", "Europe/Berlin", "--dns", "10.0.3.1", "--dns", "1.1.1.1")
    [call] = [c for c in t.hooks if c.name == "timezone"]
    assert (call.name, call.root) == ("timezone", ROOT)
    assert call.env["VM_TIMEZONE"] == "Europe/Berlin"
    assert call.env["SUITE"] == "noble"  # the hook environment
    assert call.env["VM_DNS"] == "10.0.3.1 1.1.1.1"  # lists are space separated
    assert call.env["VM_DHCP"] == "1"
    record = next(r for r in t.record if r["name"] == "timezone")
    assert record["paths"] == ["/etc/localtime"]


def test_default_timezone_and_locale(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble")
    assert [call.env["VM_TIMEZONE"] for call in t.hooks if call.name == "timezone"] == ["UTC"]
    assert t.read("/etc/default/locale") == "LANG=C.UTF-8\n"


@pytest.mark.parametrize(("suite", "checked"), [("noble", True), ("bionic", True), ("xenial", False)])
def test_netplan_is_checked_by_netplan_itself(tweak: TweakFactory, suite: str, checked: bool) -> None:
    """netplan validates the file at build time, so a broken netplan file fails the build, not the boot."""
    assert ("netplan-check" in [c.name for c in tweak("--suite", suite).hooks]) is checked


def test_locale(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble", "--lang", "de_DE.UTF-8")
    assert t.read("/etc/default/locale") == "LANG=de_DE.UTF-8\n"


def test_applying_twice_gives_the_same_tree(tweak: TweakFactory) -> None:
    """A cached base is tweaked again on every build; the tweaks must be idempotent."""
    first = tweak("--suite", "noble")
    snapshot = {p: (p.is_symlink(), os.readlink(p) if p.is_symlink() else p.read_bytes())
                for p in ROOT.rglob("*") if p.is_file() or p.is_symlink()}  # fmt: skip
    apply(select(TWEAKS, first.distro.release, first.distro.traits, first.guest), first.guest)
    again = {p: (p.is_symlink(), os.readlink(p) if p.is_symlink() else p.read_bytes())
             for p in ROOT.rglob("*") if p.is_file() or p.is_symlink()}  # fmt: skip
    assert again == snapshot


def test_summary_record(tweak: TweakFactory) -> None:
    t = tweak("--suite", "noble")
    assert [r["name"] for r in t.record] == t.chosen
    assert all(r["why"] for r in t.record)
    hostname = next(r for r in t.record if r["name"] == "hostname")
    assert hostname["paths"] == ["/etc/hostname", "/etc/hosts"]


def test_every_tweak_explains_itself() -> None:
    assert len({t.name for t in TWEAKS}) == len(TWEAKS)
    for t in TWEAKS:
        assert len(t.why) > 30, t.name
        assert t.actions, t.name


def test_every_tweak_template_and_hook_exists() -> None:
    templates = Templates()
    for t in TWEAKS:
        for action in t.actions:
            if isinstance(action, File | DropIn):
                assert templates.origin(action.template).is_file(), action
            if isinstance(action, Hook):
                assert (hooks_dir() / f"{action.name}.sh").is_file(), action


# -- the upgrade-safety guard -------------------------------------------------------------------------------


def test_writing_a_packaged_file_is_refused(tweak: TweakFactory, fake_fs: FakeFilesystem) -> None:
    """A tweak that edits a packaged file would be undone by the next upgrade of that package."""
    make_rootfs(fake_fs)
    fake_fs.create_file(ROOT / "var/lib/dpkg/info/netbase.list", contents="/.\n/etc\n/etc/hosts\n/etc/protocols\n")
    with pytest.raises(OwnedFileError, match="refusing to write /etc/hosts: a package owns it"):
        tweak("--suite", "noble", rootfs=False)


def test_guard_covers_merged_usr_paths(fs: FakeFilesystem) -> None:
    """dpkg lists /usr/lib/...; on merged-/usr, /lib/... is the same file."""
    make_rootfs(fs)
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    with pytest.raises(OwnedFileError):
        guest.write("/lib/systemd/system/ssh.service", "[Unit]\n", 0o644)
    with pytest.raises(OwnedFileError):
        guest.symlink("/etc/os-release", "../usr/lib/os-release")
    guest.write("/etc/systemd/system/ssh.service.d/x.conf", "[Unit]\n", 0o644)  # a drop-in is fine
    assert (ROOT / "etc/systemd/system/ssh.service.d/x.conf").read_text() == "[Unit]\n"


def test_directories_in_dpkg_lists_do_not_block_files_below_them(fs: FakeFilesystem) -> None:
    """dpkg lists directories too (/etc/ssh/sshd_config.d): only the exact paths it lists are owned."""
    make_rootfs(fs)
    fs.create_file(ROOT / "var/lib/dpkg/info/openssh-client.list", contents="/.\n/etc/ssh\n/etc/ssh/ssh_config\n")
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    assert {"/etc/ssh", "/etc/ssh/sshd_config.d"} <= guest.owned_files()  # the directories are listed
    guest.write("/etc/ssh/sshd_config.d/50-site.conf", "PasswordAuthentication no\n", 0o600)
    written = ROOT / "etc/ssh/sshd_config.d/50-site.conf"
    assert written.read_text() == "PasswordAuthentication no\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    guest.symlink("/etc/ssh/sshd_config.d/60-link.conf", "50-site.conf")
    assert os.readlink(ROOT / "etc/ssh/sshd_config.d/60-link.conf") == "50-site.conf"
    # ...while a file listed in the same directory is still refused
    with pytest.raises(OwnedFileError):
        guest.write("/etc/ssh/ssh_config", "Host *\n", 0o644)


# -- the other action types -------------------------------------------------------------------------------


def test_mask_dropin_and_enable_actions(fs: FakeFilesystem) -> None:
    fs.create_dir(ROOT)
    guest = Guest(ROOT, lambda name, variables: f"rendered {name} for {variables['x']}\n", {"x": "y"}, {})
    assert apply_action(Mask(("systemd-udevd.service", "sys-kernel-debug.mount")), guest) == [
        "/etc/systemd/system/systemd-udevd.service",
        "/etc/systemd/system/sys-kernel-debug.mount",
    ]
    assert os.readlink(ROOT / "etc/systemd/system/systemd-udevd.service") == "/dev/null"
    assert apply_action(DropIn("a.service", "t.j2"), guest) == ["/etc/systemd/system/a.service.d/50-vmbuilder-lxc.conf"]
    assert (ROOT / "etc/systemd/system/a.service.d/50-vmbuilder-lxc.conf").read_text() == "rendered t.j2 for y\n"
    assert apply_action(Enable("b.service", "sockets.target"), guest) == [
        "/etc/systemd/system/sockets.target.wants/b.service"
    ]
    assert apply_action(File("/etc/f", "f.j2", 0o640), guest) == ["/etc/f"]
    assert stat.S_IMODE((ROOT / "etc/f").stat().st_mode) == 0o640


def test_enable_links_our_own_unit_in_etc(fs: FakeFilesystem) -> None:
    """A unit we wrote to /etc/systemd/system wins over a packaged one of the same name."""
    fs.create_file(ROOT / "etc/systemd/system/c.service", contents="[Unit]\n")
    fs.create_file(ROOT / "usr/lib/systemd/system/c.service", contents="[Unit]\n")
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    apply_action(Enable("c.service"), guest)
    assert os.readlink(ROOT / "etc/systemd/system/multi-user.target.wants/c.service") == "/etc/systemd/system/c.service"


@pytest.mark.parametrize("unit_dir", ["/usr/lib/systemd/system", "/lib/systemd/system"])
def test_enable_links_a_packaged_unit_where_its_package_ships_it(fs: FakeFilesystem, unit_dir: str) -> None:
    """As `systemctl enable` does: bookworm's systemd ships units in /lib, trixie's in /usr/lib.

    On merged /usr both paths exist; the one dpkg lists is the one systemctl would link to.
    """
    fs.create_file(ROOT / "usr/lib/systemd/system/systemd-networkd.service", contents="[Unit]\n")
    fs.create_file(ROOT / "usr/lib/systemd/system/systemd-networkd.socket", contents="[Socket]\n")
    fs.create_symlink(ROOT / "lib", "usr/lib")
    fs.create_file(
        ROOT / "var/lib/dpkg/info/systemd.list",
        contents=f"/.\n{unit_dir}\n{unit_dir}/systemd-networkd.service\n{unit_dir}/systemd-networkd.socket\n",
    )
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    enable = Enable("systemd-networkd.service", aliases=("dbus-org.freedesktop.network1.service",))
    assert apply_action(enable, guest) == [
        "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "/etc/systemd/system/dbus-org.freedesktop.network1.service",
    ]
    etc = ROOT / "etc/systemd/system"
    unit = f"{unit_dir}/systemd-networkd.service"
    assert os.readlink(etc / "multi-user.target.wants/systemd-networkd.service") == unit
    assert os.readlink(etc / "dbus-org.freedesktop.network1.service") == unit
    assert apply_action(Enable("systemd-networkd.socket", "sockets.target"), guest) == [
        "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
    ]
    assert os.readlink(etc / "sockets.target.wants/systemd-networkd.socket") == f"{unit_dir}/systemd-networkd.socket"


def test_enable_a_unit_no_package_lists_uses_the_file_that_exists(fs: FakeFilesystem) -> None:
    fs.create_file(ROOT / "lib/systemd/system/d.service", contents="[Unit]\n")
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    apply_action(Enable("d.service", "timers.target"), guest)
    assert os.readlink(ROOT / "etc/systemd/system/timers.target.wants/d.service") == "/lib/systemd/system/d.service"


def test_enable_is_idempotent_and_describes_aliases(fs: FakeFilesystem) -> None:
    fs.create_file(ROOT / "usr/lib/systemd/system/e.service", contents="[Unit]\n")
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    enable = Enable("e.service", aliases=("e-alias.service",))
    assert apply_action(enable, guest) == apply_action(enable, guest)
    assert os.readlink(ROOT / "etc/systemd/system/e-alias.service") == "/usr/lib/systemd/system/e.service"
    assert enable.describe() == "enable `e.service` in `multi-user.target`, alias `e-alias.service`"


def test_enable_refuses_to_replace_a_packaged_link(fs: FakeFilesystem) -> None:
    """An Alias= link that a package ships itself must not be rewritten (not upgrade-safe)."""
    fs.create_file(ROOT / "usr/lib/systemd/system/f.service", contents="[Unit]\n")
    fs.create_file(ROOT / "var/lib/dpkg/info/f.list", contents="/.\n/etc/systemd/system/f-alias.service\n")
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    with pytest.raises(OwnedFileError):
        apply_action(Enable("f.service", aliases=("f-alias.service",)), guest)


def test_file_replaces_a_symlink_instead_of_writing_through_it(fs: FakeFilesystem) -> None:
    """Writing through /etc/resolv.conf -> /run/... would escape into the build host's /run."""
    fs.create_file("/run/systemd/resolve/stub-resolv.conf", contents="host\n")
    fs.create_symlink(ROOT / "etc/resolv.conf", "/run/systemd/resolve/stub-resolv.conf")
    guest = Guest(ROOT, lambda n, v: "nameserver 10.0.3.1\n", {}, {})
    apply_action(File("/etc/resolv.conf", "x"), guest)
    assert not (ROOT / "etc/resolv.conf").is_symlink()
    assert Path("/run/systemd/resolve/stub-resolv.conf").read_text() == "host\n"


def test_truncate_replaces_a_symlink(fs: FakeFilesystem) -> None:
    fs.create_file("/host-machine-id", contents="host id\n")
    fs.create_symlink(ROOT / "etc/machine-id", "/host-machine-id")
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    apply_action(Truncate("/etc/machine-id"), guest)
    assert not (ROOT / "etc/machine-id").is_symlink()
    assert Path("/host-machine-id").read_text() == "host id\n"


def test_remove_globs_and_reports(fs: FakeFilesystem) -> None:
    fs.create_file(ROOT / "a/x1")
    fs.create_file(ROOT / "a/x2")
    fs.create_dir(ROOT / "a/x3")  # directories are left alone
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    assert sorted(apply_action(Remove(("/a/x*", "/missing/*")), guest)) == ["/a/x1", "/a/x2"]
    assert (ROOT / "a/x3").is_dir()


@pytest.mark.parametrize("parent", ["/srv/lab[2]", "/srv/[old]"])
def test_remove_works_whatever_the_build_directory_is_called(fs: FakeFilesystem, parent: str) -> None:
    """The build directory lives beside -d, whose parent the user names freely.

    If the glob silently matches nothing, every container from that build shares its SSH host keys.
    """
    root = Path(parent) / ".web1.abc.vmbuilder-partial/rootfs"
    for key in SSH_KEYS:
        fs.create_file(root / key.lstrip("/"), contents="secret")
    guest = Guest(root, lambda n, v: "", {}, {})
    assert sorted(apply_action(Remove(("/etc/ssh/ssh_host_*",)), guest)) == sorted(SSH_KEYS)
    assert list((root / "etc/ssh").iterdir()) == []


def test_symlink_target_uses_variables(fs: FakeFilesystem) -> None:
    fs.create_dir(ROOT)
    guest = Guest(ROOT, lambda n, v: "", {"timezone": "Asia/Tokyo"}, {})
    apply_action(Symlink("/etc/localtime", "/usr/share/zoneinfo/{timezone}"), guest)
    assert os.readlink(ROOT / "etc/localtime") == "/usr/share/zoneinfo/Asia/Tokyo"


def test_unknown_action_is_a_type_error(fs: FakeFilesystem) -> None:
    guest = Guest(ROOT, lambda n, v: "", {}, {})
    with pytest.raises(TypeError, match="unknown tweak action"):
        apply_action("rm -rf /", guest)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "1"), (False, ""), (["a", "b"], "a b"), (("x",), "x"), (None, ""), ({"a": 1}, ""), (24, "24")],
)
def test_hook_environment_values(value: object, expected: str) -> None:
    assert _env_value(value) == expected
