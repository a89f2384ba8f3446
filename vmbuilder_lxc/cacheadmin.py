"""`vmbuilder lxc cache list|prune|verify`: look after the base cache between builds (refresh: cacherefresh.py).

Each action returns a JSON-ready dict (what --json prints) and the lines a person reads. Every
change to an entry is made under that entry's lock, so it never races a build of the same key,
and an entry that a container still uses as its base (pins.py) is never removed: prune skips it,
verify and refresh only mark it stale, so no new build uses it while the container keeps it.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from .cache import BaseCache, Entry
from .log import die

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
DAY = 86400.0


def parse_size(text: str) -> int:
    """`500M`, `10G`, `1.5T` or a number of bytes (units are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m:
        die(f"--max-size {text!r} is not a size", "give a number with an optional unit K, M, G or T, e.g. 20G")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def _human(size: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}T"


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f}d"


def _describe(cache: BaseCache, key: str, now: float) -> dict[str, Any]:
    entry = cache.entry(key)
    meta = entry.load_meta() or {}
    raw = meta.get("inputs")
    inputs: dict[str, Any] = raw if isinstance(raw, dict) else {}
    created = meta.get("created") if isinstance(meta.get("created"), int | float) else None
    used = entry.last_used()
    status = "ok"
    if meta.get("format") != 2:
        status = "old-format" if meta or not entry.tree.exists() else "incomplete"
    elif meta.get("stale"):
        status = "stale"
    size = meta.get("size") if isinstance(meta.get("size"), int) else 0
    return {
        "key": key,
        "distro": inputs.get("distro"),
        "suite": inputs.get("suite"),
        "arch": inputs.get("arch"),
        "variant": inputs.get("variant") or "default",
        "size": size,
        "created": created,
        "age_days": round((now - created) / DAY, 2) if created is not None else None,
        "last_used": used,
        "last_used_days": round((now - used) / DAY, 2) if used is not None else None,
        "status": status,
        "path": str(entry.root),
        "users": [str(p) for p in cache.users(key)],
    }


def list_entries(cache: BaseCache) -> tuple[dict[str, Any], list[str]]:
    now = time.time()
    entries = [_describe(cache, key, now) for key in cache.keys()]
    lines = [f"{'KEY':<32}  {'SUITE':<10} {'ARCH':<7} {'VARIANT':<9} {'SIZE':>7} {'AGE':>7} {'USED':>7}  USERS"]
    for e in entries:
        age = _days(now - e["created"]) if e["created"] is not None else "?"
        used = _days(now - e["last_used"]) if e["last_used"] is not None else "never"
        users = ", ".join(e["users"]) or "-"
        flag = "" if e["status"] == "ok" else f"  [{e['status']}]"
        lines.append(f"{e['key']:<32}  {e['suite'] or '?':<10} {e['arch'] or '?':<7} {e['variant']:<9} "
                     f"{_human(e['size']):>7} {age:>7} {used:>7}  {users}{flag}")  # fmt: skip
    if not entries:
        lines = [f"no cached bases in {cache.dir}"]
    return {"cache_dir": str(cache.root), "entries": entries}, lines


def mark_stale(entry: Entry, why: str) -> None:
    """Keep the tree (a container uses it) but let no new build trust it."""
    meta = entry.load_meta() or {}
    meta.update({"stale": True, "stale_reason": why})
    tmp = entry.meta.with_name(entry.meta.name + ".partial")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, entry.meta)


def prune(cache: BaseCache, max_age_days: float | None, max_size: int | None) -> tuple[dict[str, Any], list[str]]:
    """Remove broken entries, those unused for MAX_AGE days, then the least recently used above MAX_SIZE."""
    now = time.time()
    described = [_describe(cache, key, now) for key in cache.keys()]
    order = sorted(described, key=lambda e: e["last_used"] or e["created"] or 0)
    total = sum(e["size"] for e in described)
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for e in order:
        last = e["last_used"] or e["created"] or 0
        reason = None
        if e["status"] in ("old-format", "incomplete"):
            reason = e["status"]
        elif max_age_days is not None and now - last > max_age_days * DAY:
            reason = f"unused for more than {max_age_days:g} days"
        elif max_size is not None and total > max_size:
            reason = f"the cache is larger than {_human(max_size)}"
        if reason is None:
            continue
        with cache.locked(e["key"]):
            users = cache.users(e["key"])
            if not users:
                cache.remove(cache.entry(e["key"]), force=True)
        if users:
            kept.append({**e, "reason": "in use by " + ", ".join(map(str, users))})
        else:
            total -= e["size"]
            removed.append({**e, "reason": reason})
    lines = [f"removed {r['key']} ({r['suite']}/{r['arch']}, {_human(r['size'])}): {r['reason']}" for r in removed]
    lines += [f"kept {k['key']}: {k['reason']}" for k in kept]
    lines.append(f"{len(removed)} removed, {len(described) - len(removed)} kept, {_human(total)} in {cache.dir}")
    return {"removed": removed, "kept_in_use": kept, "size": total}, lines


def verify(cache: BaseCache) -> tuple[dict[str, Any], list[str], bool]:
    """Hash every file of every entry; a bad entry is removed (or marked stale while in use)."""
    good: list[str] = []
    bad: list[dict[str, str]] = []
    for key in cache.keys():
        entry = cache.entry(key)
        with cache.locked(key):
            problem = entry.problem(full=True)
            if problem is None:
                good.append(key)
                continue
            action = "removed"
            if not cache.remove(entry):
                mark_stale(entry, problem)
                action = "marked stale (in use)"
        bad.append({"key": key, "problem": problem, "action": action})
    lines = [f"BAD {b['key']}: {b['problem']} ({b['action']})" for b in bad]
    lines.append(f"{len(good)} entries verified, {len(bad)} bad")
    return {"verified": good, "bad": bad}, lines, not bad
