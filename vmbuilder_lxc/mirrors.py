"""Default archive mirrors, taken from debootstrap's own scripts.

No archive host name is written into this project: the Ubuntu default comes from the
`default_mirror` lines of /usr/share/debootstrap/scripts/gutsy (which pick the ports archive for
non-x86 architectures), and the Debian default from DEF_MIRROR in /usr/sbin/debootstrap. Only the
small subset of shell that those scripts use is understood: nested `case` blocks whose branches
call `default_mirror URL`.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

from .log import UserError

DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
DEBOOTSTRAP_BIN = Path("/usr/sbin/debootstrap")


def _eval_case_blocks(lines: list[str], env: dict[str, str]) -> str | None:
    """Evaluate the case/esac structure of a debootstrap script and return its default_mirror."""
    pos = 0

    def block(active: bool) -> str | None:
        """Run statements until `;;` or `esac` (not consumed); return a mirror if one was set."""
        nonlocal pos
        found: str | None = None
        while pos < len(lines):
            line = lines[pos]
            if line == ";;" or line.startswith("esac") or re.match(r"^[^()\s][^()]*\)$", line):
                return found
            pos += 1
            m = re.match(r"^case\s+\"?\$\{?(\w+)\}?\"?\s+in$", line)
            if m:
                result = case(env.get(m.group(1), ""), active)
                found = found or result
                continue
            if active and found is None and line.startswith("default_mirror "):
                found = shlex.split(line)[1]
        return found

    def case(value: str, active: bool) -> str | None:
        nonlocal pos
        matched = False
        found: str | None = None
        while pos < len(lines):
            line = lines[pos]
            pos += 1
            if line.startswith("esac"):
                return found
            if line == ";;":
                continue
            m = re.match(r"^([^()\s][^()]*)\)$", line)
            if m:
                patterns = [p.strip() for p in m.group(1).split("|")]
                take = active and not matched and any(fnmatch.fnmatchcase(value, p) for p in patterns)
                matched = matched or take
                result = block(take)
                found = found or result
        return found

    return block(True)


def script_default_mirror(script: Path, arch: str, suite: str) -> str | None:
    try:
        text = script.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return _eval_case_blocks(lines, {"ARCH": arch, "SUITE": suite})


def debootstrap_def_mirror(binary: Path = DEBOOTSTRAP_BIN) -> str | None:
    try:
        text = binary.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    m = re.search(r'^\s*DEF_MIRROR="([^"]+)"', text, re.M)
    return m.group(1) if m else None


def default_mirror(script_name: str, arch: str, suite: str) -> str:
    """The mirror debootstrap itself would use for this script, architecture and suite."""
    script = DEBOOTSTRAP_SCRIPTS / script_name
    mirror = script_default_mirror(script, arch, suite) or debootstrap_def_mirror()
    if not mirror:
        raise UserError(
            f"cannot find a default mirror for {suite}/{arch} in {script} or {DEBOOTSTRAP_BIN}",
            "install debootstrap (apt-get install debootstrap) or pass --mirror URL",
        )
    return mirror
