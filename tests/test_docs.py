"""Documentation generated from the settings table must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuilder_lxc.docgen import GENERATORS, TWEAK_DOCS, doc_path, main, tweaks_doc_name
from vmbuilder_lxc.plugin import discover

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generated_reference_is_current(name: str) -> None:
    current = (ROOT / doc_path(name)).read_text()
    assert current == GENERATORS[name](), f"run: python3 -m vmbuilder_lxc.docgen {name} > {doc_path(name)}"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert commands == ["bash quickstart.sh demo", "bash quickstart.sh test"]
    ci = (ROOT / ".ci/run").read_text()
    assert "quickstart.sh test" in ci, ".ci/run must run the README's test command"


def test_every_distro_plugin_has_a_current_tweaks_reference() -> None:
    """docs/tweaks.md is the ubuntu plugin's, docs/tweaks-DISTRO.md every other distro's."""
    distros = {name for name, cls in discover().items() if cls.kind == "distro"}
    assert {"ubuntu", "debian"} <= distros
    assert distros <= set(TWEAK_DOCS.values())
    for name, distro in TWEAK_DOCS.items():
        assert tweaks_doc_name(distro) == name
        text = (ROOT / f"docs/{name}.md").read_text()
        assert text.startswith(f"# Container tweaks of the `{distro}` plugin")
        assert f"docgen {name}`" in text


def test_docgen_takes_the_distro_as_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tweaks", "debian"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs/tweaks-debian.md").read_text()
    assert main(["tweaks", "nosuchdistro"]) == 2


def test_install_doc_lists_the_build_depends() -> None:
    """docs/install.md's apt-get line for building the package is debian/control's Build-Depends."""
    control = (ROOT / "debian/control").read_text().split("\n\n", 1)[0]
    field = control.split("Build-Depends:", 1)[1].split("\nStandards-Version:", 1)[0]
    wanted = {dep.split("(")[0].strip() for dep in field.split(",") if dep.strip()} - {"debhelper-compat"}
    text = (ROOT / "docs/install.md").read_text()
    line = text.split("apt-get install build-essential", 1)[1].split("\ncd ", 1)[0]
    listed = set(line.replace("\\", " ").split()) - {"debhelper"}
    assert listed == wanted, f"install.md lists {sorted(listed)}, debian/control has {sorted(wanted)}"
