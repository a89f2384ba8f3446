"""The man pages: generated from the settings table, clean roff, and checked against the parsers.

`python3 -m vmbuilder_lxc.manpage --check DIR` is what debian/rules runs after generating the
pages; these tests make sure it catches drift in both directions (an option the CLI has and the
pages lack, and the other way round), for build options, commands and vmbuilder-fetch-keyring.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.unit.conftest import Plugins
from vmbuilder_lxc import manpage, options
from vmbuilder_lxc.manpage import checker
from vmbuilder_lxc.options import core_settings
from vmbuilder_lxc.plugin import Plugin
from vmbuilder_lxc.settings import Setting

PAGES = ["vmbuilder.1", "vmbuilder-lxc.1", "vmbuilder-debian.1", "vmbuilder-ubuntu.1", "vmbuilder-fetch-keyring.1"]
EPOCH = "1700000000"  # 2023-11-14
REQUIRED = os.environ.get("VMBUILDER_REQUIRE_INTEGRATION") == "1"


@pytest.fixture(autouse=True)
def _builtin_plugins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """As debian/rules runs it: only the built-in plugins, a fixed SOURCE_DATE_EPOCH."""
    monkeypatch.setenv("VMBUILDER_NO_ENTRY_POINTS", "1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


@pytest.fixture
def mandir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "man"
    assert manpage.main(["--outdir", str(out)]) == 0
    capsys.readouterr()
    return out


def run_check(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = manpage.main(["--check", str(directory)])
    return code, capsys.readouterr().out.splitlines()


def remove_item(text: str, flag: str) -> str:
    """Drop the .TP item whose tag holds flag (escaped as in roff)."""
    lines = text.splitlines(keepends=True)
    tag = manpage.bold(flag)
    start = next(
        i
        for i, ln in enumerate(lines)
        if ln.startswith(".TP") and tag in [part.split(" ")[0] for part in lines[i + 1].split(", ")]
    )
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith((".TP", ".SS", ".SH")))
    return "".join(lines[:start] + lines[end:])


def insert_after(text: str, marker: str, addition: str) -> str:
    assert marker in text
    return text.replace(marker, marker + addition, 1)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRED:
            pytest.fail(f"{name} is not installed (apt-get install man-db)")
        pytest.skip(f"{name} is not installed")
    return path


# -- generation --------------------------------------------------------------------------------------


def test_generates_one_page_per_plugin_and_the_check_passes(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(p.name for p in mandir.iterdir()) == sorted(PAGES)
    code, out = run_check(mandir, capsys)
    assert code == 0, out
    assert len(out) == 1 and out[0].startswith("OK: "), out


def test_pages_are_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b"):
        assert manpage.main(["--outdir", str(tmp_path / name)]) == 0
    for page in PAGES:
        assert (tmp_path / "a" / page).read_bytes() == (tmp_path / "b" / page).read_bytes(), page


def test_date_comes_from_source_date_epoch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert '"1" "2023\\-11\\-14" "vmbuilder\\-lxc ' in manpage.generate()["vmbuilder.1"]
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert '"1" "" "vmbuilder\\-lxc ' in manpage.generate()["vmbuilder.1"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert manpage.main(["--outdir", "/nonexistent/never"]) == 2


def test_generator_reads_no_config_and_runs_as_debian_rules_does(tmp_path: Path) -> None:
    """A broken ~/.vmbuilder.cfg and an unwritable HOME change nothing: no config file is read."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vmbuilder.cfg").write_text("this is [not valid\n")
    env = {**os.environ, "HOME": str(home), "VMBUILDER_NO_ENTRY_POINTS": "1", "SOURCE_DATE_EPOCH": EPOCH}
    for args in (["--outdir", str(tmp_path / "man")], ["--check", str(tmp_path / "man")]):
        result = subprocess.run([sys.executable, "-m", "vmbuilder_lxc.manpage", *args], env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
    assert result.stdout.startswith("OK: ")


def test_vmbuilder_page_has_the_sections_and_every_generic_option(mandir: Path) -> None:
    text = (mandir / "vmbuilder.1").read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION FILES", "ENVIRONMENT",
                    "EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"):  # fmt: skip
        assert f".SH {section}\n" in text or f'.SH "{section}"' in text, section
    assert "\nvmbuilder \\- build container\\-safe" in text
    for group in ("General options", "Build and cache options", "Customisation (postinst)",
                  "Export options (export)", "libvirt options (libvirt)"):  # fmt: skip
        assert f'.SS "{group}"' in text, group
    # libvirt is limited to the lxc hypervisor, and the page says so where its options are.
    libvirt = text.split('.SS "libvirt options (libvirt)"')[1].split(".SS")[0]
    assert "Only in builds with hypervisor \\fBlxc\\fR." in libvirt
    for code in ("0", "1", "2", "130"):
        assert f".TP\n\\fB{code}\\fR\n" in text
    for var in ("SOURCE_DATE_EPOCH", "VMBUILDER_NO_ENTRY_POINTS", "VMBUILDER_LIBVIRT_BACKEND"):
        assert f"\\fB{var}\\fR" in text
    assert "Command line only" in text.split("\\fB\\-\\-config\\fR")[1].split(".TP")[0]
    for ref in ("lxc\\-start", "virsh", "debootstrap", "mmdebstrap", "sbuild", "vmbuilder\\-ubuntu"):
        assert f"\\fB{ref}\\fR(" in text.split(".SH SEE ALSO")[1], ref


def test_lxc_page_documents_its_commands(mandir: Path) -> None:
    text = (mandir / "vmbuilder-lxc.1").read_text()
    commands = text.split(".SH COMMANDS")[1]
    assert '.SS "vmbuilder lxc export [options] DEST"' in commands
    assert '.SS "vmbuilder lxc validate [options] FILE"' in commands
    assert "DEST/config" in text.split(".SH FILES")[1]
    # An option of a command without help of its own borrows the build setting's.
    keep = commands.split("\\fB\\-\\-keep\\-apt\\-lists\\fR")[1].split(".TP")[0]
    assert "apt package lists" in keep


def test_distro_pages_describe_suites_without_listing_them(mandir: Path) -> None:
    for distro in ("ubuntu", "debian"):
        text = (mandir / f"vmbuilder-{distro}.1").read_text()
        assert "\\-\\-list\\-suites" in text.split(".SH SUITES")[1]
        assert f"/usr/share/distro\\-info/{distro}.csv" in text


def test_roff_escapes_every_hyphen_and_guards_leading_dots(mandir: Path) -> None:
    for page in PAGES:
        for line in (mandir / page).read_text().splitlines():
            if line.startswith('.\\"'):
                continue
            assert not re.search(r"(?<!\\)-", line), f"{page}: unescaped hyphen in {line!r}"
            if not line.startswith("."):
                assert not line.startswith("'"), line


def test_roff_helpers() -> None:
    assert manpage.esc("a\\b --x") == "a\\eb \\-\\-x"
    assert manpage.fmt("use `--suite` now") == "use \\fB\\-\\-suite\\fR now"
    page = manpage.Roff()
    page.text(".not a request", "'neither", "text")
    assert page.lines == ["\\&.not a request", "\\&'neither", "text"]
    assert manpage.plain("\\fB\\-\\-dest\\fR \\fIDIR\\fR") == "--dest DIR"


# -- roff quality: what lintian runs -----------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_man_warnings(mandir: Path, page: str) -> None:
    man = tool("man")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80"}
    result = subprocess.run([man, "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(mandir / page)],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout, "man rendered nothing"


@pytest.mark.parametrize("page", PAGES)
def test_whatis_line(mandir: Path, page: str) -> None:
    lexgrog = tool("lexgrog")
    result = subprocess.run([lexgrog, str(mandir / page)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'"{page.removesuffix(".1")} - ' in result.stdout


# -- the check catches drift -------------------------------------------------------------------------


def test_removed_option_item_is_reported(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = mandir / "vmbuilder-ubuntu.1"
    page.write_text(remove_item(page.read_text(), "--suite"))
    main = mandir / "vmbuilder.1"
    main.write_text(remove_item(main.read_text(), "--libvirt"))
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert out == [
        "--libvirt is in the CLI but not in the man page vmbuilder.1 (vmbuilder lxc debian, vmbuilder lxc ubuntu)",
        "--suite is in the CLI but not in the man page vmbuilder-ubuntu.1 (vmbuilder lxc ubuntu)",
    ]


def test_fake_option_item_is_reported(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = mandir / "vmbuilder-debian.1"
    fake = ".TP\n\\fB\\-\\-frobnicate\\fR \\fIN\\fR, \\fB\\-F\\fR\nNot an option.\n"
    page.write_text(insert_after(page.read_text(), '.SS "Network options (debian)"\n', fake))
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert out == [
        "--frobnicate is in the man page vmbuilder-debian.1 but not in the CLI (vmbuilder lxc debian)",
        "-F is in the man page vmbuilder-debian.1 but not in the CLI (vmbuilder lxc debian)",
    ]


def test_an_option_documented_twice_is_reported(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = mandir / "vmbuilder-lxc.1"
    page.write_text(insert_after(page.read_text(), '.SS "LXC options (lxc)"\n', ".TP\n\\fB\\-\\-addpkg\\fR\nx\n"))
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert "--addpkg is documented more than once (vmbuilder-lxc.1, vmbuilder-ubuntu.1; vmbuilder lxc ubuntu)" in out


def test_missing_page_is_reported(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (mandir / "vmbuilder-debian.1").unlink()
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert out[0] == f"vmbuilder-debian.1 is missing from {mandir}"
    assert "--suite is in the CLI but not in the man page vmbuilder-debian.1 (vmbuilder lxc debian)" in out


def test_new_setting_without_regenerating_fails(
    mandir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plugins: Plugins
) -> None:
    postinst = plugins["postinst"]
    original = postinst.register_options

    def more(self: Plugin) -> list[Setting]:
        return [*original(self), Setting("frobnicate", "a new option", "bool", False, group="Customisation")]

    monkeypatch.setattr(postinst, "register_options", more)
    monkeypatch.setattr(options, "core_settings", lambda: [*core_settings(), Setting("zap", "core", metavar="Z")])
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert out == [
        f"{flag} is in the CLI but not in the man page vmbuilder.1 (vmbuilder lxc debian, vmbuilder lxc ubuntu)"
        for flag in ("--frobnicate", "--no-frobnicate", "--zap")
    ]
    # Regenerated, the pages document it and the check passes again.
    assert manpage.main(["--outdir", str(mandir)]) == 0
    assert "\\fB\\-\\-frobnicate\\fR, \\fB\\-\\-no\\-frobnicate\\fR" in (mandir / "vmbuilder.1").read_text()
    assert run_check(mandir, capsys)[0] == 0


def test_command_and_keyring_options_are_checked(
    mandir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plugins: Plugins
) -> None:
    libvirt = plugins["libvirt"]
    original = libvirt.validate_parser  # type: ignore[attr-defined]

    def validate_parser() -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = original()
        parser.add_argument("--strict", action="store_true")
        return parser

    def fetch_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="vmbuilder-fetch-keyring")
        parser.add_argument("--mirror")
        return parser

    monkeypatch.setattr(libvirt, "validate_parser", staticmethod(validate_parser))
    monkeypatch.setattr(checker, "fetch_parser", fetch_parser)
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert out == [
        "--dest is in the man page vmbuilder-fetch-keyring.1 but not in the CLI (vmbuilder-fetch-keyring)",
        "--strict is in the CLI but not in the man page vmbuilder-lxc.1 (vmbuilder lxc validate)",
    ]


def test_command_section_missing_is_reported(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = mandir / "vmbuilder-lxc.1"
    page.write_text(page.read_text().replace('.SS "vmbuilder lxc validate', '.SS "vmbuilder lxc check'))
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert "command 'vmbuilder lxc validate' is not in the COMMANDS section of vmbuilder-lxc.1" in out
    assert "command 'vmbuilder lxc check' is in vmbuilder-lxc.1 but not in the CLI" in out


def test_restricted_plugin_options_follow_the_restriction(
    mandir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plugins: Plugins
) -> None:
    """A plugin limited to a distro: stale pages claim its options for every distro; regenerated ones don't."""
    monkeypatch.setattr(plugins["libvirt"], "distros", ("ubuntu",))
    code, out = run_check(mandir, capsys)
    assert code == 1
    assert out == [f"{flag} is in the man page vmbuilder.1 but not in the CLI (vmbuilder lxc debian)"
                   for flag in ("--libvirt", "--libvirt-xml")]  # fmt: skip
    assert manpage.main(["--outdir", str(mandir)]) == 0
    text = (mandir / "vmbuilder.1").read_text()
    assert "Only in builds with hypervisor \\fBlxc\\fR and distro \\fBubuntu\\fR." in text
    assert run_check(mandir, capsys)[0] == 0


def test_check_reads_the_roff_not_the_generator(mandir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Items written by hand, in another style (.B request, alias order), count the same."""
    page = mandir / "vmbuilder-lxc.1"
    text = remove_item(page.read_text(), "--bridge")
    page.write_text(insert_after(text, '.SS "LXC options (lxc)"\n', ".TP\n.B \\-\\-bridge BR\nHost bridge.\n"))
    assert run_check(mandir, capsys)[0] == 0


def flags_of(groups: Sequence[manpage.DocGroup]) -> set[str]:
    return {f for g in groups for f in g.flags}


def test_read_page_collects_only_option_sections(mandir: Path) -> None:
    groups = manpage.read_page((mandir / "vmbuilder.1").read_text())
    flags = flags_of(groups)
    assert {"-h", "--help", "-d", "--dest", "--destdir", "--no-overwrite", "--exec"} <= flags
    assert "--no-cache" in flags and "--suite" not in flags
    assert not any(f.startswith("--") and f.upper() == f for f in flags)  # no metavars or env names
