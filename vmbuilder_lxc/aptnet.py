"""apt's network behaviour in a build: bounded retries and timeouts, and its errors read back.

Every apt run of a build (mmdebstrap's and apt-get's in the chroot) retries a transient failure (a
5xx answer, a reset connection) a few times, and gives up on a mirror that stops sending after a
bounded time instead of hanging. Nothing here touches signature checking: a bad or expired
signature is never retried into success, only --insecure skips the check.

diagnose() turns the output of a failed apt/mmdebstrap/debootstrap run into one line naming the
cause (a refused connection, an HTTP error, a hash mismatch, a stalled mirror, a bad signature, an
expired Release file), which the CLI puts in front of the failing command and its output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

RETRIES = 3
TIMEOUT = 60  # seconds without data before apt gives up on a connection (then retries)
# Test-only: a shorter timeout, so that the stalled-mirror test ends in seconds (1..600).
TEST_TIMEOUT_ENV = "VMBUILDER_TEST_APT_TIMEOUT"


def timeout() -> int:
    value = os.environ.get(TEST_TIMEOUT_ENV, "")
    return int(value) if value.isdigit() and 1 <= int(value) <= 600 else TIMEOUT


def options() -> list[tuple[str, str]]:
    """apt configuration (name, value) for every apt run of a build."""
    seconds = str(timeout())
    return [
        ("Acquire::Retries", str(RETRIES)),
        # apt 2.6 (Debian 12) can wait forever for a delayed retry while other files are being
        # verified: retry at once instead.
        ("Acquire::Retries::Delay", "false"),
        ("Acquire::http::Timeout", seconds),
        ("Acquire::https::Timeout", seconds),
    ]


def aptopts() -> list[str]:
    """mmdebstrap's --aptopt arguments for options()."""
    return [f'--aptopt={name} "{value}"' for name, value in options()]


def apt_get_options() -> list[str]:
    """apt-get's -o arguments for options()."""
    out: list[str] = []
    for name, value in options():
        out += ["-o", f"{name}={value}"]
    return out


# Commands whose output diagnose() reads (run() asks only for these).
APT_TOOLS = frozenset({"mmdebstrap", "debootstrap", "apt-get", "apt"})

_URL = r"((?:https?|file)://\S+)"
# Signature problems, searched in every line first: they are named even when other errors follow,
# since they are the ones that must never be worked around.
_SIGNATURE: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"BADSIG|signatures? (?:were|was|is) invalid|Invalid Release signature", re.I),
        "the mirror's signature is invalid",
    ),
    (
        re.compile(r"NO_PUBKEY\s+\w+|public key is not available|Release signed by unknown key", re.I),
        "the mirror's Release file is signed by a key that is not in the keyring (--keyring)",
    ),
    (
        re.compile(r"Release file for \S+ is expired|is expired \(invalid since", re.I),
        "the mirror's Release file has expired (its Valid-Until is in the past)",
    ),
    (
        re.compile(r"Release file for \S+ is not valid yet", re.I),
        "the mirror's Release file is not valid yet (check the host's clock)",
    ),
    (re.compile(r"is not signed|does not have a Release file", re.I), "the mirror's Release file is not signed"),
]
# Transfer problems, named with the file they hit.
_TRANSFER: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Hash Sum mismatch", re.I),
     "hash sum mismatch: a file from the mirror is not what its signed index says"),
    (re.compile(r"unexpected size", re.I),
     "a file from the mirror has the wrong size (truncated, or a mirror sync in progress)"),
    (re.compile(r"Could not connect to (\S+) .*Connection refused|Connection refused", re.I),
     "connection refused by the mirror or the proxy"),
    (re.compile(r"Connection timed out|timed out", re.I), "the mirror stalled: no data within the timeout"),
    (re.compile(r"Temporary failure resolving|Could not resolve", re.I), "the mirror's host name does not resolve"),
    (re.compile(r"Connection reset|Remote end closed connection|Error reading from server", re.I),
     "the connection to the mirror broke off"),
    (re.compile(r"Couldn't download|Failed getting release file", re.I), "a download from the mirror failed"),
]  # fmt: skip
_HTTP = re.compile(r"Failed to fetch\s+" + _URL + r"\s+([1-5]\d\d)\s+(.+?)\s*(?:\[IP:.*)?$")
_FETCH = re.compile(r"Failed to fetch\s+" + _URL)


def _where(line: str, m: re.Match[str]) -> str:
    """What the line names: the file that failed, or the address that refused."""
    fetch = _FETCH.search(line)
    if m.lastindex and m.group(1):
        return f" ({m.group(1)})"
    return f" ({fetch.group(1)})" if fetch else ""


def diagnose(lines: Iterable[str]) -> str | None:
    """One line naming why an apt-based download failed, or None when the output says nothing known."""
    text = [line.rstrip("\n") for line in lines]
    for pattern, cause in _SIGNATURE:
        if any(pattern.search(line) for line in text):
            return cause
    errors = [line for line in text if line.lstrip().startswith("E:")]
    for candidates in (errors, text):
        for line in candidates:
            m = _HTTP.search(line)
            if m and not any(p.search(m.group(3)) for p, _ in _TRANSFER):
                return f"HTTP {m.group(2)} {m.group(3)} from the mirror ({m.group(1)})"
            for pattern, cause in _TRANSFER:
                found = pattern.search(line)
                if found:
                    return cause + _where(line, found)
    return None


def is_apt_tool(argv: list[str]) -> bool:
    """Whether a command is (or runs) apt, mmdebstrap or debootstrap."""
    return any(os.path.basename(a) in APT_TOOLS for a in argv[:4])
