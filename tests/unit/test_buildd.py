"""The buildd profile (--variant buildd): its packages, its tweaks on a (fake) rootfs, the cache
key, and what the lxc and libvirt plugins do with a chroot that does not boot."""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import CSV, ROOT, TEMPLATES_DIR, ContextFactory, RootView
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.source import archive as archive_source
from vmbuilder_lxc.source.archive import ArchiveSource
from vmbuilder_lxc.suites import DISTRO_INFO_DIR
from vmbuilder_lxc.tweakguest import Guest
from vmbuilder_lxc.tweaks import apply

ubuntu: Any = importlib.import_module("vmbuilder_lxc.plugins.ubuntu")
debian: Any = importlib.import_module("vmbuilder_lxc.plugins.debian")
CONTAINER_ONLY = {"systemd-sysv", "libpam-systemd", "dbus", "openssh-server", "sudo", "netplan.io", "locales",
                  "systemd-resolved", "iproute2"}  # fmt: skip


def configured(fs: FakeFilesystem, make_ctx: ContextFactory, *argv: str) -> Context:
    if not (DISTRO_INFO_DIR / "ubuntu.csv").exists():
        fs.create_file(DISTRO_INFO_DIR / "ubuntu.csv", contents=CSV)
    ctx = make_ctx("--arch", "amd64", "--mirror", "http://archive.mirror.test/ubuntu", "-d", "/srv/ct/b1", *argv)
    ctx.workdir = ROOT.parent
    for plugin in ctx.plugins:
        plugin.set_defaults()
    return ctx


def distro_of(ctx: Context) -> DebianFamily:
    assert isinstance(ctx.distro, DebianFamily)
    return ctx.distro


# -- packages and the cache ---------------------------------------------------------------------------


def archive(distro: DebianFamily) -> ArchiveSource:
    """The distro's source, a bootstrap from the archive (set_defaults chose it)."""
    assert isinstance(distro.source, ArchiveSource)
    return distro.source


@pytest.mark.parametrize("suite", ["xenial", "noble", "resolute"])
def test_buildd_packages_are_a_build_environment_not_a_container(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, suite: str
) -> None:
    distro = distro_of(configured(fake_fs, make_ctx, "--suite", suite, "--variant", "buildd"))
    packages = set(distro.base_packages())
    assert packages == {"apt", "build-essential", "fakeroot", "ubuntu-keyring", "ca-certificates"}
    req = archive(distro).bootstrap_request()
    assert req.variant == "buildd" and set(req.include) == packages


def test_debian_buildd_packages_name_debians_keyring() -> None:
    (row,) = debian.BUILDD_PACKAGES
    assert set(row[2]) == {"apt", "build-essential", "fakeroot", "debian-archive-keyring", "ca-certificates"}
    assert not set(row[2]) & CONTAINER_ONLY
    assert debian.Debian.buildd_tweaks is ubuntu.Ubuntu.buildd_tweaks  # one table, shared


def test_container_packages_are_unchanged(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    distro = distro_of(configured(fake_fs, make_ctx, "--suite", "noble"))
    assert {"openssh-server", "systemd-sysv", "netplan.io"} <= set(distro.base_packages())
    assert distro.profile() == "container"


def test_the_profile_gives_its_own_cache_key(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    fake_fs.create_file("/usr/share/keyrings/ubuntu-archive-keyring.gpg", contents="keys")
    manifests = {}
    for variant in ("minbase", "buildd"):
        distro = distro_of(configured(fake_fs, make_ctx, "--suite", "noble", "--variant", variant))
        manifests[variant] = archive(distro).cache_manifest(archive(distro).bootstrap_request(), "mmdebstrap")
    assert manifests["minbase"]["variant"] == "minbase" and manifests["buildd"]["variant"] == "buildd"
    assert manifests["minbase"]["packages"] != manifests["buildd"]["packages"]


def test_hook_env_and_summary_name_the_profile(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "--suite", "noble", "--variant", "buildd")
    assert ctx.hook_env["PROFILE"] == "buildd" and ctx.summary["profile"] == "buildd"
    assert configured(fake_fs, make_ctx, "--suite", "noble").hook_env["PROFILE"] == "container"


def test_settings_a_chroot_cannot_use_are_named(
    fake_fs: FakeFilesystem,
    make_ctx: ContextFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archive_source, "require_keyring", lambda path, name: [])
    monkeypatch.setattr(archive_source, "choose_backend", lambda requested, req: "mmdebstrap")
    ctx = configured(fake_fs, make_ctx, "--suite", "noble", "--variant", "buildd", "--user", "ops", "--rootpass", "x")
    distro_of(ctx).preflight_check()
    err = capsys.readouterr().err
    assert "warning: --variant buildd ignores --user, --rootpass: a buildd chroot has only a locked root" in err
    assert "has no password and no SSH key" not in err


# -- the buildd tweaks on a fake rootfs -------------------------------------------------------------------


class Chroot(RootView):
    pass


def tweaked(fs: FakeFilesystem, make_ctx: ContextFactory, *argv: str) -> tuple[Context, list[str]]:
    fs.create_file(ROOT / "var/lib/dpkg/status", contents="Package: base-files\nStatus: install ok installed\n\n")
    fs.create_file(ROOT / "var/lib/dpkg/info/base-files.list", contents="/.\n/etc\n/etc/os-release\n")
    fs.create_file(ROOT / "etc/hostname", contents="buildhost\n")
    fs.create_file(ROOT / "etc/resolv.conf", contents="nameserver 192.168.1.1\n")
    fs.create_file(ROOT / "var/lib/systemd/random-seed", contents="seed")
    ctx = configured(fs, make_ctx, *argv)
    distro = distro_of(ctx)
    guest = Guest(ctx.rootfs, ctx.render, distro.guest_vars(), ctx.hook_env)
    chosen = distro.select_tweaks(guest)
    apply(chosen, guest)
    return ctx, [t.name for t in chosen]


def test_buildd_tweaks_on_noble(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    _, chosen = tweaked(fake_fs, make_ctx, "--suite", "noble", "--variant", "buildd")
    assert chosen == ["policy-rc-d", "dpkg-unsafe-io", "apt-buildd", "apt-sources-deb822", "no-host-identity",
                      "instance-secrets"]  # fmt: skip
    root = Chroot()
    policy = ROOT / "usr/sbin/policy-rc.d"
    assert root.lines("/usr/sbin/policy-rc.d") == ["exit 101"]
    assert stat.S_IMODE(policy.stat().st_mode) == 0o755
    assert root.lines("/etc/dpkg/dpkg.cfg.d/vmbuilder-buildd") == ["force-unsafe-io"]
    apt_conf = [ln for ln in root.lines("/etc/apt/apt.conf.d/99vmbuilder-buildd") if not ln.startswith("//")]
    assert apt_conf == ['APT::Install-Recommends "false";', 'Dpkg::Use-Pty "false";']
    assert root.read("/etc/resolv.conf") == ""
    assert not root.exists("/etc/hostname")
    assert root.lines("/etc/hosts")[0] == "127.0.0.1\tlocalhost"
    assert not root.exists("/var/lib/systemd/random-seed")
    # no container tweaks: nothing that only a booted guest needs
    for path in ("/etc/fstab", "/etc/machine-id", "/etc/netplan/10-lxc.yaml", "/etc/systemd/system"):
        assert not root.exists(path), path


def test_buildd_sources_are_the_containers(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """The same tweak and template write the sources in both profiles."""
    sources = "/etc/apt/sources.list.d/ubuntu.sources"
    tweaked(fake_fs, make_ctx, "--suite", "noble", "--variant", "buildd")
    buildd = Chroot().read(sources)
    os.unlink(ROOT / sources.lstrip("/"))
    ctx = configured(fake_fs, make_ctx, "--suite", "noble")
    distro = distro_of(ctx)
    guest = Guest(ctx.rootfs, ctx.render, distro.guest_vars(), ctx.hook_env)
    apply([t for t in distro.tweak_table() if t.name == "apt-sources-deb822"], guest)
    assert Chroot().read(sources) == buildd
    assert "Suites: noble noble-updates" in buildd
    assert "Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg" in buildd


def test_older_releases_get_one_line_sources(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    _, chosen = tweaked(fake_fs, make_ctx, "--suite", "jammy", "--variant", "buildd")
    assert "apt-sources-one-line" in chosen and "apt-sources-deb822" not in chosen
    assert "deb http://archive.mirror.test/ubuntu jammy main restricted universe" in Chroot().lines(
        "/etc/apt/sources.list"
    )


# -- the hypervisor side -------------------------------------------------------------------------------------


def test_lxc_writes_no_config_for_a_buildd_chroot(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "--suite", "noble", "--variant", "buildd", "--bridge", "nosuchbr0")
    fake_fs.create_dir(ROOT)
    ctx.hypervisor.preflight_check()  # no bridge or network checks for a chroot
    ctx.hypervisor.finalize()
    assert not (ROOT.parent / "config").exists()
    assert ctx.summary["lxc"]["config"] is None
    steps = "\n".join(ctx.hypervisor.next_steps())
    assert "Buildd chroot b1" in steps and "lxc-start" not in steps


def test_libvirt_refuses_a_buildd_chroot(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "--suite", "noble", "--variant", "buildd", "--libvirt", "lxc:///")
    libvirt = next(p for p in ctx.plugins if p.name == "libvirt")
    with pytest.raises(UserError, match="--libvirt cannot register a buildd chroot") as exc:
        libvirt.preflight_check()
    assert "--variant minbase" in str(exc.value)


def test_the_buildd_tweak_templates_exist() -> None:
    names = {a.template for t in ubuntu.Ubuntu.buildd_tweaks for a in t.actions if hasattr(a, "template")}
    assert all((TEMPLATES_DIR / name).is_file() for name in names), names
    assert Path(TEMPLATES_DIR / "buildd/resolv.conf.j2").read_text().startswith("{#")
