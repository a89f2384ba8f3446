"""The installed tool finds its templates, hooks and plugins without a source checkout, with pip
(regular and editable) and with Debian 12's own python3, python3-sh 1.14 and python3-jinja2."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Builder, Container

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")
PROBE = (
    "import vmbuilder_lxc, vmbuilder_lxc.data as d, vmbuilder_lxc.plugin as p; "
    "print(vmbuilder_lxc.__file__); print(d.templates_dir()); print(d.hooks_dir()); "
    "print(sorted(p.discover()))"
)


def run(argv: list[str], **kwargs: object) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd="/", **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


@pytest.mark.parametrize("editable", [False, True], ids=["pip-install", "pip-install-e"])
def test_pip_install_finds_its_data(tmp_path: Path, editable: bool) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin/python"), "-m", "pip", "install", "-q"]
    run([*pip, *(["-e"] if editable else []), str(ROOT)])
    out = run([str(env_dir / "bin/python"), "-c", PROBE]).splitlines()
    package_file, templates, hooks, plugins = out[0], Path(out[1]), Path(out[2]), out[3]
    if editable:
        assert templates == ROOT / "templates" and hooks == ROOT / "hooks"
    else:
        assert str(env_dir) in package_file, "the installed copy must be used, not the checkout"
        assert str(env_dir) in str(templates) and str(env_dir) in str(hooks)
    assert (templates / "lxc/config.j2").is_file() and (templates / "netplan/10-lxc.yaml.j2").is_file()
    assert plugins == "['cache', 'debian', 'doctor', 'export', 'libvirt', 'lxc', 'postinst', 'publish', 'ubuntu']"
    top = run([str(env_dir / "bin/vmbuilder"), "--help"])
    assert "lxc" in top and "ubuntu" in top
    assert "--ssh-user-key" in run([str(env_dir / "bin/vmbuilder"), "lxc", "ubuntu", "--help"])


@pytest.mark.skipif(
    not DEBIAN_PYTHON.exists() and os.environ.get("VMBUILDER_REQUIRE_INTEGRATION") != "1",
    reason="no Debian python3",
)
def test_build_with_debian_python_and_python3_sh_1_14(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """Debian 12 ships python3-sh 1.14 (PyPI has 2.x); the whole build must work with it."""
    version = run([str(DEBIAN_PYTHON), "-c", "import sh, jinja2; print(sh.__version__)"]).strip()
    assert version.startswith("1.14"), f"expected Debian's python3-sh 1.14, got {version}"
    target = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(ROOT)])  # fmt: skip
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    dest = tmp_path / "deb1"
    run(
        [str(DEBIAN_PYTHON), "-m", "vmbuilder_lxc", "lxc", "ubuntu", "--suite", "noble", "--network", "none",
         "--cache-dir", str(builder.cache_dir), "-d", str(dest)],
        env=env,
    )  # fmt: skip
    c = container(dest)
    assert c.wait_running(30) == "running", c.failed_units()
