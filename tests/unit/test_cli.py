"""The command line: argument splitting, help, and one-line errors for mistakes the user can fix.

Every main() call here fails in argument or config parsing, before the build; pipeline.build is
replaced by a tripwire to make sure of that. HOME and /etc/vmbuilder.cfg point to empty places.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Plugins
from vmbuilder_lxc import __version__, cli, pipeline
from vmbuilder_lxc.cli import main, split_argv
from vmbuilder_lxc.log import UserError


@pytest.fixture(autouse=True)
def no_build(monkeypatch: pytest.MonkeyPatch, no_host_config: Path) -> None:
    def tripwire(ctx: Any) -> dict[str, Any]:
        raise AssertionError("the build was reached")

    monkeypatch.setattr(pipeline, "build", tripwire)


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr holds exactly one line, the error, and no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("vmbuilder: error: ")
    return lines[0].removeprefix("vmbuilder: error: ")


# -- split_argv -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "positionals", "rest"),
    [
        (["lxc", "ubuntu"], ["lxc", "ubuntu"], []),
        (["lxc", "ubuntu", "--suite", "noble", "-v"], ["lxc", "ubuntu"], ["--suite", "noble", "-v"]),
        (["-v", "--debug", "lxc", "ubuntu", "--suite", "noble"], ["lxc", "ubuntu"],
         ["-v", "--debug", "--suite", "noble"]),
        (["-c", "my.cfg", "lxc", "ubuntu"], ["lxc", "ubuntu"], ["-c", "my.cfg"]),
        (["--config", "a.cfg", "-c", "b.cfg", "lxc", "ubuntu", "-d", "x"], ["lxc", "ubuntu"],
         ["--config", "a.cfg", "-c", "b.cfg", "-d", "x"]),
        (["--config=a.cfg", "lxc", "ubuntu"], ["lxc", "ubuntu"], ["--config=a.cfg"]),
        (["--json", "lxc", "ubuntu"], ["lxc", "ubuntu"], ["--json"]),
        (["lxc", "--json", "ubuntu", "lxc"], ["lxc", "ubuntu"], ["--json", "lxc"]),
        (["lxc", "ubuntu", "extra"], ["lxc", "ubuntu"], ["extra"]),
        (["--help"], [], ["--help"]),
        (["--version"], [], ["--version"]),
        (["lxc"], ["lxc"], []),
        (["--suite", "noble", "lxc", "ubuntu"], [], ["--suite", "noble", "lxc", "ubuntu"]),  # build options come after
        (["-c"], [], ["-c"]),
    ],
)  # fmt: skip
def test_split_argv(argv: list[str], positionals: list[str], rest: list[str]) -> None:
    assert split_argv(argv) == (positionals, rest)


# -- help and version ---------------------------------------------------------------------------------


def test_top_level_help_lists_the_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vmbuilder HYPERVISOR DISTRO [options]")
    sections = {title: out.split(title)[1].split("\n\n")[0] for title in ("Hypervisors:", "Distros:", "Plugins:")}
    assert "  lxc " in sections["Hypervisors:"]
    assert "  ubuntu " in sections["Distros:"]
    assert "  postinst " in sections["Plugins:"]
    assert "vmbuilder lxc ubuntu --help" in out


def test_no_arguments_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "Hypervisors:" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"vmbuilder (vmbuilder-lxc) {__version__}\n"


def test_build_help_lists_every_option(capsys: pytest.CaptureFixture[str], plugins: Plugins) -> None:
    """The parser is generated from the settings table: every setting must have its flag."""
    assert main(["lxc", "ubuntu", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vmbuilder lxc ubuntu [options]")
    table = cli.make_context("lxc", "ubuntu", plugins).settings.table
    assert len(table) > 40
    for setting in table.values():
        for flag in setting.flags:
            assert f"{flag} " in out or f"{flag}," in out or f"{flag}\n" in out, flag
        if setting.type == "bool":  # a command-line-only switch that is off by default has no --no- form
            assert (f"--no-{setting.name}" in out) == setting.negatable, setting.name
    for title in ("General options:", "Build and cache options:", "Package options (ubuntu):",
                  "Network options (ubuntu):", "LXC options (lxc):", "Customisation (postinst):"):  # fmt: skip
        assert f"\n{title}\n" in out, title


def test_build_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    main(["lxc", "ubuntu", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    assert "(default: lts)" in out
    assert "(default: main,restricted,universe)" in out
    assert "(default: the destination's name)" in out  # a computed default documents itself
    assert "(default: ./DISTRO-HYPERVISOR)" in out


def test_help_with_global_flags_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "lxc", "ubuntu", "-h"]) == 0
    assert "--ssh-user-key" in capsys.readouterr().out


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["xen", "ubuntu"], ["unknown hypervisor 'xen'", "a VMBuilder hypervisor of disk images", "'vmbuilder lxc'"]),
        (["docker", "ubuntu"], ["unknown hypervisor 'docker'", "installed: lxc"]),
        (["lxc", "fedora"], ["unknown distro 'fedora'", "installed: debian, ubuntu"]),
        (["lxc"], ["missing DISTRO after 'lxc'", "installed distros: debian, ubuntu"]),
        (["--suite", "noble"], ["missing HYPERVISOR and DISTRO"]),
        (["lxc", "ubuntu", "--hostnam", "web"], ["unrecognized arguments: --hostnam web", "did you mean --hostname?"]),
        (["lxc", "ubuntu", "--sute=noble"], ["unrecognized arguments: --sute=noble", "did you mean --suite?"]),
        (["lxc", "ubuntu", "--hostname", "web.example.com"], ["--hostname", "--domain"]),
        (["lxc", "ubuntu", "--hostname", "web_1"], ["invalid value 'web_1' for --hostname"]),
        (["lxc", "ubuntu", "--ssh-user-key", "/nonexistent/id.pub"],
         ["--ssh-user-key", "/nonexistent/id.pub does not exist"]),
        (["lxc", "ubuntu", "--mem", "lots"], ["invalid value 'lots' for --mem", "expected megabytes"]),
        (["lxc", "ubuntu", "--mem", "16"], ["less than 32 MB"]),
        (["lxc", "ubuntu", "--user", "root"], ["root always exists"]),
        (["lxc", "ubuntu", "--ip", "10.0.0.300"], ["not an IPv4 address"]),
        (["lxc", "ubuntu", "--mac", "01:00:5e:00:00:01"], ["multicast"]),
        (["lxc", "ubuntu", "--variant", "tiny"], ["must be one of: minbase, buildd, default"]),
        (["lxc", "ubuntu", "-c", "/nonexistent.cfg"], ["config file /nonexistent.cfg does not exist"]),
        (["lxc", "ubuntu", "--hostname"], ["argument --hostname: expected one argument"]),
        (["lxc", "ubuntu", "--cpus", "many"], ["expected a whole number"]),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needles: list[str]
) -> None:
    assert main(argv) == 2
    line = error_line(capsys)
    for needle in needles:
        assert needle in line


def test_private_key_given_as_ssh_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n")
    assert main(["lxc", "ubuntu", "--ssh-user-key", str(key)]) == 2
    line = error_line(capsys)
    assert "is a private key" in line and ".pub" in line


def test_bad_config_file_key_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "site.cfg"
    cfg.write_text("[ubuntu]\nsuit = noble\n")
    assert main(["lxc", "ubuntu", "-c", str(cfg)]) == 2
    assert error_line(capsys) == f"unknown key 'suit' in {cfg} [ubuntu]; did you mean 'suite'?"


def test_broken_system_config_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "vmbuilder.cfg"
    system.write_text("suite = noble\n")
    monkeypatch.setattr(cli, "SYSTEM_CONFIG", system)
    assert main(["lxc", "ubuntu"]) == 2
    assert error_line(capsys).startswith(f"cannot read config file {system}: File contains no section headers.")


def test_user_config_is_read_from_home(capsys: pytest.CaptureFixture[str], no_host_config: Path) -> None:
    (no_host_config / ".vmbuilder.cfg").write_text("[lxc]\nmem = tiny\n")
    assert main(["lxc", "ubuntu"]) == 2
    assert "'mem' in " in error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--json", "lxc", "fedora"], "unknown distro 'fedora'"),
        (["lxc", "ubuntu", "--json", "--mem", "lots"], "invalid value 'lots' for --mem"),
        (["lxc", "ubuntu", "--bogus", "--json"], "unrecognized arguments: --bogus"),
    ],
)
def test_json_errors_are_valid_json_on_stdout(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    """Scripts parse stdout; the human-readable error still goes to stderr."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["status"] == "error"
    assert data["exit_code"] == 2
    assert needle in data["error"]
    assert needle in captured.err


def test_json_from_the_command_line_covers_errors_after_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_build(ctx: Any) -> dict[str, Any]:
        raise UserError("destination /srv/x already exists", "pass --overwrite")

    monkeypatch.setattr(pipeline, "build", failing_build)
    assert main(["lxc", "ubuntu", "--arch", "amd64", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"].startswith("destination /srv/x already exists")


def test_json_from_a_config_file_covers_errors_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_host_config: Path
) -> None:
    """A script that enabled --json in ~/.vmbuilder.cfg must be able to parse failures as well."""
    (no_host_config / ".vmbuilder.cfg").write_text("[DEFAULT]\njson = yes\n")

    def failing_build(ctx: Any) -> dict[str, Any]:
        assert ctx.settings["json"] is True
        raise UserError("destination /srv/x already exists", "pass --overwrite")

    monkeypatch.setattr(pipeline, "build", failing_build)
    assert main(["lxc", "ubuntu", "--arch", "amd64"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "error" and data["exit_code"] == 2


def test_internal_errors_are_reported_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in vmbuilder-lxc itself: one line plus a pointer to --debug, exit code 1."""

    def broken(*args: Any) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli, "make_context", broken)
    assert main(["lxc", "ubuntu"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "vmbuilder: error: internal error: ZeroDivisionError: oops" in err
    assert "run with --debug for the traceback" in err


def test_debug_shows_the_traceback_of_internal_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli, "make_context", broken)
    assert main(["--debug", "lxc", "ubuntu"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_valid_options_reach_the_build(capsys: pytest.CaptureFixture[str]) -> None:
    """The tripwire itself works: with valid options main() gets as far as pipeline.build."""
    assert main(["lxc", "ubuntu", "--arch", "amd64", "--suite", "noble", "--debug"]) == 1
    assert "AssertionError: the build was reached" in capsys.readouterr().err


def test_top_help_keeps_a_space_after_a_long_plugin_name() -> None:
    """A third-party distro named like `debian-testing` (14 characters) must not run into its text."""
    rows = cli._columns([("lxc", "containers"), ("debian-testing", "Debian testing")], 12)
    assert rows == ["  lxc             containers", "  debian-testing  Debian testing"]
    assert cli._columns([("lxc", "containers")], 12) == ["  lxc         containers"]
