"""Escaping and validating filters, one per file format the templates write.

Each filter takes a value and returns it as a `Rendered` string that is safe to paste into one
place of one format: escaped where the format has an escape that every reader honours, refused
with a `FormatError` (a UserError: one line, exit 2) where it has none. Whatever the value, it can
never end a line, open a new key, element, section, stanza or command. The same functions are
used from Python for files that are not rendered from a template (chpasswd input, sudoers).

`render.Templates` registers them as Jinja2 filters under the names in FILTERS, so a template says
`{{ bridge | lxc("--bridge") }}`; the argument names the value in the error message.
"""

from __future__ import annotations

import json
import re
import shlex
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from markupsafe import escape

from .log import UserError


class Rendered(str):
    """A value a format filter has made safe for its place (Jinja2's autoescape leaves it alone)."""

    def __html__(self) -> str:
        return self


class FormatError(UserError):
    """A value that the target format cannot hold without changing the file's structure."""


_NAMES = {"\n": "a newline", "\r": "a carriage return", "\0": "a NUL byte", "\t": "a tab",
          "\x85": "a NEL line break (U+0085)", "\u2028": "a line separator (U+2028)",
          "\u2029": "a paragraph separator (U+2029)"}  # fmt: skip


def _describe(char: str) -> str:
    return _NAMES.get(char) or (f"'{char}'" if char.isprintable() else f"the control character U+{ord(char):04X}")


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse(value: str, what: str, fmt: str, why: str) -> NoReturn:
    raise FormatError(f"{what} {_shown(value)} cannot be written into {fmt}: {why}",
                      f"change {what} (refused so that no value can add lines or keys to a file)")  # fmt: skip


def _text(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list | tuple | set):
        raise TypeError(f"a format filter got {type(value).__name__} {value!r}, not a string or number")
    return str(value)


def bad_char(value: str, allow_tab: bool = True) -> str | None:
    """The first character that could break a line-based format: control characters (C0, DEL,
    C1 including NEL), Unicode line and paragraph separators, and lone surrogates."""
    for char in value:
        if char == "\t" and allow_tab:
            continue
        if unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs"):
            return char
    return None


def line(value: object, what: str = "a value", fmt: str = "a one-line field", allow_tab: bool = True) -> Rendered:
    """Text on one line (a comment, a message, a free-text field): no control characters."""
    text = _text(value)
    char = bad_char(text, allow_tab)
    if char is not None:
        refuse(text, what, fmt, f"it contains {_describe(char)}")
    return Rendered(text)


def word(value: object, what: str = "a value", fmt: str = "a whitespace-separated field") -> Rendered:
    """One field of a whitespace-separated line (hosts, resolv.conf, interfaces): no spaces, no '#'."""
    text = line(value, what, fmt, allow_tab=False)
    if not text:
        refuse(text, what, fmt, "it is empty, which would shift the fields after it")
    for char in text:
        if char.isspace() or char == "#":
            refuse(text, what, fmt, f"it contains {_describe(char) if char != ' ' else 'a space'}, which would "
                   "split the field or start a comment")  # fmt: skip
    return text


_QUOTES = ("'", '"')


def lxc(value: object, what: str = "a value") -> Rendered:
    """The value of an LXC `key = value` line. liblxc reads a line up to the newline, splits at the
    first '=', strips spaces and tabs around the value, then one pair of matching quotes; '#' is a
    comment only at the start of a line, and there are no backslash escapes. So: one line, not
    empty (an empty value clears the key), and quoted when stripping would change it."""
    fmt = "the LXC config"
    text = line(value, what, fmt)
    if not text:
        refuse(text, what, fmt, "it is empty, and an empty value clears the key")
    stripped = text.strip(" \t") != text
    unquoted = len(text) > 1 and text[0] in _QUOTES and text[-1] == text[0]
    return Rendered(f'"{text}"' if stripped or unquoted else text)


# XML 1.0 Char, without the C0 controls that are allowed (tab, newline, carriage return): a value
# of ours never needs them, and in an attribute the parser turns them into spaces anyway.
# Patterns over the whole of Unicode take ~5 ms each to compile: kept as text, re compiles (and
# caches) them on first use, not in every vmbuilder start.
_XML_BAD = "[^\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def xml(value: object, what: str = "a value") -> Rendered:
    """Text or an attribute value in XML: & < > " ' escaped, characters XML 1.0 cannot hold refused."""
    text = _text(value)
    bad = re.search(_XML_BAD, text) or re.search("[\x7f-\x9f\u2028\u2029]", text)
    if bad:
        refuse(text, what, "the libvirt domain XML", f"it contains {_describe(bad.group())}")
    return Rendered(str(escape(text)))


def xml_comment(value: object, what: str = "a value") -> Rendered:
    """Text inside <!-- -->: '--' would end or break the comment, and entities are not decoded there."""
    xml(value, what)  # the characters XML cannot hold at all
    text = _text(value)
    if "--" in text or text.endswith("-"):
        refuse(text, what, "an XML comment", "it contains '--' or ends with '-'")
    return Rendered(text)


# What YAML 1.1 (PyYAML, libyaml: netplan; go-yaml: LXD) may hold raw in a double-quoted scalar:
# printable characters that are not line breaks. Everything else is written as an escape.
_YAML_RAW = "[\u0020-\u007e\u00a0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"


def _yaml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif re.fullmatch(_YAML_RAW, char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def yaml(value: Any, what: str = "a value") -> Rendered:
    """A YAML flow node: strings double-quoted with escapes, so no value can add a key or an item;
    line breaks and control characters refused."""
    if isinstance(value, bool):
        return Rendered("true" if value else "false")
    if value is None:
        return Rendered("null")
    if isinstance(value, int | float):
        return Rendered(json.dumps(value))
    if isinstance(value, Mapping):
        return Rendered("{" + ", ".join(f"{yaml(k, what)}: {yaml(v, what)}" for k, v in value.items()) + "}")
    if isinstance(value, list | tuple):
        return Rendered("[" + ", ".join(yaml(v, what) for v in value) + "]")
    # Escaped, the value could hold anything; but netplan copies it into networkd's INI files, where a
    # line break would be a new key again: so refused, as in every other format.
    return Rendered(_yaml_string(line(_text(value), what, "a YAML file", allow_tab=False)))


def _apt_one(value: object, what: str, uri: bool) -> str:
    fmt = "the apt sources"
    text = word(value, what, fmt)
    for char in text:
        if char == '"' or (char in "[]" and not uri):
            refuse(text, what, fmt, f"it contains {_describe(char)}, which apt reads as quoting or as options")
    if text.startswith(("[", "-")) or (uri and "://[" not in text and ("[" in text or "]" in text)):
        refuse(text, what, fmt, "apt would read it as options ([...]) or it is not a plain word")
    return text


def apt(value: Any, what: str = "a value") -> Rendered:
    """A suite, component or keyring path in a `deb` line or a deb822 field (a list: each, joined by
    spaces). apt cuts a one-line source at the first '#', splits at whitespace, reads a word
    starting with '[' as options and honours '"' quoting: all refused."""
    if isinstance(value, list | tuple):
        if not value:
            refuse("", what, "the apt sources", "the list is empty")
        return Rendered(" ".join(_apt_one(v, what, uri=False) for v in value))
    return Rendered(_apt_one(value, what, uri=False))


def apt_uri(value: object, what: str = "a mirror") -> Rendered:
    """A URI in a `deb` line or in deb822 URIs:. Brackets only as an IPv6 host, never as options."""
    return Rendered(_apt_one(value, what, uri=True))


def sh(value: object, what: str = "a value") -> Rendered:
    """One shell word, quoted (shlex.quote). Control characters are refused as well: every shell
    snippet here sits inside a line-based file (an upstart `script` stanza ends at `end script`)."""
    return Rendered(shlex.quote(line(value, what, "a shell command", allow_tab=False)))


def _systemd_line(value: object, what: str, fmt: str) -> str:
    text = line(value, what, fmt, allow_tab=False)
    if text != text.strip():
        refuse(text, what, fmt, "systemd strips leading and trailing whitespace")
    if text.endswith("\\"):
        refuse(text, what, fmt, "a trailing backslash continues the line in systemd's unit files")
    return text


def systemd(value: object, what: str = "a value") -> Rendered:
    """A systemd unit setting that expands specifiers (Condition*=, Description=): '%' doubled."""
    return Rendered(_systemd_line(value, what, "a systemd unit").replace("%", "%%"))


def systemd_exec(value: object, what: str = "a value") -> Rendered:
    """An absolute path as one word of an Exec*= command line: double-quoted (for blanks), '%'
    doubled (systemd expands specifiers there). systemd refuses quotes and backslashes in an
    executable's name and does not undo `$$` in it, and `$` expands variables in arguments, so
    those are refused; so is a path that is not absolute and normalized (a leading -@+!: is a
    prefix to systemd, and it refuses `//`, `.` and `..` components)."""
    fmt = "a systemd command line"
    text = line(value, what, fmt, allow_tab=False)
    if not text.startswith("/") or re.search(r"//|/\.\.?(/|$)|./$", text):
        refuse(text, what, fmt, "it is not a normalized absolute path")
    for char in text:
        if char in "\"'\\$":
            refuse(text, what, fmt, f"it contains {_describe(char)}, which systemd reads as quoting or a variable")
    return Rendered('"' + text.replace("%", "%%") + '"')


def networkd(value: object, what: str = "a value") -> Rendered:
    """A value in a systemd-networkd .network file: names and addresses, whose settings take
    whitespace-separated lists; no whitespace, quotes or backslashes."""
    fmt = "the systemd-networkd configuration"
    text = word(value, what, fmt)
    for char in text:
        if char in "\"'\\%":
            refuse(text, what, fmt, f"it contains {_describe(char)}, which networkd reads as quoting or escapes")
    return text


def dhclient(value: object, what: str = "a value") -> Rendered:
    """A dhclient.conf string, quotes included: '\\' and '"' backslash-escaped."""
    text = line(value, what, "dhclient.conf", allow_tab=False)
    return Rendered('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def properties(value: object, what: str = "a value") -> Rendered:
    """A Java .properties value (CloudStack's template.properties): every special character escaped,
    non-ASCII as \\uXXXX, so Properties.load() reads back exactly the value."""
    out = []
    for i, char in enumerate(_text(value)):
        if char in "\\=:#!" or (char == " " and i == 0):
            out.append("\\" + char)
        elif char in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(char))
    return Rendered("".join(out))


def _utf16_units(char: str) -> Iterable[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return (int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def ini(value: object, what: str = "a value") -> Rendered:
    """A `key=value` value in an INI-style file (schroot's chroot.d): one line, nothing to strip."""
    text = line(value, what, "the schroot configuration", allow_tab=False)
    if text != text.strip() or text.endswith("\\"):
        refuse(text, what, "the schroot configuration", "leading or trailing whitespace or a trailing backslash")
    return text


def ini_section(value: object, what: str = "a value") -> Rendered:
    """A `[section]` name in an INI-style file: no brackets."""
    text = ini(value, what)
    if not text or "[" in text or "]" in text:
        refuse(text, what, "the schroot configuration", "a section name cannot be empty or hold '[' or ']'")
    return text


def fstab(value: object, what: str = "a value") -> Rendered:
    """A field of /etc/fstab: whitespace, '#' and '\\' as the octal escapes libmount decodes."""
    text = line(value, what, "/etc/fstab")
    if not text:
        refuse(text, what, "/etc/fstab", "an empty field would shift the fields after it")
    return Rendered("".join(f"\\{ord(c):03o}" if c in " \t\\#" else c for c in text))


_ENV_WORD = re.compile(r"^[A-Za-z0-9_.@:/+,=-]+$")


def envword(value: object, what: str = "a value") -> Rendered:
    """A value in a KEY=VALUE file that both sh and pam_env read (/etc/default/locale): plain
    characters only, since the two disagree about quoting."""
    text = line(value, what, "an environment file", allow_tab=False)
    if not _ENV_WORD.match(text):
        refuse(text, what, "an environment file", "only letters, digits and _ . @ : / + , = - need no quoting")
    return Rendered(text)


# -- files written from Python ---------------------------------------------------------------------

CHPASSWD_MAX = 4000  # chpasswd reads lines with fgets into BUFSIZ (8192) bytes; older ones split longer lines


def chpasswd_line(user: str, password: str) -> str:
    """`user:password` for chpasswd's standard input: one line whatever the password holds."""
    fmt = "chpasswd's input"
    if not user or ":" in user or bad_char(user, allow_tab=False) or user != user.strip():
        refuse(user, "the user name", fmt, "it is empty or holds ':', whitespace or control characters")
    char = bad_char(password, allow_tab=False)
    if char is not None:
        raise FormatError(f"the password for {user} cannot be given to chpasswd: it contains {_describe(char)}",
                          "choose a password without control characters or line breaks")  # fmt: skip
    text = f"{user}:{password}"
    if len(text.encode()) > CHPASSWD_MAX:
        raise FormatError(f"the password for {user} is longer than chpasswd reads in one line",
                          f"use at most {CHPASSWD_MAX - len(user) - 1} bytes")  # fmt: skip
    return text


_SUDOERS_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


def sudoers_user(user: str) -> str:
    """A user name in a sudoers rule: a plain name (sudoers reads '%', '+', '#', ',' and spaces)."""
    if not _SUDOERS_USER.match(user):
        refuse(user, "the user name", "a sudoers rule", "only letters, digits, '_', '.' and '-' are plain there")
    return user


FILTERS: dict[str, Callable[..., Rendered]] = {
    "line": line,
    "word": word,
    "lxc": lxc,
    "xml": xml,
    "xml_comment": xml_comment,
    "yaml": yaml,
    "apt": apt,
    "apt_uri": apt_uri,
    "sh": sh,
    "systemd": systemd,
    "systemd_exec": systemd_exec,
    "networkd": networkd,
    "dhclient": dhclient,
    "properties": properties,
    "ini": ini,
    "ini_section": ini_section,
    "fstab": fstab,
    "envword": envword,
}
