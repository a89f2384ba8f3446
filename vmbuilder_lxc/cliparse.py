"""The command-line parsers: a build's, generated from the settings table, and each command's own.

argparse prints usage and two lines on a mistake; these report it as the one-line error (exit 2)
every other bad input gets, with a "did you mean" and VMBuilder's replacement options named.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from . import compat
from . import validators as v
from .log import UserError, setup_logging
from .settings import Setting


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as a one-line UserError instead of usage + exit 2."""

    def error(self, message: str) -> NoReturn:
        message = v.one_line(message)  # an unknown argument may hold a newline
        hint = f"see {self.prog} --help"
        m = re.search(r"unrecognized arguments: (\S+)", message)
        for token in message.split("unrecognized arguments: ", 1)[1].split() if m else ():
            name = token.split("=")[0]
            old = compat.vmbuilder_only(name) if name.startswith("-") else None
            if old is not None:  # a VMBuilder option: say what to do instead (-m512 is -m)
                raise UserError(*old.problem(name if name in old.flags else name[:2]))
        if m:
            known = [o for a in self._actions for o in a.option_strings]
            close = difflib.get_close_matches(m.group(1).split("=")[0], known, n=1)
            if close:
                hint = f"did you mean {close[0]}? ({hint})"
        raise UserError(message, hint)


# The help of -v and --debug, in a build's options (options.py) and in every command's.
VERBOSE_HELP = "show every command that is run"
DEBUG_HELP = "show commands, their output and tracebacks"


class CommandParser(_Parser):
    """The parser for a command of its own (`vmbuilder lxc export`, `validate`, vmbuilder-fetch-keyring):
    a mistake is the same one-line error, exit 2, as one in a build's options (argparse prints usage
    and two lines). The output options, and the logging they ask for, are the same in each."""

    def __init__(self, prog: str, description: str, operand: tuple[str, str] | None = None) -> None:
        """`operand`: the command's one positional argument as (METAVAR, help); its dest is metavar.lower()."""
        super().__init__(prog=prog, description=description)
        if operand is not None:
            self.add_argument(operand[0].lower(), metavar=operand[0], help=operand[1])

    def add_output_options(self, json_help: str) -> None:
        """--json (what it prints is the command's), -v/--verbose and --debug (as in a build)."""
        self.add_argument("--json", action="store_true", help=json_help)
        self.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
        self.add_argument("--debug", action="store_true", help=DEBUG_HELP)

    def parse_command(self, argv: Sequence[str] | None) -> argparse.Namespace:
        """The arguments, with logging set up as they ask (quiet unless -v or --debug is given)."""
        args = self.parse_args(argv)
        setup_logging(2 if getattr(args, "debug", False) else 1 if getattr(args, "verbose", False) else 0)
        return args


def build_parser(prog: str, table: Iterable[Setting], description: str = "", epilog: str = "") -> _Parser:
    """Generate the argparse parser for a build from the settings table, one group per plugin."""
    parser = _Parser(
        prog=prog,
        usage=f"{prog} [options]",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in table:
        title = s.group or "General options"
        title = f"{title} ({s.plugin})" if s.plugin else title
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        group = groups[title]
        help_text = s.help
        if s.default is not None and not callable(s.default) and s.type != "bool" and s.default != []:
            shown = ",".join(s.default) if isinstance(s.default, list) else s.default
            help_text += f" (default: {shown})"
        elif callable(s.default) and s.default.__doc__:
            help_text += f" (default: {s.default.__doc__.strip()})"
        kwargs: dict[str, Any] = {"dest": s.dest, "default": argparse.SUPPRESS, "help": help_text}
        if s.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction if s.negatable else "store_true"
        else:
            choices = "{" + ",".join(s.choices) + "}" if s.choices else None
            kwargs["metavar"] = s.metavar or choices or s.name.upper().replace("-", "_")
            if s.type == "list":
                kwargs["action"] = "append"
        group.add_argument(*s.flags, **kwargs)
    return parser
