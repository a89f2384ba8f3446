"""The VMBuilder upgrade path: the option table agrees with our real settings table, VMBuilder-only
options are one-line errors that say what to do (command line and config files), and the example
/etc/vmbuilder.cfg changes nothing until a line is uncommented.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Plugins
from tests.unit.test_cli import error_line
from vmbuilder_lxc import cli, compat, pipeline, upgrading
from vmbuilder_lxc.cliparse import build_parser
from vmbuilder_lxc.compat import GONE, VMBUILDER_OPTIONS, lookup, vmbuilder_only
from vmbuilder_lxc.docgen import GENERATORS, doc_path
from vmbuilder_lxc.log import UserError, setup_logging
from vmbuilder_lxc.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / doc_path("vmbuilder.cfg")
ARCH = ("--arch", "amd64")  # keeps the default from running dpkg --print-architecture


@pytest.fixture(autouse=True)
def no_build(monkeypatch: pytest.MonkeyPatch, no_host_config: Path) -> None:
    def tripwire(ctx: Any) -> dict[str, Any]:
        raise AssertionError("the build was reached")

    monkeypatch.setattr(pipeline, "build", tripwire)


def our_flags(plugins: Plugins, distro: str = "ubuntu") -> set[str]:
    """Every option `vmbuilder lxc DISTRO` accepts: the generated parser's, plus --version."""
    ctx = cli.make_context("lxc", distro, plugins)
    parser = build_parser("vmbuilder", ctx.settings.table.values())
    return {flag for action in parser._actions for flag in action.option_strings} | {"--version"}


GONE_FLAGS = [flag for entry in VMBUILDER_OPTIONS if entry.status in GONE for flag in entry.flags]
GONE_KEYS = [e.name.removeprefix("--") for e in VMBUILDER_OPTIONS if e.status in GONE and e.name.startswith("--")]


# -- the table against our settings table -----------------------------------------------------------


@pytest.mark.parametrize("distro", ["ubuntu", "debian"])
def test_same_and_changed_options_exist_here(plugins: Plugins, distro: str) -> None:
    ours = our_flags(plugins, distro)
    missing = [f for e in VMBUILDER_OPTIONS if e.status in ("same", "changed") for f in e.flags if f not in ours]
    assert missing == []


@pytest.mark.parametrize("distro", ["ubuntu", "debian"])
def test_replaced_options_name_an_option_of_ours(plugins: Plugins, distro: str) -> None:
    ours = our_flags(plugins, distro)
    for entry in VMBUILDER_OPTIONS:
        if entry.status == "replaced":
            assert entry.ours in ours, entry
            assert not set(entry.flags) & ours, entry


@pytest.mark.parametrize("distro", ["ubuntu", "debian"])
def test_options_that_do_not_exist_here_are_not_options_or_keys_of_ours(plugins: Plugins, distro: str) -> None:
    ctx = cli.make_context("lxc", distro, plugins)
    ours = our_flags(plugins, distro)
    assert sorted(set(GONE_FLAGS) & ours) == []
    assert [key for key in GONE_KEYS if ctx.settings.lookup(key) is not None] == []


def test_every_flag_is_listed_once_and_found_in_every_spelling() -> None:
    flags = [flag for entry in VMBUILDER_OPTIONS for flag in entry.flags]
    assert len(flags) == len(set(flags))
    for entry in VMBUILDER_OPTIONS:
        for flag in entry.flags:
            assert lookup(flag) is entry
    assert lookup("kernel_flavour") is lookup("--flavour")
    assert lookup("Install_Mirror") is lookup("--install-mirror")
    assert lookup("-m512") is lookup("-m")
    assert lookup("--no-such-option") is None
    assert vmbuilder_only("suite") is None  # ours too: never reported as a VMBuilder option
    assert vmbuilder_only("rootsize") is lookup("--rootsize")


def test_the_table_covers_vmbuilders_plugins_and_statuses() -> None:
    assert {e.source for e in VMBUILDER_OPTIONS} == set(compat.SOURCES)
    assert {e.status for e in VMBUILDER_OPTIONS} == set(compat.STATUSES)
    for name in ("--rootsize", "--part", "--ppa", "--firstlogin", "--kernel-flavour", "--mem", "-m", "--ec2"):
        assert lookup(name) is not None, name


def test_entries_are_checked_when_declared() -> None:
    with pytest.raises(ValueError):
        compat.VMBuilderOption(("--x",), "cli", "did", "unsupported")  # no fix
    with pytest.raises(ValueError):
        compat.VMBuilderOption(("--x",), "nowhere", "did", "same")
    with pytest.raises(ValueError):
        compat.VMBuilderOption(("--x",), "cli", "did", "not applicable", "why", "fix")  # no area


def test_version_is_an_option_of_ours(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert "vmbuilder-lxc" in capsys.readouterr().out


# -- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", GONE_FLAGS)
def test_a_vmbuilder_only_option_is_a_one_line_error_with_the_fix(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    assert cli.main(["lxc", "ubuntu", *ARCH, flag, "VALUE"]) == 2
    entry = lookup(flag)
    assert entry is not None
    message, fix = entry.problem(flag)
    assert error_line(capsys) == f"{message}; {fix}"
    assert message.startswith(f"{flag} is a VMBuilder ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--rootsize=8192"], "--rootsize is a VMBuilder disk-image option; containers have no disk image: drop it"),
        (["-m512"], "-m is a VMBuilder option, replaced by --mem; a memory limit in MB (or 2G), not the guest's RAM"),
        (["extra", "--ppa", "x"], "--ppa is a VMBuilder option that vmbuilder-lxc does not support; add the PPA"),
        (["--lock-user"], "--lock-user is a VMBuilder user option; the initial user's password is already locked"),
        (["--existing-chroot", "/srv/c"], "--existing-chroot is a VMBuilder option, replaced by --from-template; "),
    ],
)
def test_error_lines_for_typical_vmbuilder_command_lines(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert cli.main(["lxc", "ubuntu", *ARCH, *argv]) == 2
    assert error_line(capsys).startswith(expected)


def test_the_json_error_names_the_vmbuilder_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lxc", "ubuntu", "--json", "--swapsize", "1024"]) == 2
    out = capsys.readouterr().out
    assert '"exit_code": 2' in out and "--swapsize is a VMBuilder disk-image option" in out


def test_other_unknown_options_keep_the_close_match_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lxc", "ubuntu", "--hostnme", "x"]) == 2
    assert error_line(capsys).startswith("unrecognized arguments: --hostnme x; did you mean --hostname?")


# -- config files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["ubuntu", "lxc"])
@pytest.mark.parametrize("key", ["rootsize", "ppa", "kernel_flavour", "lock-user", "existing-chroot"])
def test_a_vmbuilder_only_key_in_a_section_is_an_error_with_the_fix(
    plugins: Plugins, tmp_path: Path, section: str, key: str
) -> None:
    cfg = tmp_path / "old.cfg"
    cfg.write_text(f"[{section}]\n{key} = 1\n")
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    with pytest.raises(UserError) as err:
        cli.configure(ctx, ["-c", str(cfg), *ARCH])
    entry = vmbuilder_only(key)
    assert entry is not None
    assert (err.value.message, err.value.hint) == entry.problem(f"'{key}' in {cfg} [{section}]")
    assert err.value.message.startswith(f"'{key}' in {cfg} [{section}] is a VMBuilder ")


def test_a_vmbuilder_only_key_in_a_section_stops_the_command_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "old.cfg"
    cfg.write_text("[ubuntu]\nsuite = noble\nswapsize = 2048\n")
    assert cli.main(["lxc", "ubuntu", "-c", str(cfg), *ARCH]) == 2
    assert error_line(capsys) == (
        f"'swapsize' in {cfg} [ubuntu] is a VMBuilder disk-image option; containers have no swap partition: "
        "the host's swap and the memory cgroup apply: drop it"
    )


def test_a_vmbuilder_only_key_in_default_is_a_warning_with_the_fix(
    plugins: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[DEFAULT] may be shared with VMBuilder itself: warn, say what to do, and go on."""
    setup_logging(0)
    cfg = tmp_path / "old.cfg"
    cfg.write_text("[DEFAULT]\nrootsize = 8192\nuser = ops\n[kvm]\nmem = 512\n")
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    cli.configure(ctx, ["-c", str(cfg), *ARCH])
    assert ctx.settings["user"] == "ops"
    assert ctx.settings["mem"] is None  # VMBuilder's [kvm] section is not ours: not read
    err = capsys.readouterr().err
    assert (
        f"vmbuilder: warning: {cfg} [DEFAULT]: unknown key 'rootsize' ignored ('rootsize' is a VMBuilder "
        "disk-image option; containers have no disk image: drop it)"
    ) in err


# -- the example /etc/vmbuilder.cfg ------------------------------------------------------------------------


def test_the_example_config_is_generated_into_docs() -> None:
    assert "vmbuilder.cfg" in GENERATORS
    assert EXAMPLE.read_text() == GENERATORS["vmbuilder.cfg"]()


def test_the_example_config_changes_nothing(plugins: Plugins) -> None:
    text = EXAMPLE.read_text()
    assert all(not line or line.startswith("#") for line in text.splitlines())
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    settings: Settings = ctx.settings
    assert settings.read_config_files([(EXAMPLE, True)]) == [EXAMPLE]
    assert [name for name in settings.table if settings.explicit(name)] == []
    assert settings._values == {}  # not even a default was touched


def test_the_example_config_names_every_key_with_its_default(plugins: Plugins, tmp_path: Path) -> None:
    """Uncommented, every key line with a value is valid and sets exactly the documented default."""
    text = EXAMPLE.read_text()
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    table = ctx.settings.table
    keys = re.findall(r"^#([a-z0-9-]+) =", text, re.M)
    assert sorted(keys) == sorted(name for name, s in table.items() if s.in_config)
    sections = re.findall(r"^#\[(\w+)\]$", text, re.M)
    assert sections == ["DEFAULT", "lxc", "ubuntu"]
    uncommented = re.sub(r"^#(\[\w+\]|[a-z0-9-]+ = \S.*)$", r"\1", text, flags=re.M)
    cfg = tmp_path / "uncommented.cfg"
    cfg.write_text(uncommented)
    fresh = cli.make_context("lxc", "ubuntu", plugins).settings
    fresh.read_config_files([(cfg, True)])
    set_keys = [name for name in table if fresh.explicit(name)]
    assert set_keys, "the example shows no default values"
    for name in set_keys:
        default = table[name].default
        assert not callable(default)
        assert fresh[name] == default, name


# -- the examples in docs/upgrading.md ----------------------------------------------------------------------


@pytest.fixture
def example_files(tmp_path: Path) -> dict[str, str]:
    """The files the examples name, so that their validators pass."""
    key = tmp_path / "ops.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK6p0bKXZ3pN3a4V0n0b9fM1mQ8bXK3gHhJ0b9uX0m1z ops@example\n")
    script = tmp_path / "add-nginx-ppa.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return {"/etc/vmbuilder/ops.pub": str(key), "~/.ssh/id_ed25519.pub": str(key),
            "/etc/vmbuilder/add-nginx-ppa.sh": str(script)}  # fmt: skip


def _substitute(text: str, files: dict[str, str]) -> str:
    for old, new in files.items():
        text = text.replace(old, new)
    return text


def test_the_migrated_config_is_accepted_and_the_old_one_is_not(
    plugins: Plugins, tmp_path: Path, example_files: dict[str, str]
) -> None:
    new = tmp_path / "new.cfg"
    new.write_text(_substitute(upgrading.NEW_CONFIG, example_files))
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    cli.configure(ctx, ["-c", str(new)])
    s = ctx.settings
    assert (s["suite"], s["mem"], s["cpus"], s["libvirt"], s["addpkg"]) == ("noble", 1024, 2, "lxc:///", ["nginx"])
    old = tmp_path / "old.cfg"
    old.write_text(upgrading.OLD_CONFIG)
    with pytest.raises(UserError, match=r"^'ppa' in .* \[ubuntu\] is a VMBuilder option that vmbuilder-lxc does not"):
        cli.configure(cli.make_context("lxc", "ubuntu", plugins), ["-c", str(old)])


def test_the_migrated_command_is_accepted_and_the_old_one_is_not(
    plugins: Plugins, example_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    new = _substitute(upgrading.NEW_COMMAND, example_files).replace("\\\n", " ").split()
    assert new[:3] == ["vmbuilder", "lxc", "ubuntu"]
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    cli.configure(ctx, new[3:])
    assert (ctx.settings["hostname"], ctx.settings["libvirt"]) == ("web1", "lxc:///")
    old = upgrading.OLD_COMMAND.replace("\\\n", " ").split()
    assert old[:3] == ["vmbuilder", "kvm", "ubuntu"]
    assert cli.main(["lxc", "ubuntu", *old[3:]]) == 2
    assert error_line(capsys).startswith("--rootsize is a VMBuilder disk-image option")
