"""The `--export incus` images in a real Incus (6.0, from bookworm-backports): imported and launched.

tests/test_exports.py checks the images' contents and LXD 5.0's import; this is the other consumer.
It exports `lxd,incus` together, so the Incus unified tarball is the one that shares its rootfs
stream with LXD's (sharing.py: two zstd frames back to back), the riskiest form for a consumer,
and both image forms keep the default compression, zstd, which Incus must accept. LXD runs at the
same time (the `lxd` fixture): the two daemons sit side by side on this host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Builder, IncusDaemon, incus_client, lxc_client, vmbuilder_command

NAME = "inc1"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SQUASHFS_ZSTD = 6  # the compression id in a squashfs superblock (offset 20, little-endian u16)
TIMINGS: dict[str, float] = {}


@dataclass
class Images:
    unified: Path
    meta: Path
    squashfs: Path


def sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def images(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """noble with the session's usual options (a cache hit when other tests built it), exported lxd,incus
    in both image forms (unified and split)."""
    base = tmp_path_factory.mktemp("incus")
    started = time.monotonic()
    build = builder.run("--suite", "noble", "--network", "none", "-d", str(base / NAME)).check()
    TIMINGS["build"] = time.monotonic() - started
    out = base / "out"
    # Level 1: the same formats and code paths at a fraction of the CPU time; no --compression, so
    # the format's default (zstd) is what Incus gets.
    argv = [vmbuilder_command(), "lxc", "export", str(build.dest), "--export", "lxd,incus", "--export-dir", str(out),
            "--lxd-image", "both", "--compression-level", "1", "--json"]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd="/")
    TIMINGS["export lxd,incus"] = time.monotonic() - started
    assert proc.returncode == 0, f"export failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    files = [Path(p) for p in json.loads(proc.stdout)["exports"]["incus"]]

    def one(suffix: str) -> Path:
        found = [p for p in files if str(p).endswith(suffix)]
        assert len(found) == 1, f"expected one incus file ending in {suffix}, got {files}"
        return found[0]

    return Images(one(f"{NAME}.incus.tar.zst"), one("/incus.tar.zst"), one("/rootfs.squashfs"))


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    print("\nincus test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def test_incus_images_are_zstd(images: Images) -> None:
    """The default compression of both forms is zstd, so the launch test below is zstd's test."""
    for path in (images.unified, images.meta):
        assert path.read_bytes()[:4] == ZSTD_MAGIC, path
    with images.squashfs.open("rb") as f:
        superblock = f.read(96)
    assert superblock[:4] == b"hsqs"
    assert struct.unpack_from("<H", superblock, 20)[0] == SQUASHFS_ZSTD


def wait_incus_running(instance: str, timeout: float = 90) -> str:
    """`incus info` says RUNNING, then systemd inside settles; returns systemd's state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r"^Status: RUNNING", incus_client("info", instance).stdout, re.M | re.I):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Incus instance {instance} is not RUNNING after {timeout} s")
    state = "unknown"
    while time.monotonic() < deadline:
        out = incus_client("exec", instance, "--", "systemctl", "is-system-running", check=False).stdout.strip()
        state = out or "unknown"
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    return state


def incus_sh(instance: str, script: str) -> str:
    return incus_client("exec", instance, "--", "/bin/sh", "-c", script).stdout.strip()


def test_incus_imports_and_launches_both_image_forms(images: Images, incus: IncusDaemon, lxd: None) -> None:
    """Issue 17 item 5: the unified and the split image import; instances reach running with their own names."""
    print(f"\nIncus server version {incus.version}")
    tag = str(os.getpid())
    forms = {
        f"vmbi-unified-{tag}": ([images.unified], sha256(images.unified)),
        # A split image's fingerprint is the hash of the metadata followed by the rootfs.
        f"vmbi-split-{tag}": ([images.meta, images.squashfs], sha256(images.meta, images.squashfs)),
    }
    # Names unlike test_exports' LXD ones: both daemons name their cgroups lxc.payload.NAME.
    instances = {f"vmbi-u{tag}": f"vmbi-unified-{tag}", f"vmbi-s{tag}": f"vmbi-split-{tag}"}
    try:
        started = time.monotonic()
        for alias, (files, fingerprint) in forms.items():
            incus_client("image", "import", *map(str, files), "--alias", alias, timeout=600)
            target = json.loads(incus_client("query", f"/1.0/images/aliases/{alias}").stdout)["target"]
            assert target == fingerprint, f"{alias}: Incus fingerprint {target}, expected {fingerprint}"
            shown = json.loads(incus_client("query", f"/1.0/images/{target}").stdout)
            assert shown["architecture"] == "x86_64", shown
            props = shown["properties"]
            assert (props["os"].lower(), props["release"], props["architecture"]) == ("ubuntu", "noble", "amd64")
        TIMINGS["incus image import (both)"] = time.monotonic() - started

        started = time.monotonic()
        for instance, alias in instances.items():
            incus_client("launch", alias, instance, "--quiet", timeout=600)
        for instance in instances:
            state = wait_incus_running(instance)
            failed = incus_sh(instance, "systemctl list-units --failed --no-legend --plain || true")
            assert state == "running", f"{instance}: {state}, failed units: {failed}"
            # The metadata templates (instance.name) gave the instance its own name.
            assert incus_sh(instance, "hostname") == instance
            assert incus_sh(instance, "cat /etc/hostname") == instance
            assert re.search(rf"^127\.0\.1\.1\s+{instance}$", incus_sh(instance, "cat /etc/hosts"), re.M)
            assert incus_sh(instance, "test -s /etc/machine-id && echo fresh") == "fresh"
        TIMINGS["incus launch to running (both)"] = time.monotonic() - started
        # LXD answers while Incus runs instances: one host, two daemons.
        assert json.loads(lxc_client("query", "/1.0").stdout)["environment"]["server"] == "lxd"
        started = time.monotonic()
        for instance in instances:
            incus_client("stop", instance, timeout=120)
        TIMINGS["incus stop (both)"] = time.monotonic() - started
    finally:
        for instance in instances:
            incus_client("delete", "--force", instance, check=False)
        for alias in forms:
            incus_client("image", "delete", alias, check=False)
    left = incus_client("list", "--format", "csv", "-c", "n").stdout.split()
    assert not set(left) & set(instances), left
