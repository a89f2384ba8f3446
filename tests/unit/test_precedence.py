"""Issue 13, item 2: only the value that wins is checked, and a bad winner names where it came from.

A bad value in a config file that a later file (or a later section) or the command line overrides
stops nothing; a bad value that wins is refused with the same one-line error as before, naming the
command line or the file and section. Covered for several kinds of setting: paths (a file and a
directory), sizes and numbers, choices, a time zone, a boolean and a list. Control characters and
overlong text stay refused in every value read, overridden or not.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ContextFactory
from vmbuilder_lxc.log import UserError, setup_logging
from vmbuilder_lxc.settings import Setting, Settings

HOME = "/home/tester"
SYSTEM = "/etc/vmbuilder.cfg"
ARCH = ("--arch", "amd64")  # keeps the default from running dpkg --print-architecture
FIRST, LATER = "/srv/first.cfg", "/srv/later.cfg"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz2x5n1y8kq3m0CRWpq1mzJtCPOTm3dQDSfZ1FZWd6L ops@example\n"


@dataclass(frozen=True)
class Kind:
    """One setting: a bad and a good text for it, what the good one becomes, and a word of the
    error the bad one gets."""

    id: str
    key: str
    bad: str
    good: str
    value: object
    needle: str
    section: str = "ubuntu"

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    def cli(self, text: str) -> list[str]:
        """The command-line form of `text` (a boolean is a bare flag)."""
        if self.key == "autostart":
            return [self.flag] if text == "yes" else [f"{self.flag}={text}"]
        return [self.flag, text]


KINDS = [
    Kind("path-file", "ssh-key", "/srv/missing.pub", "/srv/ops.pub", "/srv/ops.pub", "does not exist"),
    Kind("path-dir", "cache-dir", "/srv/a-file", "/srv/cache", "/srv/cache", "exists and is not a directory",
         section="DEFAULT"),
    Kind("size", "mem", "lots", "2G", 2048, "expected megabytes", section="lxc"),
    Kind("int", "cpus", "two", "2", 2, "expected a whole number", section="lxc"),
    Kind("choice", "compression", "rar", "zstd", "zstd", "must be one of:", section="DEFAULT"),
    Kind("choice-variant", "variant", "tiny", "minbase", "minbase", "must be one of:"),
    Kind("zone", "timezone", "Mars/X", "Europe/Berlin", "Europe/Berlin", "unknown time zone"),
    Kind("bool", "autostart", "maybe", "yes", True, "expected yes/no", section="lxc"),
    Kind("list", "addpkg", "Vim", "vim", ["vim"], "not a Debian package name"),
]  # fmt: skip
IDS = [k.id for k in KINDS]


@pytest.fixture
def cfs(fake_fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> FakeFilesystem:
    """A fake file system with a HOME, a few time zones, a public key, a file and no config files."""
    fake_fs.create_dir(HOME)
    monkeypatch.setenv("HOME", HOME)
    for zone in ("UTC", "Europe/Berlin"):
        fake_fs.create_file(f"/usr/share/zoneinfo/{zone}", contents="TZif2")
    fake_fs.create_file("/srv/ops.pub", contents=KEY)
    fake_fs.create_file("/srv/a-file", contents="x\n")
    return fake_fs


def cfg(cfs: FakeFilesystem, path: str, kind: Kind, text: str, section: str | None = None) -> None:
    cfs.create_file(path, contents=f"[{section or kind.section}]\n{kind.key} = {text}\n")


def where(path: str, kind: Kind, section: str | None = None) -> str:
    return f"'{kind.key}' in {path} [{section or kind.section}]"


def refused(make_ctx: ContextFactory, *argv: str) -> UserError:
    with pytest.raises(UserError) as err:
        make_ctx(*ARCH, *argv)
    assert "\n" not in str(err.value)
    return err.value


# -- an overridden bad value stops nothing -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_file_value_overridden_by_the_command_line_is_not_checked(
    cfs: FakeFilesystem, make_ctx: ContextFactory, kind: Kind
) -> None:
    """The issue's reproducer: `timezone = Mars/X` in a.cfg, then `-c a.cfg --timezone UTC`."""
    cfg(cfs, FIRST, kind, kind.bad)
    s = make_ctx(*ARCH, "-c", FIRST, *kind.cli(kind.good)).settings
    assert s[kind.key] == kind.value
    assert s.source(kind.key) == "command line"


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_file_value_overridden_by_a_later_file_is_not_checked(
    cfs: FakeFilesystem, make_ctx: ContextFactory, kind: Kind
) -> None:
    cfg(cfs, FIRST, kind, kind.bad)
    cfg(cfs, LATER, kind, kind.good)
    s = make_ctx(*ARCH, "-c", FIRST, "-c", LATER).settings
    assert s[kind.key] == kind.value
    assert s.source(kind.key) == f"{LATER} [{kind.section}]"


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_site_default_overridden_by_a_dash_c_file_is_not_checked(
    cfs: FakeFilesystem, make_ctx: ContextFactory, kind: Kind
) -> None:
    cfg(cfs, SYSTEM, kind, kind.bad)
    cfg(cfs, LATER, kind, kind.good)
    assert make_ctx(*ARCH, "-c", LATER).settings[kind.key] == kind.value


def test_a_bad_value_in_default_overridden_by_a_later_section_is_not_checked(
    cfs: FakeFilesystem, make_ctx: ContextFactory
) -> None:
    cfs.create_file(FIRST, contents="[DEFAULT]\ntimezone = Mars/X\nmem = lots\n[lxc]\nmem = 1G\n"
                                    "[ubuntu]\ntimezone = UTC\n")  # fmt: skip
    s = make_ctx(*ARCH, "-c", FIRST).settings
    assert (s["timezone"], s["mem"]) == ("UTC", 1024)
    assert s.source("timezone") == f"{FIRST} [ubuntu]"


def test_overridden_values_are_in_the_debug_log_without_their_values(
    cfs: FakeFilesystem, make_ctx: ContextFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cfs.create_file(FIRST, contents="[ubuntu]\ntimezone = Mars/X\nrootpass = s3cret-first\n")
    make_ctx(*ARCH, "-c", FIRST, "--timezone", "UTC", "--rootpass", "s3cret-cli", "--debug")
    err = capsys.readouterr().err
    assert f"'timezone' from {FIRST} [ubuntu] is overridden by the command line (not checked)" in err
    assert f"'rootpass' from {FIRST} [ubuntu] is overridden by the command line (not checked)" in err
    assert "Mars/X" not in err and "s3cret" not in err


# -- a bad value that wins is refused, naming its source ---------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in KINDS if k.key != "autostart"], ids=[i for i in IDS if i != "bool"])
def test_a_bad_command_line_value_wins_over_a_good_file_value_and_is_refused(
    cfs: FakeFilesystem, make_ctx: ContextFactory, kind: Kind
) -> None:
    cfg(cfs, FIRST, kind, kind.good)
    err = refused(make_ctx, "-c", FIRST, *kind.cli(kind.bad))
    assert err.message.startswith(f"invalid value '{kind.bad}' for {kind.flag} on the command line: "), err.message
    assert kind.needle in err.message
    assert FIRST not in str(err)


def test_a_bad_boolean_on_the_command_line_is_refused_by_the_parser(
    cfs: FakeFilesystem, make_ctx: ContextFactory
) -> None:
    """--autostart=maybe: argparse refuses a value for a flag, before any config file is read."""
    cfg(cfs, FIRST, KINDS[IDS.index("bool")], "yes")
    assert "--autostart" in refused(make_ctx, "-c", FIRST, "--autostart=maybe").message


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_bad_value_in_the_last_file_wins_and_is_refused(
    cfs: FakeFilesystem, make_ctx: ContextFactory, kind: Kind
) -> None:
    cfg(cfs, FIRST, kind, kind.good)
    cfg(cfs, LATER, kind, kind.bad)
    err = refused(make_ctx, "-c", FIRST, "-c", LATER)
    assert err.message.startswith(f"invalid value '{kind.bad}' for {where(LATER, kind)}: "), err.message
    assert kind.needle in err.message


@pytest.mark.parametrize("kind", [k for k in KINDS if k.key != "autostart"], ids=[i for i in IDS if i != "bool"])
def test_the_command_line_is_named_when_every_source_is_bad(
    cfs: FakeFilesystem, make_ctx: ContextFactory, kind: Kind
) -> None:
    """The first file's bad value is overridden twice; the error is about the one that wins."""
    cfg(cfs, FIRST, kind, kind.bad)
    cfg(cfs, LATER, kind, kind.good)
    err = refused(make_ctx, "-c", FIRST, "-c", LATER, *kind.cli(kind.bad))
    assert f"for {kind.flag} on the command line: " in err.message
    assert FIRST not in str(err) and LATER not in str(err)


def test_a_winning_bad_secret_is_named_but_not_echoed(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(FIRST, contents="[ubuntu]\nrootpass = fine\n")
    err = refused(make_ctx, "-c", FIRST, "--rootpass", "s3cret" + "x" * 5000)
    assert err.message.startswith("invalid value for --rootpass on the command line: longer than 4096")
    assert "s3cret" not in str(err)


# -- what stays checked in every value read -----------------------------------------------------------------


def test_a_control_character_is_refused_even_in_an_overridden_value(
    cfs: FakeFilesystem, make_ctx: ContextFactory
) -> None:
    """A newline (a continuation line) has no business in any value a file holds."""
    cfs.create_file(FIRST, contents="[lxc]\nbridge = br0\n  lxc.hook.pre-start = /bin/sh\n")
    err = refused(make_ctx, "-c", FIRST, "--bridge", "br1")
    assert err.message.startswith(f"invalid value for 'bridge' in {FIRST} [lxc]: contains a control character")


def test_an_overlong_value_is_refused_even_when_overridden(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(FIRST, contents="[ubuntu]\nhostname = " + "x" * 5000 + "\n")
    err = refused(make_ctx, "-c", FIRST, "--hostname", "web1")
    assert "longer than 4096 characters" in err.message and FIRST in err.message


def test_insecure_stays_command_line_only(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(FIRST, contents="[ubuntu]\ninsecure = yes\n")
    err = refused(make_ctx, "-c", FIRST, "--insecure")
    assert err.message == f"'insecure' in {FIRST} [ubuntu] can only be given on the command line"


def test_an_unknown_key_stays_an_error(cfs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    cfs.create_file(FIRST, contents="[ubuntu]\ntimezon = UTC\n")
    err = refused(make_ctx, "-c", FIRST, "--timezone", "UTC")
    assert err.message == f"unknown key 'timezon' in {FIRST} [ubuntu]"


# -- the Settings object on its own -------------------------------------------------------------------------


def positive(value: int) -> int:
    if value < 1:
        raise ValueError("must be positive")
    return value


def table() -> Settings:
    return Settings([Setting("n", "h", "int", 1, validate=positive), Setting("s", "h", default="d")])


def test_staged_values_are_converted_and_checked_only_when_resolved() -> None:
    s = table()
    s.stage_raw("n", "nope", "/a.cfg [DEFAULT]")
    s.stage_raw("n", "0", "/b.cfg [DEFAULT]")
    s.stage_raw("n", "3", "command line")
    s.resolve()
    assert (s["n"], s.source("n"), s.explicit("n")) == (3, "command line", True)
    assert s.overridden == [("n", "/a.cfg [DEFAULT]", "/b.cfg [DEFAULT]"), ("n", "/b.cfg [DEFAULT]", "command line")]


def test_reading_a_staged_value_checks_it() -> None:
    """A caller that reads files without apply_cli (the docs tests) still gets checked values."""
    s = table()
    s.stage_raw("n", "0", "/a.cfg [DEFAULT]")
    with pytest.raises(UserError) as err:
        s["n"]
    assert str(err.value) == "invalid value '0' for 'n' in /a.cfg [DEFAULT]: must be positive; see '--n' in --help"


def test_a_plugin_value_replaces_a_staged_one_unchecked() -> None:
    s = table()
    s.stage_raw("n", "nope", "/a.cfg [DEFAULT]")
    s.set("n", 5, "--from-template")
    s.resolve()
    assert (s["n"], s.source("n")) == (5, "--from-template")


def test_set_raw_still_checks_at_once() -> None:
    s = table()
    with pytest.raises(UserError, match="for --n on the command line: expected a whole number"):
        s.set_raw("n", "x", "command line")


def test_resolve_reports_the_first_bad_winner_in_table_order() -> None:
    s = table()
    s.stage_raw("s", "fine", "command line")
    s.stage_raw("n", "-1", "command line")
    stream = io.StringIO()
    setup_logging(0, stream)
    with pytest.raises(UserError, match="for --n on the command line"):
        s.resolve()
    assert stream.getvalue() == ""
