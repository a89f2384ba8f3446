"""Text a user gives: control characters refused, values echoed safely in errors.

A value with a newline, a carriage return or another control character could add a line (a key,
a command) to one of the formats it is written into, and one with an escape sequence could drive
the terminal that shows an error; both are refused wherever a value enters (settings.py).
"""

from __future__ import annotations

import unicodedata

CONTROL_NAMES = {"\n": "newline", "\r": "carriage return", "\t": "tab", "\0": "NUL", "\x1b": "escape"}


class Invalid(ValueError):
    """A refused value with the fix for it; the settings table prints `problem; fix`."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def control_char(text: str) -> str | None:
    """The first control or line-breaking character in `text`, described; None when there is none.

    C0 and C1 controls, DEL and the Unicode line and paragraph separators: each can end a line in
    one of the formats a value is written into, or drive the terminal that shows an error.
    """
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            name = CONTROL_NAMES.get(ch)
            code = f"U+{ord(ch):04X}"
            return f"{name} ({code})" if name else code
    return None


def no_control(value: str) -> str:
    bad = control_char(value)
    if bad:
        raise Invalid(f"contains a control character: {bad}", "remove it; no value may span lines")
    return value


def one_line(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\x1b): one terminal line."""
    return "".join(ch if not control_char(ch) else ch.encode("unicode_escape").decode() for ch in text)


def shown(text: str, limit: int = 60) -> str:
    """A value as an error message may echo it: one line, escapes visible, not too long."""
    out = one_line(text)
    return out if len(out) <= limit else out[: limit - 3] + "..."
