"""The plugin registry: third-party plugins through real entry points, and errors that name the plugin."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Plugins
from vmbuilder_lxc import cli, pipeline
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.plugin import (
    BUILTIN_PLUGINS,
    Distro,
    Hypervisor,
    Plugin,
    PluginError,
    by_kind,
    call_hook,
    discover,
)
from vmbuilder_lxc.settings import Settings

HELLO = '''\
"""A third-party plugin, installed separately from vmbuilder-lxc."""

from vmbuilder_lxc.plugin import Plugin
from vmbuilder_lxc.settings import Setting


class Hello(Plugin):
    name = "hello"
    description = "greets the guest (third-party example)"

    def register_options(self):
        return [Setting("greeting", "text written to /etc/motd", default="hello")]
'''

Installer = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    """Install a package plus a dist-info with entry points into a directory on sys.path."""
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("VMBUILDER_NO_ENTRY_POINTS", raising=False)

    def installer(module: str, source: str, entry_points: str, dist: str = "thirdparty_plugin") -> None:
        package = tmp_path / module
        package.mkdir()
        (package / "__init__.py").write_text(source)
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[vmbuilder_lxc.plugins]\n{entry_points}\n")
        modules.append(module)

    yield installer
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture
def hello(install: Installer) -> None:
    install("thirdparty_plugin", HELLO, "hello = thirdparty_plugin:Hello")


# -- third-party plugins ----------------------------------------------------------------------------


def test_builtins_are_discovered(plugins: Plugins) -> None:
    assert set(BUILTIN_PLUGINS) <= set(plugins)
    assert issubclass(plugins["lxc"], Hypervisor)
    assert issubclass(plugins["ubuntu"], Distro)
    assert "postinst" in by_kind(plugins, "plugin")


def test_builtins_without_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy installed without entry points (a Debian package, say) still has its plugins."""
    monkeypatch.setenv("VMBUILDER_NO_ENTRY_POINTS", "1")
    assert set(discover()) == set(BUILTIN_PLUGINS)


def test_third_party_plugin_is_discovered(hello: None) -> None:
    found = discover()
    assert "hello" in found
    assert found["hello"].kind == "plugin"
    assert found["hello"].__module__ == "thirdparty_plugin"


def test_third_party_plugin_in_top_level_help(
    hello: None, no_host_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--help"]) == 0
    plugins = capsys.readouterr().out.split("Plugins:")[1]
    assert "hello" in plugins and "greets the guest (third-party example)" in plugins


def test_third_party_option_in_build_help(
    hello: None, no_host_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["lxc", "ubuntu", "--help"]) == 0
    out = capsys.readouterr().out
    assert "\nhello options (hello):\n" in out
    assert "--greeting GREETING" in out


def test_third_party_option_is_a_setting_and_config_key(
    hello: None, no_host_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_host_config / ".vmbuilder.cfg").write_text("[DEFAULT]\ngreeting = moin\n")
    ctx = cli.make_context("lxc", "ubuntu", discover())
    cli.configure(ctx, ["--arch", "amd64"])
    assert ctx.settings["greeting"] == "moin"
    names = ["ubuntu", "cache", "doctor", "hello", "libvirt", "postinst", "export", "publish", "lxc"]
    assert [p.name for p in ctx.plugins] == names


def test_third_party_plugin_may_restrict_itself(install: Installer) -> None:
    install(
        "debian_only",
        HELLO.replace('name = "hello"', 'name = "debonly"\n    distros = ("debian",)'),
        "debonly = debian_only:Hello",
        dist="debian_only",
    )
    ctx = cli.make_context("lxc", "ubuntu", discover())
    assert "debonly" not in [p.name for p in ctx.plugins]
    assert "greeting" not in ctx.settings.table


def test_plugin_that_fails_to_import_is_named(install: Installer, no_host_config: Path) -> None:
    install("broken_plugin", "raise ImportError('needs libfoo')\n", "broken = broken_plugin:Broken", dist="broken")
    with pytest.raises(UserError) as err:
        discover()
    assert err.value.message.startswith("plugin 'broken' (broken_plugin:Broken) cannot be loaded: ImportError")
    assert "needs libfoo" in err.value.message
    assert err.value.hint == "fix or uninstall that plugin"


def test_broken_plugin_is_a_one_line_cli_error(
    install: Installer, no_host_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install("broken_plugin", "1/0\n", "broken = broken_plugin:Broken", dist="broken")
    assert cli.main(["lxc", "ubuntu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plugin 'broken'" in err and "ZeroDivisionError" in err


def test_entry_point_to_something_that_is_not_a_plugin(install: Installer) -> None:
    install("notaplugin", "class Thing:\n    pass\n", "thing = notaplugin:Thing", dist="notaplugin")
    with pytest.raises(UserError, match="plugin 'thing' .* is not a vmbuilder_lxc Plugin class"):
        discover()


@pytest.mark.parametrize("builtin", ["lxc", "ubuntu", "postinst"])
def test_name_clash_with_a_builtin_is_refused(install: Installer, builtin: str) -> None:
    """A third-party package must not silently replace a built-in plugin."""
    install("thirdparty_plugin", HELLO, f"{builtin} = thirdparty_plugin:Hello")
    with pytest.raises(UserError) as err:
        discover()
    assert f"'{builtin} = thirdparty_plugin:Hello' clashes with the built-in plugin" in err.value.message


def test_entry_point_name_must_match_the_plugin_name(install: Installer) -> None:
    install("thirdparty_plugin", HELLO, "greeter = thirdparty_plugin:Hello")
    with pytest.raises(UserError, match="'greeter' loads a plugin that calls itself 'hello'"):
        discover()


def test_option_clash_names_both_plugins(install: Installer) -> None:
    install("thirdparty_plugin", HELLO.replace('"greeting"', '"hostname"'), "hello = thirdparty_plugin:Hello")
    with pytest.raises(PluginError) as err:
        cli.make_context("lxc", "ubuntu", discover())
    assert err.value.plugin == "hello"
    assert "--hostname is declared by both ubuntu and hello" in str(err.value)


# -- hooks ----------------------------------------------------------------------------------------------


class Boom(Plugin):
    name = "boom"
    calls: list[str] = []

    def set_defaults(self) -> None:
        self.calls.append(self.name)
        empty: dict[str, str] = {}
        empty["missing"]  # noqa: B018 - a bug in a plugin

    def preflight_check(self) -> None:
        raise UserError("bad input", "fix it")


class Quiet(Plugin):
    name = "quiet"

    def set_defaults(self) -> None:
        Boom.calls.append(self.name)


@pytest.fixture
def ctx() -> Context:
    return Context(settings=Settings([]), hypervisor_name="lxc", distro_name="ubuntu")


def test_exception_in_a_hook_names_the_plugin_and_hook(ctx: Context) -> None:
    Boom.calls.clear()
    with pytest.raises(PluginError) as err:
        call_hook([Quiet(ctx), Boom(ctx), Quiet(ctx)], "set_defaults")
    assert Boom.calls == ["quiet", "boom"]  # stops at the failing plugin
    assert err.value.plugin == "boom"
    assert err.value.hook == "set_defaults"
    assert isinstance(err.value.original, KeyError)
    message = str(err.value)
    assert message.startswith("plugin 'boom' failed in set_defaults() at test_plugin.py:")
    assert message.endswith("KeyError: 'missing'")
    assert err.value.__cause__ is err.value.original


def test_user_errors_pass_through_hooks_unchanged(ctx: Context) -> None:
    with pytest.raises(UserError) as err:
        call_hook([Boom(ctx)], "preflight_check")
    assert str(err.value) == "bad input; fix it"


def test_keyboard_interrupt_passes_through_hooks(ctx: Context) -> None:
    class Interrupted(Plugin):
        name = "interrupted"

        def configure_os(self) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_hook([Interrupted(ctx)], "configure_os")


def test_attribute_error_inside_a_hook_is_not_swallowed(ctx: Context) -> None:
    """VMBuilder's call_hooks caught AttributeError and so hid real bugs in plugins."""

    class Typo(Plugin):
        name = "typo"

        def finalize(self) -> None:
            self.settings.no_such_method()  # type: ignore[attr-defined]  # the bug under test

    with pytest.raises(PluginError, match="plugin 'typo' failed in finalize\\(\\).*AttributeError"):
        call_hook([Typo(ctx)], "finalize")


def test_hooks_are_optional(ctx: Context) -> None:
    plugin = Plugin(ctx)
    for hook in ("set_defaults", "preflight_check", "configure_os", "post_install", "finalize", "deploy"):
        call_hook([plugin], hook)
    assert plugin.register_options() == ()


def test_register_options_failure_names_the_plugin(install: Installer) -> None:
    install(
        "thirdparty_plugin",
        HELLO.replace('return [Setting("greeting"', 'return [Setting("Bad Name"'),
        "hello = thirdparty_plugin:Hello",
    )
    with pytest.raises(PluginError) as err:
        cli.make_context("lxc", "ubuntu", discover())
    assert (err.value.plugin, err.value.hook) == ("hello", "register_options")


def test_plugin_errors_from_main_are_reported_briefly(
    no_host_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def build(ctx: Any) -> dict[str, Any]:
        call_hook([Boom(ctx)], "set_defaults")
        return {}

    monkeypatch.setattr(pipeline, "build", build)
    assert cli.main(["lxc", "ubuntu", "--arch", "amd64"]) == 1
    err = capsys.readouterr().err
    assert "vmbuilder: error: plugin 'boom' failed in set_defaults()" in err
    assert "Traceback" not in err
    assert "(run with --debug for the traceback)" in err
