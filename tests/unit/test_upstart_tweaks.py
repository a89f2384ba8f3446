"""Upstart-era tweaks (lucid to utopic) on fixture trees built from the releases' real file lists.

These releases cannot be bootstrapped here (the archive no longer serves them), so each test lays
down the packages of tests/unit/fixtures/upstart/<release>/ (provenance in PROVENANCE.md), applies
the ubuntu plugin's tweak table for that release, checks the result, then lays every package down
again the way dpkg upgrades it (diversions and conffiles honoured, see upstart_fixture.py) and
checks that every tweak still holds.

The checks model what upstart and mountall do with the tree, independently of the tweak table:
- a job is enabled when /etc/init/JOB.conf exists and (upstart >= 1.3) no JOB.override says
  `manual`; a diverted job file has moved to a name upstart does not read;
- mountall merges its built-in table with /etc/fstab, an /etc/fstab entry replacing the built-in
  entry for the same mount point, and drops noauto entries that are not mounted yet
  (zfsonlinux/mountall src/mountall.c: parse_fstab() -> update_mount(), mount_policy());
- which getty jobs start under lxc-start and under libvirt-lxc, from their start conditions (see
  the comment above test_exactly_one_getty_serves_the_console_under_each_manager).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit import upstart_fixture as fixture
from tests.unit.conftest import CSV, ROOT, ContextFactory
from vmbuilder_lxc import tweakactions
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.suites import DISTRO_INFO_DIR
from vmbuilder_lxc.tweakguest import Guest
from vmbuilder_lxc.tweaks import apply

# Jobs that cannot run in a container, by name pattern: udev and its bridge, readahead, the boot
# splash, the hardware clock, module loading, and VT ttys beyond the four lxc-start provides.
UNSAFE_JOB = re.compile(
    r"^(udev.*|upstart-udev-bridge|ureadahead.*|plymouth.*|hwclock.*|module-init-tools|kmod|tty[5-9])$"
)

# mountall's built-in table (/lib/init/fstab), the union over lucid..utopic (mountall src/fstab).
BUILTIN_FSTAB = """\
none /proc proc nodev,noexec,nosuid 0 0
none /proc/sys/fs/binfmt_misc binfmt_misc nodev,noexec,nosuid,optional 0 0
none /sys sysfs nodev,noexec,nosuid 0 0
none /sys/fs/cgroup tmpfs optional,uid=0,gid=0,mode=0755,size=1024 0 0
none /sys/fs/fuse/connections fusectl optional 0 0
none /sys/kernel/debug debugfs optional 0 0
none /sys/kernel/security securityfs optional 0 0
none /sys/firmware/efi/efivars efivarfs optional 0 0
none /sys/fs/pstore pstore optional 0 0
none /spu spufs gid=spu,optional 0 0
none /dev devtmpfs,tmpfs mode=0755 0 0
none /dev/pts devpts noexec,nosuid,gid=tty,mode=0620 0 0
none /dev/shm tmpfs nosuid,nodev 0 0
none /run tmpfs nosuid,size=10%,mode=0755 0 0
none /run/lock tmpfs nodev,noexec,nosuid,size=5242880 0 0
none /run/shm tmpfs nosuid,nodev 0 0
none /run/user tmpfs nodev,noexec,nosuid,size=104857600,mode=0755 0 0
none /var/run tmpfs mode=0755,nosuid,showthrough 0 0
none /var/lock tmpfs nodev,noexec,nosuid,showthrough 0 0
none /lib/init/rw tmpfs mode=0755,nosuid 0 0
"""

PRE_PRECISE = ("lucid", "maverick", "natty", "oneiric")


@dataclass
class Tree:
    release: str
    chosen: list[str]
    builtin_fstab: str

    def path(self, guest_path: str) -> Path:
        return ROOT / guest_path.lstrip("/")

    def read(self, guest_path: str) -> str:
        return self.path(guest_path).read_text()

    def jobs(self) -> set[str]:
        return {p.name[: -len(".conf")] for p in self.path("/etc/init").glob("*.conf")}

    def enabled(self, job: str, overrides: bool) -> bool:
        if not self.path(f"/etc/init/{job}.conf").exists():
            return False
        override = self.path(f"/etc/init/{job}.override")
        if overrides and override.exists():
            return "manual" not in override.read_text().split()
        return True

    def packaged_jobs(self) -> set[str]:
        """Every job some fixture package ships (whether or not it is still in place)."""
        jobs = set()
        for package in fixture.packages(self.release):
            for path in fixture.package_files(self.release, package):
                m = re.fullmatch(r"/etc/init/(.+)\.conf", path)
                if m:
                    jobs.add(m.group(1))
        return jobs


def fake_divert(root: Path, path: str, to: str) -> None:
    """What `dpkg-divert --root=ROOT --local --rename --divert TO --add PATH` does."""
    db = root / "var/lib/dpkg/diversions"
    db.write_text(db.read_text() + f"{path}\n{to}\n:\n")
    source = root / path.lstrip("/")
    if source.exists():
        source.rename(root / to.lstrip("/"))


@pytest.fixture
def upstart_tree(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Tree]]:
    fake_fs.add_real_directory(str(fixture.FIXTURE_DIR))
    fake_fs.create_file(DISTRO_INFO_DIR / "ubuntu.csv", contents=CSV)
    monkeypatch.setattr("vmbuilder_lxc.tweakguest.divert", fake_divert)
    monkeypatch.setattr(tweakactions, "run_builtin", lambda *args, **kwargs: None)

    def build(release: str, *argv: str) -> Tree:
        fixture.build_tree(ROOT, release)
        (ROOT / "lib/init/fstab").write_text(BUILTIN_FSTAB)
        (ROOT / "etc/ssh").mkdir(parents=True, exist_ok=True)
        for key in ("rsa", "dsa", "ecdsa"):
            (ROOT / f"etc/ssh/ssh_host_{key}_key").write_text("secret key material")
        ctx = make_ctx("--suite", release, "--arch", "amd64", "--mirror", "http://mirror.test/ubuntu",
                       "--hostname", "web1", *argv)  # fmt: skip
        ctx.workdir = ROOT.parent
        for plugin in ctx.plugins:
            plugin.set_defaults()
        distro = ctx.distro
        assert isinstance(distro, DebianFamily)
        guest = Guest(ROOT, lambda name, variables: ctx.render(name, variables), distro.guest_vars(), ctx.hook_env)
        chosen = distro.select_tweaks(guest)
        apply(chosen, guest)
        return Tree(release, [t.name for t in chosen], BUILTIN_FSTAB)

    yield build


def effective_mount_table(tree: Tree) -> dict[str, tuple[str, set[str]]]:
    """mountall's view: built-in entries, replaced by /etc/fstab entries for the same mount point."""
    table: dict[str, tuple[str, set[str]]] = {}
    for text in (tree.read("/lib/init/fstab"), tree.read("/etc/fstab")):
        for line in text.splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            table[fields[1]] = (fields[2], set(fields[3].split(",")))
    return table


def overrides_supported(release: str) -> bool:
    return release not in ("lucid", "maverick", "natty")


def check_container_safe(tree: Tree) -> None:
    overrides = overrides_supported(tree.release)
    unsafe = {job for job in tree.packaged_jobs() if UNSAFE_JOB.match(job)}
    assert unsafe, "the fixture has the jobs this test is about"
    left = sorted(job for job in unsafe if tree.enabled(job, overrides))
    assert left == [], f"{tree.release}: container-unsafe jobs still enabled: {left}"

    consoles = [job for job in ("console", "vmbuilder-console") if tree.enabled(job, overrides)]
    assert len(consoles) == 1, f"{tree.release}: console gettys {consoles}"
    expected_console = "vmbuilder-console" if tree.release in PRE_PRECISE else "console"
    assert consoles == [expected_console]
    ttys = sorted(job for job in tree.jobs() if re.fullmatch(r"tty\d", job) and tree.enabled(job, overrides))
    assert ttys == ["tty1", "tty2", "tty3", "tty4"], "ttys match lxc.tty.max = 4"

    table = effective_mount_table(tree)
    for mountpoint, (fstype, options) in table.items():
        kernel_fs = (
            fstype in ("proc", "sysfs")
            or mountpoint.startswith(("/proc/", "/sys/"))
            or mountpoint
            in (
                "/proc",
                "/sys",
            )
        )
        if kernel_fs:
            assert "noauto" in options, f"{tree.release}: mountall would mount {fstype} on {mountpoint}"
    fstab_entries = [ln.split() for ln in tree.read("/etc/fstab").splitlines() if ln.strip() and ln[0] != "#"]
    assert all("noauto" in e[3].split(",") for e in fstab_entries), "/etc/fstab itself mounts nothing"
    assert tree.read("/lib/init/fstab") == BUILTIN_FSTAB, "/lib/init/fstab (package data) is untouched"

    assert not list(tree.path("/etc/ssh").glob("ssh_host_*")), "no SSH host keys in the image"
    assert tree.path("/etc/init/vmbuilder-ssh-hostkeys.conf").exists()
    if tree.release in PRE_PRECISE:
        events = tree.read("/etc/init/vmbuilder-container-events.conf")
        assert "stopped JOB=udevtrigger" in events and "started JOB=udev" in events
    else:
        assert "ln -s /run/shm /dev/shm" in tree.read("/etc/init/vmbuilder-dev-shm.conf")
    assert "iface eth0 inet dhcp" in tree.read("/etc/network/interfaces")
    check_initctl_listener(tree)


INITCTL_JOB = "/etc/init/vmbuilder-initctl.conf"
INITCTL_LISTENER = "/usr/local/lib/vmbuilder-lxc/initctl-listener"


def check_initctl_listener(tree: Tree) -> None:
    """Our job makes the FIFO libvirt writes to and runs the listener on it (test_initctl.py runs both)."""
    assert tree.enabled("vmbuilder-initctl", overrides_supported(tree.release))
    job = tree.read(INITCTL_JOB)
    assert "start on filesystem" in job.splitlines() and "respawn" in job.splitlines()
    assert "mkfifo -m 600" in job and f"exec {INITCTL_LISTENER} <>" in job
    assert tree.read(INITCTL_LISTENER).startswith("#!/bin/sh\n")
    assert stat.S_IMODE(tree.path(INITCTL_LISTENER).stat().st_mode) == 0o755


@pytest.mark.parametrize("release", fixture.RELEASES)
def test_tweaks_make_the_release_container_safe(upstart_tree: Callable[[str], Tree], release: str) -> None:
    tree = upstart_tree(release)
    check_container_safe(tree)
    if overrides_supported(release):
        assert "disable-jobs-override" in tree.chosen and "disable-jobs-divert" not in tree.chosen
    else:
        assert "disable-jobs-divert" in tree.chosen and "disable-jobs-override" not in tree.chosen
        assert fixture.read_diversions(ROOT)["/etc/init/udev.conf"] == ("/etc/init/udev.conf.vmbuilder-disabled", ":")


@pytest.mark.parametrize("release", fixture.RELEASES)
def test_tweaks_survive_a_package_upgrade(upstart_tree: Callable[[str], Tree], release: str) -> None:
    tree = upstart_tree(release)
    written = fixture.simulate_upgrade(ROOT, release)
    assert "/lib/init/fstab" in written
    # The upgrade rewrites mountall's built-in table; put the model's content back in its place.
    tree.path("/lib/init/fstab").write_text(BUILTIN_FSTAB)
    check_container_safe(tree)
    if not overrides_supported(release):
        # dpkg put the new udev.conf at the diverted name; upstart does not read it.
        assert "(upgraded)" in tree.read("/etc/init/udev.conf.vmbuilder-disabled")
        assert not tree.path("/etc/init/udev.conf").exists()


@pytest.mark.parametrize("release", fixture.RELEASES)
def test_no_packaged_file_is_edited(upstart_tree: Callable[[str], Tree], release: str) -> None:
    """Every file a package ships is either as the package left it or diverted whole."""
    upstart_tree(release)
    diverted = fixture.read_diversions(ROOT)
    for package, version in fixture.packages(release).items():
        for path in fixture.package_files(release, package):
            if path in diverted:
                moved = ROOT / diverted[path][0].lstrip("/")
                assert moved.read_text() == fixture.file_content(package, version, path)
            elif path == "/lib/init/fstab" or path.startswith("/etc/ssh/ssh_host_"):
                continue
            else:
                assert (ROOT / path.lstrip("/")).read_text() == fixture.file_content(package, version, path), path


def test_pre_precise_console_getty_steps_aside_under_libvirt(upstart_tree: Callable[[str], Tree]) -> None:
    """Under libvirt-lxc /dev/console is tty1's pty: tty1.conf serves it, ours stops itself."""
    tree = upstart_tree("lucid")
    job = tree.read("/etc/init/vmbuilder-console.conf")
    assert "container=lxc-libvirt" in job and "stop; exit 0" in job
    assert "exec /sbin/getty -8 38400 console" in job


@pytest.mark.parametrize("release", ["lucid", "oneiric", "trusty"])
def test_initctl_listener_never(upstart_tree: Callable[..., Tree], release: str) -> None:
    tree = upstart_tree(release, "--initctl-listener", "never")
    assert "initctl-listener-upstart" not in tree.chosen
    assert not tree.path(INITCTL_JOB).exists() and not tree.path(INITCTL_LISTENER).exists()


# -- consoles under each manager ----------------------------------------------------------------------
#
# Under libvirt-lxc /dev/console and /dev/tty1 are one pty (research: libvirt_lxc.md 3.4 and 5.1
# item 3); under lxc-start each is a pty of its own. What decides which getty jobs run is their
# start condition, which the fixture's placeholder job files do not carry, so it is modelled here
# from the releases' job files:
# - precise to utopic (upstart 1.4-0ubuntu6 on; upstart's debian/changelog: "console.conf: run getty
#   on /dev/console when running in a lxc container", "Update tty[1234].conf to start on regular
#   machines and LXC containers", "Update tty[56].conf to only start on regular machines"):
#     console.conf  start on stopped rc RUNLEVEL=[2345] and container CONTAINER=lxc
#     tty1-4.conf   start on stopped rc RUNLEVEL=[2345] and (not-container or
#                       container CONTAINER=lxc or container CONTAINER=lxc-libvirt)
#     tty5-6.conf   ... and not-container
#   container-detect.conf emits `container CONTAINER=lxc` under lxc-start and CONTAINER=lxc-libvirt
#   under libvirt (container= in init's environment, or LIBVIRT_LXC_UUID from older libvirt).
#   So under libvirt console.conf does not start and tty1.conf serves the shared pty.
# - lucid to oneiric: no console.conf and no container-detect; tty1-6 start on runlevel alone. Our
#   vmbuilder-console.conf stops itself in its pre-start when init's environment names libvirt.
# Not modelled: whether the getty then gets a usable terminal, and ttys beyond those the manager
# creates (libvirt makes /dev/tty2.. only for extra <console> elements).

MANAGERS = ("lxc", "lxc-libvirt")  # the CONTAINER value container-detect emits


def starts(job: str, release: str, manager: str, tree: Tree) -> bool:
    """Whether a getty job's start condition (and our console job's pre-start) lets it run."""
    if job == "vmbuilder-console":
        stops_under_libvirt = "container=lxc-libvirt" in tree.read("/etc/init/vmbuilder-console.conf")
        return not (manager == "lxc-libvirt" and stops_under_libvirt)
    if release in PRE_PRECISE:
        return True
    if job == "console":
        return manager == "lxc"
    return job in ("tty1", "tty2", "tty3", "tty4")


def pty(job: str, manager: str) -> str:
    device = "console" if job in ("console", "vmbuilder-console") else job
    return "console" if manager == "lxc-libvirt" and device == "tty1" else device


def gettys_per_pty(tree: Tree, manager: str) -> dict[str, list[str]]:
    overrides = overrides_supported(tree.release)
    jobs = [j for j in sorted(tree.jobs()) if re.fullmatch(r"tty\d|console|vmbuilder-console", j)]
    running = [j for j in jobs if tree.enabled(j, overrides) and starts(j, tree.release, manager, tree)]
    ptys: dict[str, list[str]] = {}
    for job in running:
        ptys.setdefault(pty(job, manager), []).append(job)
    return ptys


def check_one_getty_per_console(tree: Tree) -> None:
    under_lxc = gettys_per_pty(tree, "lxc")
    assert under_lxc == {"console": [under_lxc["console"][0]], **{f"tty{n}": [f"tty{n}"] for n in range(1, 5)}}
    under_libvirt = gettys_per_pty(tree, "lxc-libvirt")
    assert under_libvirt["console"] == ["tty1"], f"{tree.release}: gettys on libvirt's console pty"


@pytest.mark.parametrize("release", fixture.RELEASES)
def test_exactly_one_getty_serves_the_console_under_each_manager(
    upstart_tree: Callable[..., Tree], release: str
) -> None:
    tree = upstart_tree(release)
    check_one_getty_per_console(tree)
    fixture.simulate_upgrade(ROOT, release)
    check_one_getty_per_console(tree)
