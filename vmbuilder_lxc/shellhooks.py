"""Shell hooks: the packaged ones and the user's --hook-dir scripts.

User hooks follow mmdebstrap's --hook-directory convention: an executable whose file name starts
with a stage name runs at that stage, in file-name order, with the rootfs as $1. Stages:

  setup      the rootfs directory exists and is empty; bootstrap follows
  essential  the base system is bootstrapped, before extra packages (mmdebstrap's name)
  customize  vmbuilder's configuration is done; the chroot mounts are active
  finalize   the rootfs is complete and unmounted, just before it is moved into place

setup and essential hooks shape the cached base, so their contents are part of the cache key.
Every hook gets the hook environment (ROOTFS, SUITE, ARCH, ...): Context.hook_env.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .data import hooks_dir
from .log import LOG
from .run import CommandError, clean_env, run

STAGES = ("setup", "essential", "customize", "finalize")
CACHED_STAGES = ("setup", "essential")


class HookError(CommandError):
    def __init__(self, script: Path, returncode: int, tail: Sequence[str]) -> None:
        super().__init__([str(script)], returncode, tail)
        self.args = (f"hook {script} failed with exit code {returncode}",)


def stage_of(name: str) -> str | None:
    for stage in STAGES:
        if name.startswith(stage):
            return stage
    return None


def stage_scripts(dirs: Sequence[Path], stage: str) -> list[Path]:
    found: list[Path] = []
    for directory in dirs:
        for path in sorted(directory.iterdir(), key=lambda p: p.name):
            if not path.is_file() or stage_of(path.name) != stage:
                continue
            if not os.access(path, os.X_OK):
                LOG.warning("hook %s is not executable; skipped (chmod +x it to run it)", path)
                continue
            found.append(path)
    return found


def unknown_scripts(dirs: Sequence[Path]) -> list[Path]:
    return [p for d in dirs for p in sorted(d.iterdir()) if p.is_file() and stage_of(p.name) is None]


def digest(dirs: Sequence[Path], stages: Sequence[str] = CACHED_STAGES) -> str:
    """A digest of the hooks that shape the cached base (names and contents)."""
    h = hashlib.sha256()
    for stage in stages:
        for path in stage_scripts(dirs, stage):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def run_script(
    script: Path,
    rootfs: Path,
    hook_env: Mapping[str, str],
    *,
    interpreter: Sequence[str] = (),
    input: str | None = None,
    **extra: str,
) -> None:
    """Run a script on the host with the rootfs as $1 and the hook environment;
    a non-zero exit stops the build, naming the script and its exit code."""
    env = clean_env({**hook_env, **extra, "ROOTFS": str(rootfs)})
    result = run([*interpreter, script, rootfs], env=env, check=False, input=input)
    if result.returncode != 0:
        raise HookError(script, result.returncode, result.lines[-20:])


def run_stage(dirs: Sequence[Path], stage: str, rootfs: Path, hook_env: Mapping[str, str]) -> list[str]:
    """Run the user's hooks for one stage; a failing hook stops the build."""
    ran = []
    for script in stage_scripts(dirs, stage):
        LOG.info("running %s hook %s", stage, script)
        run_script(script, rootfs, hook_env, STAGE=stage)
        ran.append(str(script))
    return ran


def run_builtin(name: str, rootfs: Path, hook_env: Mapping[str, str], input: str | None = None) -> None:
    """Run one of the packaged shell hooks (hooks/NAME.sh) with the hook environment."""
    run_script(hooks_dir() / f"{name}.sh", rootfs, hook_env, interpreter=("sh", "-eu"), input=input)
