"""What liblxc says about a container, for the checks that must not touch a running one."""

from __future__ import annotations

import shutil
from pathlib import Path

from .run import run


def container_running(dest: Path) -> bool:
    """True if liblxc reports the container in `dest` (lxcpath/name) RUNNING or FROZEN: its files may
    change under us. Without lxc-info no container can be running under liblxc here, so False."""
    if not shutil.which("lxc-info"):
        return False
    state = run(["lxc-info", "-P", dest.parent, "-n", dest.name, "-s"], check=False).output
    return "RUNNING" in state or "FROZEN" in state
