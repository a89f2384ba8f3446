"""Exports of a shifted build (--idmap) are 0-based: byte-identical to the same build unshifted.

One warm noble build from the session cache with `--idmap auto` and a fixed SOURCE_DATE_EPOCH.
It exports tar during the build (before the shift). Then `vmbuilder lxc export` exports lxd, lxc
and tar from the shifted DEST: it reads the map from DEST/vmbuilder-lxc.json and reads the rootfs
through an idmapped mount (vmbuilder_lxc/exports/unshift.py). The same build unshifted is a copy
of DEST shifted back (idshift.shift_tree with the negative shift) with the map dropped from its
marker, exported the same way. Every file must be the same bytes. (A second build without
--idmap is not the same build: --idmap adds the userns tweaks, `When(userns=True)`.)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmbuilder_lxc.idshift import shift_tree

from .conftest import Build, Builder, vmbuilder_command

NAME = "idx1"  # the copy has this name too (it is in the images), in another parent directory
EPOCH = "1700000000"
FORMATS = "lxd,lxc,tar"
LEVEL = ("--compression-level", "1")  # the same files and code paths at a fraction of the CPU time
CAP_V3 = 0x03000000


@dataclass
class Pair:
    shifted: Build
    unshifted: Path  # DEST of the copy shifted back
    build_out: Path  # --export tar during the build
    shifted_out: Path
    unshifted_out: Path


def digests(out: Path) -> dict[str, str]:
    """sha256 of every file below OUT by relative path (nothing unreported escapes the comparison)."""
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        found[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def export(dest: Path, out: Path) -> None:
    argv = [vmbuilder_command(), "lxc", "export", str(dest), "--export", FORMATS, "--export-dir", str(out), *LEVEL]
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd="/", env=env)
    assert proc.returncode == 0, f"vmbuilder lxc export {dest} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def pair(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    base = tmp_path_factory.mktemp("idmap-exports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        shifted = builder.run("--suite", "noble", "--network", "none", "-d", str(base / "shifted" / NAME),
                              "--idmap", "auto", "--export", "tar", "--export-dir", str(base / "build-out"),
                              *LEVEL).check()  # fmt: skip
    export(shifted.dest, base / "shifted-out")
    copy = base / "unshifted" / NAME
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", "--reflink=auto", str(shifted.dest), str(copy)], check=True, timeout=600)
    ids = shifted.summary["idmap"]
    shift_tree(copy / "rootfs", -ids["uid_start"], -ids["gid_start"], ids["count"])
    marker = json.loads((copy / "vmbuilder-lxc.json").read_text())
    del marker["idmap"]
    (copy / "vmbuilder-lxc.json").write_text(json.dumps(marker))
    export(copy, base / "unshifted-out")
    return Pair(shifted, copy, base / "build-out", base / "shifted-out", base / "unshifted-out")


def test_the_shifted_build_is_shifted(pair: Pair) -> None:
    ids = pair.shifted.summary["idmap"]
    start = ids["uid_start"]
    assert start > 0 and ids["count"] >= 65536
    st = os.lstat(pair.shifted.rootfs)
    assert (st.st_uid, st.st_gid) == (start, ids["gid_start"])
    shadow = os.lstat(pair.shifted.rootfs / "etc/shadow")
    plain_shadow = os.lstat(pair.unshifted / "rootfs/etc/shadow")
    assert plain_shadow.st_gid == 42 and shadow.st_gid == 42 + ids["gid_start"]  # group shadow, shifted
    su = os.lstat(pair.shifted.rootfs / "usr/bin/su")
    assert su.st_mode & 0o4000 and su.st_mode == os.lstat(pair.unshifted / "rootfs/usr/bin/su").st_mode
    raw = os.getxattr(pair.shifted.rootfs / "usr/bin/ping", "security.capability")
    assert struct.unpack_from("<I", raw)[0] & 0xFF000000 == CAP_V3
    assert struct.unpack_from("<I", raw, 20)[0] == start  # the namespace's root id
    assert pair.shifted.summary["shift"]["caps"] >= 1 and pair.shifted.summary["shift"]["inodes"] > 5000


def test_exports_of_the_shifted_build_are_byte_identical(pair: Pair) -> None:
    unshifted = digests(pair.unshifted_out)
    assert {"idx1.tar", "idx1.lxc/rootfs.tar.xz", "idx1.lxc/meta.tar.xz", "idx1.lxd.tar.zst"} <= set(unshifted)
    assert digests(pair.shifted_out) == unshifted
    # The build's own export, written before the shift, is the reference that needs no shift at all.
    build_out = digests(pair.build_out)
    assert build_out == {k: v for k, v in unshifted.items() if k.startswith("idx1.t")}


def test_no_view_or_mount_is_left_behind(pair: Pair) -> None:
    parent = pair.shifted.dest.parent
    assert str(parent) not in Path("/proc/self/mountinfo").read_text()
    assert sorted(p.name for p in pair.shifted.dest.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in parent.iterdir()) == [NAME]
