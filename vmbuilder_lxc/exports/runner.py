"""Run the chosen exports: stage once, write every format into a private temp directory in
--export-dir, and move the results into place only when all succeeded.

An existing output is refused before any work unless --overwrite; a failed or interrupted export
leaves --export-dir as it was (the temp directory and the staged view are removed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from ..log import LOG, die, note, step
from ..run import pause_point, run
from .base import ExportFormat, ExportJob
from .stage import staged

PARTIAL = ".vmbuilder-partial"


def planned_outputs(formats: list[ExportFormat], job: ExportJob) -> dict[str, list[str]]:
    return {fmt.name: fmt.outputs(dataclasses.replace(job, compression=compression_for(fmt, job.compression)))
            for fmt in formats}  # fmt: skip


def compression_for(fmt: ExportFormat, requested: str) -> str:
    """--compression applies where the format allows it; "" means each format's default."""
    if not requested:
        return fmt.default_compression
    if requested not in fmt.compressions:
        LOG.info("note: %s exports are always %s; --compression %s does not apply to them",
                 fmt.name, fmt.default_compression, requested)  # fmt: skip
        return fmt.default_compression
    return requested


def check_outputs(formats: list[ExportFormat], job: ExportJob, overwrite: bool) -> None:
    """Refuse clobbering, a profile mismatch and missing tools, before anything slow runs."""
    for fmt in formats:
        if fmt.profile != "any" and fmt.profile != job.profile:
            need = "--variant buildd" if fmt.profile == "buildd" else "a container build (not --variant buildd)"
            die(f"the {fmt.name} export needs {need}", f"drop {fmt.name} from --export or build it separately")
        for tool in fmt.tools_for(job):
            if not shutil.which(tool):
                die(f"the {fmt.name} export needs {tool}, which is not installed",
                    "install it with: apt-get install squashfs-tools")  # fmt: skip
    if overwrite:
        return
    for names in planned_outputs(formats, job).values():
        for rel in names:
            path = job.out_dir / rel
            if os.path.lexists(path):
                die(f"export {path} already exists", "pass --overwrite to replace it, or choose another --export-dir")


def _commit(tmp: Path, out_dir: Path) -> list[Path]:
    """Move each top-level entry of tmp into out_dir, replacing an old one (checked earlier)."""
    moved: list[Path] = []
    for entry in sorted(tmp.iterdir()):
        target = out_dir / entry.name
        if os.path.lexists(target):
            old = out_dir / f".{entry.name}.old{PARTIAL}"
            os.replace(target, old)
            os.replace(entry, target)
            run(["rm", "-rf", "--", old])
        else:
            os.replace(entry, target)
        moved.append(target)
    return moved


def export(
    rootfs: Path, formats: list[ExportFormat], job: ExportJob, *, keep: frozenset[str], overwrite: bool
) -> dict[str, object]:
    """Export `rootfs` in every format; returns the summary (outputs by format, what was stripped)."""
    check_outputs(formats, job, overwrite)
    out_dir = job.out_dir
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".export.*{PARTIAL}"):
        pid = stale.name.split(".")[2]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            run(["rm", "-rf", "--", stale])
    tmp = Path(tempfile.mkdtemp(prefix=f".export.{os.getpid()}.", suffix=PARTIAL, dir=out_dir))
    outputs: dict[str, list[str]] = {}
    committed = False
    try:
        direct = all(fmt.excludes for fmt in formats)
        with step("Staging the rootfs for export"), staged(rootfs, keep, direct=direct) as stage:
            stripped = stage.stripped
            for rule, paths in stripped.items():
                LOG.debug("stripped %s: %s", rule, ", ".join(paths[:10]) + (" ..." if len(paths) > 10 else ""))
            base = dataclasses.replace(job, root=stage.root, exclude=stage.exclude, shared={})
            for fmt in formats:
                fjob = dataclasses.replace(
                    base, compression=compression_for(fmt, job.compression), compression_explicit=bool(job.compression)
                )
                with step(f"Exporting {fmt.name} ({fjob.compression})"):
                    fmt.write(fjob, tmp)
                    outputs[fmt.name] = [str(out_dir / rel) for rel in fmt.outputs(fjob)]
                    for rel in fmt.outputs(fjob):
                        if not (tmp / rel).exists():
                            raise RuntimeError(f"the {fmt.name} export did not write {rel}")
            pause_point("export")  # test-only (run.pause_point): every format written, none moved yet
        _commit(tmp, out_dir)
        committed = True
    finally:
        try:
            tmp.rmdir()  # empty once every output was moved into place: no rm process needed
        except FileNotFoundError:
            pass
        except OSError:
            run(["rm", "-rf", "--", tmp])
        if created and not committed:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # a failed export leaves no empty --export-dir behind either
    for fmt_name, paths in outputs.items():
        for path in paths:
            note("%s: %s (%s)", fmt_name, path, _size(Path(path)))
    return {"dir": str(out_dir), "epoch": job.epoch, "formats": outputs,
            "stripped": {rule: len(paths) for rule, paths in stripped.items()}}  # fmt: skip


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
