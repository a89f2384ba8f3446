"""lxcstate.container_running: the one lxc-info check of the lxc plugin and `vmbuilder lxc export`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import lxcstate
from vmbuilder_lxc.run import CommandResult


def _fake_lxc_info(monkeypatch: pytest.MonkeyPatch, output: str | None) -> list[list[str]]:
    """lxc-info answering `output` (None: not installed); returns the argvs it was run with."""
    calls: list[list[str]] = []

    def run(argv: list[Any], check: bool = True) -> CommandResult:
        calls.append([str(a) for a in argv])
        return CommandResult([str(a) for a in argv], 0, output or "")

    monkeypatch.setattr(lxcstate.shutil, "which", lambda name: None if output is None else f"/usr/bin/{name}")
    monkeypatch.setattr(lxcstate, "run", run)
    return calls


@pytest.mark.parametrize(
    ("output", "running"),
    [("State:          RUNNING\n", True), ("State:          FROZEN\n", True), ("State:          STOPPED\n", False)],
)
def test_running_and_frozen_count_as_running(monkeypatch: pytest.MonkeyPatch, output: str, running: bool) -> None:
    calls = _fake_lxc_info(monkeypatch, output)
    assert lxcstate.container_running(Path("/srv/lxc/web")) is running
    assert calls == [["lxc-info", "-P", "/srv/lxc", "-n", "web", "-s"]]


def test_without_lxc_info_nothing_is_running(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_lxc_info(monkeypatch, None)
    assert lxcstate.container_running(Path("/srv/lxc/web")) is False
    assert calls == []
