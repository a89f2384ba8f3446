"""A third-party distro plugin, written from docs/design.md's "How to add a distro", builds and boots.

tests/thirdparty/debian_testing is an outside package: its pyproject.toml declares the entry point
`deb-testing` in the vmbuilder_lxc.plugins group, and its one module derives from the debian plugin
to build Debian's testing suite with GNU hello added. It is installed into a scratch directory that
only the build's PYTHONPATH names, so the shared virtualenv is never changed. One cold build for the
module; the guest boots under lxc-start to `running`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.thirdparty.install import DEBIAN_TESTING, install
from vmbuilder_lxc.suites import ReleaseTable

from .conftest import BUILD_TIMEOUT, Build, Builder, Container, boot_within

PLUGIN = "deb-testing"


# The test bed's archive may serve a testing snapshot whose Valid-Until has passed (apt then refuses
# it, signatures notwithstanding). Only then is the build repeated with these hooks: the setup hook
# lets the bootstrap's apt accept the stale Release file (it still verifies the signature), and the
# essential hook removes that setting again, so the guest's apt is the archive's usual one.
EXPIRED = "Release file has expired"
RELAX = 'printf \'Acquire::Check-Valid-Until "false";\\n\' >"$1/etc/apt/apt.conf.d/00test-valid-until"\n'
RESTORE = 'rm -f "$1/etc/apt/apt.conf.d/00test-valid-until"\n'


def stale_archive_hooks(directory: Path) -> Path:
    directory.mkdir()
    for name, body in (("setup-valid-until", RELAX), ("essential-valid-until", RESTORE)):
        hook = directory / name
        hook.write_text("#!/bin/sh\nset -e\n" + body)
        hook.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def testing_build(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """`vmbuilder lxc deb-testing --suite testing`, with the plugin on PYTHONPATH only."""
    site = install(DEBIAN_TESTING, tmp_path_factory.mktemp("thirdparty-site"))
    work = tmp_path_factory.mktemp("thirdparty")
    env = {**os.environ, "PYTHONPATH": str(site)}
    args = ["--suite", "testing", "--network", "none", "--hostname", "dt1", "-d", str(work / "dt1")]

    def run(*extra: str) -> Build:
        start = time.monotonic()
        argv = builder.argv(*args, *extra, distro=PLUGIN)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd="/", env=env)
        build = Build(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        if proc.returncode == 0:
            build.summary = json.loads(proc.stdout)
        return build

    build = run()
    if build.returncode != 0 and EXPIRED in build.stderr:
        print(f"{PLUGIN}: the archive's testing Release has expired; building with a Valid-Until hook")
        build = run("--hook-dir", str(stale_archive_hooks(work / "hooks")))
    build.check()
    print(f"{PLUGIN}: build {build.seconds:.1f} s (cache hit: {build.summary['cache']['hit']})")
    return build


def test_third_party_distro_builds_testing_with_its_package(testing_build: Build) -> None:
    """The plugin's data reached the shared machinery: testing resolved, the extra package installed."""
    devel = ReleaseTable.load("debian").find("devel")
    assert devel is not None, "distro-info-data names no Debian testing suite"
    release = testing_build.summary["release"]
    assert (release["distro"], release["series"]) == (PLUGIN, devel.series)
    os_release = (testing_build.rootfs / "etc/os-release").read_text()
    assert f"VERSION_CODENAME={devel.series}" in os_release
    assert "ID=debian" in os_release.splitlines()
    status = (testing_build.rootfs / "var/lib/dpkg/status").read_text()
    assert "Package: hello\nStatus: install ok installed\n" in status
    assert not (testing_build.rootfs / "etc/apt/apt.conf.d/00test-valid-until").exists()


def test_third_party_distro_boots_to_running(
    testing_build: Build, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """The guest boots under lxc-start with no failed units, and its extra package works in it."""
    c = boot_within(container, testing_build.dest, PLUGIN)
    time.sleep(2)
    assert c.failed_units() == []
    assert c.sh("systemctl is-system-running") == "running"
    assert c.sh("dpkg-query -W -f '${db:Status-Abbrev}' hello").strip() == "ii"
    assert c.sh("hello") == "Hello, world!"
    codename = c.sh(". /etc/os-release && echo $VERSION_CODENAME")
    assert codename == testing_build.summary["release"]["series"]
    assert c.sh("hostname") == "dt1"
    assert c.sh("dpkg --audit") == ""
    assert c.stop() < 10
