"""The Debian package (issue #6), checked by its real consumers: dpkg-buildpackage and lintian build
and judge it, apt installs it into a Debian 12 chroot that the tool itself built (dependencies from
the archive), and the package installed on the host builds a noble container that boots and
matches the one the pip-installed copy builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmbuilder_lxc.chroot import Chroot

from .conftest import Builder, Container, boot_within

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "vmbuilder-lxc"
DIST_PACKAGES = "/usr/lib/python3/dist-packages/vmbuilder_lxc"
PAGES = ("vmbuilder", "vmbuilder-lxc", "vmbuilder-ubuntu", "vmbuilder-debian", "vmbuilder-fetch-keyring")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# A package build sees the system's tools only, as sbuild gives it: no venv, no pyenv shims.
BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def sh(argv: list[str], *, cwd: Path | str = "/", timeout: int = 900, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, (
        f"{argv} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def clean_checkout(dest: Path) -> Path:
    """The committed and untracked-but-not-ignored files only: what a fresh clone holds."""
    listing = sh(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    src = dest / PACKAGE
    for rel in filter(None, listing.split("\0")):
        origin = ROOT / rel
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target, follow_symlinks=False)
    return src


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dpkg-buildpackage -us -uc -b` on a clean checkout; returns the directory holding its output.

    The source package is built first, from the same clean tree, so that lintian checks debian/ too.
    """
    out = tmp_path_factory.mktemp("deb")
    src = clean_checkout(out)
    sh(["dpkg-source", "--build", src.name], cwd=out, env=BUILD_ENV)
    sh(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, timeout=900, env=BUILD_ENV)
    return out


@pytest.fixture(scope="module")
def deb(built: Path) -> Path:
    debs = sorted(built.glob(f"{PACKAGE}_*_all.deb"))
    assert len(debs) == 1, f"expected one {PACKAGE}_*_all.deb, found {[d.name for d in built.iterdir()]}"
    return debs[0]


def test_lintian_reports_no_errors_or_warnings(built: Path, deb: Path) -> None:
    """Warnings are fixed or overridden in debian/*lintian-overrides with the reason beside them."""
    changes, dsc = sorted(built.glob(f"{PACKAGE}_*.changes")), sorted(built.glob(f"{PACKAGE}_*.dsc"))
    assert changes and dsc, f"no .changes or .dsc in {sorted(p.name for p in built.iterdir())}"
    result = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--display-info", "--tag-display-limit", "0", str(changes[0]),
         str(dsc[0])],
        capture_output=True, text=True, timeout=900, cwd=built, env={**os.environ, **BUILD_ENV},
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, f"lintian:\n{result.stdout}\n{result.stderr}"
    assert not [ln for ln in result.stdout.splitlines() if ln.startswith(("E:", "W:"))], result.stdout


def test_package_contents(deb: Path) -> None:
    listing = sh(["dpkg-deb", "-c", str(deb)])
    for path in (
        "./usr/bin/vmbuilder",
        "./usr/bin/vmbuilder-fetch-keyring",
        f".{DIST_PACKAGES}/cli.py",
        f".{DIST_PACKAGES}/plugins/lxc.py",
        f".{DIST_PACKAGES}/templates/lxc/config.j2",
        f".{DIST_PACKAGES}/hooks/timezone.sh",
        "./etc/vmbuilder.cfg",
        "./usr/share/bash-completion/completions/vmbuilder",
        *(f"./usr/share/man/man1/{page}.1.gz" for page in PAGES),
    ):
        assert f" {path}\n" in listing + "\n", f"{path} is not in the package"
    control = sh(["dpkg-deb", "-f", str(deb), "Depends", "Recommends", "Suggests", "Conflicts", "Replaces"])
    for name in ("python3-jinja2", "python3-sh", "debootstrap | mmdebstrap", "lxcfs", "lxd | incus",
                 "python-vm-builder", "ubuntu-vm-builder"):  # fmt: skip
        assert name in control, f"{name} missing from the control fields:\n{control}"
    conffiles = sh(["dpkg-deb", "-I", str(deb), "conffiles"])
    assert conffiles.split() == ["/etc/vmbuilder.cfg"]


def test_installs_with_apt_in_a_bookworm_chroot(builder: Builder, deb: Path, tmp_path: Path) -> None:
    """A Debian 12 chroot built by the tool itself; apt resolves the dependencies from the archive."""
    build = builder.run("--suite", "bookworm", "--network", "none", "-d", str(tmp_path / "deb12"), distro="debian")
    rootfs = build.check().rootfs
    shutil.copy(deb, rootfs / "tmp" / deb.name)
    shutil.copy(ROOT / "debian/tests/smoke", rootfs / "tmp/smoke")
    with Chroot(rootfs) as chroot:
        chroot.run("apt-get", "update", "-q")
        chroot.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/tmp/{deb.name}", "man-db")
        status = chroot.run("dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE).output
        assert status.startswith("install ok installed"), status
        top = chroot.run("vmbuilder", "--help").output
        assert "lxc" in top and "ubuntu" in top, top
        assert "--suite" in chroot.run("vmbuilder", "lxc", "ubuntu", "--help").output
        page = chroot.run("man", "-w", "vmbuilder").output.strip()
        assert page == "/usr/share/man/man1/vmbuilder.1.gz", page
        where = chroot.run(
            "python3",
            "-c",
            "import vmbuilder_lxc, vmbuilder_lxc.data as d; print(vmbuilder_lxc.__file__, d.templates_dir())",
        ).output.split()
        assert where == [f"{DIST_PACKAGES}/__init__.py", f"{DIST_PACKAGES}/templates"], where
        # The package's own autopkgtest, run as autopkgtest would: in the testbed, as a user script.
        print(chroot.run("env", "AUTOPKGTEST_TMP=/tmp", "sh", "/tmp/smoke").output)


@pytest.fixture
def installed_on_host(deb: Path) -> Iterator[Path]:
    """The package installed on this host with apt, and purged again afterwards."""
    owned = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True, text=True)
    if "installed" in owned.stdout:
        pytest.fail(
            f"{PACKAGE} is already installed on this host; remove it (apt-get purge {PACKAGE}) to run this test"
        )
    if os.path.lexists("/etc/vmbuilder.cfg"):
        pytest.fail("/etc/vmbuilder.cfg exists and belongs to no package; move it away to run this test")
    try:
        sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)], env=APT_ENV)
        yield Path("/usr/bin/vmbuilder")
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", PACKAGE], capture_output=True, env={**os.environ, **APT_ENV})


def tree_digest(rootfs: Path) -> dict[str, str]:
    """Every path of the guest with its type and, for files and links, its content."""
    out: dict[str, str] = {}
    for path in sorted(rootfs.rglob("*")):
        rel = str(path.relative_to(rootfs))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir" if path.is_dir() else "other"
    return out


def test_installed_package_builds_a_container_that_boots(
    installed_on_host: Path, builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """The issue's command from /usr/bin/vmbuilder, and the same from the pip install: same guest."""
    deb_dest, pip_dest = tmp_path / "deb/x", tmp_path / "pip/x"
    deb_dest.parent.mkdir()
    cmd = ["lxc", "ubuntu", "--suite", "noble", "-d", str(deb_dest), "--network", "none",
           "--cache-dir", str(builder.cache_dir)]  # fmt: skip
    # Debian's python3 with the installed files only: no venv, no checkout on the path.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(installed_on_host), *cmd], capture_output=True, text=True, timeout=900, cwd="/", env=env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    head = installed_on_host.read_text().splitlines()[0]
    assert head == "#!/usr/bin/python3", head

    pip_build = builder.run("--suite", "noble", "-d", str(pip_dest), "--network", "none").check()
    assert pip_build.dest == pip_dest
    from_deb, from_pip = tree_digest(deb_dest / "rootfs"), tree_digest(pip_dest / "rootfs")
    differ = sorted(k for k in from_deb.keys() | from_pip.keys() if from_deb.get(k) != from_pip.get(k))
    assert not differ, f"the .deb and the pip install built different guests: {differ[:20]}"

    def text(dest: Path, name: str) -> str:
        return (dest / name).read_text().replace(str(dest), "DEST").replace(str(dest.parent), "DIR")

    assert text(deb_dest, "config") == text(pip_dest, "config")
    summary, pip_summary = (
        json.loads(text(deb_dest, "vmbuilder-lxc.json")),
        json.loads(text(pip_dest, "vmbuilder-lxc.json")),
    )
    volatile = {"build_seconds", "built_at", "steps", "cache", "settings"}
    assert {k: v for k, v in summary.items() if k not in volatile} == {
        k: v for k, v in pip_summary.items() if k not in volatile
    }
    # Every setting the same, but the MAC address, which is random per build, and --json, which
    # the fixture passes and the command does not.
    for key in ("mac", "json"):
        del summary["settings"][key], pip_summary["settings"][key]
    assert summary["settings"] == pip_summary["settings"]

    c = boot_within(container, deb_dest, "noble from the .deb")
    assert c.sh("systemctl is-system-running") == "running", c.failed_units()


def test_autopkgtests_pass_against_the_installed_package(
    installed_on_host: Path, builder: Builder, tmp_path: Path
) -> None:
    """debian/tests/ as autopkgtest runs them on a testbed where the package is installed."""
    for name in ("smoke", "build-container"):
        scratch = tmp_path / name
        scratch.mkdir()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "AUTOPKGTEST_TMP": str(scratch),
               "VMBUILDER_TEST_CACHE": str(builder.cache_dir)}  # fmt: skip
        out = subprocess.run(["sh", str(ROOT / "debian/tests" / name)], capture_output=True, text=True, timeout=900,
                             cwd=scratch, env=env)  # fmt: skip
        assert out.returncode == 0, f"debian/tests/{name}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        assert f"{name}: OK" in out.stdout
