"""Release names and versions, read from distro-info-data at run time.

Nothing here lists releases by hand: a release added to /usr/share/distro-info/<distro>.csv is
known without a code change. A suite can be named by codename (`noble`), version (`24.04`,
`24.04.2`, `24.04 LTS`) or alias: `devel` (the release in development), `lts` (the newest released
LTS) and `stable` (the newest release).

Suite listing lives here too: resolving --suite for a distro (asking the archive about a series
distro-info-data does not know yet) and the --list-suites table.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .log import LOG, UserError, die
from .verified import verified

DISTRO_INFO_DIR = Path("/usr/share/distro-info")
ALIASES = ("devel", "lts", "stable")


def version_key(text: str) -> tuple[int, ...]:
    """A dotted release version as numbers: '23.04' -> (23, 4)."""
    return tuple(int(p) for p in text.split("."))


def _date(text: str | None) -> dt.date | None:
    text = (text or "").strip()
    return dt.date.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Release:
    distro: str
    series: str
    version: str
    codename: str
    created: dt.date | None
    released: dt.date | None
    eol: dt.date | None
    lts: bool = False
    in_distro_info: bool = True

    @property
    def version_key(self) -> tuple[int, ...]:
        """Numeric version for range checks; unversioned (sid) sorts last."""
        parts = re.findall(r"\d+", self.version)
        return tuple(int(p) for p in parts) if parts else (9999,)

    def in_range(self, since: str | None, until: str | None) -> bool:
        """From version `since` through `until`, both inclusive and optional. `until` compares only
        as many parts as it has, so until '12' includes a 12.x point release."""
        key = self.version_key
        if since and key < version_key(since):
            return False
        return not (until and key[: len(version_key(until))] > version_key(until))

    def is_devel(self, today: dt.date) -> bool:
        """In development: opened (created) but not released yet; ubuntu-distro-info's rule."""
        opened = self.created is None or self.created <= today
        return opened and (self.released is None or self.released > today)

    def is_future(self, today: dt.date) -> bool:
        """Listed in distro-info-data but not opened in the archive yet."""
        return self.created is not None and self.created > today

    def not_open(self, today: dt.date) -> str | None:
        """Why a future series cannot be built yet: distro-info-data lists it before its archive exists."""
        if not self.is_future(today):
            return None
        return f"{self.describe()} has no archive yet (distro-info-data says it opens on {self.created})"

    def status(self, today: dt.date) -> str:
        if not self.in_distro_info:
            return "devel"  # found in the archive only: a series newer than distro-info-data
        if self.is_future(today):
            return "future"
        if self.is_devel(today):
            return "devel"
        if self.eol and self.eol < today:
            return "eol"
        return "supported"

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.distro.capitalize()}{version} ({self.series})"


class ReleaseTable:
    """All releases of one distro, oldest first."""

    def __init__(self, distro: str, releases: list[Release]) -> None:
        self.distro = distro
        self.releases = releases

    @classmethod
    def load(cls, distro: str, directory: Path | None = None) -> ReleaseTable:
        path = (directory or DISTRO_INFO_DIR) / f"{distro}.csv"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(
                f"{path} is missing, so {distro} releases cannot be resolved",
                "install it with: apt-get install distro-info-data",
            ) from None
        releases = []
        for row in csv.DictReader(text.splitlines()):
            version = (row.get("version") or "").strip()
            releases.append(
                Release(
                    distro=distro,
                    series=row["series"].strip(),
                    version=version.replace(" LTS", ""),
                    codename=row["codename"].strip(),
                    created=_date(row.get("created")),
                    released=_date(row.get("release")),
                    # Ubuntu: the end of server support; Debian: the end of (free) Debian LTS.
                    eol=_date(row.get("eol-server") or row.get("eol-lts") or row.get("eol")),
                    lts="LTS" in version,
                )
            )
        return cls(distro, releases)

    def names(self, min_version: tuple[int, ...] = ()) -> list[str]:
        return [r.series for r in self.releases if r.version_key >= min_version]

    def buildable(self, today: dt.date, refused: Callable[[Release], str | None]) -> list[str]:
        """The series worth suggesting: supported or in development, opened, and not refused by the plugin.

        End-of-life releases still build (from old-releases), but are never offered in place of a typo.
        """
        return [r.series for r in self.releases if r.status(today) in ("supported", "devel") and not refused(r)]

    def find(self, text: str, today: dt.date | None = None) -> Release | None:
        """Resolve a codename, version or alias; None when nothing matches."""
        today = today or dt.date.today()
        key = text.strip().lower()
        if key == "devel":
            devel = [r for r in self.releases if r.is_devel(today) and r.version]
            return devel[-1] if devel else None
        released = [r for r in self.releases if r.released is not None and r.released <= today]
        if key == "lts":
            lts = [r for r in released if r.lts]
            return lts[-1] if lts else None
        if key == "stable":
            return released[-1] if released else None
        key = key.removesuffix(" lts")
        for r in self.releases:
            if key in (r.series, r.codename.lower(), r.codename.lower().split(" ")[0]):
                return r
        m = re.match(r"^(\d+(?:\.\d+)?)", key)
        if m and re.fullmatch(r"\d+(\.\d+)*", key):
            for r in self.releases:
                if r.version and (key == r.version or key.startswith(r.version + ".")):
                    return r
        return None

    def newer_than_all(self, series: str, version: str = "") -> Release:
        """A release that distro-info-data does not know yet (the archive serves it)."""
        return Release(
            distro=self.distro,
            series=series,
            version=version or "9999",
            codename=series.capitalize(),
            created=None,
            released=None,
            eol=None,
            in_distro_info=False,
        )


# -- suite listing: what a distro plugin resolves --suite and --list-suites with -----------------

# Why a release cannot be built (None: it can); the distro plugin's `unsupported`.
Refusal = Callable[[Release], str | None]
# The Release fields of dists/NAME on the build's mirror; empty when the mirror does not serve it.
ArchiveFields = Callable[[str], dict[str, str]]


class Traits(Protocol):
    """The release traits --list-suites shows (tweaks.ReleaseTraits has them)."""

    @property
    def init(self) -> str: ...

    @property
    def network(self) -> str: ...


def fetch_release_fields(url: str, proxy: str | None = None) -> dict[str, str]:
    """The header fields of a (clear-signed) Release file; only used to learn a suite's name and
    architectures, through --proxy when one is given.

    The signature is not checked here; the bootstrap verifies the same file with the keyring.
    """
    import urllib.request  # here: with ssl and http.client ~15 ms, which a warm build never needs

    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=20) as resp:
            text = resp.read(65536).decode("utf-8", "replace")
    except OSError:
        return {}
    if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        text = text.split("\n\n", 1)[-1]  # skip the armor header ("Hash: ...")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() and fields:
            break
        m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def archive_fields(mirror: str, name: str, proxy: str | None = None) -> dict[str, str]:
    """The Release fields of dists/NAME on the mirror; empty when the mirror does not serve it."""
    url = f"{mirror.rstrip('/')}/dists/{name}/InRelease"
    return fetch_release_fields(url, proxy) if proxy else fetch_release_fields(url)


def probe_unknown_suite(text: str, table: ReleaseTable, archive: ArchiveFields) -> Release | None:
    """A suite distro-info-data does not know yet, but the archive serves (a new devel series)."""
    name = text.strip().lower()
    if not re.fullmatch(r"[a-z]+", name):
        return None
    info = archive(name)
    if not info:
        return None
    codename = info.get("Codename", name)
    version = info.get("Version", "")
    LOG.warning(
        "%s %s is not in distro-info-data yet; the archive serves it, so it is treated as the "
        "newest release (update distro-info-data to silence this)",
        codename,
        version,
    )
    return table.newer_than_all(codename, version)


def resolve_suite(distro: str, table: ReleaseTable, text: str, today: dt.date, unsupported: Refusal,
                  archive: ArchiveFields) -> Release:  # fmt: skip
    """--suite as a release the distro plugin can build, or a one-line error listing what it can."""
    release = table.find(text, today)
    if release is None:
        release = probe_unknown_suite(text, table, archive)
    buildable = table.buildable(today, unsupported)  # suggestions: never eol, refused or unopened
    if release is None:
        known = ", ".join([*buildable, "devel", "lts", "stable"])
        die(f"unknown {distro} suite '{text}'", f"use --suite with one of: {known}")
    why = unsupported(release)
    if why:
        die(why, f"choose a newer --suite ({', '.join(buildable[-4:])}, ...)")
    why = release.not_open(today)
    if why and not archive(release.series):  # distro-info's dates are plans: the archive decides
        die(why, f"choose a suite the archive has ({', '.join(buildable[-4:])}, ...)")
    return release


def suite_rows(distro: str, table: ReleaseTable, today: dt.date, unsupported: Refusal,
               traits_of: Callable[[Release], Traits], archive: ArchiveFields) -> list[dict[str, str]]:  # fmt: skip
    """One row per known release of the distro plugin for --list-suites."""
    releases = list(table.releases)
    devel = table.find("devel", today)
    if devel is None:
        # distro-info-data lags behind a new development series; the archive knows it.
        devel = probe_unknown_suite("devel", table, archive)
        if devel is not None and devel.series not in table.names():
            releases.append(devel)
        elif devel is not None:  # listed with a future date, but the archive already serves it
            devel = next(r for r in releases if r.series == devel.series)
    rows = []
    for release in releases:
        opened = release is devel  # the archive said so, whatever distro-info-data's dates say
        why = unsupported(release) or (None if opened else release.not_open(today))
        traits = traits_of(release) if not why else None
        rows.append(
            {
                "series": release.series,
                "version": release.version or "-",
                "codename": release.codename,
                "released": str(release.released or "-"),
                "status": "devel" if opened else release.status(today),
                "init": traits.init if traits else "-",
                "network": traits.network if traits else "-",
                "verified": verified(distro, release.series, devel=release is devel).label,
                "supported": "no: " + why if why else "yes",
            }
        )
    return rows


def format_rows(rows: list[dict[str, str]], as_json: bool) -> str:
    """--list-suites' output: JSON, or a table with aligned columns."""
    if as_json:
        return json.dumps(rows, indent=2)
    heads = list(rows[0]) if rows else []
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in heads if h != "supported"}
    lines = ["  ".join(h.upper().ljust(widths.get(h, 0)) for h in heads).rstrip()]
    lines += ["  ".join(r[h].ljust(widths.get(h, 0)) for h in heads).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
