"""The build pipeline: preflight, bootstrap, configure, finalize, move into place, deploy.

The rootfs is built in a hidden directory beside the destination and renamed into place only when
everything succeeded. On any error or Ctrl-C the build directory is unmounted and removed, an
existing destination is left untouched, and a destination is only ever replaced with --overwrite
and only when it is one of ours (it holds vmbuilder-lxc.json) or empty.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from . import __version__, shellhooks
from .chroot import Chroot, enter_private_mount_namespace, mounts_below, unmount_below
from .context import Context
from .log import LOG, STEPS, deferred, die, step
from .plugin import call_hook
from .run import interrupts_handled_by, run

MARKER = "vmbuilder-lxc.json"
PARTIAL_SUFFIX = ".vmbuilder-partial"


def hook_dirs(ctx: Context) -> list[Path]:
    return [Path(p) for p in ctx.settings.get_list("hook-dir")]


def check_destination(ctx: Context) -> None:
    """Refuse an existing destination before any slow work is done."""
    dest = ctx.dest
    if dest == Path("/") or dest.resolve() == Path("/"):
        die("refusing to build into /", "pass -d with a new directory")
    if not os.path.lexists(dest):
        return
    if not ctx.settings.get_bool("overwrite"):
        die(f"destination {dest} already exists", "pass --overwrite to replace it, or choose another -d")
    if dest.is_symlink() or not dest.is_dir():
        die(f"destination {dest} is not a directory", "remove it or choose another -d")
    if not (dest / MARKER).is_file() and any(dest.iterdir()):
        die(
            f"destination {dest} exists and was not built by vmbuilder-lxc; --overwrite only replaces our own builds",
            "remove it yourself or choose another -d",
        )
    if os.path.ismount(dest) or mounts_below(dest):
        die(f"something is mounted at or below {dest}", "unmount it (is the container running?)")


def remove_tree(path: Path) -> None:
    """Delete a build tree: unmount first, never cross into another filesystem."""
    if not os.path.lexists(path):
        return
    unmount_below(path)
    run(["rm", "-rf", "--one-file-system", "--", path])


def _remove_stale_partials(parent: Path, name: str) -> None:
    """Build directories left by a killed build (its PID is gone) are removed."""
    for stale in parent.glob(f".{name}.*{PARTIAL_SUFFIX}"):
        try:
            pid = int((stale / ".pid").read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and Path(f"/proc/{pid}").exists():
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
    _remove_stale_partials(parent, ctx.name)
    ctx.workdir = Path(tempfile.mkdtemp(prefix=f".{ctx.name}.", suffix=PARTIAL_SUFFIX, dir=parent))
    os.chmod(ctx.workdir, 0o755)
    (ctx.workdir / ".pid").write_text(str(os.getpid()))
    return created


def _commit(ctx: Context) -> None:
    """Move the build directory into place, replacing an old build only with --overwrite."""
    assert ctx.workdir is not None
    (ctx.workdir / ".pid").unlink(missing_ok=True)
    old: Path | None = None
    if os.path.lexists(ctx.dest):
        check_destination(ctx)  # again: it may have appeared while we were building
        old = ctx.dest.with_name(f".{ctx.name}.old-{os.getpid()}{PARTIAL_SUFFIX}")
        os.replace(ctx.dest, old)
    try:
        os.replace(ctx.workdir, ctx.dest)
    except BaseException:
        if old is not None:
            os.replace(old, ctx.dest)
        raise
    ctx.workdir = None
    if old is not None:
        remove_tree(old)


def _write_marker(ctx: Context) -> None:
    assert ctx.workdir is not None
    summary = summarize(ctx, status="ok")
    (ctx.workdir / MARKER).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


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


def build(ctx: Context) -> dict[str, Any]:
    """Run a whole build; returns the summary (also written to DEST/vmbuilder-lxc.json)."""
    started = time.monotonic()
    with deferred(), step("Checking settings and the host", quiet=True):
        call_hook(ctx.plugins, "set_defaults")
        # Plugins first: their refusals (a running container, an existing libvirt domain) name
        # the real obstacle better than "the destination exists" would.
        call_hook(ctx.plugins, "preflight_check")
        if ctx.keep_dest:
            check_destination(ctx)
        for stray in shellhooks.unknown_scripts(hook_dirs(ctx)):
            LOG.warning("%s does not start with a stage name (%s); ignored", stray, ", ".join(shellhooks.STAGES))
    if os.geteuid() != 0:
        die("building needs root (it mounts filesystems and uses chroot)", "run it as root, e.g. with sudo")
    enter_private_mount_namespace()
    created_parents = _make_workdir(ctx)
    ctx.facts.update({"DEST": str(ctx.dest), "NAME": ctx.name, "BUILD_DIR": str(ctx.workdir)})
    try:
        template = ctx.facts.get("TEMPLATE")
        release = ctx.facts.get("RELEASE", ctx.distro_name)
        with step(f"Unpacking the template {template}" if template else f"Bootstrapping {release}"):
            ctx.distro.bootstrap()
        with Chroot(ctx.rootfs, apt_proxy=ctx.settings.get_str("proxy")) as chroot:
            ctx.chroot = chroot
            with step("Configuring the guest"):
                call_hook(ctx.plugins, "configure_os")
            if shellhooks.stage_scripts(hook_dirs(ctx), "customize"):
                with step("Running customize hooks"):
                    shellhooks.run_stage(hook_dirs(ctx), "customize", ctx.rootfs, ctx.facts)
            ctx.chroot = None
        with step("Finishing the guest"):
            call_hook(ctx.plugins, "post_install")
            shellhooks.run_stage(hook_dirs(ctx), "finalize", ctx.rootfs, ctx.facts)
            call_hook(ctx.plugins, "finalize")
        if ctx.keep_dest:
            with step(f"Moving the result into place at {ctx.dest}"):
                ctx.summary["build_seconds"] = round(time.monotonic() - started, 1)
                _write_marker(ctx)
                _commit(ctx)
        elif ctx.workdir is not None:  # --export-only: the exports are the result
            remove_tree(ctx.workdir)
            ctx.workdir = None
    except BaseException:
        ctx.chroot = None
        with interrupts_handled_by(signal.SIG_IGN):  # let cleanup finish despite another Ctrl-C
            if ctx.workdir is not None:
                LOG.info("cleaning up %s", ctx.workdir)
                remove_tree(ctx.workdir)
            for parent in created_parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise
    if ctx.keep_dest:
        call_hook(ctx.plugins, "deploy")
    summary = summarize(ctx, status="ok")
    if not ctx.keep_dest:
        summary["dest"] = summary["rootfs"] = None
    summary["build_seconds"] = round(time.monotonic() - started, 1)
    return summary
