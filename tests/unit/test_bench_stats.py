"""The bench's pure logic (medians, ratios, targets, the table); the bench itself never runs in tests."""

from __future__ import annotations

from pathlib import Path

from bench.measure import overlay_paths
from bench.stats import Row, markdown_table, median, not_available, ratio, seconds, summary


def test_median_and_ratio() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([]) is None
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None


def test_seconds_cell_shows_range_and_rss() -> None:
    assert seconds([2.0, 1.0, 3.0], 61_000) == "2.00 s (1.00–3.00) · 62 MB"
    assert seconds([1.5]) == "1.50 s"
    assert seconds([]) == "failed"


def test_met_against_limit() -> None:
    assert Row("w", "p", "q", 1.2, 1.3, "≤ 1.3×").met is True
    assert Row("w", "p", "q", 1.4, 1.3, "≤ 1.3×").met is False
    assert Row("w", "p", "q", None, 1.3, "≤ 1.3×").met is False
    assert Row("w", "p", "q", 1.4).met is None
    assert not_available("w", "not available", "≤ 1.0 s", True).met is False
    assert not_available("w", "not available").met is None


def test_table_and_summary() -> None:
    rows = [
        Row("a | b", "1 s", "2 s", 0.5, 1.0, "≤ 1.0×"),
        Row("c", "3 s", "1 s", 3.0, 1.5, "≤ 1.5×"),
        Row("d", "x", "y"),
    ]
    table = markdown_table(rows).splitlines()
    assert table[0] == "| work | project | peer/limit | ratio | target | met? |"
    assert table[2] == "| a \\| b | 1 s | 2 s | 0.50× | ≤ 1.0× | yes |"
    assert table[3].endswith("| 3.00× | ≤ 1.5× | **no** |")
    assert table[4] == "| d | x | y | — | — | — |"
    assert summary(rows) == "1 of 2 targets met"


def test_overlay_paths_reads_the_rootfs_line(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("lxc.uts.name = x\nlxc.rootfs.path = overlay:/b/base:/c/delta\n")
    assert overlay_paths(tmp_path) == (Path("/b/base"), Path("/c/delta"))
    (tmp_path / "config").write_text("lxc.rootfs.path = dir:/c/rootfs\n")
    assert overlay_paths(tmp_path) is None
