"""Documentation generated from the settings table must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuilder_lxc.docgen import GENERATORS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generated_reference_is_current(name: str) -> None:
    current = (ROOT / f"docs/{name}.md").read_text()
    assert current == GENERATORS[name](), f"run: python3 -m vmbuilder_lxc.docgen {name} > docs/{name}.md"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert commands == ["bash quickstart.sh demo", "bash quickstart.sh test"]
    ci = (ROOT / ".ci/run").read_text()
    assert "quickstart.sh test" in ci, ".ci/run must run the README's test command"
