"""The bench's pure logic: medians, ratios against a peer, target checks and the printed table.

Kept apart from the measuring code so that it can be unit tested without running anything.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


def median(samples: list[float]) -> float | None:
    """The median of the samples that succeeded, or None when none did."""
    return statistics.median(samples) if samples else None


def spread(samples: list[float]) -> str:
    """'(min–max)' when there is more than one sample: the noise of a shared machine shows."""
    if len(samples) < 2:
        return ""
    return f" ({min(samples):.2f}–{max(samples):.2f})"


def seconds(samples: list[float], rss_kb: int | None = None) -> str:
    """A cell such as '2.31 s (2.1–2.9) · 61 MB': the median wall time, its range, the peak RSS."""
    mid = median(samples)
    if mid is None:
        return "failed"
    text = f"{mid:.2f} s{spread(samples)}"
    if rss_kb:
        text += f" · {megabytes(rss_kb * 1024)}"
    return text


def runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def megabytes(nbytes: float) -> str:
    """Decimal megabytes, the unit the targets are written in."""
    return f"{nbytes / 1e6:.0f} MB"


def ratio(project: float | None, peer: float | None) -> float | None:
    """project / peer: below 1 means the project is faster (or smaller)."""
    if project is None or peer is None or peer <= 0:
        return None
    return project / peer


@dataclass
class Row:
    """One line of the table; `limit` is the largest ratio that meets the target (None: no target)."""

    work: str
    project: str
    peer: str
    value: float | None = None
    limit: float | None = None
    target: str = "—"
    extra_checks: list[bool] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        """True or False against the target; None when there is no target or nothing to compare."""
        if self.limit is None:
            return None
        if self.value is None:
            return False
        return self.value <= self.limit and all(self.extra_checks)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        return data


def not_available(work: str, why: str, target: str = "—", has_target: bool = False) -> Row:
    """A row for work that could not be measured here; a target it carries counts as not met."""
    return Row(work, why, "—", None, 0.0 if has_target else None, target)


def met_cell(row: Row) -> str:
    return {True: "yes", False: "**no**", None: "—"}[row.met]


def ratio_cell(row: Row) -> str:
    return "—" if row.value is None else f"{row.value:.2f}×"


def markdown_table(rows: list[Row]) -> str:
    """The table the issue asks for: work | project | peer/limit | ratio | target | met?"""
    lines = ["| work | project | peer/limit | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row.work, row.project, row.peer, ratio_cell(row), row.target, met_cell(row)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """One line: how many targets were met."""
    judged = [row for row in rows if row.met is not None]
    met = sum(1 for row in judged if row.met)
    return f"{met} of {len(judged)} targets met"
