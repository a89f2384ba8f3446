"""Jinja2 rendering with an override search path, and format filters on every value.

`--templates DIR` (repeatable, also settable in the config files) is searched before the packaged
templates. Names keep the packaged layout (DIR/netplan/10-lxc.yaml.j2 replaces
templates/netplan/10-lxc.yaml.j2), so a site can replace one template without copying the rest.

Generated files are structured data, not pasted strings. Every `{{ value }}` in a packaged
template ends in a filter for its format (formats.FILTERS: `lxc`, `xml`, `yaml`, `apt`, `sh`,
`systemd`, ...), which escapes the value or refuses it with a one-line error; a test checks that no
template forgets one. Behind the filters, two guards that need no template's cooperation:
- `finalize` checks every interpolated value, filtered or not: none may hold a line break or
  a control character, so no value can start a new line in any file (an override template that
  forgets a filter still gets this much);
- after rendering, an LXC config is read back as liblxc reads it: every line must be blank, a
  comment or `lxc.KEY = VALUE`, and the keys of a packaged template must be ones it writes;
  apt sources are read back as apt reads them: no `[options]`, only the deb822 fields we write.
XML templates (`*.xml.j2`) are autoescaped as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import formats
from .data import templates_dir
from .formats import FormatError, Rendered

if TYPE_CHECKING:
    import jinja2


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".xml.j2", ".xml"))


def _finalize(value: Any) -> Any:
    """Every `{{ }}` output: a filtered value is checked again, anything else gets the one-line check."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else str(value)
    formats.line(text, "a template value", "a generated file")
    return text  # a plain str stays plain, so that autoescape still escapes an unfiltered value


# What the packaged LXC config templates write; an override template may write other keys.
LXC_KEYS = re.compile(
    r"lxc\.(include|rootfs\.path|uts\.name|idmap|mount\.auto|arch|signal\.halt|tty\.max|tty\.dir|environment|start\.auto"
    r"|net\.0\.(type|link|flags|name|hwaddr)|cgroup\.(memory|cpu)\.[a-z_]+|cgroup2\.(memory|cpu)\.[a-z_]+)"
)
LXC_LINE = re.compile(r"(?P<key>lxc\.[A-Za-z0-9_.-]+)[ \t]*=(?P<value>.*)")


def lxc_config_keys(text: str, template: str, packaged: bool) -> list[tuple[str, str]]:
    """The (key, value) pairs of a rendered LXC config, read as liblxc's parse_line() reads a line;
    FormatError when a line is neither blank, a comment nor a key this template may write."""
    pairs = []
    for number, raw in enumerate(text.split("\n"), 1):
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        match = LXC_LINE.fullmatch(stripped)
        if not match or (packaged and not LXC_KEYS.fullmatch(match["key"])):
            raise FormatError(f"{template} rendered an unexpected LXC config line {number}: {stripped[:60]!r}",
                              "a value added a key; check the values given to this template")  # fmt: skip
        value = match["value"].strip(" \t")
        if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        pairs.append((match["key"], value))
    return pairs


def _unexpected(template: str, what: str, line: str) -> FormatError:
    return FormatError(f"{template} rendered an unexpected {what} line: {line[:60]!r}",
                       "a value added a field or options; check the values given to this template")  # fmt: skip


def apt_one_line_check(text: str, template: str, packaged: bool) -> None:
    """A one-line sources.list as apt reads it: cut at '#', `deb URI SUITE COMPONENT...`, and no
    `[options]` word (which is how `[trusted=yes]` would switch signature checks off). A site's
    override may write options on purpose (`[arch=amd64]`): the host admin is trusted."""
    if not packaged:
        return
    for line in text.split("\n"):
        fields = line.split("#", 1)[0].split()
        if fields and (fields[0] != "deb" or len(fields) < 4 or fields[1].startswith("[") or '"' in line):
            raise _unexpected(template, "apt sources", line)


DEB822_FIELDS = {"Types", "URIs", "Suites", "Components", "Signed-By"}


def apt_deb822_check(text: str, template: str, packaged: bool) -> None:
    """deb822 sources: `Field: value` lines only, and only the fields the packaged template writes
    (no `Trusted: yes`, no continuation lines)."""
    for line in text.split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, _ = line.partition(":")
        if not sep or line[0].isspace() or (packaged and name not in DEB822_FIELDS):
            raise _unexpected(template, "deb822 sources", line)


POSTCHECKS: dict[str, Callable[[str, str, bool], object]] = {
    "lxc/config.j2": lxc_config_keys,
    "exports/lxc-config.j2": lxc_config_keys,
    "apt/sources.list.j2": apt_one_line_check,
    "apt/deb822.sources.j2": apt_deb822_check,
}


class Templates:
    def __init__(self, override_dirs: Sequence[Path] = ()) -> None:
        self.search = [*override_dirs, templates_dir()]

    @cached_property
    def env(self) -> jinja2.Environment:
        """Made on the first render: importing jinja2 costs ~15 ms, which a command that renders
        nothing (`lxc export --export tar`, `--version`) should not pay."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in self.search]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=_autoescape,
            finalize=_finalize,
        )
        env.filters.update(formats.FILTERS)
        return env

    def render(self, name: str, context: dict[str, Any] | None = None) -> str:
        text = self.env.get_template(name).render(**(context or {}))
        check = POSTCHECKS.get(name)
        if check is not None:
            check(text, name, templates_dir().resolve() in self.origin(name).resolve().parents)
        return text

    def origin(self, name: str) -> Path:
        """The file that `name` resolves to (for logs: shows when an override is used)."""
        for directory in self.search:
            candidate = directory / name
            if candidate.is_file():
                return candidate
        import jinja2

        raise jinja2.TemplateNotFound(name)


__all__ = ["FormatError", "Rendered", "Templates", "lxc_config_keys"]
