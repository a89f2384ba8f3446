"""`vmbuilder lxc doctor` on this machine: it reports the real state, and names what is broken on purpose.

The breakages cannot outlive the test: the interrupted build and the broken cache entry live in
tmp directories passed with -d and --cache-dir, and the keyring (and lxcfs) are hidden only inside
a private mount namespace (`unshare -m`) in which doctor runs, so the host never changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .conftest import KEYRING, vmbuilder_command

LXCFS = Path("/var/lib/lxcfs")
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def doctor(*args: str, wrap: list[str] | None = None) -> tuple[int, dict[str, dict[str, str]], list[dict[str, Any]]]:
    """Run the real command; returns its exit code, its findings by check name and the raw list."""
    argv = [*(wrap or []), vmbuilder_command(), "lxc", "doctor", "--json", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode in (0, 1), f"doctor exited {proc.returncode}: {proc.stderr}"
    assert proc.stderr == "", proc.stderr
    found = json.loads(proc.stdout)
    assert all(set(r) == {"check", "status", "finding", "fix"} for r in found), found
    assert all(r["status"] in ("ok", "warn", "fail") and (r["status"] == "ok" or r["fix"]) for r in found), found
    return proc.returncode, {r["check"]: r for r in found}, found


def mounted(target: Path) -> str | None:
    """The file system type mounted at target, as /proc/self/mountinfo says (None: nothing)."""
    fstype = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if left.split()[4] == str(target):
            fstype = right.split()[0]
    return fstype


def lxcfs_answers() -> bool:
    try:
        return (LXCFS / "proc/meminfo").exists()
    except OSError:
        return False


def test_reports_the_real_state(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code, by, found = doctor("--cache-dir", str(cache), "-d", str(tmp_path / "builds" / "demo"))
    assert code == (1 if any(r["status"] == "fail" for r in found) else 0)
    # quickstart.sh installs the keyring, mmdebstrap and debootstrap (conftest requires them).
    assert by["keyring-ubuntu"]["status"] == "ok" and str(KEYRING) in by["keyring-ubuntu"]["finding"]
    assert by["bootstrappers"]["status"] == "ok" and "mmdebstrap" in by["bootstrappers"]["finding"]
    assert by["debootstrap-scripts-ubuntu"]["status"] == "ok"
    assert by["root"]["status"] == "ok"
    # lxcfs: what mountinfo says
    if mounted(LXCFS) == "fuse.lxcfs":
        want = ("ok", "running") if lxcfs_answers() else ("warn", "stale")
    else:
        want = ("warn", "not")
    assert by["lxcfs"]["status"] == want[0] and want[1] in by["lxcfs"]["finding"], by["lxcfs"]
    # cgroups: what /sys/fs/cgroup says
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    assert by["cgroups"]["status"] == ("ok" if unified else "warn")
    # binfmt: not asked for a foreign arch, so never a failure; "not mounted" only when it is not
    assert by["binfmt"]["status"] in ("ok", "warn")
    assert ("not mounted" in by["binfmt"]["finding"]) == (mounted(BINFMT) is None and not (BINFMT / "status").exists())
    assert by["space-cache"]["status"] == "ok" and by["partial-builds"]["status"] == "ok"
    assert "does not exist yet" in by["cache"]["finding"]
    assert not cache.exists() and not (tmp_path / "builds").exists()  # doctor creates nothing


def test_three_breakages_are_named(tmp_path: Path) -> None:
    # 1. an interrupted build: a partial directory whose PID is gone, beside DEST
    builds = tmp_path / "builds"
    partial = builds / ".demo.k3x9q.vmbuilder-partial"
    (partial / "rootfs").mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (partial / ".pid").write_text(str(gone.pid))
    # 2. a broken cache entry: a tarball whose store was interrupted before its metadata
    bases = tmp_path / "cache" / "bases"
    bases.mkdir(parents=True)
    key = "0123456789abcdef0123456789abcdef"
    (bases / f"{key}.tar.zst").write_bytes(b"half a tarball")
    # 3. the Ubuntu keyring hidden by an empty file, and lxcfs unmounted, in a private mount namespace
    empty = tmp_path / "empty.gpg"
    empty.touch()
    before = hashlib.sha256(KEYRING.read_bytes()).hexdigest()
    script = f'mount --bind "$1" {KEYRING} && shift && {{ ! mountpoint -q {LXCFS} || umount -l {LXCFS}; }} && exec "$@"'
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(empty)]
    try:
        code, by, _ = doctor("--cache-dir", str(tmp_path / "cache"), "-d", str(builds / "demo"), wrap=wrap)
    finally:
        # nothing to undo on the host: check that it really did not change
        assert hashlib.sha256(KEYRING.read_bytes()).hexdigest() == before
        assert mounted(KEYRING) is None
    assert code == 1  # the keyring stops a default build
    keyring = by["keyring-ubuntu"]
    assert keyring["status"] == "fail" and "is empty" in keyring["finding"]
    host_id = Path("/etc/os-release").read_text()
    assert ("vmbuilder-fetch-keyring" if "ID=debian" in host_id else "ubuntu-keyring") in keyring["fix"]
    stale = by["partial-builds"]
    assert stale["status"] == "warn" and partial.name in stale["finding"] and f"pid {gone.pid} gone" in stale["finding"]
    assert f"rm -rf --one-file-system {partial}" in stale["fix"] and "next build of demo" in stale["fix"]
    cache = by["cache"]
    assert cache["status"] == "warn" and key in cache["finding"] and "without its metadata" in cache["finding"]
    assert f"rm -rf {bases / (key + '.tar.zst')}" in cache["fix"]
    assert by["lxcfs"]["status"] == "warn" and "not mounted" in by["lxcfs"]["finding"]
    # doctor removed nothing: the fixes are the user's to run
    assert partial.is_dir() and (bases / f"{key}.tar.zst").exists()
    if mounted(LXCFS) == "fuse.lxcfs":
        assert lxcfs_answers()  # the host's lxcfs was never touched


def test_foreign_arch_asked_for(tmp_path: Path) -> None:
    """--arch names a foreign architecture: a missing qemu-user registration is then a failure."""
    code, by, _ = doctor("--cache-dir", str(tmp_path / "c"), "-d", str(tmp_path / "d"), "--arch", "riscv64")
    entry = BINFMT / "qemu-riscv64"
    registered = entry.exists() and "enabled" in entry.read_text() and "F" in entry.read_text().split("flags:")[1]
    assert by["binfmt"]["status"] == ("ok" if registered else "fail")
    if not registered:
        assert code == 1 and "qemu-user-static" in by["binfmt"]["fix"]


def test_human_table(tmp_path: Path) -> None:
    argv = [vmbuilder_command(), "lxc", "doctor", "--cache-dir", str(tmp_path / "c"), "-d", str(tmp_path / "d")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd="/", env={**os.environ})
    lines = proc.stdout.splitlines()
    assert all(line.split()[0] in ("OK", "WARN", "FAIL") for line in lines[:-1]), proc.stdout
    assert all("; fix: " in line for line in lines[:-1] if not line.startswith("OK")), proc.stdout
    assert lines[-1].endswith("failures") and proc.returncode == (1 if "FAIL " in proc.stdout else 0)


def test_stale_lxcfs_is_named(tmp_path: Path) -> None:
    """A real stale lxcfs mount (ENOTCONN): an lxcfs started and SIGKILLed inside a private mount namespace."""
    script = f"""
        set -e
        if mountpoint -q {LXCFS}; then umount -l {LXCFS}; fi
        lxcfs -f -p "$1/lxcfs.pid" {LXCFS} >/dev/null 2>&1 &
        pid=$!
        for i in $(seq 100); do head -c1 {LXCFS}/proc/meminfo >/dev/null 2>&1 && break; sleep 0.1; done
        sleep 1  # a kill while lxcfs still starts up can leave its mount answering
        {{ kill -9 $pid; wait $pid; }} 2>/dev/null || true
        for i in $(seq 50); do stat {LXCFS}/proc 2>&1 | grep -q "not connected" && break; sleep 0.1; done
        shift
        exec "$@"
    """
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(tmp_path)]
    was = mounted(LXCFS), lxcfs_answers()
    _, by, _ = doctor("--cache-dir", str(tmp_path / "c"), "-d", str(tmp_path / "d"), wrap=wrap)
    assert (mounted(LXCFS), lxcfs_answers()) == was  # the host's lxcfs (if any) is untouched
    lxcfs = by["lxcfs"]
    assert lxcfs["status"] == "warn" and "stale mount" in lxcfs["finding"] and "ENOTCONN" in lxcfs["finding"]
    assert lxcfs["fix"].startswith(f"umount -l {LXCFS}, then start lxcfs")


def test_libvirtd_answering_is_ok(tmp_path: Path, libvirtd: str) -> None:
    """With the session's libvirtd up, the LXC driver answers within the probe's timeout."""
    _, by, _ = doctor("--cache-dir", str(tmp_path / "c"), "-d", str(tmp_path / "d"))
    assert by["libvirt"]["status"] == "ok" and "lxc:///" in by["libvirt"]["finding"], by["libvirt"]
