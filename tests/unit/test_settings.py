"""The settings table: precedence of defaults, config files and the command line, and value parsing.

Config files live in a pyfakefs file system; the settings table is the real one that
`vmbuilder lxc ubuntu` generates (cli.make_context + cli.configure), so a plugin that changes a
setting's type or name is caught here.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ContextFactory
from vmbuilder_lxc import cli
from vmbuilder_lxc.cliparse import build_parser
from vmbuilder_lxc.log import UserError, setup_logging
from vmbuilder_lxc.settings import Setting, Settings, parse_bool, split_list

HOME = "/home/tester"
SYSTEM = "/etc/vmbuilder.cfg"
USER = f"{HOME}/.vmbuilder.cfg"
ARCH = ("--arch", "amd64")  # keeps the default from running dpkg --print-architecture


@pytest.fixture
def cfs(fake_fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> FakeFilesystem:
    """A fake file system with a HOME directory and no config files yet."""
    fake_fs.create_dir(HOME)
    monkeypatch.setenv("HOME", HOME)
    return fake_fs


# -- precedence -------------------------------------------------------------------------------------


def test_defaults_apply_without_any_config_file(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """Missing /etc/vmbuilder.cfg and ~/.vmbuilder.cfg are not errors."""
    s = make_ctx(*ARCH).settings
    assert s["suite"] == "lts"
    assert s.source("suite") == "default"
    assert not s.explicit("suite")
    assert s["cache-max-age"] == 7
    assert s["components"] == ["main", "restricted", "universe"]


def test_system_config_overrides_the_default(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nsuite = jammy\n")
    s = make_ctx(*ARCH).settings
    assert s["suite"] == "jammy"
    assert s.source("suite") == f"{SYSTEM} [ubuntu]"
    assert s.explicit("suite")


def test_user_config_overrides_the_system_config(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nsuite = focal\nuser = admin\n")
    cfs.create_file(USER, contents="[ubuntu]\nsuite = jammy\n")
    s = make_ctx(*ARCH).settings
    assert s["suite"] == "jammy"
    assert s["user"] == "admin"  # keys the user file does not set still come from /etc


def test_dash_c_files_override_user_config_in_order(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(USER, contents="[ubuntu]\nsuite = focal\nuser = fromhome\n")
    cfs.create_file("/srv/one.cfg", contents="[ubuntu]\nsuite = jammy\nhostname = one\n")
    cfs.create_file("/srv/two.cfg", contents="[ubuntu]\nsuite = noble\n")
    s = make_ctx(*ARCH, "-c", "/srv/one.cfg", "--config", "/srv/two.cfg").settings
    assert s["suite"] == "noble"
    assert s["hostname"] == "one"
    assert s["user"] == "fromhome"


def test_command_line_overrides_every_config_file(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nsuite = focal\n")
    cfs.create_file(USER, contents="[ubuntu]\nsuite = jammy\n")
    cfs.create_file("/srv/one.cfg", contents="[ubuntu]\nsuite = noble\n")
    s = make_ctx(*ARCH, "-c", "/srv/one.cfg", "--suite", "resolute").settings
    assert s["suite"] == "resolute"
    assert s.source("suite") == "command line"


@pytest.mark.parametrize(
    ("section", "config", "argv", "name", "expected"),
    [
        ("ubuntu", "suite = jammy", ["--suite", "lts"], "suite", "lts"),
        ("ubuntu", "cache = no", ["--cache"], "cache", True),
        ("DEFAULT", "cache-max-age = 30", ["--cache-max-age", "7"], "cache-max-age", 7),
        ("lxc", "bridge = br0", ["--bridge", "lxcbr0"], "bridge", "lxcbr0"),
        ("ubuntu", "components = main", ["--components", "main,restricted,universe"], "components",
         ["main", "restricted", "universe"]),
    ],
)  # fmt: skip
def test_command_line_value_equal_to_the_default_still_wins(
    cfs: FakeFilesystem,
    make_ctx: ContextFactory,
    section: str,
    config: str,
    argv: list[str],
    name: str,
    expected: object,
) -> None:
    """VMBuilder compared CLI values with the default and let the config file win; we must not."""
    cfs.create_file(SYSTEM, contents=f"[{section}]\n{config}\n")
    s = make_ctx(*ARCH, *argv).settings
    assert s[name] == expected
    assert s.source(name) == "command line"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"DEFAULT": "focal"}, "focal"),
        ({"DEFAULT": "focal", "lxc": "jammy"}, "jammy"),
        ({"DEFAULT": "focal", "ubuntu": "noble"}, "noble"),
        ({"DEFAULT": "focal", "lxc": "jammy", "ubuntu": "noble"}, "noble"),
        ({"ubuntu": "noble", "lxc": "jammy", "DEFAULT": "focal"}, "noble"),  # file order is irrelevant
        ({"lxc": "jammy", "debian": "bookworm", "libvirt": "focal"}, "jammy"),  # other sections ignored
    ],
)
def test_sections_within_a_file(
    cfs: FakeFilesystem, make_ctx: ContextFactory, sections: dict[str, str], expected: str
) -> None:
    """[DEFAULT] < [hypervisor] < [distro], whatever order they appear in."""
    text = "".join(f"[{name}]\nsuite = {suite}\n\n" for name, suite in sections.items())
    cfs.create_file(SYSTEM, contents=text)
    assert make_ctx(*ARCH).settings["suite"] == expected


def test_a_later_files_default_section_beats_an_earlier_files_distro_section(
    cfs: FakeFilesystem, make_ctx: ContextFactory
) -> None:
    """Files are applied one after the other; sections only order keys inside one file."""
    cfs.create_file(SYSTEM, contents="[ubuntu]\nsuite = focal\n")
    cfs.create_file(USER, contents="[DEFAULT]\nsuite = jammy\n")
    assert make_ctx(*ARCH).settings["suite"] == "jammy"


def test_sections_of_other_distros_are_not_validated(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """A shared config may carry keys for plugins that are not part of this build."""
    cfs.create_file(SYSTEM, contents="[debian]\nno-such-key = 1\nsuite = bookworm\n[libvirt]\nlibvirt = qemu\n")
    assert make_ctx(*ARCH).settings["suite"] == "lts"


# -- unknown keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["ubuntu", "lxc"])
def test_unknown_key_in_a_plugin_section_is_an_error_with_a_hint(
    cfs: FakeFilesystem, make_ctx: ContextFactory, section: str
) -> None:
    cfs.create_file(SYSTEM, contents=f"[{section}]\nhostnam = web\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert err.value.message == f"unknown key 'hostnam' in {SYSTEM} [{section}]"
    assert err.value.hint == "did you mean 'hostname'?"


def test_unknown_key_without_a_close_match_points_to_help(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nxyzzy = 1\n")
    with pytest.raises(UserError, match="see --help for the valid keys"):
        make_ctx(*ARCH)


def test_unknown_key_in_default_section_is_only_a_warning(
    cfs: FakeFilesystem, make_ctx: ContextFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """[DEFAULT] is shared with other tools and hypervisors, so it must not break the build."""
    setup_logging(0)
    cfs.create_file(SYSTEM, contents="[DEFAULT]\nsute = noble\nuser = admin\n")
    s = make_ctx(*ARCH).settings
    assert s["user"] == "admin"
    assert s["suite"] == "lts"
    err = capsys.readouterr().err
    assert "warning" in err
    assert "unknown key 'sute' ignored" in err
    assert "did you mean 'suite'?" in err


def test_keys_are_case_insensitive_and_accept_underscores(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """VMBuilder configs use install_mirror; ours are install-mirror; both must work."""
    cfs.create_file(
        SYSTEM,
        contents="[ubuntu]\nSuite = noble\ninstall_mirror = http://cache:3142/ubuntu\n[DEFAULT]\ncache_max_age = 3\n",
    )
    s = make_ctx(*ARCH).settings
    assert s["suite"] == "noble"
    assert s["install-mirror"] == "http://cache:3142/ubuntu"
    assert s["cache-max-age"] == 3


def test_aliases_work_in_config_files_and_on_the_command_line(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """VMBuilder's --destdir (and the config key destdir) is our --dest."""
    cfs.create_file(SYSTEM, contents="[DEFAULT]\ndestdir = /srv/from-config\n")
    s = make_ctx(*ARCH).settings
    assert s["dest"] == "/srv/from-config"
    s = make_ctx(*ARCH, "--destdir", "/srv/from-cli").settings
    assert s["dest"] == "/srv/from-cli"


def test_exec_alias_of_execscript_in_a_config_file(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file("/srv/post.sh", contents="#!/bin/sh\n", st_mode=0o100755)
    cfs.create_file(SYSTEM, contents="[DEFAULT]\nexec = /srv/post.sh\n")
    assert make_ctx(*ARCH).settings["execscript"] == "/srv/post.sh"


def test_command_line_only_keys_are_rejected_in_files(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """-c inside a config file would make the precedence order meaningless."""
    cfs.create_file("/srv/other.cfg", contents="")
    cfs.create_file(SYSTEM, contents="[DEFAULT]\nconfig = /srv/other.cfg\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert "can only be given on the command line" in err.value.message
    assert err.value.hint == "use --config"


# -- files that are missing or broken -----------------------------------------------------------------


def test_missing_dash_c_file_is_an_error(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "-c", "/srv/nope.cfg")
    assert err.value.message == "config file /srv/nope.cfg does not exist"


def test_user_config_is_found_through_home(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(USER, contents="[ubuntu]\nuser = fromhome\n")
    s = make_ctx(*ARCH).settings
    assert s["user"] == "fromhome"
    assert s.source("user") == f"{USER} [ubuntu]"


@pytest.mark.parametrize(
    "contents",
    [
        "suite = noble\n",  # no section header
        "[ubuntu]\nsuite\n",  # no value
        "[ubuntu]\nsuite = noble\nsuite = jammy\n",  # duplicate key
        "[ubuntu]\n[ubuntu]\n",  # duplicate section
    ],
)
def test_syntax_error_is_a_one_line_user_error(
    cfs: FakeFilesystem, make_ctx: ContextFactory, contents: str | bytes
) -> None:
    cfs.create_file(SYSTEM, contents=contents)
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    text = str(err.value)
    assert text.startswith(f"cannot read config file {SYSTEM}: ")
    assert "\n" not in text
    assert err.value.hint == "fix the file's syntax"


# -- value parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes", True), ("no", False), ("true", True), ("false", False), ("on", True), ("off", False),
     ("1", True), ("0", False), ("YES", True), (" Off ", False), ("True", True)],
)  # fmt: skip
def test_bool_values_in_config_files(cfs: FakeFilesystem, make_ctx: ContextFactory, text: str, expected: bool) -> None:
    cfs.create_file(SYSTEM, contents=f"[DEFAULT]\noverwrite = {text}\n")
    assert make_ctx(*ARCH).settings["overwrite"] is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "y"])
def test_invalid_bool_in_config_file(cfs: FakeFilesystem, make_ctx: ContextFactory, text: str) -> None:
    cfs.create_file(SYSTEM, contents=f"[DEFAULT]\noverwrite = {text}\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert f"'overwrite' in {SYSTEM} [DEFAULT]" in err.value.message
    assert "expected yes/no, true/false, on/off or 1/0" in err.value.message


def test_bool_flags_on_the_command_line(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[DEFAULT]\ncache = yes\nautostart = no\n")
    s = make_ctx(*ARCH, "--no-cache", "--autostart").settings
    assert s["cache"] is False
    assert s["autostart"] is True


def test_list_values_split_on_commas_and_whitespace(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\naddpkg = vim, curl  htop,,\n\tgit\n")
    assert make_ctx(*ARCH).settings["addpkg"] == ["vim", "curl", "htop", "git"]


def test_list_options_repeat_on_the_command_line(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    s = make_ctx(*ARCH, "--addpkg", "vim,curl", "--addpkg", "htop", "--removepkg", "nano less").settings
    assert s["addpkg"] == ["vim", "curl", "htop"]
    assert s["removepkg"] == ["nano", "less"]


def test_command_line_list_replaces_the_config_list(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\naddpkg = vim\n")
    assert make_ctx(*ARCH, "--addpkg", "curl").settings["addpkg"] == ["curl"]


def test_list_default_is_not_shared_between_builds(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """The default list object must be copied, or one build's changes leak into the next."""
    first = make_ctx(*ARCH).settings
    first.get_list("components")  # resolve
    first["components"].append("multiverse")
    assert make_ctx(*ARCH).settings["components"] == ["main", "restricted", "universe"]


@pytest.mark.parametrize(
    ("config", "argv", "needle"),
    [
        ("[lxc]\ncpus = two\n", [], f"invalid value 'two' for 'cpus' in {SYSTEM} [lxc]: expected a whole number"),
        ("[DEFAULT]\ncache-max-age = 1.5\n", [], "expected a whole number"),
        ("", ["--cpus", "two"], "invalid value 'two' for --cpus on the command line: expected a whole number"),
        ("", ["--cpus", "0"], "invalid value '0' for --cpus on the command line: must be from 1 to 8192"),
        ("[DEFAULT]\ncache-max-age = -1\n", [], "must be from 0 to 36500"),
    ],
)
def test_int_errors(cfs: FakeFilesystem, make_ctx: ContextFactory, config: str, argv: list[str], needle: str) -> None:
    cfs.create_file(SYSTEM, contents=config)
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, *argv)
    assert needle in err.value.message


def test_int_values_are_converted(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[lxc]\ncpus = 2\n[ubuntu]\nuid = 1500\n")
    s = make_ctx(*ARCH).settings
    assert s["cpus"] == 2
    assert s["uid"] == 1500


@pytest.mark.parametrize("argv", [["--variant", "tiny"], ["--bootstrapper", "cdebootstrap"]])
def test_choices_on_the_command_line(cfs: FakeFilesystem, make_ctx: ContextFactory, argv: list[str]) -> None:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, *argv)
    assert "must be one of:" in err.value.message
    assert err.value.hint == f"give {argv[0]} one of these"  # the choices are listed once, in the message


def test_choices_in_a_config_file(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nvariant = tiny\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert err.value.message == (
        f"invalid value 'tiny' for 'variant' in {SYSTEM} [ubuntu]: must be one of: minbase, buildd, default"
    )


def test_validators_run_on_config_values(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nhostname = web.example.com\n")
    with pytest.raises(UserError, match="--domain"):
        make_ctx(*ARCH)


def test_validators_normalise_values(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    s = make_ctx(*ARCH, "--mask", "255.255.255.0", "--hostname", "Web1", "--mem", "2G").settings
    assert s["mask"] == "24"
    assert s["hostname"] == "web1"
    assert s["mem"] == 2048


# -- JSON / debug view ----------------------------------------------------------------------------------


def test_as_dict_redacts_secrets(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """--json and --debug print every setting; passwords must never appear in them."""
    cfs.create_file(SYSTEM, contents="[ubuntu]\nrootpass = fromconfig\n")
    s = make_ctx(*ARCH, "--mirror", "http://mirror.test/ubuntu", "--pass", "s3cret").settings
    out = s.as_dict()
    assert out["pass"] == "***"
    assert out["rootpass"] == "***"
    assert "s3cret" not in repr(out) and "fromconfig" not in repr(out)
    assert s["pass"] == "s3cret"  # the value itself is intact
    assert out["mirror"] == "http://mirror.test/ubuntu"
    assert set(out) == set(s.table)


def test_as_dict_shows_an_unset_secret_as_unset(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    out = make_ctx(*ARCH, "--mirror", "http://mirror.test/ubuntu").settings.as_dict()
    assert out["pass"] is None
    assert out["rootpass"] is None


def test_default_hostname_follows_an_explicit_dest(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    s = make_ctx(*ARCH, "-d", "/srv/containers/Web_01").settings
    assert s["hostname"] == "web-01"
    assert make_ctx(*ARCH).settings["hostname"] == "ubuntu"


# -- the Settings class on its own ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["yes", "no", "true", "false", "on", "off", "1", "0"])
def test_parse_bool_accepts_the_documented_words(text: str) -> None:
    assert parse_bool(text) is (text in ("yes", "true", "on", "1"))


def test_parse_bool_rejects_other_words() -> None:
    with pytest.raises(ValueError):
        parse_bool("enabled")


def test_split_list() -> None:
    assert split_list(["a,b c", "  d,,e\n", ""]) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("name", ["Foo", "-foo", "foo_bar", "", "foo bar"])
def test_setting_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="invalid setting name"):
        Setting(name, "help")


def test_duplicate_setting_names_the_plugins() -> None:
    with pytest.raises(ValueError, match="declared by both one and two"):
        Settings([Setting("x", "h", plugin="one"), Setting("x", "h", plugin="two")])


def test_default_that_depends_on_itself_is_detected() -> None:
    s = Settings([Setting("a", "h", default=lambda s: s["b"]), Setting("b", "h", default=lambda s: s["a"])])
    with pytest.raises(RuntimeError, match="depends on itself"):
        s["a"]


def test_callable_default_sees_other_settings() -> None:
    s = Settings([Setting("a", "h", default="x"), Setting("b", "h", default=lambda s: s["a"] + "y")])
    s.set_raw("a", "z", "command line")
    assert s["b"] == "zy"
    assert s.source("b") == "default"


def test_unknown_setting_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        Settings([])["nope"]


def test_generated_parser_suppresses_absent_options() -> None:
    """Only options actually given appear in the namespace: that is how CLI precedence works."""
    table = [Setting("a", "h", default="x"), Setting("b", "h", "bool", False), Setting("c", "h", "list", [])]
    ns = build_parser("prog", table).parse_args(["--c", "1", "--c", "2"])
    assert vars(ns) == {"c": ["1", "2"]}
    ns = build_parser("prog", table).parse_args(["--a", "x", "--no-b"])
    assert vars(ns) == {"a": "x", "b": False}
    assert isinstance(ns, argparse.Namespace)


def test_parser_errors_are_user_errors_with_a_suggestion() -> None:
    parser = build_parser("prog", [Setting("hostname", "h")])
    with pytest.raises(UserError) as err:
        parser.parse_args(["--hostnme=web"])
    assert "unrecognized arguments" in err.value.message
    assert err.value.hint is not None and err.value.hint.startswith("did you mean --hostname?")


def test_abbreviated_options_are_not_accepted() -> None:
    """--host would silently mean --hostname today and something else once --host-key exists."""
    parser = build_parser("prog", [Setting("hostname", "h")])
    with pytest.raises(UserError):
        parser.parse_args(["--host", "web"])


# -- one input boundary: control characters, secrets, config files that are not text files ---------------


def test_control_character_on_the_command_line_is_refused_without_echo(
    cfs: FakeFilesystem, make_ctx: ContextFactory
) -> None:
    """A newline in --bridge became an lxc.hook line in DEST/config (issue 12)."""
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "--bridge", "br0\nlxc.hook.pre-start = /bin/sh")
    assert err.value.message == "invalid value for --bridge on the command line: contains a control character: " \
        "newline (U+000A)"  # fmt: skip
    assert "lxc.hook" not in str(err.value)


def test_continuation_line_in_a_config_value_is_refused(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """configparser joins indented lines into the value: that is how a newline gets into one."""
    cfs.create_file(SYSTEM, contents="[lxc]\nbridge = br0\n  lxc.hook.pre-start = /bin/sh\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert err.value.message.startswith(f"invalid value for 'bridge' in {SYSTEM} [lxc]: contains a control character")


@pytest.mark.parametrize("value", ["vim\x1b]0;x\x07", "vim\x7fcurl"])
def test_control_character_in_a_list_item_is_refused(cfs: FakeFilesystem, make_ctx: ContextFactory, value: str) -> None:
    """Lists split on whitespace (continuation lines stay a way to write them); other controls stay refused."""
    with pytest.raises(UserError, match="control character"):
        make_ctx(*ARCH, "--addpkg", value)


@pytest.mark.parametrize("option", ["--pass", "--rootpass"])
@pytest.mark.parametrize("value", ["s3cret\nroot:x", "s3cret\x1b[2J"])
def test_a_refused_secret_is_never_echoed(
    cfs: FakeFilesystem, make_ctx: ContextFactory, option: str, value: str
) -> None:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, option, value)
    assert "s3cret" not in str(err.value)
    assert f"for {option} on the command line" in err.value.message


def test_a_secret_refused_in_a_config_file_is_never_echoed(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nrootpass = s3cret\n  root:x\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert "s3cret" not in str(err.value) and f"'rootpass' in {SYSTEM} [ubuntu]" in err.value.message


def test_validator_hint_replaces_the_generic_one(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "--uid", "0")
    assert err.value.message == "invalid value '0' for --uid on the command line: 0 is root's id"
    assert err.value.hint == "give a --uid from 1000 to 59999 (Debian's range for user accounts), or leave it out"


def test_long_values_are_shortened_in_errors(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "--hostname", "x" * 5000)
    assert len(str(err.value)) < 300


def test_control_character_in_a_config_key_is_refused(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(SYSTEM, contents="[ubuntu]\nsu\x1bite = noble\n")
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH)
    assert err.value.message == f"malformed key 'su\\x1bite' in {SYSTEM} [ubuntu]"


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """Fail instead of hanging if a FIFO were ever opened for reading."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("reading the config file blocked")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_config_fifo_is_refused_unread(no_host_config: Path, make_ctx: ContextFactory, tmp_path: Path,
                                       hang_guard: None) -> None:  # fmt: skip
    fifo = tmp_path / "vm.cfg"
    os.mkfifo(fifo)
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "-c", str(fifo))
    assert err.value.message == f"config file {fifo} is a FIFO, not a regular file"


@pytest.mark.parametrize(
    ("make", "needle"),
    [(lambda p: p.write_text("[DEFAULT]\n" + "#" * (1 << 20)), "more than the 1048576"),
     (lambda p: p.write_bytes(b"[ubuntu]\nname = J\xf6rg\n"), "is not UTF-8 text (byte 0xf6 at offset 17)"),
     (lambda p: p.write_bytes(b"\x7fELF\x02\x01\x01\x00"), "is a binary file"),
     (lambda p: p.mkdir(), "is a directory, not a regular file")],
)  # fmt: skip
def test_config_files_that_are_not_small_text_files(
    no_host_config: Path, make_ctx: ContextFactory, tmp_path: Path, make: Callable[[Path], object], needle: str
) -> None:
    path = tmp_path / "vm.cfg"
    make(path)
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "-c", str(path))
    assert needle in err.value.message
    assert "\n" not in str(err.value)


def test_config_file_in_proc_is_refused(no_host_config: Path, make_ctx: ContextFactory) -> None:
    """/proc files claim size 0 and some block (kmsg) or have effects when read."""
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, "-c", "/proc/self/status")
    assert "/proc holds kernel interfaces" in err.value.message


# -- options without effect (warnings) and values checked against each other ------------------------------


def resolved(make_ctx: ContextFactory, *argv: str) -> str:
    """configure, then the check the pipeline runs first; returns what was logged."""
    ctx = make_ctx(*ARCH, *argv)
    stream = io.StringIO()
    setup_logging(0, stream)
    ctx.settings.check_resolved()
    return stream.getvalue()


@pytest.mark.parametrize(
    ("argv", "warning"),
    [(["--mask", "16"], "--mask has no effect without a static --ip"),
     (["--gw", "10.0.3.1"], "--gw has no effect without a static --ip"),
     (["--dns", "10.0.3.1"], "--dns has no effect without a static --ip"),
     (["--network", "none", "--mac", "00:16:3e:00:00:01"], "--mac has no effect with --network none"),
     (["--export-dir", "/srv"], "--export-dir has no effect without --export"),
     (["--compression", "xz"], "--compression has no effect without --export"),
     (["--compression-level", "3"], "--compression-level has no effect without --export"),
     (["--export", "tar", "--compression", "none", "--compression-level", "3"],
      "--compression-level has no effect with --compression none"),
     (["--keep-apt-lists"], "--keep-apt-lists has no effect without --export"),
     (["--template-setuid"], "--template-setuid has no effect without --from-template"),
     (["--no-template-setuid"], "--no-template-setuid has no effect without --from-template"),
     (["--no-cache", "--cache-max-age", "3"], "--cache-max-age has no effect with --no-cache"),
     (["--insecure", "--keyring", "/etc/hostname"], "--keyring has no effect with --insecure"),
     (["--variant", "buildd", "--mem", "512"], "--mem has no effect with --variant buildd"),
     (["--variant", "buildd", "--initctl-listener", "always"], "--initctl-listener has no effect with --variant")],
)  # fmt: skip
def test_options_without_effect_warn(
    cfs: FakeFilesystem, make_ctx: ContextFactory, argv: list[str], warning: str
) -> None:
    cfs.create_file("/etc/hostname", contents="x\n")
    cfs.create_dir("/srv")
    out = resolved(make_ctx, *argv)
    assert f"vmbuilder: warning: {warning}" in out
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [[], ["--ip", "10.0.3.5", "--mask", "16", "--gw", "10.0.3.1", "--dns", "10.0.3.1"],
     ["--mac", "00:16:3e:00:00:01"], ["--export", "tar", "--compression", "zstd", "--compression-level", "19"],
     ["--export", "lxc", "--keep-apt-lists"]],
)  # fmt: skip
def test_options_with_effect_do_not_warn(cfs: FakeFilesystem, make_ctx: ContextFactory, argv: list[str]) -> None:
    assert resolved(make_ctx, *argv) == ""


def test_site_config_defaults_do_not_warn_but_a_dash_c_file_does(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    """/etc/vmbuilder.cfg sets defaults for every build; a -c file belongs to this one."""
    cfs.create_file(SYSTEM, contents="[DEFAULT]\ncompression = zstd\n")
    assert resolved(make_ctx) == ""
    cfs.create_file("/srv/job.cfg", contents="[DEFAULT]\ncompression = zstd\n")
    out = resolved(make_ctx, "-c", "/srv/job.cfg")
    assert "--compression ('compression' in /srv/job.cfg [DEFAULT]) has no effect without --export" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--export", "lxc", "--compression-level", "15"], "xz takes levels from 0 to 9"),
     (["--export", "tar,sbuild", "--compression-level", "0"], "zstd takes levels from 1 to 22"),
     (["--export", "tar", "--compression", "gzip", "--compression-level", "0"], "gzip takes levels from 1 to 9")],
)  # fmt: skip
def test_compression_level_is_checked_against_the_compressors(
    cfs: FakeFilesystem, make_ctx: ContextFactory, argv: list[str], needle: str
) -> None:
    with pytest.raises(UserError) as err:
        resolved(make_ctx, *argv)
    assert needle in err.value.message
    assert err.value.message.startswith(f"invalid value '{argv[-1]}' for --compression-level on the command line")


@pytest.mark.parametrize("distro", ["ubuntu", "debian"])
def test_every_setting_is_checked_when_set(plugins: dict[str, type], distro: str) -> None:
    """Item 1 of issue 12: every value has a type and a check; only booleans and fixed choices need none."""
    ctx = cli.make_context("lxc", distro, plugins)
    unchecked = [s.flag for s in ctx.settings.table.values()
                 if s.type != "bool" and s.choices is None and s.validate is None]  # fmt: skip
    assert unchecked == []


def test_a_path_the_check_cannot_reach_is_a_user_error() -> None:
    """Path.exists() raises PermissionError below a directory the user cannot search."""

    def check(value: str) -> str:
        raise PermissionError(13, "Permission denied")

    s = Settings([Setting("dest", "h", validate=check)])
    with pytest.raises(UserError) as err:
        s.set_raw("dest", "/root/x", "command line")
    assert str(err.value) == (
        "invalid value '/root/x' for --dest on the command line: cannot check it: Permission denied; "
        "give a path this user can reach"
    )


@pytest.mark.parametrize("option", ["--mirror", "--pass", "--addpkg", "--name"])
def test_overlong_values_are_refused(cfs: FakeFilesystem, make_ctx: ContextFactory, option: str) -> None:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, option, "http://m.example/" + "a" * 5000)
    assert "longer than 4096 characters" in err.value.message
    assert len(str(err.value)) < 300
