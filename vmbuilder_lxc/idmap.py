"""Id maps for unprivileged containers (issue 16): which host ids a guest's ids 0..count-1 become.

A build with `--idmap` ends with a rootfs owned by the mapped ids, and an LXC config / libvirt domain
that maps the same range. `auto` takes the first range of `count` ids inside root's (or the
building user's) subordinate ranges in /etc/subuid and /etc/subgid that no other container of
ours uses. "Ours" is found by reading the `idmap` key of the `vmbuilder-lxc.json` marker of every
sibling of DEST (DEST's parent is the LXC path when `--lxc-path` is used) and of every container in
LXC's default path /var/lib/lxc; nothing else is scanned, so a range used by a container another
tool made is not seen (give `HOSTUID:COUNT` then). The module is pure: no import of the shift
engine (vmbuilder_lxc/idshift.py) and no import of the pipeline.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .textchecks import Invalid

# 65536 ids cover every id a Debian/Ubuntu system allocates (nobody/nogroup is 65534); a smaller
# map leaves files owned by ids the namespace cannot see (they show as nobody and cannot be
# chowned back), so that is the minimum.
MIN_COUNT = 65536
DEFAULT_COUNT = 65536
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
MARKER = "vmbuilder-lxc.json"
DEFAULT_LXC_PATH = Path("/var/lib/lxc")
# Host ids above this are not representable in a kernel id map (uid_t is 32 bits, -1 is invalid).
MAX_ID = 2**32 - 2
# A marker bigger than this is not ours (the summary is a few KiB); never read it.
_MAX_MARKER = 1 << 20


class IdMapError(ValueError):
    """A bad `--idmap` value or a range outside the subordinate ranges; the message is one line."""


@dataclass(frozen=True)
class IdMap:
    """Guest id x is host id start+x, for 0 <= x < count (uid and gid separately)."""

    uid_start: int
    gid_start: int
    count: int

    def to_json(self) -> dict[str, int]:
        """The form recorded in vmbuilder-lxc.json (key `idmap`) and printed by `--json`."""
        return {"uid_start": self.uid_start, "gid_start": self.gid_start, "count": self.count}

    @classmethod
    def from_json(cls, data: object) -> IdMap:
        """Read back to_json(); anything else raises IdMapError (the marker may be hand-edited)."""
        if not isinstance(data, dict):
            raise IdMapError("idmap is not an object")
        vals: list[int] = []
        for key in ("uid_start", "gid_start", "count"):
            v = data.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise IdMapError(f"idmap.{key} is not a non-negative integer")
            vals.append(v)
        m = cls(vals[0], vals[1], vals[2])
        m.check_shape()
        return m

    def check_shape(self) -> None:
        """Refuse maps the kernel cannot take: zero count, or past the 32-bit id space."""
        if self.count < 1:
            raise IdMapError("idmap count must be at least 1")
        for start in (self.uid_start, self.gid_start):
            if start < 1 or start + self.count - 1 > MAX_ID:
                raise IdMapError(f"idmap range {start}:{self.count} is outside host ids 1..{MAX_ID}")

    def describe(self) -> str:
        """One line for the summary."""
        if self.uid_start == self.gid_start:
            return f"guest ids 0-{self.count - 1} = host ids {self.uid_start}-{self.uid_start + self.count - 1}"
        return (
            f"guest ids 0-{self.count - 1} = host uids {self.uid_start}-{self.uid_start + self.count - 1}, "
            f"gids {self.gid_start}-{self.gid_start + self.count - 1}"
        )

    def lxc_lines(self) -> list[str]:
        """The `lxc.idmap` entries of an LXC config."""
        return [f"u 0 {self.uid_start} {self.count}", f"g 0 {self.gid_start} {self.count}"]


@dataclass(frozen=True)
class IdSpec:
    """A parsed `--idmap` value before it is resolved: auto (start None) or a fixed host start."""

    start: int | None
    count: int

    @property
    def auto(self) -> bool:
        return self.start is None


def parse_spec(text: str) -> IdSpec:
    """Parse `auto`, `auto:COUNT` or `HOSTUID:COUNT` (the same start is used for uids and gids)."""
    t = text.strip()
    if t == "auto":
        return IdSpec(None, DEFAULT_COUNT)
    head, sep, tail = t.partition(":")
    if not sep or not tail.isdigit() or not (head == "auto" or head.isdigit()):
        raise IdMapError(f"--idmap {text!r} is not auto or HOSTUID:COUNT; e.g. --idmap auto or --idmap 100000:65536")
    count = int(tail)
    if count < MIN_COUNT:
        raise IdMapError(f"--idmap count {count} is below {MIN_COUNT}; a guest needs ids 0-65535 (nobody is 65534)")
    if head == "auto":
        return IdSpec(None, count)
    start = int(head)
    if start < 1 or start + count - 1 > MAX_ID:
        raise IdMapError(f"--idmap {text} is outside host ids 1..{MAX_ID}; give a range from /etc/subuid")
    return IdSpec(start, count)


Range = tuple[int, int]  # (start, count)


def parse_subid(text: str, names: Sequence[str]) -> list[Range]:
    """The ranges of /etc/subuid or /etc/subgid text that belong to any of `names` (user name or uid)."""
    out: list[Range] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] not in names or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        start, count = int(parts[1]), int(parts[2])
        if count > 0:
            out.append((start, count))
    return sorted(out)


def owner_names(uid: int | None = None) -> list[str]:
    """The names an /etc/subuid line may use for `uid` (default: the effective user)."""
    u = os.geteuid() if uid is None else uid
    names = [str(u)]
    try:
        names.insert(0, pwd.getpwuid(u).pw_name)
    except KeyError:
        pass
    return names


def read_subids(names: Sequence[str], subuid: Path = SUBUID, subgid: Path = SUBGID) -> tuple[list[Range], list[Range]]:
    """(uid ranges, gid ranges) of `names`; a missing file is no ranges."""

    def one(p: Path) -> list[Range]:
        try:
            return parse_subid(p.read_text(encoding="utf-8", errors="replace"), names)
        except FileNotFoundError:
            return []

    return one(subuid), one(subgid)


def _inside(start: int, count: int, ranges: Iterable[Range]) -> bool:
    return any(rs <= start and start + count <= rs + rc for rs, rc in ranges)


def check_inside(m: IdMap, uid_ranges: Sequence[Range], gid_ranges: Sequence[Range], who: str = "root") -> None:
    """Refuse a map that is not inside the owner's subordinate ranges (LXC would fail at start)."""
    m.check_shape()
    if not _inside(m.uid_start, m.count, uid_ranges):
        have = ", ".join(f"{s}:{c}" for s, c in uid_ranges) or "none"
        raise IdMapError(
            f"--idmap uids {m.uid_start}:{m.count} are not inside {who}'s ranges in {SUBUID} ({have}); "
            f"add e.g. '{who}:{m.uid_start}:{m.count}' to {SUBUID} or use --idmap auto"
        )
    if not _inside(m.gid_start, m.count, gid_ranges):
        have = ", ".join(f"{s}:{c}" for s, c in gid_ranges) or "none"
        raise IdMapError(
            f"--idmap gids {m.gid_start}:{m.count} are not inside {who}'s ranges in {SUBGID} ({have}); "
            f"add e.g. '{who}:{m.gid_start}:{m.count}' to {SUBGID} or use --idmap auto"
        )


def read_marker_idmap(container_dir: Path) -> IdMap | None:
    """The idmap recorded in a container directory's marker, or None (no marker, unshifted, unreadable)."""
    p = container_dir / MARKER
    try:
        st = p.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MARKER:
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("idmap") is None:
        return None
    try:
        return IdMap.from_json(data["idmap"])
    except IdMapError:
        return None


def used_maps(dirs: Iterable[Path], exclude: Path | None = None) -> list[IdMap]:
    """The idmaps of our containers directly under each of `dirs` (except `exclude`, the DEST rebuilt)."""
    seen: set[Path] = set()
    out: list[IdMap] = []
    ex = exclude.absolute() if exclude is not None else None
    for d in dirs:
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for e in entries:
            a = e.absolute()
            if a in seen or a == ex:
                continue
            seen.add(a)
            m = read_marker_idmap(e)
            if m is not None:
                out.append(m)
    return out


def search_dirs(dest: Path) -> list[Path]:
    """Where `auto` looks for our other containers: DEST's parent and LXC's default path."""
    out = [dest.absolute().parent]
    if DEFAULT_LXC_PATH not in out:
        out.append(DEFAULT_LXC_PATH)
    return out


def _first_free(ranges: Sequence[Range], count: int, taken: Sequence[Range]) -> int | None:
    """The lowest start s with [s, s+count) inside one of `ranges` and overlapping nothing in `taken`."""
    for rs, rc in ranges:
        s = rs
        while s + count <= rs + rc:
            clash = [ts + tc for ts, tc in taken if ts < s + count and s < ts + tc]
            if not clash:
                return s
            s = max(clash)
    return None


def pick_auto(
    count: int, uid_ranges: Sequence[Range], gid_ranges: Sequence[Range], used: Sequence[IdMap], who: str = "root"
) -> IdMap:
    """The first free range of `count` ids; uid and gid starts are the same when both files allow it."""
    taken_u = [(m.uid_start, m.count) for m in used]
    taken_g = [(m.gid_start, m.count) for m in used]
    if not uid_ranges or not gid_ranges:
        missing = SUBUID if not uid_ranges else SUBGID
        raise IdMapError(
            f"--idmap auto: {who} has no range in {missing}; add e.g. '{who}:100000:{max(count, 65536)}' "
            f"(usermod --add-subuids/--add-subgids) or give --idmap HOSTUID:COUNT"
        )
    # Prefer one start for both (simpler to read, and what LXD does): walk uid candidates and
    # accept the first whose gid range is also free.
    for rs, rc in uid_ranges:
        s = rs
        while s + count <= rs + rc:
            clash = [ts + tc for ts, tc in taken_u if ts < s + count and s < ts + tc]
            if clash:
                s = max(clash)
                continue
            if _inside(s, count, gid_ranges) and not any(ts < s + count and s < ts + tc for ts, tc in taken_g):
                return IdMap(s, s, count)
            s += count
    us = _first_free(uid_ranges, count, taken_u)
    gs = _first_free(gid_ranges, count, taken_g)
    if us is None or gs is None:
        raise IdMapError(
            f"--idmap auto: no free range of {count} ids left in {who}'s {SUBUID if us is None else SUBGID} "
            f"({len(used)} of our containers use ranges); widen the range or give --idmap HOSTUID:COUNT"
        )
    return IdMap(us, gs, count)


def resolve(
    spec: IdSpec,
    dest: Path,
    *,
    uid: int | None = None,
    subuid: Path = SUBUID,
    subgid: Path = SUBGID,
    dirs: Sequence[Path] | None = None,
) -> IdMap:
    """Turn a parsed `--idmap` into a checked IdMap for a build into `dest` (preflight; raises IdMapError)."""
    names = owner_names(uid)
    who = names[0]
    ur, gr = read_subids(names, subuid, subgid)
    if spec.start is None:
        used = used_maps(dirs if dirs is not None else search_dirs(dest), exclude=dest)
        m = pick_auto(spec.count, ur, gr, used, who)
    else:
        m = IdMap(spec.start, spec.start, spec.count)
    check_inside(m, ur, gr, who)
    return m


SUMMARY_KEY = "idmap"


def of_summary(summary: object) -> IdMap | None:
    """The build's IdMap: the lxc plugin's preflight stores it as summary["idmap"] (to_json()), which
    also puts it in DEST/vmbuilder-lxc.json and `--json`; None for an unshifted build."""
    if not isinstance(summary, dict) or summary.get(SUMMARY_KEY) is None:
        return None
    return IdMap.from_json(summary[SUMMARY_KEY])


def validate_setting(text: str) -> str:
    """The `--idmap` setting's syntax check (textchecks.Invalid: problem and fix); ranges are checked in preflight."""
    try:
        parse_spec(text)
    except IdMapError as exc:
        problem, _, hint = str(exc).partition("; ")
        raise Invalid(problem.removeprefix("--idmap "), hint or None) from None
    return text.strip()


def unreachable_dir(dest: Path, m: IdMap) -> Path | None:
    """The first existing directory above DEST that the container's root (host uid/gid start) cannot
    search: liblxc then stops at "Could not access DIR. Please grant it x access" (pytest's 0700 tmp,
    a 0700 home). Permission bits only; an ACL granting x is not read (a warning, never a refusal)."""
    for d in reversed(dest.absolute().parents):
        try:
            st = d.stat()
        except OSError:
            return None  # the rest is created by the build
        if st.st_uid == m.uid_start:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == m.gid_start:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return d
    return None
