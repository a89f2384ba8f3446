"""Install the third-party plugins in this directory into a scratch directory, as pip would.

`pip install --target DIR tests/thirdparty/debian_testing` needs setuptools' wheel support, which
the test environment may lack (and build isolation would fetch it from the network). An installed
distribution is only its modules plus a .dist-info directory whose entry_points.txt
importlib.metadata reads, so this writes exactly that from the package's own pyproject.toml: the
entry point the tests exercise is the one the package declares. Nothing outside DIR changes; put
DIR on sys.path or PYTHONPATH to use it.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEBIAN_TESTING = HERE / "debian_testing"


def install(source: Path, target: Path) -> Path:
    """Copy SOURCE's py-modules into TARGET and write their dist-info; returns TARGET."""
    meta = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))
    project = meta["project"]
    target.mkdir(parents=True, exist_ok=True)
    for module in meta["tool"]["setuptools"]["py-modules"]:
        shutil.copy2(source / f"{module}.py", target / f"{module}.py")
    dist = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8"
    )
    groups = project.get("entry-points", {})
    (dist / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()
        ),
        encoding="utf-8",
    )
    (dist / "top_level.txt").write_text("".join(f"{m}\n" for m in meta["tool"]["setuptools"]["py-modules"]))
    return target
