"""`vmbuilder lxc cache refresh`: bootstrap the old entries again, so that new containers get updates.

Each entry's marker holds the inputs that shaped its base (suite, arch, variant, mirrors,
components, packages, bootstrapper, the digests of keyring, seed file and hooks) and, since the
refresh exists, where those files are (`request`, cache.request_record). From them the refresh
rebuilds the command line of a build and runs it as a child `vmbuilder` into a throw-away DEST,
with REFRESH_ENV naming the key: that build skips its lookup, bootstraps, and its ordinary store
replaces the entry (same lock, `.partial` names, the marker last). So a failed or interrupted
refresh leaves the old entry as valid as it was, and the one that succeeds leaves only the new one.
A request that now gives another key (tool upgraded, keyring changed) is refused by the child
before it bootstraps. An entry a container uses cannot be replaced: it is marked stale, as before.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import FORMAT, REFRESH_ENV, BaseCache
from .log import LOG

DAY = 86400.0
NO_HOOKS = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # the digest of no hooks
TAIL = 20
SCRATCH_PREFIX = ".refresh-"  # the child build's throw-away DEST, in the cache directory

# (cache, key, build arguments) -> (exit code, the output's last lines): the child build, faked in tests.
Rebuild = Callable[[BaseCache, str, list[str]], tuple[int, list[str]]]


def request_argv(meta: dict[str, Any]) -> list[str] | str:
    """`DISTRO --suite ...`: the build options that give this entry's base again; or why there are none."""
    raw_inputs, raw_req = meta.get("inputs"), meta.get("request")
    inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
    req: dict[str, Any] = raw_req if isinstance(raw_req, dict) else {}
    for name in ("distro", "suite", "arch", "mirror", "security_mirror", "backend"):
        if not isinstance(inputs.get(name), str) or not inputs[name]:
            return f"its marker does not record the {name} it was built with"
    argv = [inputs["distro"], "--suite", inputs["suite"], "--arch", inputs["arch"]]
    if inputs.get("variant"):
        argv += ["--variant", str(inputs["variant"])]
    argv += ["--mirror", inputs["mirror"], "--security-mirror", inputs["security_mirror"]]
    for flag, name in (("--components", "components"), ("--addpkg", "addpkg"), ("--removepkg", "removepkg")):
        for item in inputs.get(name) or []:
            argv += [flag, str(item)]
    argv += ["--bootstrapper", inputs["backend"]]
    if inputs.get("keyring") == "insecure":
        argv.append("--insecure")
    elif req.get("keyring"):
        argv += ["--keyring", str(req["keyring"])]  # else the distro's default (the key check compares it)
    if inputs.get("seedfile"):
        if not req.get("seedfile"):
            return "it was built with a --seedfile whose path its marker does not record"
        argv += ["--seedfile", str(req["seedfile"])]
    if inputs.get("hooks", NO_HOOKS) != NO_HOOKS:
        if not req.get("hook_dirs"):
            return "it was built with setup/essential hooks whose --hook-dir its marker does not record"
    for directory in req.get("hook_dirs") or []:
        argv += ["--hook-dir", str(directory)]
    return argv


def run_build(cache: BaseCache, key: str, argv: list[str]) -> tuple[int, list[str]]:
    """The child build: `vmbuilder lxc ARGV` into a throw-away DEST beside the cache, told to refresh KEY."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=cache.root))
    (scratch / "pid").write_text(f"{os.getpid()}\n")  # remove_abandoned: whether its refresh still runs
    command = [sys.executable, "-m", "vmbuilder_lxc", "lxc", *argv, "--cache-dir", str(cache.root),
               "--backing", "dir", "-d", str(scratch / "dest")]  # fmt: skip
    LOG.debug("+ %s=%s %s", REFRESH_ENV, key, shlex.join(command))
    try:
        proc = subprocess.run(command, env={**os.environ, REFRESH_ENV: key}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                              check=False)  # fmt: skip
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(scratch)], check=False)
    return proc.returncode, [line for line in proc.stdout.splitlines() if line.strip()][-TAIL:]


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):  # no pid yet: a refresh that is just starting, unless it is old
        try:
            return time.time() - pid_file.parent.stat().st_mtime < 3600
        except OSError:
            return False
    return True


def remove_abandoned(cache: BaseCache) -> list[Path]:
    """The scratch directories of refreshes killed before they could remove them (a whole rootfs each)."""
    removed = []
    for scratch in sorted(cache.root.glob(SCRATCH_PREFIX + "*")):
        if scratch.is_dir() and not scratch.is_symlink() and not _alive(scratch / "pid"):
            subprocess.run(["rm", "-rf", "--one-file-system", "--", str(scratch)], check=False)
            removed.append(scratch)
    return removed


def _mark_stale(cache: BaseCache, key: str, why: str) -> None:
    from .cacheadmin import mark_stale

    mark_stale(cache.entry(key), why)


def refresh(
    cache: BaseCache, older_than_days: float, dry_run: bool = False, rebuild: Rebuild | None = None
) -> tuple[dict[str, Any], list[str], bool]:
    """Re-bootstrap every entry built more than N days ago; (summary, lines, all succeeded)."""
    rebuild = rebuild or run_build
    if not dry_run:
        for scratch in remove_abandoned(cache):
            LOG.warning("removed %s, left by a refresh that was killed", scratch)
    now = time.time()
    refreshed: list[dict[str, Any]] = []
    planned: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for key in cache.keys():
        entry = cache.entry(key)
        meta = entry.load_meta()
        if meta is None or meta.get("format") != FORMAT:
            continue  # incomplete or old-format: no build trusts it; `cache prune` removes it
        created = meta.get("created")
        if isinstance(created, int | float) and now - created <= older_than_days * DAY:
            continue
        raw = meta.get("inputs")
        inputs: dict[str, Any] = raw if isinstance(raw, dict) else {}
        about = {"key": key, "suite": inputs.get("suite"), "arch": inputs.get("arch"), "created": created}
        users = cache.users(key)
        if users:
            if not dry_run:
                with cache.locked(key):
                    _mark_stale(cache, key, f"refresh --older-than {older_than_days:g} (in use)")
            stale.append({**about, "users": [str(u) for u in users]})
            continue
        argv = request_argv(meta)
        if isinstance(argv, str):
            failed.append({**about, "error": f"cannot be rebuilt: {argv}", "tail": []})
            continue
        if dry_run:
            planned.append({**about, "command": ["vmbuilder", "lxc", *argv]})
            continue
        print(f"refreshing {key} ({about['suite']}/{about['arch']}): bootstrapping it again...", file=sys.stderr)
        code, tail = rebuild(cache, key, argv)
        after = entry.load_meta() or {}
        if code == 0 and after.get("created") != created and entry.problem(full=False) is None:
            refreshed.append({**about, "created": after.get("created")})
        elif code == 0:
            failed.append({**about, "error": "the build did not replace the entry (did a container start using it?)",
                           "tail": tail})  # fmt: skip
        else:
            failed.append({**about, "error": f"the build failed with exit code {code}; the old entry is kept",
                           "tail": tail})  # fmt: skip
    lines = [f"refreshed {r['key']} ({r['suite']}/{r['arch']})" for r in refreshed]
    lines += [f"would refresh {p['key']}: {shlex.join(p['command'])}" for p in planned]
    mark = "would mark stale" if dry_run else "marked stale"
    lines += [f"{mark}: {s['key']} (in use by {', '.join(s['users'])}, so it cannot be replaced; the next build "
              "of its inputs bootstraps afresh)" for s in stale]  # fmt: skip
    for f in failed:
        lines.append(f"FAILED {f['key']} ({f['suite']}/{f['arch']}): {f['error']}")
        lines += [f"    | {line}" for line in f["tail"]]
    verb = "to refresh" if dry_run else "refreshed"
    lines.append(f"{len(planned) if dry_run else len(refreshed)} entries {verb}, {len(stale)} in use marked stale, "
                 f"{len(failed)} failed")  # fmt: skip
    summary = {"refreshed": refreshed, "planned": planned, "stale": stale, "failed": failed, "dry_run": dry_run}
    return summary, lines, not failed
