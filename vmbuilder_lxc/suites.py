"""Release names and versions, read from distro-info-data at run time.

Nothing here lists releases by hand: a release added to /usr/share/distro-info/<distro>.csv is
known without a code change. A suite can be named by codename (`noble`), version (`24.04`,
`24.04.2`, `24.04 LTS`) or alias: `devel` (the release in development), `lts` (the newest released
LTS) and `stable` (the newest release).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .log import UserError

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
