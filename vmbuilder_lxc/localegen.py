"""Generating the guest's locale: the few facts about the locales package that configure_locale needs.

/usr/share/i18n/SUPPORTED lists what the package can build ("de_DE.UTF-8 UTF-8"), /etc/locale.gen
what it builds (and rebuilds at every upgrade), and `locale -a` what the guest has.
"""

from __future__ import annotations

import re


def supported_entry(supported: str, lang: str) -> str | None:
    """The line of /usr/share/i18n/SUPPORTED that names LANG ("de_DE.UTF-8 UTF-8"), if any."""
    for fields in map(str.split, supported.splitlines()):
        if len(fields) == 2 and fields[0] == lang and re.fullmatch(r"[A-Za-z0-9_.@-]+", fields[1]):
            return f"{lang} {fields[1]}"
    return None


def enable_locale(text: str, entry: str) -> str:
    """/etc/locale.gen with ENTRY enabled: its commented line uncommented, or the entry added."""
    lines = text.splitlines()
    pattern = re.compile(r"^[# ]*" + re.escape(entry) + r" *$")
    for i, line in enumerate(lines):
        if pattern.match(line):
            if line == entry:
                return text
            lines[i] = entry
            return "\n".join(lines) + "\n"
    return "\n".join([*lines, entry]) + "\n"


def locale_a_name(lang: str) -> str:
    """How `locale -a` lists LANG: glibc lower-cases the codeset and drops its punctuation."""
    m = re.fullmatch(r"([^.@]+)(?:\.([^@]+))?(@.+)?", lang)
    if not m:
        return lang
    base, codeset, modifier = m.groups()
    return base + ("." + re.sub(r"[^a-z0-9]", "", codeset.lower()) if codeset else "") + (modifier or "")
