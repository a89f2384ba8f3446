"""`vmbuilder HYPERVISOR DISTRO [options]`: the VMBuilder-compatible command line.

Errors the user can fix are printed as one line (no traceback) with a non-zero exit code:
2 for bad input, 1 for a failed build, 128 + the signal's number for an interrupted one (SIGINT 130,
SIGTERM 143, SIGHUP 129), as a shell reports a command killed by that signal.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from . import __version__
from .cliparse import build_parser
from .log import LOG, UserError, setup_logging
from .plugin import Distro, Plugin, PluginError, builtin_command, by_kind, call_report, commands_for, discover
from .run import INTERRUPT_SIGNALS, BuildError, BuildInterrupted, CommandError, interrupt_exit_code
from .settings import SYSTEM_CONFIG, USER_CONFIG, Setting, Settings
from .textchecks import one_line

if TYPE_CHECKING:
    from .context import Context

# The build's machinery (pipeline, context, options, render, compat) is imported by the functions
# that build: `vmbuilder --version` and `vmbuilder lxc export` do not load it at all.

PROG = "vmbuilder"
GLOBAL_FLAGS = {"-v", "--verbose", "--debug", "--json"}
GLOBAL_VALUE_FLAGS = {"-c", "--config"}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate HYPERVISOR and DISTRO from the options; global flags may come first."""
    positionals: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv) and len(positionals) < 2:
        arg = argv[i]
        if arg in GLOBAL_VALUE_FLAGS and i + 1 < len(argv):
            rest += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("-"):
            if arg.split("=")[0] not in GLOBAL_FLAGS | GLOBAL_VALUE_FLAGS | {"-h", "--help", "--version"}:
                break
            rest.append(arg)
        else:
            positionals.append(arg)
        i += 1
    return positionals, rest + argv[i:]


def _columns(rows: list[tuple[str, str]], width: int) -> list[str]:
    """Name and description, aligned; a third-party plugin's long name still gets a space before its text."""
    width = max([width, *(len(name) + 2 for name, _ in rows)])
    return [f"  {name:<{width}}{text}".rstrip() for name, text in rows]


def top_help(plugins: dict[str, type[Plugin]]) -> str:
    lines = [
        f"usage: {PROG} HYPERVISOR DISTRO [options]",
        "",
        "Build container-safe root filesystems with VMBuilder's command line.",
        "",
    ]
    for kind, title in (("hypervisor", "Hypervisors"), ("distro", "Distros"), ("plugin", "Plugins")):
        found = by_kind(plugins, kind)
        lines.append(f"{title}:")
        lines += _columns([(name, cls.description) for name, cls in found.items()], 12) or ["  (none installed)"]
        lines.append("")
    commands = [
        (f"{hv} {name}", (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        for hv in by_kind(plugins, "hypervisor")
        for name, fn in sorted(commands_for(plugins, hv).items())
    ]
    if commands:
        lines.append("Commands:")
        lines += _columns(commands, 16)
        lines.append("")
    lines += [
        f"Run '{PROG} HYPERVISOR DISTRO --help' for the options, e.g. '{PROG} lxc ubuntu --help'.",
        f"Config files: {SYSTEM_CONFIG}, {USER_CONFIG}, then each -c FILE ([DEFAULT], [HYPERVISOR], [DISTRO]).",
        "",
    ]
    return "\n".join(lines)


def make_context(hypervisor: str, distro: str, plugins: dict[str, type[Plugin]]) -> Context:
    """Instantiate the plugins of a build and collect their settings into one table."""
    from . import compat
    from .context import Context
    from .options import core_settings

    hypervisors, distros = by_kind(plugins, "hypervisor"), by_kind(plugins, "distro")
    if hypervisor not in hypervisors:
        installed = f"installed: {', '.join(hypervisors) or 'none'}"
        raise UserError(f"unknown hypervisor '{hypervisor}'", compat.hypervisor_hint(hypervisor) or installed)
    if distro not in distros:
        raise UserError(f"unknown distro '{distro}'", f"installed: {', '.join(distros) or 'none'}")
    settings = Settings(core_settings(), hypervisor=hypervisor, distro=distro)
    ctx = Context(settings=settings, hypervisor_name=hypervisor, distro_name=distro)
    generic = [
        cls
        for cls in by_kind(plugins, "plugin").values()
        if (cls.hypervisors is None or hypervisor in cls.hypervisors) and (cls.distros is None or distro in cls.distros)
    ]
    # The distro configures the guest first, generic plugins then customise it, the hypervisor
    # writes its files last.
    classes = [distros[distro], *sorted(generic, key=lambda c: (c.priority, c.name)), hypervisors[hypervisor]]
    for cls in classes:
        plugin = cls(ctx)
        try:
            declared = list(plugin.register_options())
        except Exception as exc:
            raise PluginError(cls.name, "register_options", exc) from exc
        for s in declared:
            group = s.group or f"{cls.name} options"
            try:
                settings.add(replace(s, plugin=cls.name, group=group))
            except ValueError as exc:
                raise PluginError(cls.name, "register_options", exc) from exc
        ctx.plugins.append(plugin)
    # Context holds the distro and the hypervisor as fields: `classes` made them first and last.
    distro_plugin, ctx.hypervisor = ctx.plugins[0], ctx.plugins[-1]
    if not isinstance(distro_plugin, Distro):
        raise UserError(f"distro plugin '{distro}' is not a Distro", "subclass vmbuilder_lxc.plugin.Distro")
    ctx.distro = distro_plugin
    return ctx


def build_command_parser(hypervisor: str, distro: str, plugins: dict[str, type[Plugin]]) -> tuple[
    argparse.ArgumentParser, dict[str, Setting]
]:  # fmt: skip
    """The parser of `vmbuilder HV DISTRO` (as cli.configure builds it) and its settings by dest."""
    ctx = make_context(hypervisor, distro, plugins)
    table = list(ctx.settings.table.values())
    return build_parser(f"{PROG} {hypervisor} {distro}", table), {s.dest: s for s in table}


def configure(ctx: Context, rest: list[str]) -> None:
    """Parse options and config files into ctx.settings (precedence: defaults < files < CLI); only
    the value that wins is validated."""
    settings = ctx.settings
    prog = f"{PROG} {ctx.hypervisor_name} {ctx.distro_name}"
    descriptions = " / ".join(f"{p.name}: {p.description}" for p in ctx.plugins if p.kind != "plugin")
    parser = build_parser(prog, settings.table.values(), description=descriptions)
    namespace = parser.parse_args(rest)
    cli_configs = [Path(p) for p in getattr(namespace, "config", None) or []]
    files = [(SYSTEM_CONFIG, False), (USER_CONFIG, False)] + [(p, True) for p in cli_configs]
    used = settings.read_config_files(files)
    settings.apply_cli(namespace)
    level = 2 if settings.get_bool("debug") else 1 if settings.get_bool("verbose") else 0
    setup_logging(level)
    for path in used:
        LOG.debug("read config file %s", path)
    for name, lost, won in settings.overridden:  # only the winner was checked; values are not shown (secrets)
        by = "the command line" if won == "command line" else won
        LOG.debug("'%s' from %s is overridden by %s (not checked)", name, lost, by)
    from .render import Templates

    ctx.templates = Templates([Path(p) for p in settings.get_list("templates")])


def _print_error(message: str, details: list[str] | None = None) -> None:
    LOG.error("%s", one_line(message))  # one line even when it quotes a value with a newline
    for line in details or []:
        print(f"    {line}", file=sys.stderr)


def _atexit_handlers() -> int | None:
    count = getattr(atexit, "_ncallbacks", None)  # CPython's; elsewhere teardown is never skipped
    return int(count()) if callable(count) else None


def _leave(code: int, atexit_before: int | None) -> None:
    """End the process now, without the interpreter's teardown (~20 ms of freeing every module and
    object once the work is done), when nothing relies on that teardown; otherwise return.

    vmbuilder's own cleanup (mounts, locks, staging directories, the reaper) runs in `finally`
    blocks before main() returns. Teardown would not wait for daemon threads either, so only a
    live non-daemon thread or an atexit handler registered during the run (a library's) keeps the
    normal exit, and so does a loaded coverage tool (its handler saves the data). logging's
    atexit handler is run here by hand.
    """
    if atexit_before is None or _atexit_handlers() != atexit_before:
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # a closed pipe: the normal exit reports it as before
        return
    logging.shutdown()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run `vmbuilder ARGS` and return its exit code; run as the program (no argv given), end the
    process once the output is flushed (see _leave)."""
    atexit_before = _atexit_handlers() if argv is None and "coverage" not in sys.modules else None
    code = _run(argv)
    if argv is None:
        _leave(code, atexit_before)
    return code


def _run(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging(2 if "--debug" in args else 1 if {"-v", "--verbose"} & set(args) else 0)
    # Whether errors are reported as JSON too; _main() updates it once config files are read.
    state = {"json": "--json" in args}
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    for sig in INTERRUPT_SIGNALS:
        signal.signal(sig, _raise_interrupt)
    code = 1
    error: str | None = None
    try:
        return _main(args, state)
    except UserError as exc:
        error, code = str(exc), 2
        _print_error(error)
    except PluginError as exc:
        error = str(exc)
        details = exc.original.tail if isinstance(exc.original, CommandError) else None
        if isinstance(exc.original, CommandError) and exc.original.cause:
            error = f"{exc.original.cause}; {error}"
        _print_error(error, details)
        if "--debug" in args:
            traceback.print_exception(exc.original)
        else:
            print("    (run with --debug for the traceback)", file=sys.stderr)
    except CommandError as exc:
        error = f"{exc.cause}; {exc}" if exc.cause else str(exc)
        _print_error(error, exc.tail)
        if "--debug" not in args:
            print("    (run with --debug to see the full output)", file=sys.stderr)
    except BuildError as exc:
        error = str(exc)
        _print_error(error)
    except KeyboardInterrupt as exc:
        code = interrupt_exit_code(exc)
        signame = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT"
        left = exc.state if isinstance(exc, BuildInterrupted) else "nothing was built"
        error = f"interrupted by {signame}; {left}"
        _print_error(error)
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0)
    except Exception as exc:  # a bug in vmbuilder-lxc itself
        error = f"internal error: {type(exc).__name__}: {exc}"
        _print_error(error)
        if "--debug" in args:
            traceback.print_exception(exc)
        else:
            print("    (please report this; run with --debug for the traceback)", file=sys.stderr)
    if state["json"]:
        print(json.dumps({"status": "error", "error": error, "exit_code": code}))
    return code


def _main(args: list[str], state: dict[str, bool]) -> int:
    if "--version" in args:
        print(f"{PROG} (vmbuilder-lxc) {__version__}")
        return 0
    positionals, rest = split_argv(args)
    if len(positionals) == 2 and (command := builtin_command(*positionals)) is not None:
        return command(rest)  # `lxc export` and the like: only their own plugin is loaded
    plugins = discover()
    if len(positionals) < 2:
        if {"-h", "--help"} & set(rest) or not args:
            print(top_help(plugins), end="")
            return 0 if args else 2
        if positionals and positionals[0] in by_kind(plugins, "hypervisor"):
            raise UserError(
                f"missing DISTRO after '{positionals[0]}'",
                f"installed distros: {', '.join(by_kind(plugins, 'distro'))}",
            )
        raise UserError("missing HYPERVISOR and DISTRO", f"usage: {PROG} HYPERVISOR DISTRO [options]")
    commands = commands_for(plugins, positionals[0])
    if positionals[1] in commands and positionals[1] not in by_kind(plugins, "distro"):
        return commands[positionals[1]](rest)
    ctx = make_context(positionals[0], positionals[1], plugins)
    configure(ctx, rest)
    state["json"] = ctx.settings.get_bool("json")
    for plugin in ctx.plugins:
        report = call_report(plugin)
        if report is not None:
            print(report, end="" if report.endswith("\n") else "\n")
            return 0
    from . import pipeline

    summary = pipeline.build(ctx)
    if state["json"]:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        for line in pipeline.summary_lines(ctx):
            LOG.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
