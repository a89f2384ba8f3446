"""Where the installed package keeps its data (templates and shell hooks).

The files live in the vmbuilder_lxc.templates and vmbuilder_lxc.hooks packages (top-level
templates/ and hooks/ in the source tree), so pip, pip -e and the Debian package all find them
through the import system rather than through a source checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_dir(package: str) -> Path:
    path = Path(str(resources.files(f"vmbuilder_lxc.{package}")))
    if not path.is_dir():
        raise RuntimeError(f"vmbuilder_lxc.{package} is not a directory on disk ({path})")
    return path


def templates_dir() -> Path:
    return data_dir("templates")


def hooks_dir() -> Path:
    return data_dir("hooks")
