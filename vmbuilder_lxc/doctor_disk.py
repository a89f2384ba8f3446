"""The storage checks of `vmbuilder lxc doctor`: free space, interrupted builds, broken cache entries.

They read what pipeline.py and cache.py would act on, and say what the next build does about it;
nothing is removed here (the fixes name the exact command).
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from . import doctor_probes as p
from .cache import BaseCache, check_cache_dir
from .log import UserError
from .pipeline import PARTIAL_SUFFIX
from .places import check_writable_dir

Result = p.Result
SHA256 = re.compile(r"[0-9a-f]{64}")


def existing_ancestor(path: Path) -> Path:
    """The directory a build would create PATH in (the nearest one that exists)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_space_at(
    check: str, what: str, path: Path, opts: p.Options, option: str, preflight: Callable[[], None] | None = None
) -> Result:
    """Free space where a build writes; `preflight` is the build's own check of that place."""
    other = f"choose another {option}"
    if path.exists() and not path.is_dir():
        return Result(check, "fail", f"{what} {path} is not a directory", f"remove it or {other}")
    if preflight is not None:
        try:
            preflight()
        except UserError as exc:  # what the build's preflight would refuse
            return Result(check, "fail", exc.message, exc.hint or other)
    base = existing_ancestor(path)
    try:
        st = os.statvfs(base)
    except OSError as exc:
        return Result(check, "fail", f"cannot stat the file system of {path}: {exc.strerror}", other)
    free = st.f_bavail * st.f_frsize
    where = f"{what} {path}" + ("" if base == path else f" (would be created in {base})")
    if st.f_flag & os.ST_RDONLY:
        return Result(check, "fail", f"{where} is on a read-only file system", other)
    if free < opts.min_free:
        return Result(check, "fail", f"{where}: {p.human_size(free)} free, less than {p.human_size(opts.min_free)}",
                      f"free space there (see du -sh {base}/*) or {other}")  # fmt: skip
    return Result(check, "ok", f"{where}: {p.human_size(free)} free")


def check_space(opts: p.Options) -> list[Result]:
    dest_hint = "choose -d in a writable directory on a disk"
    return [
        check_space_at("space-cache", "--cache-dir", opts.cache_dir, opts, "--cache-dir",
                       lambda: check_cache_dir(opts.cache_dir)),
        check_space_at("space-dest", "DEST's directory", opts.dest.parent, opts, "DEST (-d)",
                       lambda: check_writable_dir(opts.dest.parent, "-d", dest_hint, shown=opts.dest)),
    ]  # fmt: skip


# -- interrupted builds --------------------------------------------------------------------------------


def partial_owner(directory: Path) -> int:
    """The PID of the build that owns a partial directory (0: unknown); old-PID names count too."""
    try:
        return int((directory / ".pid").read_text().strip())
    except (OSError, ValueError):
        m = re.search(r"\.old-(\d+)" + re.escape(PARTIAL_SUFFIX) + "$", directory.name)
        return int(m.group(1)) if m else 0


def alive(pid: int) -> bool:
    return pid > 0 and Path(f"/proc/{pid}").exists()


def stale_partials(parent: Path) -> list[Path]:
    try:
        found = sorted(parent.glob(f".*{PARTIAL_SUFFIX}"))
    except OSError:
        return []
    return [d for d in found if d.is_dir() and not d.is_symlink() and not alive(partial_owner(d))]


def check_partials(opts: p.Options) -> list[Result]:
    parent = opts.dest.parent
    stale = stale_partials(parent)
    if not stale:
        return [Result("partial-builds", "ok", f"no directories of interrupted builds in {parent}")]
    names = sorted({d.name[1:].removesuffix(PARTIAL_SUFFIX).rsplit(".", 1)[0] for d in stale})
    listing = ", ".join(f"{d.name} (pid {partial_owner(d) or '?'} gone)" for d in stale)
    rm = "rm -rf --one-file-system " + " ".join(shlex.quote(str(d)) for d in stale)
    return [Result("partial-builds", "warn",
                   f"{len(stale)} left by interrupted builds in {parent}: {listing}",
                   f"the next build of {', '.join(names)} there removes them, or: {rm}")]  # fmt: skip


# -- the base-system cache -----------------------------------------------------------------------------


def _locked_by_build(lock: Path) -> bool:
    """True while a build holds the key's lock (probed with a shared, non-blocking lock; nothing is created)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def entry_problem(cache: BaseCache, key: str, verify: bool) -> str | None:
    """Why a build would not trust this entry (None: it would use it)."""
    entry = cache.entry(key)
    if not entry.meta.exists():
        return "a base without its metadata (an interrupted store)"
    return entry.problem(full=verify)


def check_cache(opts: p.Options) -> list[Result]:
    cache = BaseCache(opts.cache_dir)
    if not cache.dir.exists():
        return [Result("cache", "ok", f"{cache.dir} does not exist yet (the first build creates it)")]
    try:
        files = sorted(cache.dir.iterdir())
    except OSError as exc:
        return [
            Result("cache", "fail", f"cannot read {cache.dir}: {exc.strerror}", f"check the permissions of {cache.dir}")
        ]
    keys = sorted({f.name.split(".", 1)[0] for f in files if not f.name.endswith(".lock")})
    broken: dict[str, str] = {}
    leftovers: list[Path] = []
    good = 0
    for key in keys:
        if _locked_by_build(cache.dir / f"{key}.lock"):
            continue  # a build is storing or reading it right now
        leftovers += [f for f in files if f.name.startswith(f"{key}.") and f.name.endswith(".partial")]
        if not any(f.name in (f"{key}.json", f"{key}.tree", f"{key}.tar", f"{key}.tar.zst") for f in files):
            continue
        problem = entry_problem(cache, key, opts.verify_cache)
        if problem:
            broken[key] = problem
        else:
            good += 1
    checked = "digests checked" if opts.verify_cache else "manifests checked; digests: --verify-cache"
    if not broken and not leftovers:
        return [Result("cache", "ok", f"{cache.dir}: {good} valid entries ({checked})")]
    paths = [str(f) for f in files if f.name.split(".", 1)[0] in broken and not f.name.endswith(".lock")]
    paths += [str(f) for f in leftovers if str(f) not in paths]
    text = "; ".join(f"{k}: {why}" for k, why in broken.items())
    if leftovers:
        text += ("; " if text else "") + f"{len(leftovers)} leftover .partial files of interrupted stores"
    return [Result("cache", "warn", f"{cache.dir}: {good} valid, {len(broken)} broken entries ({text})",
                   "the next build of the same inputs removes and rebuilds them, or: rm -rf "
                   + " ".join(shlex.quote(x) for x in paths))]  # fmt: skip
