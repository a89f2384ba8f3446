"""The build pipeline: preflight, bootstrap, configure, finalize, move into place, deploy.

The rootfs is built in a hidden directory beside the destination and renamed into place only when
everything succeeded. On any error or Ctrl-C the build directory is unmounted and removed, an
existing destination is left untouched, and a destination is only ever replaced with --overwrite
and only when it is one of ours (it holds vmbuilder-lxc.json) or empty.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from . import __version__, backing, shellhooks, shiftstep, userns
from .chroot import Chroot, enter_private_mount_namespace, mounts_below, unmount_below
from .context import Context
from .log import LOG, STEPS, deferred, die, step
from .places import check_writable_dir
from .plugin import call_hook
from .run import (
    BuildError,
    BuildInterrupted,
    CommandError,
    interrupts_handled_by,
    pause_point,
    run,
    start_reaper,
    stop_reaper,
)

MARKER = "vmbuilder-lxc.json"
PARTIAL_SUFFIX = ".vmbuilder-partial"


def hook_dirs(ctx: Context) -> list[Path]:
    return [Path(p) for p in ctx.settings.get_list("hook-dir")]


def check_destination(ctx: Context) -> None:
    """Refuse a destination that cannot or must not be written, before any slow work is done.

    The build directory is made beside DEST (also with --export-only), so DEST's parent must be a
    writable directory on a real filesystem; an existing DEST is replaced only with --overwrite.
    """
    dest = ctx.dest
    if dest == Path("/") or Path(os.path.realpath(dest)) == Path("/"):
        die("refusing to build into /", "pass -d with a new directory")
    check_writable_dir(dest.parent, "-d", "choose -d in a writable directory on a disk", shown=dest)
    if not ctx.keep_dest or not os.path.lexists(dest):
        return
    refused = not_replaceable(dest)
    if refused:  # --overwrite would not help: say so, rather than suggest it
        die(f"destination {dest} {refused}: refused, even with --overwrite, which only replaces earlier builds",
            "remove it yourself or choose another -d")  # fmt: skip
    overwrite = ctx.settings.get_bool("overwrite")
    if os.path.ismount(dest) or mounts_below(dest):
        die(f"something is mounted at or below {dest} (is the container running?)",
            "stop it and unmount it" + ("" if overwrite else ", then pass --overwrite to replace it"))  # fmt: skip
    if not overwrite:
        die(f"destination {dest} already exists", "pass --overwrite to replace it, or choose another -d")


def not_replaceable(dest: Path) -> str | None:
    """Why an existing `dest` is no build of ours that --overwrite may replace (None: it is one).

    Ours means an empty directory or one holding MARKER, the summary every build writes: anything
    else may be someone's data, which no option of ours deletes.
    """
    if dest.is_symlink():
        return "is a symbolic link"
    if not dest.is_dir():
        return "exists and is not a directory"
    if (dest / MARKER).is_file() or not any(dest.iterdir()):
        return None
    return f"exists and was not built by vmbuilder-lxc (it holds no {MARKER})"


def remove_tree(path: Path) -> None:
    """Delete a build tree: unmount first, never cross into another filesystem."""
    if not os.path.lexists(path):
        return
    unmount_below(path)
    backing.delete_subvolumes(path)  # --backing btrfs: rm --one-file-system skips a subvolume
    run(["rm", "-rf", "--one-file-system", "--", path])


def _remove_stale_partials(parent: Path, name: str) -> None:
    """Build directories left by a killed build (its PID is gone) are removed."""
    for stale in parent.glob(f".{name}.*{PARTIAL_SUFFIX}"):
        try:
            pid = int((stale / ".pid").read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != userns.host_pid() and userns.pid_exists(pid):
            continue
        LOG.info("removing %s left behind by an interrupted build", stale)
        remove_tree(stale)


def _make_workdir(ctx: Context) -> list[Path]:
    """Create the hidden build directory; returns the parent directories we had to create."""
    parent = ctx.dest.parent
    created: list[Path] = []
    probe = parent
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    parent.mkdir(parents=True, exist_ok=True)
    for made in created:  # without root: the user's, not the namespace's root's
        userns.give_back(made)
    _remove_stale_partials(parent, ctx.name)
    ctx.workdir = Path(tempfile.mkdtemp(prefix=f".{ctx.name}.", suffix=PARTIAL_SUFFIX, dir=parent))
    os.chmod(ctx.workdir, 0o755)
    (ctx.workdir / ".pid").write_text(str(userns.host_pid()))  # the host's PID, also in a user namespace
    return created


RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    """rename(2) with flags; OSError(ENOSYS/EINVAL) where the libc or filesystem lacks them."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(src))
    if fn(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _commit(ctx: Context) -> None:
    """Move the build directory into place, replacing an old build only with --overwrite.

    DEST is at every moment either absent, the old build or the new one, even if the process is
    killed here: a new DEST is created with RENAME_NOREPLACE (a DEST that appeared meanwhile is
    never replaced by accident), an old one is swapped with RENAME_EXCHANGE. The old build then
    sits under the hidden build-directory name, so a build killed before removing it leaves only a
    stale partial directory, which the next build removes.
    """
    workdir = ctx.workdir
    assert workdir is not None
    (workdir / ".pid").unlink(missing_ok=True)
    if not os.path.lexists(ctx.dest):
        try:
            _renameat2(workdir, ctx.dest, RENAME_NOREPLACE)
            ctx.workdir = None
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOSYS, errno.EINVAL):
                raise
            if exc.errno != errno.EEXIST and not os.path.lexists(ctx.dest):
                os.rename(workdir, ctx.dest)  # no renameat2 here: the plain rename, checked just before
                ctx.workdir = None
                return
    check_destination(ctx)  # again: it may have appeared or changed while we were building
    try:
        _renameat2(workdir, ctx.dest, RENAME_EXCHANGE)
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        _commit_two_renames(ctx, workdir)
        return
    ctx.workdir = None  # DEST is the new build; `workdir` now holds the old one
    try:
        pause_point("move")
        remove_tree(workdir)
    except BaseException:
        with interrupts_handled_by(signal.SIG_IGN):
            remove_tree(workdir)
        raise


def _commit_two_renames(ctx: Context, workdir: Path) -> None:
    """Where RENAME_EXCHANGE is not supported: move the old build aside, then the new one in."""
    old = ctx.dest.with_name(f".{ctx.name}.old-{os.getpid()}{PARTIAL_SUFFIX}")
    os.replace(ctx.dest, old)
    try:
        os.replace(workdir, ctx.dest)
    except BaseException:
        os.replace(old, ctx.dest)
        raise
    ctx.workdir = None
    remove_tree(old)


def _write_marker(ctx: Context) -> None:
    assert ctx.workdir is not None
    summary = summarize(ctx, status="ok")
    (ctx.workdir / MARKER).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


def _signame(exc: BaseException) -> str:
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT"


NO_SPACE = "no space left on device"


def _enospc(exc: BaseException) -> BaseException | None:
    """The ENOSPC error in exc's chain: an OSError, or a command whose output says so."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        if isinstance(err, CommandError) and any(NO_SPACE in line.lower() for line in err.tail):
            return err
        todo += [err.__cause__, err.__context__, getattr(err, "original", None)]
    return None


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path` (or its nearest existing ancestor)."""
    probe = Path(os.path.realpath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    while not os.path.ismount(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _places(ctx: Context) -> list[tuple[str, Path]]:
    """What the build writes to, each with the directory it writes in."""
    s = ctx.settings
    places = [("the build directory beside DEST", ctx.workdir or ctx.dest.parent)]
    if "cache" in s.table and s.get_bool("cache") and s.get_str("cache-dir"):
        places.append(("the cache", Path(str(s.get_str("cache-dir")))))
    if "export-dir" in s.table and "export" in s.table and s.get_list("export") and s.get_str("export-dir"):
        places.append(("the exports", Path(str(s.get_str("export-dir")))))
    return places


FULL_BYTES = 1 << 20  # a filesystem with less than this left (root's reserve included) is full


def _free(mount: Path) -> tuple[int, float]:
    """Bytes left (for root) and the fraction of the filesystem that is."""
    st = os.statvfs(mount)
    return st.f_bfree * st.f_frsize, (st.f_bfree / st.f_blocks if st.f_blocks else 0.0)


def disk_full_error(ctx: Context, exc: BaseException) -> BuildError | None:
    """A one-line error naming the full filesystem, when `exc` comes from a full disk.

    ENOSPC is recognised in Python's errors and in a failed command's output; a failed command
    whose output was cut before the message counts too when a filesystem the build writes to is
    (nearly) out of space at that moment.
    """
    by_mount: dict[Path, list[str]] = {}
    for what, path in _places(ctx):
        by_mount.setdefault(mount_point(path), []).append(what)
    err = _enospc(exc)
    if err is None:
        failed = isinstance(exc, CommandError) or isinstance(getattr(exc, "original", None), CommandError)
        if not failed or not any(_free(m)[0] < FULL_BYTES for m in by_mount):
            return None
    if isinstance(err, OSError) and err.filename:
        full = mount_point(Path(os.fsdecode(err.filename)))
    else:  # a command's output rarely names an absolute path: the fullest filesystem it is
        full = min(by_mount, key=lambda m: _free(m)[1])
    what = " and ".join(by_mount.get(full, [])) or "a file the build writes"
    return BuildError(
        f"{NO_SPACE}: the filesystem mounted at {full} is full ({what})",
        "free space there, or build elsewhere (-d, --cache-dir, --export-dir)",
    )


def summarize(ctx: Context, status: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": status,
        "vmbuilder_lxc_version": __version__,
        "hypervisor": ctx.hypervisor_name,
        "distro": ctx.distro_name,
        "name": ctx.name,
        "dest": str(ctx.dest),
        "rootfs": str(ctx.dest / "rootfs"),
        "steps": [{"title": s.title, "seconds": round(s.seconds, 2), "ok": s.ok} for s in STEPS],
        "built_at": int(time.time()),
    }
    out.update(ctx.summary)
    out["settings"] = ctx.settings.as_dict()
    return out


def summary_lines(ctx: Context) -> list[str]:
    """What is printed after a successful build: how to use the result, then the notes about it.

    Notes (ctx.summary["notes"], also in --json's output) are facts about the result, such as a
    user who cannot log in; they come after the build, where they are read, not before its first step.
    """
    lines = []
    for plugin in [ctx.hypervisor, *(p for p in ctx.plugins if p is not ctx.hypervisor)]:
        lines += plugin.next_steps()
    lines += [f"note: {text}" for text in dict.fromkeys(ctx.summary.get("notes") or [])]
    return lines


def build(ctx: Context) -> dict[str, Any]:
    """Run a whole build; returns the summary (also written to DEST/vmbuilder-lxc.json)."""
    try:
        return _build(ctx)
    finally:
        stop_reaper()  # every command has ended: the reaper kills nothing that was not left behind


def _build(ctx: Context) -> dict[str, Any]:
    started = time.monotonic()
    with deferred(), step("Checking settings and the host", quiet=True):
        # Values against each other (errors), and options without effect (warnings, shown only
        # when every check passes).
        ctx.settings.check_resolved()
        call_hook(ctx.plugins, "set_defaults")
        if os.geteuid() != 0:
            userns.refuse_early(ctx.settings, ctx.dest)  # --libvirt, --idmap, ...: before the plugins try them
        # Plugins first: their refusals (a running container, an existing libvirt domain) name
        # the real obstacle better than "the destination exists" would.
        call_hook(ctx.plugins, "preflight_check")
        check_destination(ctx)
        shiftstep.preflight(ctx)  # --idmap
        for stray in shellhooks.unknown_scripts(hook_dirs(ctx)):
            LOG.warning("%s does not start with a stage name (%s); ignored", stray, ", ".join(shellhooks.STAGES))
    # Without root, after the warnings, as "building needs root" always came: the subordinate ranges,
    # what cannot work without root, the places (userns.py).
    plan = userns.preflight(ctx.settings, ctx.dest) if os.geteuid() != 0 else None
    if plan is not None:  # continue as root of a user namespace mapped to the user's subordinate ids
        userns.enter(plan)
        ctx.summary["idmap"] = plan.idmap.to_json()  # the LXC config's lxc.idmap, the marker, --json
        ctx.summary["rootless"] = True
    start_reaper()  # before unsharing: the reaper stays in the host's mount namespace
    enter_private_mount_namespace()
    created_parents: list[Path] = []
    made = False  # the build directory was made: after that, no build directory means DEST is placed
    try:
        created_parents += _make_workdir(ctx)
        made = True
        ctx.hook_env.update({"DEST": str(ctx.dest), "NAME": ctx.name, "BUILD_DIR": str(ctx.workdir)})
        image = ctx.hook_env.get("TEMPLATE")  # --from-template's archive
        release = ctx.hook_env.get("RELEASE", ctx.distro_name)
        with step(f"Unpacking the template {image}" if image else f"Bootstrapping {release}"):
            ctx.distro.bootstrap()
        with Chroot(ctx.rootfs, apt_proxy=ctx.settings.get_str("proxy")) as chroot:
            ctx.chroot = chroot
            with step("Configuring the guest"):
                call_hook(ctx.plugins, "configure_os")
                pause_point("configure")
            if shellhooks.stage_scripts(hook_dirs(ctx), "customize"):
                with step("Running customize hooks"):
                    shellhooks.run_stage(hook_dirs(ctx), "customize", ctx.rootfs, ctx.hook_env)
            ctx.chroot = None
        with step("Finishing the guest"):
            call_hook(ctx.plugins, "post_install")
            shellhooks.run_stage(hook_dirs(ctx), "finalize", ctx.rootfs, ctx.hook_env)
            call_hook(ctx.plugins, "finalize")
        shiftstep.shift_rootfs(ctx)  # --idmap: once, after configure and the (0-based) exports
        if ctx.keep_dest:
            with step(f"Moving the result into place at {ctx.dest}"):
                ctx.summary["build_seconds"] = round(time.monotonic() - started, 1)
                backing.detach(ctx)
                _write_marker(ctx)
                build_dir = ctx.workdir
                _commit(ctx)
                backing.committed(ctx, build_dir)
        elif ctx.workdir is not None:  # --export-only: the exports are the result
            remove_tree(ctx.workdir)
            ctx.workdir = None
    except BaseException as exc:
        ctx.chroot = None
        with interrupts_handled_by(signal.SIG_IGN):  # let cleanup finish despite another Ctrl-C
            # Which filesystem is full is measured before cleanup frees the space again.
            full = disk_full_error(ctx, exc)
            removed = ctx.workdir is not None
            if ctx.workdir is not None:
                LOG.info("cleaning up %s", ctx.workdir)
                remove_tree(ctx.workdir)
            for parent in created_parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
        if full is not None:
            raise full from exc
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, BuildInterrupted):
            state = "the build directory was removed" if removed else "nothing was built"
            if made and not removed and ctx.keep_dest:
                state = f"{ctx.dest} is complete; what follows the move into place did not run"
            raise BuildInterrupted(_signame(exc), state) from exc
        raise
    if ctx.keep_dest:
        try:
            pause_point("deploy")
            call_hook(ctx.plugins, "deploy")
        except KeyboardInterrupt as exc:
            raise BuildInterrupted(
                _signame(exc), f"{ctx.dest} is complete, but the deploy step (e.g. --libvirt's define) did not finish"
            ) from exc
    userns.give_back_outputs(ctx.summary, ctx.dest if ctx.keep_dest else None)  # without root: the user's files
    summary = summarize(ctx, status="ok")
    if not ctx.keep_dest:
        summary["dest"] = summary["rootfs"] = None
    summary["build_seconds"] = round(time.monotonic() - started, 1)
    return summary
