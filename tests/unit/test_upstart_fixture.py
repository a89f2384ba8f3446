"""Tests of the upstart-era fixture helper (tests/unit/upstart_fixture.py) under pyfakefs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit import upstart_fixture as uf

ROOT = Path("/srv/rootfs")


@pytest.fixture
def fake_fixtures(fs: FakeFilesystem) -> FakeFilesystem:
    fs.add_real_directory(uf.FIXTURE_DIR)
    return fs


def _read(path: str) -> str:
    return (ROOT / path.lstrip("/")).read_text(encoding="utf-8")


def _divert_local(original: str, divert_to: str) -> None:
    """What ``dpkg-divert --local --rename --divert <divert_to> <original>`` leaves behind."""
    (ROOT / original.lstrip("/")).rename(ROOT / divert_to.lstrip("/"))
    (ROOT / "var/lib/dpkg/diversions").write_text(f"{original}\n{divert_to}\n:\n", encoding="utf-8")


@pytest.mark.parametrize("release", uf.RELEASES)
def test_fixture_files_are_consistent(release: str) -> None:
    versions = uf.packages(release)
    assert {"upstart", "mountall", "udev", "plymouth", "openssh-server", "ifupdown", "initscripts"} <= set(versions)
    assert "module-init-tools" in versions or "kmod" in versions
    for package in versions:
        files = uf.package_files(release, package)
        assert files and all(path.startswith("/") for path in files)
        assert len(files) == len(set(files))
        assert set(uf.package_conffiles(release, package)) <= set(files)


@pytest.mark.parametrize("release", uf.RELEASES)
def test_build_tree_lays_down_every_file_and_a_parseable_status(fake_fixtures: FakeFilesystem, release: str) -> None:
    uf.build_tree(ROOT, release)
    versions = uf.packages(release)
    for package, version in versions.items():
        for path in uf.package_files(release, package):
            assert _read(path) == f"# {package} {version} {path}\n"
        info = ROOT / "var/lib/dpkg/info"
        assert (info / f"{package}.list").read_text(encoding="utf-8").split() == uf.package_files(release, package)
    assert (ROOT / "var/lib/dpkg/diversions").read_text(encoding="utf-8") == ""
    assert uf.read_diversions(ROOT) == {}

    status = (ROOT / "var/lib/dpkg/status").read_text(encoding="utf-8")
    paragraphs = [p for p in status.split("\n\n") if p.strip()]
    assert [p.splitlines()[0] for p in paragraphs] == [f"Package: {name}" for name in versions]
    for paragraph in paragraphs:
        assert "Status: install ok installed" in paragraph
        assert "Architecture: amd64" in paragraph
    recorded = uf.read_status_conffiles(ROOT)
    for package in versions:
        conffiles = uf.package_conffiles(release, package)
        assert list(recorded.get(package, {})) == conffiles
        for path in conffiles:
            assert recorded[package][path] == hashlib.md5(_read(path).encode()).hexdigest()


def test_jobs_are_plausible_upstart_files(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "precise")
    jobs = sorted((ROOT / "etc/init").glob("*.conf"))
    assert ROOT / "etc/init/container-detect.conf" in jobs
    for job in jobs:
        assert all(line.startswith("#") for line in job.read_text(encoding="utf-8").splitlines())


def test_read_diversions_parses_groups_of_three(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "lucid")
    (ROOT / "var/lib/dpkg/diversions").write_text(
        "/sbin/start\n/sbin/start.real\n:\n/lib/init/fstab\n/lib/init/fstab.distrib\nlxcguest\n", encoding="utf-8"
    )
    assert uf.read_diversions(ROOT) == {
        "/sbin/start": ("/sbin/start.real", ":"),
        "/lib/init/fstab": ("/lib/init/fstab.distrib", "lxcguest"),
    }
    (ROOT / "var/lib/dpkg/diversions").write_text("/a\n/b\n", encoding="utf-8")
    with pytest.raises(ValueError):
        uf.read_diversions(ROOT)


def test_locally_diverted_file_is_upgraded_at_its_divert_to_path(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "precise")
    _divert_local("/sbin/start", "/sbin/start.real")
    (ROOT / "sbin/start").write_text("#!/bin/sh\n# wrapper\n", encoding="utf-8")
    written = uf.simulate_upgrade(ROOT, "precise")
    assert "/sbin/start.real" in written and "/sbin/start" not in written
    assert _read("/sbin/start.real") == "# upstart 1.5-0ubuntu5 /sbin/start (upgraded)\n"
    assert _read("/sbin/start") == "#!/bin/sh\n# wrapper\n"


def test_diverted_original_stays_absent(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "lucid")
    _divert_local("/lib/init/fstab", "/lib/init/fstab.distrib")
    uf.simulate_upgrade(ROOT, "lucid")
    assert not (ROOT / "lib/init/fstab").exists()
    assert _read("/lib/init/fstab.distrib") == "# mountall 2.15 /lib/init/fstab (upgraded)\n"


def test_diversion_by_the_package_itself_is_ignored(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "precise")
    (ROOT / "var/lib/dpkg/diversions").write_text("/sbin/stop\n/sbin/stop.x\nupstart\n", encoding="utf-8")
    uf.simulate_upgrade(ROOT, "precise")
    assert _read("/sbin/stop").endswith("(upgraded)\n")
    assert not (ROOT / "sbin/stop.x").exists()


def test_modified_conffile_is_kept(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "natty")
    before = uf.read_status_conffiles(ROOT)["udev"]["/etc/udev/udev.conf"]
    (ROOT / "etc/udev/udev.conf").write_text('udev_log="err"\n', encoding="utf-8")
    written = uf.simulate_upgrade(ROOT, "natty")
    assert "/etc/udev/udev.conf" not in written
    assert _read("/etc/udev/udev.conf") == 'udev_log="err"\n'
    assert uf.read_status_conffiles(ROOT)["udev"]["/etc/udev/udev.conf"] == before


def test_deleted_conffile_stays_deleted(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "maverick")
    (ROOT / "etc/init/tty5.conf").unlink()
    (ROOT / "etc/init/tty6.conf").rename(ROOT / "etc/init/tty6.conf.orig")
    written = uf.simulate_upgrade(ROOT, "maverick")
    assert not (ROOT / "etc/init/tty5.conf").exists()
    assert not (ROOT / "etc/init/tty6.conf").exists()
    assert {"/etc/init/tty5.conf", "/etc/init/tty6.conf"}.isdisjoint(written)


@pytest.mark.parametrize("release", ["lucid", "trusty", "utopic"])
def test_unmodified_conffile_and_non_conffile_get_new_content(fake_fixtures: FakeFilesystem, release: str) -> None:
    uf.build_tree(ROOT, release)
    version = uf.packages(release)["mountall"]
    (ROOT / "lib/init/fstab").write_text("# emptied by a container tweak\n", encoding="utf-8")
    written = uf.simulate_upgrade(ROOT, release)
    assert "/etc/init/mountall.conf" in written and "/lib/init/fstab" in written
    assert _read("/etc/init/mountall.conf") == f"# mountall {version} /etc/init/mountall.conf (upgraded)\n"
    assert _read("/lib/init/fstab") == f"# mountall {version} /lib/init/fstab (upgraded)\n"
    new_md5 = hashlib.md5(_read("/etc/init/mountall.conf").encode()).hexdigest()
    assert uf.read_status_conffiles(ROOT)["mountall"]["/etc/init/mountall.conf"] == new_md5


def test_deleted_non_conffile_is_recreated_and_custom_content_is_used(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "oneiric")
    (ROOT / "sbin/mountall").unlink()
    uf.simulate_upgrade(ROOT, "oneiric", new_content=lambda package, path: f"new {package} {path}\n")
    assert _read("/sbin/mountall") == "new mountall /sbin/mountall\n"
    assert _read("/etc/init/ssh.conf") == "new openssh-server /etc/init/ssh.conf\n"


def test_second_upgrade_replaces_conffiles_again(fake_fixtures: FakeFilesystem) -> None:
    uf.build_tree(ROOT, "precise")
    uf.simulate_upgrade(ROOT, "precise")
    uf.simulate_upgrade(ROOT, "precise", new_content=lambda package, path: "v3\n")
    assert _read("/etc/init/ssh.conf") == "v3\n"


def test_unknown_release_is_rejected() -> None:
    with pytest.raises(ValueError):
        uf.packages("xenial")
