"""cliparse.CommandParser: the one parser boilerplate of `vmbuilder lxc validate`, `export` and
vmbuilder-fetch-keyring (one-line mistakes, the output options, the logging they ask for)."""

from __future__ import annotations

import argparse

import pytest

from vmbuilder_lxc import keyring, log
from vmbuilder_lxc.cliparse import DEBUG_HELP, VERBOSE_HELP, CommandParser
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.plugin import Plugin, command_parsers

Plugins = dict[str, type[Plugin]]


def _flags(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    return {flag: action.help for action in parser._actions for flag in action.option_strings}


def test_commands_share_the_output_options(plugins: Plugins) -> None:
    parsers = command_parsers(plugins, "lxc")
    for name in ("validate", "export"):
        parser = parsers[name]
        assert isinstance(parser, CommandParser), name
        flags = _flags(parser)
        assert (flags["-v"], flags["--debug"]) == (VERBOSE_HELP, DEBUG_HELP), name
        assert flags["--json"], name


@pytest.mark.parametrize(("argv", "verbosity"), [([], 0), (["-v"], 1), (["--verbose"], 1), (["--debug"], 2)])
def test_parse_command_sets_up_logging(argv: list[str], verbosity: int) -> None:
    parser = CommandParser("vmbuilder lxc x", "a test command")
    parser.add_output_options("print JSON")
    args = parser.parse_command(["--json", *argv])
    assert args.json and log.verbosity() == verbosity


def test_a_mistake_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = CommandParser("vmbuilder lxc x", "a test command")
    with pytest.raises(UserError, match=r"unrecognized arguments: --nope; see vmbuilder lxc x --help"):
        parser.parse_command(["--nope"])
    assert isinstance(keyring.fetch_parser(), CommandParser)
    assert keyring.fetch_main(["--nope"]) == 2
    err = capsys.readouterr().err
    assert err == "vmbuilder-fetch-keyring: error: unrecognized arguments: --nope; see vmbuilder-fetch-keyring --help\n"
