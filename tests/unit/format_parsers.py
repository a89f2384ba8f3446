"""Readers for every format the templates write, as strict as the programs that read the files.

Each returns a `Parsed`: the file's structure (keys, sections, elements, stanzas: what a value
must never change) and its data values (where a value must come back exactly as it was given).
A malformed file raises. Where the real reader is on the host and cheap to run offline, the tests
run it too (liblxc through lxc-info, virt-xml-validate, apt-get indextargets, sh, bash -n).
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml as pyyaml


@dataclass
class Parsed:
    structure: list[Any] = field(default_factory=list)
    values: list[str] = field(default_factory=list)


def lines_of(text: str) -> list[str]:
    """Lines as every reader here splits them: at '\\n' only (never at U+2028 or NEL)."""
    return text.split("\n")


def lxc_config(text: str) -> Parsed:
    """liblxc's parse_line(): leading blanks skipped, '#' lines ignored, `lxc.` keys split at the first
    '=', blanks stripped around key and value, then one pair of matching quotes."""
    out = Parsed()
    for raw in lines_of(text):
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert line.startswith("lxc.") and sep, f"not an LXC config line: {raw!r}"
        value = value.strip(" \t")
        if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        out.structure.append(key.rstrip(" \t"))
        out.values.append(value)
    return out


def xml_doc(text: str) -> Parsed:
    root = ET.fromstring(text)
    out = Parsed()
    for elem in root.iter():
        out.structure.append((elem.tag, sorted(elem.attrib)))
        out.values += [elem.text or "", *elem.attrib.values()]
    return out


def _yaml_walk(node: Any, path: tuple[Any, ...], out: Parsed) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.values.append(str(key))
            _yaml_walk(value, (*path, "<key>"), out)
        out.structure.append((path, "map", len(node)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _yaml_walk(value, (*path, i), out)
        out.structure.append((path, "seq", len(node)))
    else:
        out.structure.append((path, type(node).__name__))
        out.values.append(str(node))


def yaml_doc(text: str) -> Parsed:
    out = Parsed()
    _yaml_walk(pyyaml.safe_load(text), (), out)
    return out


def apt_one_line(text: str) -> Parsed:
    """sources.list(5) one-line style: cut at '#', split at blanks, no `[options]` word, no quotes."""
    out = Parsed()
    for raw in lines_of(text):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        assert fields[0] in ("deb", "deb-src") and len(fields) >= 4, raw
        assert not fields[1].startswith("[") and '"' not in raw, f"options or quoting in {raw!r}"
        out.structure.append((fields[0], len(fields)))
        out.values += fields[1:]
    return out


def deb822(text: str) -> Parsed:
    """deb822 paragraphs: `Field: value`, continuation lines start with a blank, '#' lines ignored."""
    out = Parsed()
    paragraph: list[str] = []
    for raw in [*lines_of(text), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if paragraph:
                out.structure.append(paragraph)
            paragraph = []
            continue
        assert not raw[0].isspace(), f"continuation line: {raw!r}"
        name, sep, value = raw.partition(":")
        assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name), raw
        paragraph.append(name)
        out.values += value.split()
    return out


def whitespace_fields(text: str, comment: str = "#") -> Parsed:
    """hosts(5), resolv.conf(5), hostname(5): blank-separated fields, '#' starts a comment."""
    out = Parsed()
    for raw in lines_of(text):
        fields = raw.split(comment, 1)[0].split()
        if fields:
            out.structure.append(len(fields))
            out.values += fields
    return out


def fstab(text: str) -> Parsed:
    out = Parsed()
    for raw in lines_of(text):
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        fields = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), f) for f in raw.split()]
        assert len(fields) == 6, raw
        out.structure.append(len(fields))
        out.values += fields
    return out


def interfaces(text: str) -> Parsed:
    """interfaces(5): stanzas and options; `up`/`down` options are shell commands (/bin/sh -c)."""
    out = Parsed()
    for raw in lines_of(text):
        fields = raw.split("#", 1)[0].split() if not raw.lstrip().startswith("#") else []
        if not fields:
            continue
        if fields[0] in ("up", "down"):
            argv = shlex.split(raw.strip()[len(fields[0]) :])
            out.structure.append((fields[0], len(argv)))
            out.values += argv
        else:
            out.structure.append((fields[0], len(fields)))
            out.values += fields
    return out


def ini_entries(text: str, comments: str = "#;") -> list[tuple[str | None, str, str]]:
    """systemd unit files (and networkd's), schroot's chroot.d: [Section] and key=value lines, as
    (section, key, value); a section line is (None, "[]", name)."""
    entries: list[tuple[str | None, str, str]] = []
    section = None
    for raw in lines_of(text):
        line = raw.strip()
        if not line or line[0] in comments:
            continue
        assert not line.endswith("\\"), f"continuation line: {raw!r}"
        if line.startswith("["):
            assert line.endswith("]") and line.count("[") == 1 and line.count("]") == 1, raw
            section = line[1:-1]
            entries.append((None, "[]", section))
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9.-]*", key.strip()), raw
        entries.append((section, key.strip(), value.strip()))
    return entries


def ini(text: str) -> Parsed:
    out = Parsed()
    for section, key, value in ini_entries(text):
        out.structure.append((section is None, key))
        out.values.append(value)
    return out


def systemd_unit(text: str) -> Parsed:
    """A unit: Exec*= lines split into words as systemd does for what we write (double quotes with
    C escapes), then %% and $$ undone; other values with %% undone."""
    out = Parsed()
    for section, key, value in ini_entries(text):
        out.structure.append((section, key))
        if key.startswith("Exec"):
            words = shlex.split(value)
            assert words and words[0][0] not in "-@+!:|;", value
            out.structure.append(len(words))
            out.values += [w.replace("%%", "%").replace("$$", "$") for w in words]
        else:
            out.values.append(value.replace("%%", "%"))
    return out


def networkd(text: str) -> Parsed:
    """A .network file: the values of these settings are blank-separated lists."""
    out = Parsed()
    for section, key, value in ini_entries(text):
        words = value.split()
        out.structure.append((section, key, len(words)))
        out.values += words
    return out


def java_properties(text: str) -> Parsed:
    """java.util.Properties.load(): logical lines, comments, key terminators and escapes."""
    out = Parsed()
    physical = lines_of(text)
    i = 0
    while i < len(physical):
        line = physical[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1 and i < len(physical):
            line = line[:-1] + physical[i].lstrip(" \t\f")
            i += 1
        key, pos = _prop_token(line, 0, key=True)
        out.structure.append(key)
        out.values.append(_prop_token(line, pos, key=False)[0])
    return out


_PROP_ESC = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _prop_token(line: str, pos: int, key: bool) -> tuple[str, int]:
    chars: list[str] = []
    while pos < len(line):
        char = line[pos]
        if char == "\\" and pos + 1 < len(line):
            nxt = line[pos + 1]
            if nxt == "u":
                chars.append(chr(int(line[pos + 2 : pos + 6], 16)))
                pos += 6
                continue
            chars.append(_PROP_ESC.get(nxt, nxt))
            pos += 2
            continue
        if key and char in "=: \t\f":
            pos += 1
            while pos < len(line) and line[pos] in " \t\f":
                pos += 1
            if char in " \t\f" and pos < len(line) and line[pos] in "=:":
                pos += 1
                while pos < len(line) and line[pos] in " \t\f":
                    pos += 1
            break
        chars.append(char)
        pos += 1
    return "".join(chars).encode("utf-16", "surrogatepass").decode("utf-16"), pos


def dhclient_conf(text: str) -> Parsed:
    """ISC dhclient.conf tokens: "strings" with backslash escapes, words, and ; , punctuation."""
    out = Parsed()
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "#":
            pos = text.find("\n", pos) if "\n" in text[pos:] else len(text)
        elif char.isspace():
            pos += 1
        elif char == '"':
            chars, pos = [], pos + 1
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            pos += 1
            out.structure.append("STRING")
            out.values.append("".join(chars))
        elif char in ";,{}":
            out.structure.append(char)
            pos += 1
        else:
            match = re.compile(r"[^\s;,{}\"#]+").match(text, pos)
            assert match, text[pos:]
            out.structure.append(match.group())
            pos = match.end()
    return out


def upstart_job(text: str) -> Parsed:
    """An upstart job: stanzas, and the `script` ... `end script` body as shell words per line."""
    out = Parsed()
    in_script = False
    for raw in lines_of(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line in ("script", "pre-start script", "post-stop script"):
            in_script = True
            out.structure.append(line)
        elif line == "end script":
            in_script = False
            out.structure.append(line)
        elif in_script:
            words = shlex.split(line, comments=True)
            out.structure.append(len(words))
            out.values += words
        else:
            out.structure.append(line.split()[0])
    assert not in_script, "unterminated script stanza"
    return out


def env_file(text: str) -> Parsed:
    out = Parsed()
    for raw in lines_of(text):
        if raw.strip() and not raw.startswith("#"):
            key, sep, value = raw.partition("=")
            assert sep and re.fullmatch(r"[A-Z_]+", key), raw
            out.structure.append(key)
            out.values.append(value)
    return out


def plain_lines(text: str) -> Parsed:
    """Text whose only values sit in comments or prose: the line count is its structure."""
    return Parsed(structure=[len(lines_of(text))])


PARSERS: dict[str, Callable[[str], Parsed]] = {
    "apt/deb822.sources.j2": deb822,
    "apt/sources.list-deb822.j2": plain_lines,
    "apt/sources.list.j2": apt_one_line,
    "common/hostname.j2": whitespace_fields,
    "common/hosts.j2": whitespace_fields,
    "common/locale.j2": env_file,
    "common/resolv.conf.j2": whitespace_fields,
    "exports/lxc-config.j2": lxc_config,
    "exports/lxc-create-message.j2": plain_lines,
    "exports/lxd-metadata.yaml.j2": yaml_doc,
    "exports/sbuild-schroot.conf.j2": ini,
    "exports/template.properties.j2": java_properties,
    "ifupdown/interfaces.j2": interfaces,
    "libvirt/domain.xml.j2": xml_doc,
    "lxc/config.j2": lxc_config,
    "lxc/guest.conf.j2": lxc_config,
    "netplan/10-lxc.yaml.j2": yaml_doc,
    "networkd/10-lxc-eth0.network.j2": networkd,
    "systemd/firstboot.service.j2": systemd_unit,
    "upstart/dhclient.conf.j2": dhclient_conf,
    "upstart/firstboot.conf.j2": upstart_job,
    "upstart/fstab.j2": fstab,
}
