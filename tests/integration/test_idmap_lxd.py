"""Issue 16's acceptance: LXD launches the export of a shifted (`--idmap auto`) build, and `ping` works in it.

`vmbuilder lxc export` reads the map from DEST/vmbuilder-lxc.json and writes a 0-based image (LXD
applies its own map at launch); the archive's owners are checked before LXD sees it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Builder, lxc_client, vmbuilder_command

USER = "tester"


@pytest.fixture(scope="module")
def parent() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="vmbuilder-idmap-lxd-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def zstd_members(path: Path) -> list[tarfile.TarInfo]:
    """The members of a .tar.zst, read through the zstd tool (tarfile has no zstd before 3.14)."""
    proc = subprocess.Popen(["zstd", "-dc", str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        members = [m for m in tar]
    assert proc.wait() == 0
    return members


def wait_running(instance: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        if re.search(r"^Status: RUNNING", lxc_client("info", instance).stdout, re.M | re.I):
            out = lxc_client("exec", instance, "--", "systemctl", "is-system-running", check=False).stdout.strip()
            state = out or "unknown"
            if state in ("running", "degraded"):
                return state
        time.sleep(0.5)
    return state


def test_lxd_launches_the_export_of_a_shifted_build(builder: Builder, parent: Path, lxd: None) -> None:
    dest = parent / "noble"
    b = builder.run("--suite", "noble", "-d", str(dest), "--idmap", "auto", "--network", "none",
                    "--user", USER).check()  # fmt: skip
    start = b.summary["idmap"]["uid_start"]
    assert os.lstat(dest / "rootfs/usr/bin/ping").st_uid == start  # the build is shifted
    out = parent / "out"
    r = subprocess.run([vmbuilder_command(), "lxc", "export", str(dest), "--export", "lxd", "--export-dir", str(out)],
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    image = out / "noble.lxd.tar.zst"
    members = zstd_members(image)
    assert members and all(m.uid < 65536 and m.gid < 65536 for m in members), "the export is not 0-based"
    ping = next(m for m in members if m.name == "rootfs/usr/bin/ping")
    assert (ping.uid, ping.gid) == (0, 0)

    tag = str(os.getpid())
    alias, instance = f"vmbt-idmap-{tag}", f"vmbt-idm{tag}"
    try:
        lxc_client("image", "import", str(image), "--alias", alias, timeout=600)
        lxc_client("launch", alias, instance, timeout=600)
        state = wait_running(instance)
        failed = lxc_client("exec", instance, "--", "systemctl", "list-units", "--failed", "--no-legend", "--plain",
                            check=False).stdout  # fmt: skip
        assert state in ("running", "degraded"), f"{instance}: {state}, failed units: {failed}"
        uid_map = lxc_client("exec", instance, "--", "cat", "/proc/self/uid_map").stdout.split()
        assert uid_map[0] == "0" and uid_map[1] != "0", f"LXD did not run it unprivileged: {uid_map}"
        caps = lxc_client("exec", instance, "--", "getcap", "/usr/bin/ping").stdout
        print(f"LXD instance: uid_map {uid_map}, ping: {caps.strip()}, state {state}, failed: {failed.strip()}")
        assert "cap_net_raw" in caps
        as_user = lxc_client("exec", instance, "--", "su", "-l", USER, "-c", "ping -c1 -W5 127.0.0.1").stdout
        assert "1 received" in as_user
        assert "1 received" in lxc_client("exec", instance, "--", "ping", "-c1", "-W5", "127.0.0.1").stdout
    finally:
        lxc_client("delete", "--force", instance, check=False)
        lxc_client("image", "delete", alias, check=False)
