"""`vmbuilder lxc export` and the other built-in commands load only their own plugin, and only while
that cannot change what runs: with a third-party plugin installed, every plugin is discovered as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import Plugins
from vmbuilder_lxc import cli
from vmbuilder_lxc.plugin import (
    BUILTIN_COMMANDS,
    BUILTIN_PLUGINS,
    _declares_only_builtins,
    builtin_command,
    commands_for,
    only_builtin_plugins,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_matches_the_plugins_own_commands(plugins: Plugins) -> None:
    """BUILTIN_COMMANDS is what commands_for() finds among the built-in plugins alone."""
    builtins = {name: plugins[name] for name in BUILTIN_PLUGINS}
    for hypervisor, table in BUILTIN_COMMANDS.items():
        assert set(table) == set(commands_for(builtins, hypervisor))
        for command, plugin in table.items():
            assert command in builtins[plugin].commands
            assert builtin_command(hypervisor, command) is commands_for(builtins, hypervisor)[command]


def test_not_a_command_is_not_dispatched_early() -> None:
    assert builtin_command("lxc", "ubuntu") is None
    assert builtin_command("lcx", "export") is None


def test_entry_points_of_the_builtins_alone_allow_it() -> None:
    own = "\n".join(f"{name} = {spec}" for name, spec in BUILTIN_PLUGINS.items())
    assert _declares_only_builtins(
        f"[console_scripts]\nvmbuilder = vmbuilder_lxc.cli:main\n\n[vmbuilder_lxc.plugins]\n{own}\n"
    )
    assert _declares_only_builtins("[other.group]\nhello = x:Y\n")


@pytest.mark.parametrize(
    "line",
    ["hello = thirdparty:Hello", "export = thirdparty:Export", "lxc = vmbuilder_lxc.plugins.lxc:LXC [extra]", "odd"],
)
def test_any_other_entry_point_forbids_it(line: str) -> None:
    assert not _declares_only_builtins(f"[vmbuilder_lxc.plugins]\n{line}\n")


def test_a_third_party_plugin_on_sys_path_forbids_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VMBUILDER_NO_ENTRY_POINTS", raising=False)
    assert only_builtin_plugins()
    info = tmp_path / "thirdparty-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[vmbuilder_lxc.plugins]\nhello = thirdparty:Hello\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not only_builtin_plugins()
    assert builtin_command("lxc", "export") is None
    monkeypatch.setenv("VMBUILDER_NO_ENTRY_POINTS", "1")  # entry points are not read at all then
    assert only_builtin_plugins()


def test_a_broken_third_party_plugin_still_fails_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As before: a plugin that cannot load is reported, whatever the command."""
    monkeypatch.delenv("VMBUILDER_NO_ENTRY_POINTS", raising=False)
    (tmp_path / "broken_fast.py").write_text("1/0\n")
    info = tmp_path / "broken_fast-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-fast\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vmbuilder_lxc.plugins]\nbrokenfast = broken_fast:Broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["lxc", "export", "--help"]) == 2
    assert "plugin 'brokenfast'" in capsys.readouterr().err
    sys.modules.pop("broken_fast", None)


def _modules_loaded_by(call: str, which: str) -> str:
    """The sorted module names matching the expression `which` (over `m`) after `call` ran in a fresh Python."""
    code = f"import sys\nfrom vmbuilder_lxc.cli import main\n{call}\nprint(sorted(m for m in sys.modules if {which}))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return out.splitlines()[-1]


def test_export_help_loads_neither_the_other_plugins_nor_sh_nor_jinja2() -> None:
    others = "('vmbuilder_lxc.plugins.ubuntu', 'vmbuilder_lxc.plugins.libvirt', 'vmbuilder_lxc.plugins.publish')"
    which = f"m in {{'sh', 'jinja2', 'asyncio'}} or m.startswith({others})"
    assert _modules_loaded_by("assert main(['lxc', 'export', '--help']) == 0", which) == "[]"


def test_version_loads_no_plugin() -> None:
    assert _modules_loaded_by("main(['--version'])", "'.plugins' in m or m in {'sh', 'jinja2'}") == "[]"


def _program(body: str) -> subprocess.CompletedProcess[str]:
    """A Python program that runs cli.main() as the console script does (no argv)."""
    return subprocess.run(
        [sys.executable, "-c", body], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_program_exits_with_its_output_flushed() -> None:
    done = _program("import sys\nfrom vmbuilder_lxc import cli\nsys.argv[1:] = ['--version']\nsys.exit(cli.main())\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "vmbuilder (vmbuilder-lxc) 0.1.0\n", "")
    done = _program("import sys\nfrom vmbuilder_lxc import cli\nsys.argv[1:] = ['lxc']\nsys.exit(cli.main())\n")
    assert done.returncode == 2 and done.stderr.startswith("vmbuilder: error: missing DISTRO after 'lxc'")


def test_teardown_is_kept_when_something_relies_on_it() -> None:
    """An atexit handler registered during the run still runs, as does the wait for a live thread."""
    body = (
        "import atexit, sys, threading, time\n"
        "from vmbuilder_lxc import cli\n"
        "def command(rest):\n"
        "    atexit.register(print, 'atexit ran')\n"
        "    threading.Thread(target=lambda: (time.sleep(0.2), print('thread ran'))).start()\n"
        "    return 3\n"
        "cli._main = lambda args, state: command(args)\n"
        "sys.exit(cli.main())\n"
    )
    done = _program(body)
    assert done.returncode == 3
    assert done.stdout.splitlines() == ["thread ran", "atexit ran"]


def test_in_process_callers_get_the_code_back() -> None:
    assert cli.main(["--version"]) == 0
