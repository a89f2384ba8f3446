"""The upstart tweaks' mechanisms against the real dpkg: a package upgrade must not undo them.

The fixture tests model dpkg (tests/unit/upstart_fixture.py); this test checks the model's two
load-bearing rules with the real thing. Two versions of a small package that ships upstart jobs
as conffiles and mountall-style package data are built with dpkg-deb; version 1 is installed into
an empty root with `dpkg --root`, the ubuntu plugin's own actions are applied (dpkg-divert through
Guest.divert, .override files, the /etc/fstab override), and version 2 is installed on top.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmbuilder_lxc.tweakactions import Divert, File, Override
from vmbuilder_lxc.tweakguest import Guest, OwnedFileError

JOBS = ("udev", "tty5", "ssh")


def make_deb(tmp: Path, version: str) -> Path:
    pkg = tmp / f"pkg-{version}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "etc/init").mkdir(parents=True)
    (pkg / "lib/init").mkdir(parents=True)
    for job in JOBS:
        (pkg / f"etc/init/{job}.conf").write_text(f"# {job} job, version {version}\nexec /bin/true\n")
    (pkg / "lib/init/fstab").write_text(f"# built-in table, version {version}\nnone /proc proc defaults 0 0\n")
    (pkg / "DEBIAN/control").write_text(
        f"Package: vmbuilder-test-jobs\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: vmbuilder-lxc tests <tests@localhost>\nDescription: upstart jobs for an upgrade test\n"
    )
    (pkg / "DEBIAN/conffiles").write_text("".join(f"/etc/init/{job}.conf\n" for job in JOBS))
    deb = tmp / f"vmbuilder-test-jobs_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    return deb


def dpkg_install(root: Path, deb: Path) -> None:
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-confold", "--force-script-chrootless", "--force-not-root",
         "--log=/dev/null", "-i", str(deb)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if subprocess.run(["which", "dpkg-divert"], capture_output=True).returncode != 0:
        pytest.fail("dpkg-divert is missing on this host (install dpkg)")
    root = tmp_path / "root"
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    return root


def guest(root: Path) -> Guest:
    return Guest(root, lambda name, variables: f"none /proc proc noauto 0 0\n# {name}\n", {}, {})


def test_diverted_job_stays_disabled_after_the_real_dpkg_upgrades_it(root: Path, tmp_path: Path) -> None:
    dpkg_install(root, make_deb(tmp_path, "1"))
    g = guest(root)
    Divert(("/etc/init/udev.conf", "/etc/init/tty5.conf")).apply(g)
    Divert(("/etc/init/udev.conf",)).apply(guest(root))  # idempotent: a rebuild from cache re-applies
    assert not (root / "etc/init/udev.conf").exists()
    dpkg_install(root, make_deb(tmp_path, "2"))
    assert not (root / "etc/init/udev.conf").exists(), "upstart would read the job again"
    assert "version 2" in (root / "etc/init/udev.conf.vmbuilder-disabled").read_text()
    assert "version 2" in (root / "etc/init/tty5.conf.vmbuilder-disabled").read_text()
    assert "version 2" in (root / "etc/init/ssh.conf").read_text()  # not diverted: upgraded in place
    listed = subprocess.run(["dpkg-divert", f"--root={root}", "--list"], capture_output=True, text=True).stdout
    assert "local diversion of /etc/init/udev.conf to /etc/init/udev.conf.vmbuilder-disabled" in listed


def test_override_and_fstab_survive_the_real_dpkg_upgrade(root: Path, tmp_path: Path) -> None:
    dpkg_install(root, make_deb(tmp_path, "1"))
    g = guest(root)
    Override(("udev", "tty5")).apply(g)
    File("/etc/fstab", "upstart/fstab.j2").apply(g)
    dpkg_install(root, make_deb(tmp_path, "2"))
    assert (root / "etc/init/udev.override").read_text().splitlines()[-1] == "manual"
    assert "version 2" in (root / "etc/init/udev.conf").read_text()
    assert (root / "etc/fstab").read_text().startswith("none /proc proc noauto")
    # The package data we never touch is simply replaced, as for every mountall update.
    assert "version 2" in (root / "lib/init/fstab").read_text()


def test_a_packaged_job_cannot_be_overwritten(root: Path, tmp_path: Path) -> None:
    dpkg_install(root, make_deb(tmp_path, "1"))
    with pytest.raises(OwnedFileError, match="a package owns it"):
        File("/etc/init/ssh.conf", "x").apply(guest(root))
