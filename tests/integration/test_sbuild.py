"""Acceptance 3: the `sbuild` export is a buildd chroot that sbuild 0.85 really builds in.

As a non-root user with one subuid and one subgid range, the tarball goes to ~/.cache/sbuild, and
`sbuild --chroot-mode=unshare -d noble` builds a small debhelper package that the test generates.
The archive is reachable, so sbuild's own `apt-get update` and the build-dependencies work.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REQUIRED, Builder, vmbuilder_command

USER = "vmbsbuild"
RANGE = 65536  # what sbuild's unshare mode maps: one range of 65536 ids each
HOST_TOOLS = ("sbuild", "newuidmap", "newgidmap", "dpkg-source", "runuser", "zstd")

CONTROL = """\
Source: vmbhello
Section: misc
Priority: optional
Maintainer: vmbuilder-lxc tests <tests@example.invalid>
Build-Depends: debhelper-compat (= 13)
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: vmbhello
Architecture: all
Description: test package built by sbuild in a vmbuilder-lxc buildd chroot
 It installs one file.
"""
CHANGELOG = """\
vmbhello (1.0) noble; urgency=medium

  * Test build.

 -- vmbuilder-lxc tests <tests@example.invalid>  Sat, 21 Nov 2026 00:00:00 +0000
"""
RULES = "#!/usr/bin/make -f\n%:\n\tdh $@\n"


def _one_range(path: Path, user: str, start: int) -> None:
    """Exactly one USER:START:RANGE line in /etc/subuid or /etc/subgid (sbuild refuses more)."""
    lines = path.read_text().splitlines() if path.exists() else []
    mine = [ln for ln in lines if ln.split(":")[0] == user]
    if len(mine) == 1 and int(mine[0].split(":")[2]) >= RANGE:
        return
    kept = [ln for ln in lines if ln.split(":")[0] != user]
    path.write_text("\n".join([*kept, f"{user}:{start}:{RANGE}"]) + "\n")


def _free_start(*files: Path) -> int:
    """A subordinate id range above every one already given out."""
    end = 100000
    for path in files:
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


@pytest.fixture(scope="module")
def sbuild_user() -> pwd.struct_passwd:
    """The non-root build user (created if absent) with one subuid and one subgid range."""
    missing = [t for t in HOST_TOOLS if not shutil.which(t)]
    if missing:
        message = f"sbuild test needs {', '.join(missing)} (apt-get install sbuild uidmap zstd)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    subuid, subgid = Path("/etc/subuid"), Path("/etc/subgid")
    start = _free_start(subuid, subgid)
    _one_range(subuid, USER, start)
    _one_range(subgid, USER, start)
    return pwd.getpwnam(USER)


def as_user(user: pwd.struct_passwd, script: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = ["env", "-i", f"HOME={user.pw_dir}", f"USER={user.pw_name}", f"LOGNAME={user.pw_name}",
           "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C.UTF-8"]  # fmt: skip
    return subprocess.run(["runuser", "-u", user.pw_name, "--", *env, "sh", "-c", script],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def user_dir(sbuild_user: pwd.struct_passwd) -> Iterator[Path]:
    """A work directory the build user owns (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="vmb-sbuild-", dir=sbuild_user.pw_dir))
    os.chown(path, sbuild_user.pw_uid, sbuild_user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def members(tarball: Path) -> dict[str, int]:
    """Archive member -> size (GNU tar's verbose listing)."""
    out = subprocess.run(["tar", "-I", "zstd", "-tvf", str(tarball)], capture_output=True, text=True, check=True)
    sizes = {}
    for line in out.stdout.splitlines():
        fields = line.split(None, 5)
        name = fields[5].split(" -> ")[0].split(" link to ")[0]
        sizes[name] = int(fields[2]) if fields[2].isdigit() else 0
    return sizes


def chroot_for(user: pwd.struct_passwd, tarball: Path) -> Path:
    """The chroot tarball copied where sbuild's unshare mode looks for it (~/.cache/sbuild), the user's."""
    cache = Path(user.pw_dir) / ".cache/sbuild"
    cache.mkdir(parents=True, exist_ok=True)
    for path in (cache.parent, cache):
        os.chown(path, user.pw_uid, user.pw_gid)
    chroot = cache / tarball.name
    shutil.copyfile(tarball, chroot)
    os.chown(chroot, user.pw_uid, user.pw_gid)
    return chroot


def source_package(user: pwd.struct_passwd, user_dir: Path, suite: str, arch: str, greeting: str) -> None:
    """vmbhello_1.0.dsc in user_dir, made by the user: a tiny dh package for SUITE, `Architecture: ARCH`."""
    src = user_dir / "vmbhello-1.0"
    (src / "debian/source").mkdir(parents=True)
    (src / "debian/control").write_text(CONTROL.replace("Architecture: all", f"Architecture: {arch}"))
    (src / "debian/changelog").write_text(CHANGELOG.replace(" noble;", f" {suite};"))
    (src / "debian/rules").write_text(RULES)
    (src / "debian/rules").chmod(0o755)
    (src / "debian/source/format").write_text("3.0 (native)\n")
    (src / "debian/vmbhello.install").write_text("greeting usr/share/vmbhello/\n")
    (src / "greeting").write_text(greeting + "\n")
    subprocess.run(["chown", "-R", f"{USER}:", str(user_dir)], check=True)
    made = as_user(user, "dpkg-source -b vmbhello-1.0", user_dir, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr


def test_sbuild_builds_a_package_in_the_export(
    builder: Builder, tmp_path: Path, sbuild_user: pwd.struct_passwd, user_dir: Path
) -> None:
    out = tmp_path / "out"
    build = builder.run("--suite", "noble", "-d", str(tmp_path / "bd"), "--export", "sbuild",
                        "--export-dir", str(out)).check()  # fmt: skip
    assert build.summary["profile"] == "buildd"
    assert not (build.dest / "config").exists(), "a buildd chroot gets no LXC config"
    tarball, conf = out / "noble-amd64.tar.zst", out / "noble-amd64-sbuild.conf"
    assert sorted(p.name for p in out.iterdir()) == [conf.name, tarball.name]

    names = members(tarball)
    assert "./usr/bin/apt-get" in names and "./usr/sbin/policy-rc.d" in names
    assert "./usr/bin/dpkg-buildpackage" in names and "./usr/bin/fakeroot" in names
    assert not [n for n in names if n.startswith("./etc/ssh/ssh_host_")]
    assert names.get("./etc/machine-id", 0) == 0
    assert all(n.startswith("./") for n in names)  # the archive root is the filesystem root
    assert not {"./usr/sbin/init", "./usr/sbin/sshd", "./usr/lib/systemd/systemd"} & set(names)  # not a container

    schroot = configparser.ConfigParser(interpolation=None)
    schroot.read_string(conf.read_text())
    assert dict(schroot["noble-amd64-sbuild"]) == {
        "description": "Ubuntu 24.04 noble/amd64 autobuilder (vmbuilder-lxc)", "groups": "root,sbuild",
        "root-groups": "root,sbuild", "profile": "sbuild", "type": "directory",
        "directory": str(build.dest / "rootfs"), "union-type": "overlay",
    }  # fmt: skip

    chroot = chroot_for(sbuild_user, tarball)
    try:
        source_package(sbuild_user, user_dir, "noble", "all", "built by sbuild in a vmbuilder-lxc chroot")
        result = as_user(
            sbuild_user,
            "sbuild --chroot-mode=unshare -d noble --no-run-lintian --no-run-autopkgtest --no-apt-upgrade "
            "--no-apt-distupgrade --nolog vmbhello_1.0.dsc",
            user_dir,
        )
        assert result.returncode == 0, f"sbuild failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
        assert "Status: successful" in result.stdout
        deb = user_dir / "vmbhello_1.0_all.deb"
        assert deb.is_file(), sorted(p.name for p in user_dir.iterdir())
        contents = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
        assert "./usr/share/vmbhello/greeting" in contents
    finally:
        chroot.unlink(missing_ok=True)

    # Acceptance 5 for this format too: the same rootfs exported twice with one SOURCE_DATE_EPOCH.
    digests = []
    for n in (1, 2):
        again = tmp_path / f"again{n}"
        proc = subprocess.run(
            [vmbuilder_command(), "lxc", "export", str(build.dest), "--export", "sbuild", "--export-dir", str(again)],
            env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(again.iterdir())})
    assert digests[0] == digests[1] and len(digests[0]) == 2
