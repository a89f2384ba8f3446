"""SOURCE_DATE_EPOCH (reproducible-builds.org): the one clock of everything made reproducible,
the exports' timestamps and the man pages' date alike."""

from __future__ import annotations

import os

from .log import die


def source_date_epoch(fallback: int) -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else `fallback`."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return fallback
    if not text.isdigit():
        die(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds", "set it to a Unix time, e.g. $(date +%s)")
    return int(text)
