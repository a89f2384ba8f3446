"""Issue 16 item 6: building without root, in a user namespace made with newuidmap/newgidmap.

A test user with its own /etc/subuid and /etc/subgid ranges builds noble (its first build is a
cold one: one bootstrap in its own cache) with --export lxd,lxc,tar. Then:
- the rootfs is owned by the user's subordinate range and the LXC config maps the same range;
- a root lxc-start boots it (LXC, run by root, still asks newuidmap, which insists that root
  owns the range too: the test lists it for root as well, as docs/unprivileged.md tells admins);
- the exports are byte-identical to a root build's of the same inputs and SOURCE_DATE_EPOCH. The
  root build uses a copy of the user's cache entry shifted back to 0-based ids (idshift), so both
  builds start from the very same base and an archive update in between cannot make them differ;
- what cannot work without root is refused up front (exit 2, one line), and SIGTERM during the
  build ends it with 143 across the namespace boundary, leaving nothing behind.

vmbuilder runs on Debian's python3 from a pip --target copy in the user's home: the test venv's
interpreter lives under /root, which the user cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Builder
from vmbuilder_lxc.idshift import shift_tree

USER = "vmbtest"
COUNT = 65536
EPOCH = "1700000000"
DEBIAN_PYTHON = "/usr/bin/python3"
ROOT = Path(__file__).resolve().parents[2]
SUBUID, SUBGID = Path("/etc/subuid"), Path("/etc/subgid")
EXPORT_FILES = ("rl.lxd.tar.zst", "rl.lxc/rootfs.tar.xz", "rl.lxc/meta.tar.xz", "rl.tar", "rl.template.properties")
# --compression-level 1: the comparison needs the same bytes, not small ones (xz -9 of a noble
# rootfs takes minutes on a loaded machine).
EXPORT_ARGS = ("--export", "lxd,lxc,tar", "--compression-level", "1")
COMMON = ("--suite", "noble", "--network", "none")


def _ranges(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _user_range() -> int:
    """The user's subordinate range start (added past every other range if useradd gave it none)."""
    mine = [(s, c) for who, s, c in _ranges(SUBUID) if who == USER and c >= COUNT]
    theirs = [(s, c) for who, s, c in _ranges(SUBGID) if who == USER and c >= COUNT]
    if mine and theirs and mine[0][0] == theirs[0][0]:
        return mine[0][0]
    end = max([s + c for _, s, c in _ranges(SUBUID) + _ranges(SUBGID)] + [100000])
    start = end + COUNT
    for path in (SUBUID, SUBGID):
        kept = [line for line in path.read_text().splitlines() if not line.startswith(f"{USER}:")]
        path.write_text("\n".join([*kept, f"{USER}:{start}:{COUNT}"]) + "\n")
    return start


@dataclass
class Rootless:
    home: Path
    uid: int
    gid: int
    start: int
    site: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home), "PYTHONPATH": str(self.site),
                "SOURCE_DATE_EPOCH": EPOCH, **extra}  # fmt: skip

    def argv(self, *args: str) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--",
                DEBIAN_PYTHON, "-m", "vmbuilder_lxc", "lxc", "ubuntu", "--json", *args]  # fmt: skip

    def run(self, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env(), capture_output=True, text=True, timeout=timeout,
                              cwd=self.home)  # fmt: skip


@pytest.fixture(scope="module")
def rootless() -> Iterator[Rootless]:
    for tool in ("newuidmap", "newgidmap", "setpriv", "lxc-start"):
        assert shutil.which(tool), f"{tool} is missing: quickstart.sh installs uidmap, util-linux and lxc"
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    start = _user_range()
    import pwd

    pw = pwd.getpwnam(USER)
    home = Path(pw.pw_dir)
    # LXC started by root maps ids with newuidmap too, and newuidmap lets root map only root's ranges.
    saved = {path: path.read_text() for path in (SUBUID, SUBGID)}
    for path in (SUBUID, SUBGID):
        with path.open("a") as f:
            f.write(f"root:{start}:{COUNT}\n")
    site = home / "vmbuilder-site"
    shutil.rmtree(site, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(ROOT)],
                   check=True)  # fmt: skip
    builds = home / "builds"
    _remove(builds)
    builds.mkdir()
    os.chown(builds, pw.pw_uid, pw.pw_gid)
    try:
        yield Rootless(home, pw.pw_uid, pw.pw_gid, start, site)
    finally:
        for path, text in saved.items():
            path.write_text(text)
        _remove(builds)


def _remove(path: Path) -> None:
    """Root removes what the user's namespace made (owned by subordinate ids)."""
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)


@pytest.fixture(scope="module")
def user_build(rootless: Rootless) -> dict[str, Any]:
    dest = rootless.home / "builds" / "rl"
    proc = rootless.run(*COMMON, "-d", str(dest), *EXPORT_ARGS, "--export-dir", str(rootless.home / "builds/ex"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


@pytest.fixture(scope="module")
def root_build(rootless: Rootless, user_build: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root's build of the same inputs from the user's base, shifted back to 0-based ids."""
    work = tmp_path_factory.mktemp("rootless-root")
    cache = work / "cache"
    user_cache = rootless.home / ".cache" / "vmbuilder-lxc"
    cache.mkdir()
    subprocess.run(["cp", "-a", "--", str(user_cache / "bases"), str(cache / "bases")], check=True)
    shift_tree(cache / "bases", -rootless.start, -rootless.start, COUNT)  # the cache dir itself is the user's
    # --idmap with the user's range: the same inputs, for the guest too (it is an unprivileged
    # container either way, so both get the userns tweaks); root's exports are written before the
    # shift, so both are 0-based.
    idmap = ("--idmap", f"{rootless.start}:{COUNT}")
    with pytest.MonkeyPatch.context() as mp:  # Builder runs vmbuilder with this process's environment
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        build = Builder(cache).run(
            *COMMON, *idmap, "-d", str(work / "rl"), *EXPORT_ARGS, "--export-dir", str(work / "ex")
        )
    build.check()
    return work / "ex"


def test_rootfs_is_owned_by_the_subordinate_range_and_the_config_maps_it(
    rootless: Rootless, user_build: dict[str, Any]
) -> None:
    dest = Path(user_build["dest"])
    start = rootless.start
    assert user_build["idmap"] == {"uid_start": start, "gid_start": start, "count": COUNT}
    assert user_build.get("rootless") is True
    st = (dest / "rootfs").stat()
    assert (st.st_uid, st.st_gid) == (start, start)
    shadow = (dest / "rootfs/etc/shadow").stat()
    assert shadow.st_gid == start + 42  # the shadow group, through the map
    su = (dest / "rootfs/usr/bin/su").stat()
    assert su.st_uid == start and su.st_mode & 0o4000, "setuid root kept"
    config = (dest / "config").read_text()
    assert f"lxc.idmap = u 0 {start} {COUNT}" in config and f"lxc.idmap = g 0 {start} {COUNT}" in config
    marker = json.loads((dest / "vmbuilder-lxc.json").read_text())
    assert marker["idmap"] == user_build["idmap"]
    cache = rootless.home / ".cache" / "vmbuilder-lxc"
    assert cache.stat().st_uid == rootless.uid, "the user's cache directory stays the user's"
    # What the user handles is the user's: DEST, its config and marker, the exports and their directories.
    ex = rootless.home / "builds" / "ex"
    for path in (
        dest,
        dest / "config",
        dest / "vmbuilder-lxc.json",
        ex,
        ex / "rl.lxc",
        *(ex / n for n in EXPORT_FILES),
    ):
        assert path.stat().st_uid == rootless.uid, path


def test_root_lxc_start_boots_it(user_build: dict[str, Any], container: Any, lxcfs: Path) -> None:
    dest = Path(user_build["dest"])
    c = container(dest)
    state = c.wait_running(timeout=60)
    assert state == "running", f"{state}; failed units: {c.failed_units()}"
    assert c.sh("cat /proc/self/uid_map").split()[:3] == ["0", str(user_build["idmap"]["uid_start"]), str(COUNT)]
    c.kill()


def test_exports_are_byte_identical_to_roots(rootless: Rootless, user_build: dict[str, Any], root_build: Path) -> None:
    user_ex = rootless.home / "builds" / "ex"
    differ = []
    for name in EXPORT_FILES:
        mine, roots = user_ex / name, root_build / name
        assert mine.is_file() and roots.is_file(), name
        if mine.read_bytes() != roots.read_bytes():
            differ.append(name)
    assert not differ, f"rootless exports differ from root's: {differ}; first members that differ in the tar: " + (
        "; ".join(_tar_differences(user_ex / "rl.tar", root_build / "rl.tar")[:5])
    )


def _tar_differences(a: Path, b: Path) -> list[str]:
    """What differs between two tar archives, member by member (for the failure message)."""

    def members(path: Path) -> dict[str, tuple[Any, ...]]:
        with tarfile.open(path) as tar:
            return {m.name: (m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.size, m.linkname, m.pax_headers)
                    for m in tar.getmembers()}  # fmt: skip

    ma, mb = members(a), members(b)
    out = [f"{n}: only in {'rootless' if n in ma else 'root'}" for n in sorted(set(ma) ^ set(mb))]
    out += [f"{n}: {ma[n]} != {mb[n]}" for n in sorted(set(ma) & set(mb)) if ma[n] != mb[n]]
    return out or ["the members' headers agree (file contents differ)"]


@pytest.mark.parametrize(
    "args,problem",
    [
        (("--libvirt", "lxc:///"), "--libvirt defines a domain in a system libvirtd, which needs root"),
        (("--backing", "overlay"), "--backing overlay needs root"),
        (("--idmap", "auto"), "--idmap shifts a root build's rootfs"),
    ],
)
def test_refused_up_front(rootless: Rootless, args: tuple[str, ...], problem: str) -> None:
    proc = rootless.run(*COMMON, "-d", str(rootless.home / "builds/refused"), *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("vmbuilder: error:")]
    assert len(lines) == 1 and problem in lines[0], proc.stderr
    assert not (rootless.home / "builds/refused").exists()


def test_lxc_path_refused(rootless: Rootless) -> None:
    proc = rootless.run(*COMMON, "-d", "/var/lib/lxc/rootless-refused", timeout=120)
    assert proc.returncode == 2 and "only root may write" in proc.stderr, proc.stderr


def test_sigterm_crosses_the_namespace(rootless: Rootless, user_build: dict[str, Any]) -> None:
    """A warm build paused in configure, SIGTERMed: 143, the one-line message, nothing left behind."""
    dest = rootless.home / "builds" / "sig"
    proc = subprocess.Popen(
        rootless.argv(*COMMON, "-d", str(dest)),
        env=rootless.env(VMBUILDER_TEST_PAUSE_AT="configure"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=rootless.home,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "paused at configure" in line:
            break
    else:
        proc.wait(timeout=60)
        raise AssertionError("".join(seen))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(seen) + err
    assert "interrupted by SIGTERM" in err, err
    assert json.loads(out)["exit_code"] == 143
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and list(dest.parent.glob(".sig.*")):
        time.sleep(0.2)
    assert not list(dest.parent.glob(".sig.*")), "the build directory was left behind"
    assert not dest.exists()
