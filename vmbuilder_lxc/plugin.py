"""The plugin API and registry.

Plugins are classes of three kinds: a hypervisor (`lxc`), a distro (`ubuntu`) and generic plugins
that take part in every build they apply to. Built-in ones and third-party ones are both found
through the `vmbuilder_lxc.plugins` entry-point group; the built-ins are also listed here so that
a copy that is not installed through pip (a Debian package built without entry points, say) works.

Hook names follow VMBuilder: register_options, set_defaults, preflight_check, configure_os,
post_install, finalize, deploy. An exception inside a hook is re-raised as PluginError naming the
plugin and the hook: it is never swallowed (VMBuilder's call_hooks caught AttributeError).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .log import UserError
from .settings import Setting, Settings

if TYPE_CHECKING:
    from .context import Context
    from .plugintypes import BuildPlugin
    from .run import CommandResult

ENTRY_POINT_GROUP = "vmbuilder_lxc.plugins"
BUILTIN_PLUGINS = {
    "lxc": "vmbuilder_lxc.plugins.lxc:LXC",
    "ubuntu": "vmbuilder_lxc.plugins.ubuntu:Ubuntu",
    "debian": "vmbuilder_lxc.plugins.debian:Debian",
    "postinst": "vmbuilder_lxc.plugins.postinst:PostInst",
    "libvirt": "vmbuilder_lxc.plugins.libvirt:Libvirt",
    "export": "vmbuilder_lxc.plugins.export:Export",
    "doctor": "vmbuilder_lxc.plugins.doctor:Doctor",
    "cache": "vmbuilder_lxc.plugins.cache:Cache",
    "publish": "vmbuilder_lxc.plugins.publish:Publish",
}
KINDS = ("hypervisor", "distro", "plugin")
# The built-in commands, `vmbuilder HYPERVISOR COMMAND`, by the built-in plugin that provides each
# (test_plugin checks this against the plugins' own `commands`): while no third-party plugin is
# installed, builtin_command() loads that one plugin instead of every plugin.
BUILTIN_COMMANDS = {
    "lxc": {"export": "export", "validate": "libvirt", "doctor": "doctor", "cache": "cache", "publish": "publish"}
}


class PluginError(Exception):
    """An exception raised inside a plugin hook, with the plugin's name attached."""

    def __init__(self, plugin: str, hook: str, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        super().__init__(f"plugin '{plugin}' failed in {hook}(){where}: {type(exc).__name__}: {exc}")
        self.plugin = plugin
        self.hook = hook
        self.original = exc


class Plugin:
    """Base class of every plugin. Subclasses set `name`, `kind` and `description`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "plugin"
    description: ClassVar[str] = ""
    priority: ClassVar[int] = 50
    # Generic plugins may restrict themselves to some hypervisors or distros (None: all).
    hypervisors: ClassVar[tuple[str, ...] | None] = None
    distros: ClassVar[tuple[str, ...] | None] = None
    # Extra commands, `vmbuilder HYPERVISOR COMMAND ARGS`: name -> a staticmethod taking the
    # remaining arguments and returning the exit code (e.g. libvirt's `validate`).
    commands: ClassVar[dict[str, str]] = {}

    def __init__(self, context: Context) -> None:
        self.context = context

    # -- hooks (all optional) -------------------------------------------------------------------

    def register_options(self) -> Sequence[Setting]:
        """The settings this plugin declares; they become CLI flags and config keys."""
        return ()

    def set_defaults(self) -> None:
        """Adjust defaults once all settings are known (VMBuilder hook)."""

    def preflight_check(self) -> None:
        """Refuse bad input before any slow work; raise UserError via die()."""

    def report(self) -> str | None:
        """Text to print instead of building (e.g. --list-suites); None to build."""
        return None

    def configure_os(self) -> None:
        """Configure the guest inside the chroot (the build mounts are active)."""

    def post_install(self) -> None:
        """Last changes to the guest after the chroot mounts are gone."""

    def finalize(self) -> None:
        """Write files beside the rootfs (e.g. the LXC config) before it is moved into place."""

    def deploy(self) -> None:
        """Act on the finished destination (register it somewhere)."""

    def next_steps(self) -> list[str]:
        """Lines telling the user how to use the result (printed after a build)."""
        return []

    # -- helpers for plugins (VMBuilder names) -------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.context.settings

    def install_file(self, path: str, contents: str, mode: int = 0o644) -> Path:
        """Write a file into the guest (path is absolute inside the guest)."""
        return self.context.install_file(path, contents, mode)

    def install_from_template(
        self, path: str, template: str, extra: dict[str, Any] | None = None, mode: int = 0o644
    ) -> Path:
        """Render a template (searched on the --templates path) into the guest."""
        return self.context.install_file(path, self.context.render(template, extra), mode)

    def run_in_target(self, *argv: str, input: str | None = None) -> CommandResult:
        """Run a command inside the guest's chroot."""
        return self.context.run_in_target(*argv, input=input)


class Hypervisor(Plugin):
    kind: ClassVar[str] = "hypervisor"


class Distro(Plugin):
    kind: ClassVar[str] = "distro"

    def bootstrap(self) -> None:
        """Put a base system into context.rootfs (from the cache when possible)."""
        raise NotImplementedError


def _load(spec: str) -> type[Plugin]:
    module_name, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(obj, type) and issubclass(obj, Plugin)) or obj.kind not in KINDS or not obj.name:
        raise TypeError(f"{spec} is not a vmbuilder_lxc Plugin class with a name and kind")
    return obj


def _load_named(name: str, spec: str) -> type[Plugin]:
    try:
        cls = _load(spec)
    except Exception as exc:  # noqa: BLE001 - reported with the plugin's name
        raise UserError(
            f"plugin '{name}' ({spec}) cannot be loaded: {type(exc).__name__}: {exc}",
            "fix or uninstall that plugin",
        ) from exc
    if cls.name != name:
        raise UserError(
            f"plugin entry point '{name}' loads a plugin that calls itself '{cls.name}'",
            "make the entry-point name match the plugin's name",
        )
    return cls


def discover() -> dict[str, type[Plugin]]:
    """All installed plugins by name. A plugin that fails to load is an error naming it."""
    specs: dict[str, str] = dict(BUILTIN_PLUGINS)
    if not only_builtin_plugins():  # importlib.metadata only when a third-party plugin may be there
        from importlib import metadata

        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in BUILTIN_PLUGINS and ep.value != BUILTIN_PLUGINS[ep.name]:
                raise UserError(
                    f"plugin entry point '{ep.name} = {ep.value}' clashes with the built-in plugin",
                    "rename the third-party plugin",
                )
            specs[ep.name] = ep.value
    return {name: _load_named(name, spec) for name, spec in specs.items()}


def _declares_only_builtins(text: str) -> bool:
    """Whether an entry_points.txt declares no plugin but the built-ins (with their own values)."""
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == ENTRY_POINT_GROUP:
            name, sep, value = line.partition("=")
            if not sep or BUILTIN_PLUGINS.get(name.strip()) != value.strip():
                return False
    return True


def only_builtin_plugins() -> bool:
    """Whether no third-party plugin is installed, read from the entry_points.txt files on sys.path.

    Importing importlib.metadata costs ~25 ms of CPU, as long as the rest of `vmbuilder lxc export`'s
    start; this reads the same files and is conservative: a path entry it cannot list as a directory
    (a zip), a file it cannot read or a distribution finder other than the standard one counts as
    a third-party plugin, and the caller then discovers plugins the full way.
    """
    if os.environ.get("VMBUILDER_NO_ENTRY_POINTS") == "1":
        return True
    from importlib.machinery import PathFinder

    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return False
    for entry in sys.path:
        directory = entry or "."
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeError):
                return False
            if ENTRY_POINT_GROUP in text and not _declares_only_builtins(text):
                return False
    return True


def builtin_command(hypervisor: str, command: str) -> Callable[[list[str]], int] | None:
    """`vmbuilder HYPERVISOR COMMAND`'s function when it is a built-in command and no third-party
    plugin could add or override anything (the same one commands_for() finds then), loading only
    the plugin that provides it; None otherwise."""
    name = BUILTIN_COMMANDS.get(hypervisor, {}).get(command)
    if name is None or not only_builtin_plugins():
        return None
    cls = _load_named(name, BUILTIN_PLUGINS[name])
    function: Callable[[list[str]], int] = getattr(cls, cls.commands[command])
    return function


def by_kind(plugins: dict[str, type[Plugin]], kind: str) -> dict[str, type[Plugin]]:
    return {n: c for n, c in sorted(plugins.items()) if c.kind == kind}


def call_hook(plugins: Sequence[BuildPlugin], hook: str, *args: Any) -> None:
    """Call `hook` on each plugin in order; wrap unexpected exceptions with the plugin's name."""
    for plugin in plugins:
        fn = getattr(plugin, hook)
        try:
            fn(*args)
        except (UserError, KeyboardInterrupt, PluginError):
            raise
        except Exception as exc:
            raise PluginError(plugin.name, hook, exc) from exc


def commands_for(plugins: dict[str, type[Plugin]], hypervisor: str) -> dict[str, Callable[[list[str]], int]]:
    """The extra commands available under `vmbuilder HYPERVISOR`, from every plugin that applies."""
    found: dict[str, Callable[[list[str]], int]] = {}
    for cls in plugins.values():
        if cls.kind == "hypervisor" and cls.name != hypervisor:
            continue
        if cls.kind != "hypervisor" and cls.hypervisors is not None and hypervisor not in cls.hypervisors:
            continue
        for command, attr in cls.commands.items():
            found[command] = getattr(cls, attr)
    return found


def command_parsers(plugins: dict[str, type[Plugin]], hypervisor: str) -> dict[str, argparse.ArgumentParser]:
    """`vmbuilder HV COMMAND`'s parsers: a command method NAME_command has its parser in NAME_parser()."""
    found: dict[str, argparse.ArgumentParser] = {}
    functions = commands_for(plugins, hypervisor)
    for cls in plugins.values():
        for command, attr in cls.commands.items():
            builder = getattr(cls, attr.removesuffix("_command") + "_parser", None)
            if functions.get(command) is getattr(cls, attr) and builder is not None:
                found[command] = builder()
    return dict(sorted(found.items()))


def call_report(plugin: BuildPlugin) -> str | None:
    """The plugin's report hook, with errors named after the plugin as call_hook does."""
    try:
        return plugin.report()
    except (UserError, KeyboardInterrupt, PluginError):
        raise
    except Exception as exc:
        raise PluginError(plugin.name, "report", exc) from exc
