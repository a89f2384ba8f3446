"""Settings: one declarative table that generates CLI flags, config-file keys, help and JSON.

Each setting is declared once (a `Setting`); its name is both the long option (`--name`) and the
config-file key (`name = ...`). Values are resolved lowest first: the default, then
/etc/vmbuilder.cfg, ~/.vmbuilder.cfg and each -c FILE in order (within a file, [DEFAULT], then the
hypervisor's section, then the distro's), then the command line. A value given on the command line
always wins, even when it equals the default (VMBuilder compared against the default and got that
wrong). Only the value that wins is converted and validated (`resolve`): a bad value in a file that
a later file or the command line overrides is not an error. Control characters and overlong text
are refused in every value read, overridden or not.
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import compat, pathchecks
from . import validators as v
from .log import LOG, UserError

SettingType = Literal["str", "int", "bool", "list"]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TRUE = {"1", "yes", "true", "on"}
FALSE = {"0", "no", "false", "off"}

MAX_VALUE = 4096  # characters in one value (PATH_MAX); nothing a build takes is longer
SYSTEM_CONFIG = Path("/etc/vmbuilder.cfg")
USER_CONFIG = Path("~/.vmbuilder.cfg")


@dataclass(frozen=True)
class Needs:
    """When a setting has an effect: `when(settings)` is False means the user's value is ignored,
    and `why` says so ("without a static --ip"); checked once all values are resolved."""

    when: Callable[[Settings], bool]
    why: str


@dataclass(frozen=True)
class Setting:
    """One option. `default` is a value or a callable computing it from the other settings.

    `validate` checks one value when it is set (config file or command line); `needs` lists when
    the value has an effect at all (a warning otherwise); `relate` checks the value against the
    other settings once all are resolved (raises ValueError, as `validate` does).
    """

    name: str
    help: str
    type: SettingType = "str"
    default: Any = None
    metavar: str | None = None
    short: str | None = None
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    validate: Callable[[Any], Any] | None = None
    secret: bool = False
    in_config: bool = True
    group: str = ""
    plugin: str = ""
    needs: tuple[Needs, ...] = ()
    relate: Callable[[Settings, Any], None] | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"invalid setting name {self.name!r}")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def flags(self) -> list[str]:
        flags = [self.short] if self.short else []
        return flags + [self.flag, *self.aliases]

    @property
    def negatable(self) -> bool:
        """A boolean gets a --no- form only when it can be on before the command line is read (a
        config file or its default): --no-list-suites or --no-insecure would change nothing."""
        return self.type == "bool" and (self.in_config or bool(self.default))


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError("expected yes/no, true/false, on/off or 1/0")


def split_list(items: Iterable[str]) -> list[str]:
    """Lists accept repetition and comma or whitespace separated values: 'a,b c'."""
    out: list[str] = []
    for item in items:
        out.extend(x for x in re.split(r"[,\s]+", item) if x)
    return out


class Settings:
    """Resolved values plus where each came from (shown with --debug and in --json)."""

    def __init__(self, table: Sequence[Setting], *, hypervisor: str = "", distro: str = "") -> None:
        self.table: dict[str, Setting] = {}
        self.hypervisor = hypervisor
        self.distro = distro
        self._values: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._resolving: set[str] = set()
        self._aliases: dict[str, str] = {}
        self._given: set[str] = set()  # set by the user (set_raw), not by a default or a plugin
        self._pending: dict[str, tuple[Any, str]] = {}  # name -> (raw value, source): read, not yet validated
        self.overridden: list[tuple[str, str, str]] = []  # (name, source that lost, source that won)
        self._site_sources: set[str] = set()  # /etc/vmbuilder.cfg, ~/.vmbuilder.cfg: defaults for every build
        for s in table:
            self.add(s)

    def add(self, setting: Setting) -> None:
        if setting.name in self.table:
            other = self.table[setting.name]
            raise ValueError(
                f"setting {setting.flag} is declared by both {other.plugin or 'core'} and {setting.plugin or 'core'}"
            )
        self.table[setting.name] = setting
        for alias in setting.aliases:
            self._aliases[alias.lstrip("-")] = setting.name

    def lookup(self, key: str) -> Setting | None:
        key = key.strip().lower().replace("_", "-")
        key = self._aliases.get(key, key)
        return self.table.get(key)

    # -- setting values -------------------------------------------------------------------------

    def set_raw(self, name: str, raw: Any, source: str) -> None:
        """Convert, validate and store a value now (a config file's string or the CLI's value)."""
        self.stage_raw(name, raw, source)
        self._resolve(name)

    def stage_raw(self, name: str, raw: Any, source: str) -> None:
        """Record a user's value, replacing an earlier one; only the value that wins is converted
        and validated (`resolve`), so a bad value that is overridden stops nothing. Control
        characters and overlong text are refused at once: they are never fine to read."""
        s = self.table[name]
        try:
            texts = split_list(raw if isinstance(raw, list) else [str(raw)]) if s.type == "list" else [raw]
            for text in texts:
                if isinstance(text, str):
                    v.no_control(text)
                    if len(text) > MAX_VALUE:
                        raise ValueError(f"longer than {MAX_VALUE} characters")
        except ValueError as exc:
            raise self._invalid(s, _where(s, source), raw, exc) from None
        if name in self._pending:
            self.overridden.append((name, self._pending[name][1], source))
        self._pending[name] = (raw, source)
        self._values.pop(name, None)
        self._sources[name] = source
        self._given.add(name)

    def resolve(self) -> None:
        """Convert and validate every value read and not yet checked: the winners, once all config
        files and the command line are applied. A refusal names the value's source."""
        for name in [n for n in self.table if n in self._pending]:
            self._resolve(name)

    def _resolve(self, name: str) -> None:
        raw, source = self._pending[name]
        s = self.table[name]
        where = _where(s, source)
        try:
            value = self._convert(s, raw)
            if s.choices is not None:
                bad = [x for x in (value if isinstance(value, list) else [value]) if x not in s.choices]
                if bad:
                    raise v.Invalid(f"must be one of: {', '.join(s.choices)}", f"give {s.flag} one of these")
            if s.validate is not None and value is not None:
                value = s.validate(value)
        except ValueError as exc:
            raise self._invalid(s, where, raw, exc) from None
        except OSError as exc:  # a path the check could not look at (permissions, a loop)
            raise self._invalid(s, where, raw, v.Invalid(f"cannot check it: {exc.strerror or exc}",
                                                         "give a path this user can reach")) from None  # fmt: skip
        del self._pending[name]
        self._values[name] = value
        self._sources[name] = source

    @staticmethod
    def _invalid(s: Setting, where: str, raw: Any, exc: ValueError) -> UserError:
        """The one-line error for a refused value; a secret or a value with control characters is
        never echoed."""
        text = ", ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        hint = exc.hint if isinstance(exc, v.Invalid) and exc.hint else _fix_hint(s)
        if s.secret or v.control_char(text):
            return UserError(f"invalid value for {where}: {exc}", hint)
        return UserError(f"invalid value '{v.shown(text)}' for {where}: {exc}", hint)

    def set(self, name: str, value: Any, source: str = "plugin") -> None:
        """Set an already converted value (used by plugins' set_defaults)."""
        self._pending.pop(name, None)
        self._values[name] = value
        self._sources[name] = source
        self._given.discard(name)
        self._given.add(name)

    @staticmethod
    def _convert(s: Setting, raw: Any) -> Any:
        if s.type == "bool":
            return raw if isinstance(raw, bool) else parse_bool(str(raw))
        if s.type == "list":
            return split_list(raw if isinstance(raw, list) else [str(raw)])
        if s.type == "int":
            if isinstance(raw, int):
                return raw
            try:
                return int(str(raw).strip())
            except ValueError:
                raise ValueError("expected a whole number") from None
        return str(raw)

    def __getitem__(self, name: str) -> Any:
        if name not in self.table:
            raise KeyError(f"unknown setting {name!r}")
        if name in self._pending:
            self._resolve(name)
        if name not in self._values:
            if name in self._resolving:
                raise RuntimeError(f"default of {name!r} depends on itself")
            self._resolving.add(name)
            try:
                default = self.table[name].default
                value = default(self) if callable(default) else default
                if isinstance(value, list):
                    value = list(value)
            finally:
                self._resolving.discard(name)
            self._values[name] = value
            self._sources[name] = "default"
        return self._values[name]

    def get_str(self, name: str) -> str | None:
        value = self[name]
        return None if value is None else str(value)

    def get_int(self, name: str) -> int | None:
        value = self[name]
        return None if value is None else int(value)

    def get_bool(self, name: str) -> bool:
        return bool(self[name])

    def get_list(self, name: str) -> list[str]:
        value = self[name]
        return list(value) if value else []

    def source(self, name: str) -> str:
        self[name]
        return self._sources[name]

    def explicit(self, name: str) -> bool:
        """True when the user gave the setting (config file or command line)."""
        return self._sources.get(name, "default") not in ("default", "plugin")

    def as_dict(self) -> dict[str, Any]:
        """All values, with secrets redacted (for --json and --debug)."""
        out: dict[str, Any] = {}
        for name, s in self.table.items():
            value = self[name]
            out[name] = "***" if (s.secret and value) else value
        return out

    # -- config files ---------------------------------------------------------------------------

    def read_config_files(self, paths: Sequence[tuple[Path, bool]]) -> list[Path]:
        """Apply VMBuilder-format config files; `paths` holds (path, must_exist) pairs.

        A file that is not a regular file on a real filesystem (a FIFO, a device, a /proc file) or
        is larger than 1 MiB is refused before it is read; one that is not UTF-8 text after.
        Optional files (/etc/vmbuilder.cfg, ~/.vmbuilder.cfg) are site defaults: values they
        set that have no effect in a build are not warned about.
        """
        used: list[Path] = []
        sections = ["DEFAULT", self.hypervisor, self.distro]
        for path, required in paths:
            path = path.expanduser()
            try:
                os.lstat(path)
            except PermissionError:
                raise UserError(f"cannot read config file {v.shown(str(path), 200)}: permission denied",
                                "give a file this user can read") from None  # fmt: skip
            except OSError:
                pass
            if not os.path.lexists(path):
                if required:
                    raise UserError(
                        f"config file {v.shown(str(path), 200)} does not exist", "check the -c/--config path"
                    )
                continue
            parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
            try:
                parser.read_string(pathchecks.read_small_text(path), source=str(path))
            except ValueError as exc:  # not a regular file, too big, binary, not UTF-8
                detail = v.shown(str(exc), 300)
                problem = (
                    f"config file {detail}" if detail.startswith(str(path)) else f"cannot read config file {detail}"
                )
                raise UserError(problem, "give a UTF-8 text file of at most 1 MiB") from None
            except configparser.Error as exc:
                detail = str(exc).splitlines()[0]
                raise UserError(
                    f"cannot read config file {path}: {v.shown(detail, 300)}", "fix the file's syntax"
                ) from None
            used.append(path)
            for section in sections:
                if not section or not parser.has_section(section):
                    continue
                for key, raw in parser.items(section):
                    if not required:
                        self._site_sources.add(f"{path} [{section}]")
                    self._apply_config_key(path, section, key, raw)
        return used

    def _apply_config_key(self, path: Path, section: str, key: str, raw: str) -> None:
        where = f"{path} [{section}]"
        if v.control_char(key) or len(key) > 64:
            raise UserError(f"malformed key '{v.shown(key)}' in {where}", "fix the file's syntax")
        s = self.lookup(key)
        if s is None:
            close = difflib.get_close_matches(key.replace("_", "-"), list(self.table), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see --help for the valid keys"
            old = compat.vmbuilder_only(key)  # a VMBuilder option: say what to do instead
            if old is not None and section != "DEFAULT":
                raise UserError(*old.problem(f"'{key}' in {where}"))
            if old is not None:
                hint = "; ".join(old.problem(f"'{key}'"))
            if section == "DEFAULT":
                LOG.warning("%s: unknown key '%s' ignored (%s)", where, key, hint)
                return
            raise UserError(f"unknown key '{key}' in {where}", hint)
        if not s.in_config:
            raise UserError(f"'{key}' in {where} can only be given on the command line", f"use {s.flag}")
        self.stage_raw(s.name, raw, where)

    # -- after resolution -----------------------------------------------------------------------

    def check_resolved(self) -> None:
        """Once every value is known: refuse values that contradict others (`relate`), and warn,
        once per setting, about a value the user gave that has no effect (`needs`)."""
        for name, s in self.table.items():
            if name not in self._given or self[name] is None:
                continue
            source = self._sources[name]
            where = _where(s, source)
            if s.relate is not None:
                try:
                    s.relate(self, self[name])
                except ValueError as exc:
                    raise self._invalid(s, where, self[name], exc) from None
            if source in self._site_sources:
                continue
            flag = f"--no-{s.name}" if s.type == "bool" and self[name] is False else s.flag
            for need in s.needs:
                if not need.when(self):
                    shown = flag if source == "command line" else f"{flag} ('{s.name}' in {source})"
                    LOG.warning("%s has no effect %s", shown, need.why)
                    break

    # -- command line ---------------------------------------------------------------------------

    def apply_cli(self, namespace: argparse.Namespace) -> None:
        """Apply the command line over the config files, then check the values that won."""
        for name, s in self.table.items():
            if hasattr(namespace, s.dest):
                self.stage_raw(name, getattr(namespace, s.dest), "command line")
        self.resolve()


def _where(s: Setting, source: str) -> str:
    """How an error names a value's source: the flag on the command line, or the key in its file
    and section."""
    return f"{s.flag} on the command line" if source == "command line" else f"'{s.name}' in {source}"


def _fix_hint(s: Setting) -> str:
    if s.choices:
        return f"use {s.flag} with one of: {', '.join(s.choices)}"
    return f"see '{s.flag}' in --help"
