"""Jinja2 rendering with an override search path.

`--templates DIR` (repeatable, also settable in the config files) is searched before the packaged
templates. Names keep the packaged layout (DIR/netplan/10-lxc.yaml.j2 replaces
templates/netplan/10-lxc.yaml.j2), so a site can replace one template without copying the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from .data import templates_dir


class Templates:
    def __init__(self, override_dirs: Sequence[Path] = ()) -> None:
        self.search = [*override_dirs, templates_dir()]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in self.search]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )

    def render(self, name: str, context: dict[str, Any] | None = None) -> str:
        return self.env.get_template(name).render(**(context or {}))

    def origin(self, name: str) -> Path:
        """The file that `name` resolves to (for logs: shows when an override is used)."""
        for directory in self.search:
            candidate = directory / name
            if candidate.is_file():
                return candidate
        raise jinja2.TemplateNotFound(name)
