"""guestfs: every read and write stays inside the rootfs, whatever symlinks a hostile template holds.

Each test runs twice: with the kernel's openat2(RESOLVE_IN_ROOT) and with the portable walker
(forced through the module's probe result). The host side is a directory under tmp_path; after
every operation the whole tree outside the rootfs must be exactly as before.
"""

from __future__ import annotations

import errno
import importlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import guestfs, openat2
from vmbuilder_lxc.chroot import Chroot
from vmbuilder_lxc.exports import stage
from vmbuilder_lxc.guestfs import GuestFS
from vmbuilder_lxc.guestpath import GuestPathError
from vmbuilder_lxc.tweakactions import Remove, Truncate
from vmbuilder_lxc.tweakguest import Guest

Snapshot = dict[str, tuple[str, str | bytes, int]]
postinst: Any = importlib.import_module("vmbuilder_lxc.plugins.postinst")


@pytest.fixture(params=[True, False], ids=["openat2", "walker"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param and not openat2.available():
        pytest.skip("this kernel has no openat2")
    monkeypatch.setattr(openat2, "_state", request.param)  # what GuestFS(root) picks by default
    return bool(request.param)


class World:
    """tmp/host (files that must never change) and tmp/root (a rootfs full of hostile links)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.host = tmp / "host"
        self.hostfile = self.host / "hostfile"
        self.hostdir = self.host / "hostdir"
        self.hostdir.mkdir(parents=True)
        self.hostfile.write_text("HOST\n")
        (self.hostdir / "inside").write_text("HOST DIR\n")
        (self.hostdir / ".bash_history").write_text("host history\n")
        self.root = tmp / "root"
        for d in ("etc/systemd/system", "home/user", "var/log", "usr/sbin"):
            (self.root / d).mkdir(parents=True)
        up = "../" * 12
        links = {
            "etc/x": str(self.hostfile),  # absolute
            "a": up + str(self.hostfile).lstrip("/"),  # relative, climbing far above the root
            "opt": str(self.hostdir),  # a directory
            "etc/rel-dir": "../../host/hostdir",  # relative directory link to the host
            "chain1": "chain2",
            "chain2": "/etc/x",
            "loop1": "loop2",
            "loop2": "loop1",
            "dangling": str(self.host / "created-through-dangling"),
            "etc/systemd/system/multi-user.target.wants": str(self.hostdir),
            "home/user/.ssh": str(self.hostdir),
            "etc/resolv.conf": str(self.hostfile),
            "usr/sbin/policy-rc.d": up + "host/hostfile",
            "var/log/journal": str(self.hostdir),
        }
        for rel, target in links.items():
            (self.root / rel).symlink_to(target)
        os.link(self.hostfile, self.root / "etc/hardlinked")  # a hard link shares the host file's inode
        self.src = tmp / "src"  # a --copy source directory: its own symlink is copied as a link
        (self.src / "sub").mkdir(parents=True)
        (self.src / "file").write_text("PWNED\n")
        (self.src / "sub/file").write_text("PWNED\n")
        (self.src / "link-to-host").symlink_to(self.hostfile)

    def snapshot(self) -> Snapshot:
        """Everything outside the rootfs: type, contents or link target, mode."""
        out: Snapshot = {}
        for dirpath, dirnames, filenames in os.walk(self.tmp):
            if Path(dirpath) == self.tmp:
                dirnames.remove("root")
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                if p.is_symlink():
                    out[str(p)] = ("link", os.readlink(p), 0)
                elif p.is_dir():
                    out[str(p)] = ("dir", "", stat.S_IMODE(st.st_mode))
                else:
                    out[str(p)] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode))
        return out


@pytest.fixture
def world(tmp_path: Path, kernel: bool) -> Iterator[World]:
    w = World(tmp_path)
    before = w.snapshot()
    yield w
    assert w.snapshot() == before, "something outside the rootfs changed"


@pytest.fixture
def fs(world: World, kernel: bool) -> Iterator[GuestFS]:
    with GuestFS(world.root, kernel=kernel) as g:
        assert g.kernel is kernel
        yield g


HOSTILE = ["/etc/x", "/a", "/opt", "/opt/inside", "/etc/rel-dir/inside", "/chain1", "/loop1", "/dangling",
           "/etc/systemd/system/multi-user.target.wants/x.service", "/home/user/.ssh/authorized_keys",
           "/etc/resolv.conf", "/usr/sbin/policy-rc.d", "/../../../host/hostfile", "/etc/../../host/hostfile",
           "/etc/hardlinked"]  # fmt: skip

Op = Callable[[GuestFS, str, Path], object]


def _rename_onto(g: GuestFS, path: str) -> None:
    g.write_text("/tmpfile", "PWNED\n")
    g.rename("/tmpfile", path)


OPS: dict[str, Op] = {
    "write_text": lambda g, p, src: g.write_text(p, "PWNED\n"),
    "write_follow": lambda g, p, src: g.write_text(p, "PWNED\n", follow=True),
    "write_bytes_mode": lambda g, p, src: g.write_bytes(p, b"PWNED\n", 0o4755, uid=0, gid=0),
    "truncate": lambda g, p, src: g.truncate(p, 0o444),
    "mkdir_below": lambda g, p, src: g.mkdir(p + "/newdir", parents=True, exist_ok=True),
    "symlink": lambda g, p, src: g.symlink("/etc/shadow", p),
    "unlink": lambda g, p, src: g.unlink(p, missing_ok=True),
    "chmod": lambda g, p, src: g.chmod(p, 0o777),
    "utime": lambda g, p, src: g.utime(p, (0, 0)),
    "copy_file": lambda g, p, src: g.copy_file_from_host(src / "file", p),
    "copy_file_below": lambda g, p, src: g.copy_file_from_host(src / "file", p + "/file"),
    "copy_tree": lambda g, p, src: g.copy_tree_from_host(src, p),
    "rename_onto": lambda g, p, src: _rename_onto(g, p),
    "rename_away": lambda g, p, src: g.rename(p, "/moved"),
    "read": lambda g, p, src: g.read_bytes(p),
    "listdir": lambda g, p, src: g.listdir(p),
    "glob": lambda g, p, src: g.glob(p.rstrip("/") + "/*"),
}


@pytest.fixture
def source(world: World) -> Path:
    return world.src


# An inode's metadata and contents are shared by its hard links, so chmod, utime and read of a
# hard link are not escapes (a template cannot make a hard link to a host file anyway).
SHARED_INODE = {("chmod", "/etc/hardlinked"), ("utime", "/etc/hardlinked"), ("read", "/etc/hardlinked")}


@pytest.mark.parametrize(
    ("op", "path"), [(op, path) for op in OPS for path in HOSTILE if (op, path) not in SHARED_INODE]
)
def test_no_operation_reaches_the_host(fs: GuestFS, world: World, source: Path, op: str, path: str) -> None:
    try:
        result = OPS[op](fs, path, source)
    except OSError:
        return  # refused: fine, as long as the host is unchanged (checked by the fixture)
    if isinstance(result, bytes):  # read
        assert b"HOST" not in result
    if isinstance(result, list):  # listdir, glob
        assert not any("hostdir" in p or p.endswith("inside") for p in result)


def test_no_descriptor_leaks(fs: GuestFS, world: World, source: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for op in OPS.values():
        for path in HOSTILE:
            try:
                op(fs, path, source)
            except OSError:
                pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_final_symlink_is_replaced_not_followed(fs: GuestFS, world: World) -> None:
    fs.write_text("/etc/x", "ours\n", 0o600)
    target = world.root / "etc/x"
    assert not target.is_symlink() and target.read_text() == "ours\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_follow_resolves_inside_the_root_like_a_chroot(fs: GuestFS, world: World) -> None:
    fs.write_text("/etc/x", "ours\n", follow=True)
    assert (world.root / "etc/x").is_symlink()
    assert (world.root / str(world.hostfile).lstrip("/")).read_text() == "ours\n"
    fs.write_text("/a", "relative\n", follow=True)  # twelve `..` stop at the root
    assert (world.root / str(world.hostfile).lstrip("/")).read_text() == "relative\n"


def test_directory_symlinks_and_dotdot_resolve_inside(fs: GuestFS, world: World) -> None:
    fs.write_text("/opt/new", "x")
    assert (world.root / str(world.hostdir).lstrip("/") / "new").read_text() == "x"
    fs.write_text("/../../../../escaped", "x")
    assert (world.root / "escaped").read_text() == "x"
    fs.write_text("/etc/rel-dir/y", "y")  # ../../host/hostdir from /etc is /host/hostdir in the root
    assert (world.root / "host/hostdir/y").read_text() == "y"


def test_loops_are_refused(fs: GuestFS) -> None:
    with pytest.raises(OSError) as err:
        fs.write_text("/loop1/x", "x")
    assert err.value.errno == errno.ELOOP
    with pytest.raises(OSError) as err:
        fs.write_text("/loop1", "x", follow=True)
    assert err.value.errno == errno.ELOOP


def test_reads_do_not_leave_the_root(fs: GuestFS, world: World) -> None:
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("/etc/x")
    assert not fs.exists("/opt/inside") and fs.is_symlink("/opt") and not fs.is_dir("/opt")
    (world.root / "etc/ok").write_text("fine\n")
    (world.root / "etc/link-in").symlink_to("/etc/ok")
    assert fs.read_text("/etc/link-in") == "fine\n"


def test_a_hard_link_is_replaced_not_written_through(fs: GuestFS, world: World) -> None:
    fs.write_text("/etc/hardlinked", "ours\n")
    assert (world.root / "etc/hardlinked").read_text() == "ours\n"
    assert world.hostfile.read_text() == "HOST\n"


def test_symlink_stores_the_target_verbatim(fs: GuestFS, world: World) -> None:
    fs.symlink("../run/systemd/resolve/stub-resolv.conf", "/etc/resolv.conf")
    assert os.readlink(world.root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"


def test_copy_tree_copies_source_links_as_links(fs: GuestFS, world: World, source: Path) -> None:
    fs.copy_tree_from_host(source, "/srv/copy")
    dest = world.root / "srv/copy"
    assert (dest / "sub/file").read_text() == "PWNED\n"
    assert os.readlink(dest / "link-to-host") == str(world.hostfile)


def test_the_root_itself_is_not_a_file(fs: GuestFS) -> None:
    with pytest.raises(GuestPathError):
        fs.write_text("/", "x")
    fs.mkdir("/", exist_ok=True)


def test_glob_never_descends_a_symlink(fs: GuestFS, world: World) -> None:
    (world.root / "home/user/.bash_history").write_text("guest\n")
    assert fs.glob("/home/*/.bash_history") == ["/home/user/.bash_history"]
    assert fs.glob("/var/log/**") == ["/var/log/journal"]  # the link itself, not the host files below it


def test_device_nodes_are_made_and_chmodded_without_being_opened(fs: GuestFS, world: World) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    fs.mknod("/tty", stat.S_IFCHR | 0o600, os.makedev(5, 0))  # opening /dev/tty without a terminal: ENXIO
    fs.chmod("/tty", 0o666)
    assert stat.S_IMODE((world.root / "tty").lstat().st_mode) == 0o666


def test_a_fifo_is_refused_not_opened(fs: GuestFS, world: World) -> None:
    os.mkfifo(world.root / "etc/fifo")
    (world.root / "etc/hosts").symlink_to("/etc/fifo")
    with pytest.raises(GuestPathError):
        fs.read_bytes("/etc/hosts")  # opening a FIFO for reading would block


def test_no_temporary_file_is_left(fs: GuestFS, world: World) -> None:
    fs.write_text("/etc/new", "x")
    with pytest.raises(OSError):
        fs.write_text("/etc/systemd", "x")  # a directory cannot be replaced by a file
    assert not [p for p in world.root.rglob("*") if guestfs.TMP_PREFIX in p.name]


# -- the callers: the same hostile rootfs through the build's own write paths ------------------------


def test_chroot_swaps_resolv_conf_and_policy_rc_d_inside(world: World) -> None:
    chroot = Chroot(world.root)
    chroot._swap_in("etc/resolv.conf", b"nameserver 127.0.0.53\n", 0o644)
    chroot._swap_in("usr/sbin/policy-rc.d", b"exit 101\n", 0o755)
    assert (world.root / "etc/resolv.conf").read_bytes() == b"nameserver 127.0.0.53\n"
    chroot._swap_out("etc/resolv.conf", b"nameserver 127.0.0.53\n")
    chroot._swap_out("usr/sbin/policy-rc.d", b"exit 101\n")
    assert os.readlink(world.root / "etc/resolv.conf") == str(world.hostfile)  # the guest's link is back


def test_tweak_actions_stay_inside(world: World) -> None:
    guest = Guest(world.root, lambda name, variables: "rendered\n", {}, {})
    guest.write("/etc/systemd/system/multi-user.target.wants/unit.service", "x", 0o644)
    guest.symlink("/etc/systemd/system/multi-user.target.wants/other.service", "/dev/null")
    guest.write("/home/user/.ssh/authorized_keys", "ssh-ed25519 AAAA\n", 0o600)
    Truncate("/etc/x").apply(guest)
    (world.root / "home/user/.bash_history").write_text("guest\n")
    removed = Remove(("/opt/*", "/etc/rel-dir/*", "/home/*/.bash_history")).apply(guest)
    assert removed == ["/home/user/.bash_history"]
    assert (world.root / "etc/x").read_bytes() == b""


def test_export_strip_stays_inside_the_view(world: World) -> None:
    (world.root / "home/evil").symlink_to(world.hostdir)
    (world.root / "etc/hosts").symlink_to(world.hostfile)
    with GuestFS(world.root) as guest:
        plan = stage.plan_strip(guest)
    stage.apply_plan(world.root, plan, world.root)
    with stage.with_files(world.root, {"etc/hosts": b"127.0.1.1 N\n", "etc/x": b"N\n"}, "test") as view:
        assert (view / "etc/x").read_bytes() == b"N\n"


def test_copy_follows_a_destination_link_only_inside(world: World, kernel: bool) -> None:
    with GuestFS(world.root, kernel=kernel) as g:
        postinst.copy_into(g, world.src / "file", "/etc/x")  # /etc/x -> the host file, followed inside
        postinst.copy_into(g, world.src, "/opt/")  # /opt -> the host directory; DEST/ means DEST/src
    assert (world.root / str(world.hostfile).lstrip("/")).read_text() == "PWNED\n"
    assert (world.root / str(world.hostdir).lstrip("/") / "src/sub/file").read_text() == "PWNED\n"


def test_context_install_file_replaces_a_link(world: World) -> None:
    from vmbuilder_lxc.context import Context

    class AtRoot(Context):
        rootfs = world.root  # the world's rootfs, without a build directory

    ctx = AtRoot.__new__(AtRoot)
    host = ctx.install_file("/etc/resolv.conf", "nameserver 10.0.0.1\n", 0o600)
    assert host == world.root.resolve() / "etc/resolv.conf" and not host.is_symlink()
    assert host.read_text() == "nameserver 10.0.0.1\n"
    with pytest.raises(OSError):
        ctx.install_file("/loop1/x", "x")


def test_is_plain_only_without_a_symlink_in_the_directories(world: World, fs: GuestFS) -> None:
    (world.root / "srv").symlink_to("etc")  # a directory link that stays inside
    (world.root / "etc/sub").mkdir()
    assert fs.is_plain("/etc/sub/f") and fs.is_plain("/etc/x")  # a final symlink is the tool's own business
    assert not fs.is_plain("/srv/sub/f")  # resolved to /etc/sub/f: a host tool would open another path


def test_the_plugin_api_takes_only_absolute_guest_paths(world: World) -> None:
    from vmbuilder_lxc.context import Context

    class AtRoot(Context):
        rootfs = world.root

    ctx = AtRoot.__new__(AtRoot)
    assert GuestFS.absolute("/etc/x") == "/etc/x"
    for call in (ctx.guest_path, lambda p: ctx.install_file(p, "x")):
        with pytest.raises(ValueError, match="must be absolute"):
            call("etc/hostname")
    (world.root / "srv").symlink_to("etc")
    assert ctx.guest_path("/srv/hostname") == world.root.resolve() / "etc/hostname"
