"""The build chroot: a private mount namespace, API filesystems, no daemons, host DNS.

The build process unshares its mount namespace first, so every mount it (or debootstrap) makes is
invisible to the host and disappears with the process even if it is killed. Mounts are still
unmounted explicitly, deepest first, before anything under the build directory is deleted: a
recursive delete must never walk into /proc or /dev.
"""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path
from types import TracebackType

from . import aptargs, userns
from .guestfs import GuestFS
from .log import LOG
from .run import CommandResult, clean_env, run
from .sysmount import mount as sys_mount
from .sysmount import umount as sys_umount

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

POLICY_RC_D = "#!/bin/sh\n# Installed by vmbuilder-lxc for the duration of the build: no daemon may start.\nexit 101\n"
SAVED_SUFFIX = ".vmbuilder-saved"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")

DEVICES = {  # name: (major, minor, mode)
    "null": (1, 3, 0o666),
    "zero": (1, 5, 0o666),
    "full": (1, 7, 0o666),
    "random": (1, 8, 0o666),
    "urandom": (1, 9, 0o666),
    "tty": (5, 0, 0o666),
}


def enter_private_mount_namespace() -> None:
    """Unshare the mount namespace and make every mount private, so nothing leaks to the host."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS) failed: {os.strerror(err)}")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"making / private failed: {os.strerror(err)}")
    LOG.debug("entered a private mount namespace")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_below(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points at or below `path`, deepest first."""
    base = os.path.realpath(path)
    found = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = _unescape(fields[4])
            if point == base or point.startswith(base.rstrip("/") + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount(point: Path | str) -> None:
    """umount `point`; if that fails (busy), detach it lazily: the last resort, gone with its last user.
    umount2(2) directly (sysmount.py): a umount(8) process per mount point cost 10 ms each."""
    sys_umount(point)


def unmount_below(path: Path, keep_self: bool = False) -> None:
    """Unmount everything at or below `path` (with keep_self: only below it), deepest first."""
    base = Path(os.path.realpath(path))
    for point in mounts_below(path):
        if not (keep_self and point == base):
            unmount(point)
    left = [p for p in mounts_below(path) if not (keep_self and p == base)]
    if left:
        raise RuntimeError(f"could not unmount {', '.join(map(str, left))}")


def _inside(root: Path, rel: str) -> Path:
    """A path in the rootfs that is a real directory, not a symlink (mount would follow it on the host)."""
    with GuestFS(root) as fs:
        if fs.is_symlink(rel):
            raise RuntimeError(f"{root / rel} is a symlink; refusing to mount over it")
        fs.mkdir(rel, parents=True, exist_ok=True)
        if not stat.S_ISDIR(fs.lstat(rel).st_mode):
            raise RuntimeError(f"{root / rel} is not a directory; refusing to mount over it")
        return fs.host_path(rel)


APT_PROXY_CONF = "etc/apt/apt.conf.d/99vmbuilder-proxy"


def proxy_conf(proxy: str) -> str:
    """--proxy for apt in the chroot: two quoted apt.conf values, the URL checked so it cannot end them."""
    url = aptargs.proxy(proxy)
    return "".join(aptargs.apt_conf(f"Acquire::{scheme}::Proxy", url) + "\n" for scheme in ("http", "https"))


class Chroot:
    """Context manager giving a rootfs what package scripts expect, and taking it away again."""

    def __init__(self, root: Path, *, apt_proxy: str | None = None) -> None:
        self.root = root
        self.apt_proxy = apt_proxy
        # With an imported image's rootfs, each command gets its own PID namespace and /proc: the build's
        # proc shows the host's processes, and an image's symlink through /proc/1/root would lead a
        # chroot'd useradd or chpasswd to the host's files. In its own namespace /proc/1 is the
        # command itself, whose root is the chroot. (Off for bootstraps: ischroot and
        # systemd-detect-virt --chroot in maintainer scripts compare / with /proc/1/root.)
        self.pid_namespace = False
        self.mounted: list[Path] = []
        self._resolv_written: bytes | None = None

    # -- mounts ---------------------------------------------------------------------------------

    def _mount(self, *args: str, target: Path) -> None:
        if not sys_mount(args, target):  # mount(2) directly for the usual forms (sysmount.py)
            run(["mount", *args, target])
        self.mounted.append(target)

    def _populate_dev(self) -> None:
        dev = _inside(self.root, "dev")
        self._mount("-t", "tmpfs", "-o", "mode=755,nosuid,size=4m", "vmbuilder-dev", target=dev)
        fs = GuestFS(dev)  # our fresh tmpfs; still written through the confined path
        for name, (major, minor, mode) in DEVICES.items():
            if userns.active():  # no mknod in a user namespace: an empty file to bind the host's node on
                fs.write_bytes(name, b"", mode)
                continue
            fs.mknod(name, stat.S_IFCHR | mode, os.makedev(major, minor))
            fs.chmod(name, mode)
        for name, dest in {
            "fd": "/proc/self/fd",
            "stdin": "/proc/self/fd/0",
            "stdout": "/proc/self/fd/1",
            "stderr": "/proc/self/fd/2",
            "ptmx": "pts/ptmx",
        }.items():
            fs.symlink(dest, name)
        fs.mkdir("pts")
        fs.mkdir("shm")
        fs.close()
        if userns.active():
            for name in DEVICES:
                self._mount("--bind", f"/dev/{name}", target=dev / name)
        self._mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts", target=dev / "pts")
        self._mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", target=dev / "shm")

    def mount_all(self) -> None:
        self._mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", target=_inside(self.root, "proc"))
        if userns.active():  # a new sysfs needs a network namespace of our own: the host's /sys, read-only
            self._mount("--rbind", "/sys", target=_inside(self.root, "sys"))
            run(["mount", "-o", "remount,bind,ro", self.root / "sys"], check=False)
        else:
            self._mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", target=_inside(self.root, "sys"))
        self._populate_dev()
        # An empty /run hides anything package scripts write there, and there is no
        # /run/systemd/system, so they do not try to talk to a running systemd.
        self._mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "vmbuilder-run", target=_inside(self.root, "run"))
        with GuestFS(self.root) as fs:
            fs.mkdir("/run/lock", exist_ok=True)
            fs.chmod("/run/lock", 0o1777)

    def unmount_all(self) -> None:
        while self.mounted:
            unmount(self.mounted.pop())
        # The rootfs itself may be a mount (--backing overlay): backing.py unmounts it, not the chroot.
        unmount_below(self.root, keep_self=True)

    # -- daemons, DNS and proxy -----------------------------------------------------------------

    def _swap_in(self, rel: str, content: bytes, mode: int) -> None:
        """Move the guest's file (or symlink) aside and put ours in its place, inside the rootfs."""
        with GuestFS(self.root) as fs:
            if fs.lexists(rel):
                fs.rename(rel, rel + SAVED_SUFFIX)
            fs.write_bytes(rel, content, mode)

    def _swap_out(self, rel: str, content: bytes) -> None:
        """Remove our file and restore the saved one; keep whatever a package put there instead."""
        saved = rel + SAVED_SUFFIX
        with GuestFS(self.root) as fs:
            ours = fs.is_file(rel) and not fs.is_symlink(rel) and fs.read_bytes(rel) == content
            if ours or not fs.lexists(rel):
                if ours:
                    fs.unlink(rel)
                if fs.lexists(saved):
                    fs.rename(saved, rel)
            elif fs.lexists(saved):
                fs.unlink(saved)

    def _host_resolv_conf(self) -> bytes:
        try:
            return HOST_RESOLV_CONF.read_bytes()
        except OSError:
            LOG.warning("the host has no readable /etc/resolv.conf; name lookups in the chroot may fail")
            return b""

    def prepare(self) -> None:
        self._swap_in("usr/sbin/policy-rc.d", POLICY_RC_D.encode(), 0o755)
        self._resolv_written = b"# vmbuilder-lxc: the host's resolvers, for the build only\n" + self._host_resolv_conf()
        self._swap_in("etc/resolv.conf", self._resolv_written, 0o644)
        if self.apt_proxy:
            self._swap_in(APT_PROXY_CONF, proxy_conf(self.apt_proxy).encode(), 0o644)

    def unprepare(self) -> None:
        if self.apt_proxy:
            self._swap_out(APT_PROXY_CONF, proxy_conf(self.apt_proxy).encode())
        if self._resolv_written is not None:
            self._swap_out("etc/resolv.conf", self._resolv_written)
        self._swap_out("usr/sbin/policy-rc.d", POLICY_RC_D.encode())

    def __enter__(self) -> Chroot:
        try:
            self.mount_all()
            self.prepare()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.unprepare()
        finally:
            self.unmount_all()

    # -- running commands -----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return clean_env(host_path=False)

    def run(self, *argv: str, input: str | None = None, progress: str | None = None) -> CommandResult:
        command: list[str | Path] = ["chroot", self.root, *argv]
        if self.pid_namespace:
            command = ["unshare", "--pid", "--fork", "--kill-child", f"--mount-proc={self.root / 'proc'}", *command]
        return run(command, env=self.env(), input=input, progress=progress)
