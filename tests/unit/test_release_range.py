"""Release.in_range: the one since/until comparison of the tweak tables and the package tables."""

from __future__ import annotations

import pytest

from vmbuilder_lxc.suites import Release, version_key


def _release(version: str) -> Release:
    return Release("debian", "x", version, "X", None, None, None)


@pytest.mark.parametrize(
    ("version", "since", "until", "inside"),
    [
        ("12", None, "12", True),
        ("12.5", None, "12", True),  # until compares as many parts as it has: 12.x is 12
        ("13", None, "12", False),
        ("23.04", None, "23.04", True),
        ("23.10", None, "23.04", False),
        ("23.10", "23.10", None, True),
        ("23.04", "23.10", None, False),
        ("24.04", "23.10", "24.10", True),
        ("", "13", None, True),  # unversioned (sid) sorts last
        ("", None, "13", False),
        ("10", None, None, True),
        ("10", "", "", True),  # empty bounds are no bounds
    ],
)
def test_in_range(version: str, since: str | None, until: str | None, inside: bool) -> None:
    assert _release(version).in_range(since, until) is inside


def test_version_key() -> None:
    assert version_key("23.04") == (23, 4)
    assert version_key("12") == (12,)
