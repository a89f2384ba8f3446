"""Building without root: the whole build runs in a user namespace made with newuidmap/newgidmap.

A user who has ranges in /etc/subuid and /etc/subgid can own 65536 host ids besides their own,
through the setuid helpers of the uidmap package (mmdebstrap's unshare mode works the same way).
Guest id x is host id start+x (start: the first id of the user's first range of at least 65536
ids), so the rootfs ends up owned by the user's subordinate range on the host and boots under an
LXC config with the same `lxc.idmap`. The user's own uid and gid are mapped too (at guest id
65536), so DEST's parent, the cache and the export directory, which the user owns, stay writable.

Three processes take part (`enter`): the user's process stays outside and only runs the two
helpers and waits; its child unshares the user namespace, becomes root in it and unshares the
mount and PID namespaces; its child in turn is PID 1 there (so it may mount a fresh proc) and
runs the rest of the build. The two waiting processes forward SIGINT, SIGTERM and SIGHUP to their
child and exit with its status (128 + the signal if it was killed), so exit codes 1, 2, 130 and
143 hold across the boundary. If the outer process is killed, the parent-death signal takes the
namespace down with it: nothing keeps running, as after a kill -9 of a root build.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .idmap import MIN_COUNT, SUBGID, SUBUID, IdMap, Range, owner_names, read_subids
from .log import LOG, UserError
from .places import check_writable_dir, nearest_existing

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8

HOOK_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ENV = "VMBUILDER_USERNS"  # set in the namespace: "UIDSTART:GIDSTART:COUNT" (for hooks and child processes)
LXC_PATH = Path("/var/lib/lxc")
MARKER = "vmbuilder-lxc.json"
UIDMAP_HINT = "install the uidmap package (apt-get install uidmap)"
CACHE_HINT = "give --cache-dir a directory of yours, or pass --no-cache"

_state: dict[str, Any] = {"map": None, "host_proc": None, "host_pid": None}


@dataclass(frozen=True)
class Plan:
    """The id maps of a rootless build: guest 0..count-1 to the subordinate range, plus the user's own ids."""

    idmap: IdMap
    uid: int  # the user's own uid and gid, mapped at guest id `idmap.count`
    gid: int

    def uid_args(self) -> list[str]:
        """newuidmap's triplets (inside, outside, count)."""
        return ["0", str(self.idmap.uid_start), str(self.idmap.count), str(self.idmap.count), str(self.uid), "1"]

    def gid_args(self) -> list[str]:
        return ["0", str(self.idmap.gid_start), str(self.idmap.count), str(self.idmap.count), str(self.gid), "1"]


def active() -> bool:
    """Whether this process runs a build inside the user namespace we made (ids are mapped already)."""
    return _state["map"] is not None


def current_map() -> IdMap | None:
    """The namespace's map of guest ids to host ids, when active()."""
    m = _state["map"]
    return m if isinstance(m, IdMap) else None


def rootless() -> bool:
    """A build that runs (or will run) without real root: not root, or inside our namespace."""
    return os.geteuid() != 0 or active()


def user_cache_dir() -> Path:
    """The per-user cache of a build without root: $XDG_CACHE_HOME/vmbuilder-lxc, else ~/.cache/vmbuilder-lxc."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vmbuilder-lxc"


def _first_range(ranges: list[Range], count: int) -> int | None:
    return next((start for start, n in ranges if n >= count), None)


def plan(uid: int | None = None, gid: int | None = None, subuid: Path = SUBUID, subgid: Path = SUBGID) -> Plan:
    """The maps for user `uid`: the first range of at least 65536 ids in each file (UserError if none)."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    names = owner_names(uid)
    uids, gids = read_subids(names, subuid, subgid)
    starts = []
    for path, ranges in ((subuid, uids), (subgid, gids)):
        start = _first_range(ranges, MIN_COUNT)
        if start is None:
            have = ", ".join(f"{s}:{c}" for s, c in ranges) or "none"
            raise UserError(
                f"building needs root (or, to build without it, a range of {MIN_COUNT} ids for {names[0]} in "
                f"{path}; found: {have})",
                f"run it as root, e.g. with sudo, or ask an admin for a range: usermod --add-subuids N-M "
                f"--add-subgids N-M {names[0]} (a free range of {MIN_COUNT} ids)",
            )
        starts.append(start)
    m = IdMap(starts[0], starts[1], MIN_COUNT)
    for own, start, what in ((uid, m.uid_start, "uid"), (gid, m.gid_start, "gid")):
        if start <= own < start + m.count:
            raise UserError(
                f"your own {what} {own} lies inside your subordinate range {start}:{m.count}",
                "fix /etc/subuid and /etc/subgid so the ranges do not contain your own ids",
            )
    return Plan(m, uid, gid)


def _kernel_refusal() -> str | None:
    """Why this kernel will not let an unprivileged user create a user namespace (None: it will)."""
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"), ("/proc/sys/user/max_user_namespaces", "0")):
        try:
            if Path(path).read_text().strip() == bad:
                return f"{path} is {bad}"
        except OSError:
            continue
    return None


def refusals(settings: Any, dest: Path) -> list[tuple[str, str]]:
    """What a build without root cannot do with these settings: (problem, fix) pairs, in preflight."""
    out: list[tuple[str, str]] = []
    table = settings.table

    def given(name: str) -> Any:
        return settings[name] if name in table else None

    if given("libvirt"):
        out.append(("--libvirt defines a domain in a system libvirtd, which needs root",
                    "build without --libvirt, then define it as root, or build as root"))  # fmt: skip
    if given("idmap"):
        out.append(("--idmap shifts a root build's rootfs; a build without root is always mapped to your "
                    "subordinate range", "drop --idmap, or build as root"))  # fmt: skip
    backing_kind = given("backing")
    if backing_kind and backing_kind != "dir":
        out.append((f"--backing {backing_kind} needs root (its mounts or subvolumes must outlive the build)",
                    "use --backing dir, or build as root"))  # fmt: skip
    absolute = Path(os.path.abspath(dest))
    if absolute == LXC_PATH or LXC_PATH in absolute.parents:
        out.append((f"-d {dest} is under {LXC_PATH}, which only root may write",
                    "build into a directory of your own (-d), or build as root"))  # fmt: skip
    return out


def ns_writable(path: Path, p: Plan) -> bool:
    """Whether root of the namespace can create files in the existing directory `path`.

    It is not the directory's owner (guest root is a subordinate id), so it needs either
    CAP_DAC_OVERRIDE, which the kernel grants only when the directory's owner and group are both
    mapped (the user's own ids are), or write and search permission for others.
    """
    try:
        st = path.stat()
    except OSError:
        return False
    m = p.idmap
    mapped = (st.st_uid == p.uid or m.uid_start <= st.st_uid < m.uid_start + m.count) and (
        st.st_gid == p.gid or m.gid_start <= st.st_gid < m.gid_start + m.count
    )
    return mapped or st.st_mode & 0o003 == 0o003


def _places(settings: Any, dest: Path) -> list[tuple[str, Path]]:
    table = settings.table
    out = [(f"-d {dest}", dest.parent)]
    for on, name in (("cache", "cache-dir"), ("export", "export-dir")):
        value = settings.get_str(name) if name in table else None
        if value and on in table and (settings.get_list(on) if on == "export" else settings.get_bool(on)):
            out.append((f"--{name} {value}", Path(value)))
    return out


def refuse_early(settings: Any, dest: Path) -> None:
    """Before the plugins' checks (which would try libvirtd or pick an --idmap range): what needs root.

    Only for a user who could build without root; anyone else hears "building needs root" from
    preflight(), after every other check has passed.
    """
    try:
        plan()
    except UserError:
        return
    for problem, fix in refusals(settings, dest):
        raise UserError(problem, fix)


def preflight(settings: Any, dest: Path) -> Plan:
    """Every check of a build without root, before anything slow: tools, kernel, ranges, settings.

    An unset --cache-dir becomes the user's own (user_cache_dir): the system cache is root's.
    """
    p = plan()  # first: without a range, "building needs root" is the whole story
    for problem, fix in refusals(settings, dest):
        raise UserError(problem, fix)
    for tool in ("newuidmap", "newgidmap"):
        if not shutil.which(tool, path="/usr/local/bin:/usr/bin:/bin:" + os.environ.get("PATH", "")):
            raise UserError(f"building without root needs {tool}, which is not installed", UIDMAP_HINT)
    why = _kernel_refusal()
    if why:
        raise UserError(f"this kernel does not let users create user namespaces ({why})", "build as root")
    if "cache-dir" in settings.table and not settings.explicit("cache-dir"):
        settings.set("cache-dir", str(user_cache_dir()), "the default cache of a build without root")
        if settings.get_bool("cache"):  # made by the user, so that ~/.cache stays the user's
            try:
                user_cache_dir().mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create the cache {user_cache_dir()}: {exc.strerror}", CACHE_HINT) from None
    for what, place in _places(settings, dest):
        check_writable_dir(place, what.split()[0], "choose a directory of yours on a writable disk", shown=place)
        probe = nearest_existing(Path(os.path.abspath(place)))
        if probe.is_dir() and not ns_writable(probe, p):
            raise UserError(
                f"{what}: {probe} is not writable inside the build's user namespace (its owner or group "
                "is not yours, and others may not write)",
                f"use a directory owned by you and your group (chgrp {p.gid} {probe}), or build as root",
            )
    LOG.debug("building without root: %s", p.idmap.describe())
    return p


# -- the namespace ------------------------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int, what: str) -> None:
    _check(_libc().unshare(flags), what)


def _pdeathsig() -> None:
    """Die with the process that waits for us: a killed vmbuilder leaves nothing running."""
    _check(_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def exit_code(status: int) -> int:
    """A waitpid status as a shell reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _supervise(child: int) -> NoReturn:
    """Forward interrupts to `child`, wait for it and exit with its status (no cleanup of our own)."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in HOOK_SIGNALS:
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            status = 1 << 8
            break
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code(status))


def _write_maps(pid: int, p: Plan) -> None:
    """Run newuidmap and newgidmap on `pid`; a refusal is one line (UserError: the admin's setup)."""
    for tool, args in (("newuidmap", p.uid_args()), ("newgidmap", p.gid_args())):
        try:
            proc = subprocess.run([tool, str(pid), *args], capture_output=True, text=True, check=False)
        except OSError as exc:
            raise UserError(f"{tool} could not be run: {exc.strerror}", UIDMAP_HINT) from None
        if proc.returncode != 0:
            said = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"{tool} {pid} {' '.join(args)} failed: {said}",
                            "check your ranges in /etc/subuid and /etc/subgid, or build as root")  # fmt: skip


def _mount_proc() -> None:
    """A proc of our own PID namespace on /proc, in our private mount namespace; the host's stays reachable."""
    libc = _libc()
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    _state["host_proc"] = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mounting /proc")


def give_back(path: Path) -> None:
    """Make a directory the build created outside the rootfs (DEST's new parents) the user's own again.

    Inside the namespace the user is guest id `count` (see Plan); a no-op in a root build.
    """
    m = current_map()
    if m is not None:
        os.chown(path, m.count, m.count, follow_symlinks=False)


def give_back_outputs(summary: dict[str, Any], dest: Path | None) -> None:
    """After a build without root: the exports (and the directories the build made for them), DEST
    itself, its config and its marker become the user's, so the user may move, edit and delete them.
    The rootfs stays with the subordinate range: that is what the container's map expects."""
    m = current_map()
    if m is None:
        return
    paths = [Path(p) for found in (summary.get("exports") or {}).values() for p in found]
    for path in paths:
        _chown_made(path, m)
        for parent in path.parents:  # directories our root made (owner 0 here) up to the first that is not
            st = parent.lstat()
            if (st.st_uid, st.st_gid) != (0, 0) or parent == parent.parent:
                break
            _chown_made(parent, m)
    if dest is not None:
        for path in (dest, dest / "config", dest / MARKER):
            if os.path.lexists(path):
                _chown_made(path, m)


def _chown_made(path: Path, m: IdMap) -> None:
    os.chown(path, m.count, m.count, follow_symlinks=False)


def pid_exists(pid: int) -> bool:
    """Whether host PID `pid` is alive: also from inside the namespace, whose /proc shows only its own."""
    fd = _state["host_proc"]
    if fd is None:
        return Path(f"/proc/{pid}").exists()
    try:
        os.stat(str(pid), dir_fd=fd)
        return True
    except OSError:
        return False


def host_pid() -> int:
    """Our PID as the host sees it (the waiting outer process inside the namespace): for the build's .pid."""
    pid = _state["host_pid"]
    return pid if isinstance(pid, int) else os.getpid()


def enter(p: Plan) -> None:
    """Continue the build as root of a new user namespace; returns only in the namespace's build process.

    The calling process (and the intermediate one) never return: they wait and exit with the
    build's status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()  # child -> us: unshared
    maps_r, maps_w = os.pipe()  # us -> child: maps written
    outer = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(maps_w)
        _in_child(p, outer, ready_w, maps_r)
        return
    os.close(ready_w)
    os.close(maps_r)
    for sig in HOOK_SIGNALS:  # from now on the child decides how an interrupt ends
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    try:
        said = os.read(ready_r, 1)
        os.close(ready_r)
        if said == b"u":
            try:
                _write_maps(child, p)
            except BaseException:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
                raise
            os.write(maps_w, b"m")
        os.close(maps_w)
    except BaseException:
        for sig in HOOK_SIGNALS:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGHUP else signal.default_int_handler)
        raise
    _supervise(child)  # the child has said why it failed, if it did


def _in_child(p: Plan, outer: int, ready_w: int, maps_r: int) -> None:
    """The intermediate process: unshare, get mapped, become root, then fork the namespace's PID 1."""
    os.setpgid(0, 0)  # interrupts reach us through the outer process only, never twice
    _unshare(CLONE_NEWUSER, "unshare(CLONE_NEWUSER)")
    os.write(ready_w, b"u")
    os.close(ready_w)
    if os.read(maps_r, 1) != b"m":
        os._exit(2)  # the outer process reported why
    os.close(maps_r)
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)
    _pdeathsig()  # after the credentials change, which clears it
    if os.getppid() != outer:
        os._exit(143)
    _unshare(CLONE_NEWNS | CLONE_NEWPID, "unshare(CLONE_NEWNS|CLONE_NEWPID)")
    build = os.fork()
    if build != 0:
        _supervise(build)
    # PID 1 of the new PID namespace: the build itself.
    _pdeathsig()
    os.setpgid(0, 0)
    _mount_proc()
    _state["map"] = p.idmap
    _state["host_pid"] = outer
    os.environ[ENV] = f"{p.idmap.uid_start}:{p.idmap.gid_start}:{p.idmap.count}"
    LOG.debug("building in a user namespace: %s", p.idmap.describe())
