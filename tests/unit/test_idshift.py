"""The id shift engine (vmbuilder_lxc/idshift.py) on real files: owners, modes, capabilities, ACLs.

The tree is made as root in a temporary directory with the real tools (setcap from libcap2-bin,
setfacl/getfacl from acl; quickstart.sh installs both), and read back with them, so each rule is
checked the way the kernel and those tools see it, not only through our own parser.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from vmbuilder_lxc import shiftstep
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.idmap import IdMap
from vmbuilder_lxc.idshift import (
    ACL_ACCESS,
    CAP_V1,
    CAP_V2,
    CAP_V3,
    XATTR_CAPS,
    IdShiftError,
    _Map,
    convert_acl,
    convert_cap,
    shift_tree,
)
from vmbuilder_lxc.log import UserError

from .conftest import DictSettings

SHIFT = 100000
COUNT = 65536

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners and capabilities needs root")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (quickstart.sh installs it: libcap2-bin, acl)")
    return path


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def make_tree(root: Path, outside: Path) -> None:
    """A small rootfs with one of each thing a shift must get right."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    ping = root / "usr/bin/ping"
    shutil.copyfile("/bin/true", ping)
    os.chmod(ping, 0o755)
    sh(tool("setcap"), "cap_net_raw=ep", str(ping))
    for name, mode in (("su", 0o4755), ("wall", 0o2755), ("both", 0o6750)):
        (root / "usr/bin" / name).write_bytes(b"x")
        os.chmod(root / "usr/bin" / name, mode)
    os.chown(root / "usr/bin/wall", 0, 5)  # group tty
    os.link(root / "usr/bin/su", root / "usr/bin/su-again")
    (root / "home/user").mkdir(parents=True)
    os.chown(root / "home/user", 1000, 1000)
    (root / "home/user/file").write_text("hi")
    os.chown(root / "home/user/file", 1000, 1000)
    (root / "srv").mkdir()
    sh(tool("setfacl"), "-m", "u:1000:rw,g:100:r", str(root / "home/user/file"))
    sh(tool("setfacl"), "-d", "-m", "u:33:rx,g:33:rx", str(root / "srv"))
    os.setxattr(root / "home/user/file", "user.note", b"kept")
    os.symlink(str(outside), root / "escape")  # absolute link out of the tree: never followed
    os.symlink("../usr/bin/ping", root / "home/ping")
    os.lchown(root / "home/ping", 1000, 1000)
    os.mkfifo(root / "tmp/fifo")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(root / "null", 65534, 65534)  # nobody/nogroup: inside a 65536-id map


Meta = tuple[int, int, int, int, int, dict[str, bytes]]


def snapshot(root: Path) -> dict[str, Meta]:
    """Owner, mode, link count and every xattr of every inode (symlinks not followed)."""
    out: dict[str, Meta] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = Path(dirpath, name) if name else Path(dirpath)
            st = os.lstat(path)
            xattrs = {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
            out[str(path.relative_to(root))] = (st.st_uid, st.st_gid, st.st_mode, st.st_nlink, st.st_ino, xattrs)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    if os.geteuid() != 0:
        pytest.skip("changing owners and capabilities needs root")
    outside = tmp_path / "host-file"
    outside.write_text("host")
    root = tmp_path / "rootfs"
    root.mkdir()
    make_tree(root, outside)
    return root, outside


@needs_root
def test_owners_shift_for_every_inode_symlinks_included(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    before = snapshot(root)
    report = shift_tree(root, SHIFT, SHIFT + 7, COUNT)
    after = snapshot(root)
    assert after.keys() == before.keys()
    for rel, (uid, gid, *_rest) in before.items():
        assert after[rel][:2] == (uid + SHIFT, gid + SHIFT + 7), rel
    assert os.lstat(root / "escape").st_uid == SHIFT
    assert os.lstat(outside).st_uid == 0  # the link's target outside the tree is untouched
    assert report.inodes == len(before) - 1  # su-again is su: one inode, one change
    assert report.links == 1


@needs_root
def test_setuid_setgid_and_sticky_bits_are_kept(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    before = snapshot(root)
    shift_tree(root, SHIFT, SHIFT, COUNT)
    after = snapshot(root)
    for rel in ("usr/bin/su", "usr/bin/wall", "usr/bin/both", "tmp", "null", "tmp/fifo"):
        assert after[rel][2] == before[rel][2], rel
    assert stat.S_IMODE(os.lstat(root / "usr/bin/both").st_mode) == 0o6750


@needs_root
def test_capability_becomes_v3_with_the_namespace_root(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    ping = root / "usr/bin/ping"
    assert os.getxattr(ping, XATTR_CAPS)[:4] == struct.pack("<I", CAP_V2 | 1)
    report = shift_tree(root, SHIFT, SHIFT, COUNT)
    raw = os.getxattr(ping, XATTR_CAPS)
    assert struct.unpack("<I", raw[:4])[0] == CAP_V3 | 1
    assert struct.unpack("<I", raw[20:24])[0] == SHIFT
    assert f"rootid={SHIFT}" in sh(tool("getcap"), "-n", str(ping))
    assert "cap_net_raw=ep" in sh(tool("getcap"), str(ping))
    assert report.caps == 1


@needs_root
def test_acl_entries_shift_and_other_xattrs_stay(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    report = shift_tree(root, SHIFT, SHIFT, COUNT)
    acl = sh(tool("getfacl"), "-n", "-p", str(root / "home/user/file"))
    assert f"user:{SHIFT + 1000}:rw-" in acl and f"group:{SHIFT + 100}:r--" in acl
    default = sh(tool("getfacl"), "-n", "-p", "-d", str(root / "srv"))
    assert f"default:user:{SHIFT + 33}:r-x" in default or f"user:{SHIFT + 33}:r-x" in default
    assert os.getxattr(root / "home/user/file", "user.note") == b"kept"
    assert report.acls == 2


@needs_root
def test_round_trip_gives_back_identical_metadata(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    before = snapshot(root)
    shift_tree(root, SHIFT, SHIFT + 3, COUNT)
    assert snapshot(root) != before
    shift_tree(root, -SHIFT, -(SHIFT + 3), COUNT)
    assert snapshot(root) == before


@needs_root
def test_an_id_outside_the_map_is_refused_never_wrapped(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.chown(root / "home/user/file", COUNT, 0)
    with pytest.raises(IdShiftError, match=r"home/user/file has uid 65536, outside the mapped ids 0-65535"):
        shift_tree(root, SHIFT, SHIFT, COUNT)
    assert os.lstat(root / "home/user/file").st_uid == COUNT  # never changed, let alone wrapped


@needs_root
def test_unshift_refuses_ids_below_the_range(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with pytest.raises(IdShiftError, match="outside the mapped ids 100000-165535"):
        shift_tree(root, -SHIFT, -SHIFT, COUNT)  # the tree is 0-based: nothing to unshift


@needs_root
def test_an_acl_entry_outside_the_map_is_refused(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    sh(tool("setfacl"), "-m", f"u:{COUNT + 5}:r", str(root / "srv"))
    with pytest.raises(IdShiftError, match=r"srv \(ACL entry\) has uid 65541"):
        shift_tree(root, SHIFT, SHIFT, COUNT)


@needs_root
def test_another_filesystem_is_never_entered(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    mnt = root / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True, timeout=60)
    try:
        (mnt / "inner").write_text("x")
        report = shift_tree(root, SHIFT, SHIFT, COUNT)
        assert report.mounts == ["mnt"]
        assert os.lstat(mnt).st_uid == 0 and os.lstat(mnt / "inner").st_uid == 0
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)


@needs_root
def test_a_symlink_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    with pytest.raises(IdShiftError, match="is not a directory"):
        shift_tree(tmp_path / "link", SHIFT, SHIFT, COUNT)


# -- the xattr formats, without root ------------------------------------------------------------

UIDS = _Map("uid", SHIFT, COUNT)
GIDS = _Map("gid", SHIFT, COUNT)
UNSHIFT = _Map("uid", -SHIFT, COUNT)


def test_a_v1_capability_becomes_v3() -> None:
    raw = struct.pack("<3I", CAP_V1 | 1, 1 << 13, 0)
    assert convert_cap(raw, UIDS, "x") == struct.pack("<6I", CAP_V3 | 1, 1 << 13, 0, 0, 0, SHIFT)


def test_a_v3_capability_with_root_zero_after_unshift_is_v2() -> None:
    raw = struct.pack("<6I", CAP_V3, 1, 2, 3, 4, SHIFT)
    assert convert_cap(raw, UNSHIFT, "x") == struct.pack("<5I", CAP_V2, 1, 2, 3, 4)


@pytest.mark.parametrize(
    "raw",
    [b"\x00\x00", struct.pack("<5I", CAP_V3, 0, 0, 0, 0), struct.pack("<6I", 0x04000000, 0, 0, 0, 0, 0)],
    ids=["truncated", "v3-too-short", "unknown-revision"],
)
def test_a_capability_that_cannot_be_read_is_refused(raw: bytes) -> None:
    with pytest.raises(IdShiftError, match="security.capability"):
        convert_cap(raw, UIDS, "usr/bin/x")


def test_acl_only_named_entries_shift() -> None:
    undefined = 0xFFFFFFFF
    entries = [(0x01, 6, undefined), (0x02, 6, 1000), (0x04, 4, undefined), (0x08, 4, 100), (0x10, 6, undefined)]
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    out = convert_acl(raw, UIDS, GIDS, "x")
    got = [struct.unpack_from("<HHI", out, 4 + 8 * i) for i in range(len(entries))]
    assert got[1] == (0x02, 6, SHIFT + 1000) and got[3] == (0x08, 4, SHIFT + 100)
    assert got[0] == entries[0] and got[2] == entries[2] and got[4] == entries[4]


def test_an_acl_of_another_version_is_refused() -> None:
    with pytest.raises(IdShiftError, match=ACL_ACCESS.split(".")[0] + "|POSIX ACL"):
        convert_acl(struct.pack("<I", 1), UIDS, GIDS, "x")


def test_the_last_id_of_the_map_is_the_last_one_taken() -> None:
    assert UIDS(COUNT - 1, "x") == SHIFT + COUNT - 1
    with pytest.raises(IdShiftError):
        UIDS(COUNT, "x")
    with pytest.raises(IdShiftError):
        UNSHIFT(SHIFT - 1, "x")


# -- the build's step (shiftstep.py) and the export's 0-based view (exports/unshift.py) ----------


def step_context(summary: dict[str, object], **settings: object) -> Context:
    ctx = Context(settings=DictSettings(**settings), hypervisor_name="lxc", distro_name="ubuntu")  # type: ignore[arg-type]
    ctx.summary.update(summary)
    return ctx


IDS = {"uid_start": SHIFT, "gid_start": SHIFT, "count": COUNT}


def test_the_step_shifts_only_a_root_build_with_an_idmap() -> None:
    assert shiftstep.idmap_to_shift(step_context({})) is None
    assert shiftstep.idmap_to_shift(step_context({"idmap": IDS, "rootless": True})) is None
    assert shiftstep.idmap_to_shift(step_context({"idmap": IDS})) == IdMap(SHIFT, SHIFT, COUNT)


def test_the_step_refuses_overlay_in_preflight() -> None:
    with pytest.raises(UserError, match="--idmap with --backing overlay.*; use --backing btrfs"):
        shiftstep.preflight(step_context({"idmap": IDS}, backing="overlay"))
    shiftstep.preflight(step_context({"idmap": IDS}, backing="btrfs"))
    shiftstep.preflight(step_context({}, backing="overlay"))


VIEW_SCRIPT = """
import json, os, sys
from pathlib import Path
from vmbuilder_lxc.exports.unshift import zero_based
root, ids = Path(sys.argv[1]), json.loads(sys.argv[2])
out = {}
with zero_based(root, ids) as view:
    for dirpath, dirnames, filenames in os.walk(view):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            xattrs = {n: os.getxattr(path, n, follow_symlinks=False).hex()
                      for n in os.listxattr(path, follow_symlinks=False)}
            out[os.path.relpath(path, view)] = [st.st_uid, st.st_gid, st.st_mode, xattrs]
    out["mounted"] = str(view) in Path("/proc/self/mountinfo").read_text()
out["left"] = sorted(p.name for p in root.parent.iterdir())
print(json.dumps(out))
"""


@needs_root
def test_the_export_view_of_a_shifted_tree_reads_as_the_unshifted_tree(tree: tuple[Path, Path]) -> None:
    """Owners, modes, capabilities (v3 back to v2) and ACL entries, as the kernel shows them through
    the idmapped mount; run in a private mount namespace so that nothing is ever left on the host."""
    root, _ = tree
    before = {rel: [v[0], v[1], v[2], {n: x.hex() for n, x in v[5].items()}] for rel, v in snapshot(root).items()}
    shift_tree(root, SHIFT, SHIFT + 3, COUNT)
    ids = json.dumps({"uid_start": SHIFT, "gid_start": SHIFT + 3, "count": COUNT})
    argv = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", VIEW_SCRIPT, str(root), ids]
    seen = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout)
    assert seen.pop("mounted") is True
    assert seen.pop("left") == sorted(p.name for p in root.parent.iterdir())  # the view's directory is gone
    assert seen == before
    assert os.lstat(root).st_uid == SHIFT  # the tree itself was only read
