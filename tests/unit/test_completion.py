"""The generated bash completion, driven by a real bash, with and without bash-completion.

Expected words are derived from the same tables the script is generated from (the parser of a
pair, the plugins' choices, the commands' parsers), never from a literal list.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.conftest import CSV, Plugins
from tests.unit.test_debian import DEBIAN_CSV
from vmbuilder_lxc import cli, completion, exports, suites
from vmbuilder_lxc.arches import NATIVE_MACHINES
from vmbuilder_lxc.cliparse import build_parser
from vmbuilder_lxc.manpage import pairs
from vmbuilder_lxc.plugin import by_kind, command_parsers, commands_for
from vmbuilder_lxc.settings import Setting

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
PATH_LIKE = re.compile(r"DIR|FILE|PATH|DEST|SCRIPT")
MODES = ["plain", "bash-completion"]


@pytest.fixture(scope="module")
def distro_info(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixed distro-info-data, so that the generated suites do not depend on the host's."""
    directory = tmp_path_factory.mktemp("distro-info")
    (directory / "ubuntu.csv").write_text(CSV)
    (directory / "debian.csv").write_text(DEBIAN_CSV)
    return directory


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory, plugins: Plugins, distro_info: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suites, "DISTRO_INFO_DIR", distro_info)
        text = completion.bash_script(completion.collect(plugins))
    path = tmp_path_factory.mktemp("completion") / "vmbuilder"
    path.write_text(text)
    yield path


def bash_completion_or_skip() -> None:
    if BASH_COMPLETION.exists():
        return
    message = f"{BASH_COMPLETION} is missing: apt-get install bash-completion"
    if os.environ.get("VMBUILDER_REQUIRE_INTEGRATION") == "1":
        pytest.fail(message)
    pytest.skip(message)


def complete(
    script: Path, *words: str, mode: str = "plain", setup: str = "", env: dict[str, str] | None = None
) -> list[str]:
    """COMPREPLY for COMP_WORDS=(vmbuilder WORDS...) with the cursor at the end of the last word.

    Words are given as bash splits them: `--suite=no` is "--suite", "=", "no"."""
    argv = ["vmbuilder", *words]
    line = ""
    for i, w in enumerate(argv):
        line += w if i == 0 or w == "=" or argv[i - 1] == "=" else " " + w
    if mode == "bash-completion":
        bash_completion_or_skip()
        load = (
            f"source {BASH_COMPLETION}\n"
            f"BASH_COMPLETION_USER_DIR={script.parent.parent}\n"  # finds DIR/completions/vmbuilder
            "__load_completion vmbuilder || exit 3\n"
            "[[ $(complete -p vmbuilder) == 'complete -F _vmbuilder vmbuilder' ]] || exit 4\n"
        )
    else:
        load = 'source "$SCRIPT"\ndeclare -F _init_completion && exit 5\n'
    program = (
        load + setup + "\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE=$LINE; COMP_POINT=${#LINE}\n'
        '_vmbuilder vmbuilder "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    run_env = {**os.environ, **(env or {}), "SCRIPT": str(script), "LINE": line}
    result = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program, "bash", *argv],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [w for w in result.stdout.split("\n") if w]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, script: Path) -> str:
    """Each behaviour is checked sourced directly and loaded on demand by bash-completion."""
    if request.param == "bash-completion":
        bash_completion_or_skip()
        (script.parent.parent / "completions").mkdir(exist_ok=True)
        shutil.copy(script, script.parent.parent / "completions" / "vmbuilder")
    return str(request.param)


def pair_flags(plugins: Plugins, hv: str, distro: str) -> set[str]:
    table = cli.make_context(hv, distro, plugins).settings.table.values()
    return {o for a in build_parser("x", table)._actions for o in a.option_strings}


# -- the script ---------------------------------------------------------------------------------


def test_bash_syntax(script: Path) -> None:
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_generation_is_deterministic_and_reads_no_user_config(tmp_path: Path) -> None:
    """As debian/rules runs it: no entry points, an unusable HOME; the same bytes every time."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vmbuilder.cfg").write_text("this is [not a config file\n")
    env = {**os.environ, "VMBUILDER_NO_ENTRY_POINTS": "1", "HOME": str(home), "PYTHONHASHSEED": "random"}
    outputs = []
    for seed in ("1", "2"):
        env["PYTHONHASHSEED"] = seed
        result = subprocess.run(
            [sys.executable, "-m", "vmbuilder_lxc.completion"], cwd=ROOT, env=env, capture_output=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert b"complete -F _vmbuilder vmbuilder" in outputs[0]


def test_main_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert completion.main(["--bogus"]) == 2
    assert "usage" in capsys.readouterr().err


# -- what is completed --------------------------------------------------------------------------


def test_first_word_hypervisors_and_global_flags(script: Path, mode: str, plugins: Plugins) -> None:
    assert complete(script, "", mode=mode) == sorted(by_kind(plugins, "hypervisor"))
    flags = set(complete(script, "-", mode=mode))
    assert flags == cli.GLOBAL_FLAGS | cli.GLOBAL_VALUE_FLAGS | {"-h", "--help", "--version"}
    assert complete(script, "--debug", "l", mode=mode) == ["lxc"]


def test_second_word_distros_and_commands(script: Path, mode: str, plugins: Plugins) -> None:
    expected = {*by_kind(plugins, "distro"), *commands_for(plugins, "lxc")}
    assert {"ubuntu", "debian", "validate", "export"} <= expected
    assert set(complete(script, "lxc", "", mode=mode)) == expected
    assert set(complete(script, "-c", "my.cfg", "lxc", "", mode=mode)) == expected
    assert complete(script, "lxc", "ub", mode=mode) == ["ubuntu"]


def test_config_file_before_the_pair(script: Path, mode: str, tmp_path: Path) -> None:
    (tmp_path / "site.cfg").write_text("")
    assert complete(script, "-c", f"{tmp_path}/si", mode=mode) == [f"{tmp_path}/site.cfg"]


def test_options_of_each_pair_are_the_parsers_flags(script: Path, mode: str, plugins: Plugins) -> None:
    for hv, distro in pairs(plugins):
        expected = pair_flags(plugins, hv, distro)
        assert {"--suite", "--no-cache", "--destdir", "-d", "--export"} <= expected
        assert set(complete(script, hv, distro, "-", mode=mode)) == expected
        assert set(complete(script, hv, distro, "", mode=mode)) == expected
        after_value = complete(script, hv, distro, "--suite", "noble", "--no-c", mode=mode)
        assert after_value == sorted(f for f in expected if f.startswith("--no-c"))


def test_suite_prefix(script: Path, mode: str) -> None:
    assert complete(script, "lxc", "ubuntu", "--suite", "nob", mode=mode) == ["noble"]
    assert complete(script, "lxc", "ubuntu", "--suite", "=", "nob", mode=mode) == ["noble"]
    assert complete(script, "--debug", "lxc", "ubuntu", "-d", "x", "--suite", "lt", mode=mode) == ["lts"]


def test_suites_are_the_plugins(script: Path, plugins: Plugins, distro_info: Path) -> None:
    """Generated from the plugin's release table: from its oldest supported release on, plus the
    aliases; Debian's experimental is not a suite it builds."""
    empty = "_vmbuilder_distro_info_dir=/nonexistent"  # only what was generated
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suites, "DISTRO_INFO_DIR", distro_info)
        for _, distro in pairs(plugins):
            ctx = cli.make_context("lxc", distro, plugins)
            table = ctx.distro.releases()  # type: ignore[attr-defined]
            known = [r.series for r in table.releases if not ctx.distro.unsupported(r)]  # type: ignore[attr-defined]
            got = complete(script, "lxc", distro, "--suite", "", setup=empty)
            assert sorted(got) == sorted([*known, *suites.ALIASES])
    ubuntu = complete(script, "lxc", "ubuntu", "--suite", "", setup=empty)
    assert "lucid" in ubuntu and "karmic" not in ubuntu and "stonking" in ubuntu
    debian = complete(script, "lxc", "debian", "--suite", "", setup=empty)
    assert "bookworm" in debian and "bullseye" not in debian and "sid" in debian
    assert "experimental" not in debian


def test_suites_added_to_distro_info_data_later(script: Path, tmp_path: Path) -> None:
    """A distro-info-data update shows up at TAB time without regenerating the script."""
    (tmp_path / "ubuntu.csv").write_text(
        CSV + "27.04,Zany Zebra,zany,2026-10-15,2027-04-22,2028-01-22\n"
        "4.10,Warty Warthog,warty-again,2004-03-05,2004-10-20,2006-04-30\n"
    )
    (tmp_path / "debian.csv").write_text(DEBIAN_CSV + "16,Newt,newt,2029-01-01\n")
    setup = f"_vmbuilder_distro_info_dir={tmp_path}"
    assert complete(script, "lxc", "ubuntu", "--suite", "za", setup=setup) == ["zany"]
    assert complete(script, "lxc", "ubuntu", "--suite", "war", setup=setup) == []  # older than lucid
    got = complete(script, "lxc", "ubuntu", "--suite", "", setup=setup)
    assert len(got) == len(set(got))  # the generated and the read ones are not repeated
    assert complete(script, "lxc", "debian", "--suite", "n", setup=setup) == ["newt"]
    assert complete(script, "lxc", "debian", "--suite", "ex", setup=setup) == []


def test_choice_values(script: Path, mode: str, plugins: Plugins) -> None:
    """Every setting with choices completes them; --arch the architectures the distro accepts."""
    table = cli.make_context("lxc", "ubuntu", plugins).settings.table.values()
    with_choices = [s for s in table if s.choices and s.type != "list"]
    assert {"bootstrapper", "variant", "compression", "initctl-listener"} <= {s.name for s in with_choices}
    for s in with_choices:
        assert set(complete(script, "lxc", "ubuntu", s.flag, "", mode=mode)) == set(s.choices or ()), s.name
    assert set(complete(script, "lxc", "ubuntu", "-a", "", mode=mode)) == set(NATIVE_MACHINES)
    arm = sorted(a for a in NATIVE_MACHINES if a.startswith("arm"))
    assert sorted(complete(script, "lxc", "ubuntu", "--arch", "arm", mode=mode)) == arm
    assert complete(script, "lxc", "ubuntu", "--bootstrapper", "=", "mm", mode=mode) == ["mmdebstrap"]


def test_comma_separated_list_values(script: Path, mode: str) -> None:
    formats = list(exports.FORMATS)
    assert set(complete(script, "lxc", "ubuntu", "--export", "", mode=mode)) == set(formats)
    got = complete(script, "lxc", "ubuntu", "--export", "tar,", mode=mode)
    assert set(got) == {f"tar,{f}" for f in formats if f != "tar"}
    assert set(complete(script, "lxc", "ubuntu", "--export", "tar,l", mode=mode)) == {"tar,lxc", "tar,lxd"}
    assert complete(script, "lxc", "ubuntu", "--export", "=", "tar,lxd,inc", mode=mode) == ["tar,lxd,incus"]
    assert complete(script, "lxc", "export", "build", "--export", "squashfs,sb", mode=mode) == ["squashfs,sbuild"]


def test_path_values(script: Path, mode: str, tmp_path: Path) -> None:
    base = tmp_path / "tree"
    for d in ("alpha", "beta"):
        (base / d).mkdir(parents=True)
    (base / "answers.seed").write_text("")
    dirs = {f"{base}/alpha", f"{base}/beta"}
    for flag in ("-d", "--dest", "--cache-dir", "--lxc-path", "--export-dir", "--hook-dir", "--templates"):
        assert set(complete(script, "lxc", "ubuntu", flag, f"{base}/", mode=mode)) == dirs, flag
    for flag in ("--seedfile", "-c", "--ssh-key", "--copy", "--execscript", "--from-template", "--libvirt-xml"):
        assert set(complete(script, "lxc", "ubuntu", flag, f"{base}/", mode=mode)) == dirs | {f"{base}/answers.seed"}
    assert complete(script, "lxc", "ubuntu", "--hostname", f"{base}/", mode=mode) == []


def test_commands(script: Path, mode: str, plugins: Plugins, tmp_path: Path) -> None:
    """`vmbuilder lxc validate FILE` and `vmbuilder lxc export DEST`: their parsers' flags."""
    for name in ("validate", "export"):
        parser = command_parsers(plugins, "lxc")[name]
        expected = {o for a in parser._actions for o in a.option_strings}
        assert set(complete(script, "lxc", name, "x", "-", mode=mode)) == expected
    (tmp_path / "domain.xml").write_text("")
    (tmp_path / "build").mkdir()
    assert complete(script, "lxc", "validate", f"{tmp_path}/do", mode=mode) == [f"{tmp_path}/domain.xml"]
    assert complete(script, "lxc", "validate", "x", "--rootfs", f"{tmp_path}/", mode=mode) == [f"{tmp_path}/build"]
    assert complete(script, "lxc", "export", f"{tmp_path}/", mode=mode) == [f"{tmp_path}/build"]
    assert set(complete(script, "lxc", "export", "b", "--compression", "", mode=mode)) == set(exports.COMPRESSIONS)


def test_unknown_pair_asks_the_installed_tool_once(script: Path, mode: str, tmp_path: Path) -> None:
    """A distro plugin installed after the script was generated: flags from its --help."""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "vmbuilder"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'if [ "$*" != "lxc fedora --help" ]; then exit 2; fi\n'
        "cat <<'EOF'\n"
        "usage: vmbuilder lxc fedora [options]\n\n"
        "General options:\n"
        "  -h, --help            show this help message and exit\n"
        "  -d DIR, --dest DIR, --destdir DIR\n"
        "                        directory to create\n"
        "  --release {40,41,rawhide}\n"
        "                        the release\n"
        "  --kickstart FILE      kickstart, see\n"
        "                        --also-not-a-flag in the help text\n"
        "  --overwrite, --no-overwrite\n"
        "                        replace DEST\n"
        "EOF\n"
    )
    fake.chmod(0o755)
    (tmp_path / "d1").mkdir()
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    flags = {"-h", "--help", "-d", "--dest", "--destdir", "--release", "--kickstart", "--overwrite", "--no-overwrite"}
    assert set(complete(script, "lxc", "fedora", "-", mode=mode, env=env)) == flags
    assert set(complete(script, "lxc", "fedora", "--release", "", mode=mode, env=env)) == {"40", "41", "rawhide"}
    assert complete(script, "lxc", "fedora", "-d", f"{tmp_path}/d", mode=mode, env=env) == [f"{tmp_path}/d1"]
    assert complete(script, "lxc", "fedora", "--overwrite", "--k", mode=mode, env=env) == ["--kickstart"]
    assert calls.read_text().splitlines() == ["lxc fedora --help"] * 4  # once per shell
    calls.unlink()
    twice = "COMP_WORDS=(vmbuilder lxc fedora -); COMP_CWORD=3; COMP_LINE='vmbuilder lxc fedora -'; COMP_POINT=22"
    twice += "; _vmbuilder"
    complete(script, "lxc", "fedora", "--", mode=mode, env=env, setup=twice)
    assert calls.read_text().splitlines() == ["lxc fedora --help"]
    # a known pair never runs the tool
    calls.unlink()
    complete(script, "lxc", "ubuntu", "-", mode=mode, env=env)
    assert not calls.exists()


# -- the data the script is made from -----------------------------------------------------------


def unmapped_paths(settings: list[tuple[str, str | None, completion.Value]]) -> list[str]:
    """Arguments whose metavar looks like a path but that complete no path."""
    return [
        name
        for name, metavar, value in settings
        if PATH_LIKE.search(metavar or "") and value.kind not in ("dir", "file")
    ]


def test_every_path_like_argument_completes_paths(plugins: Plugins) -> None:
    """A new setting or command argument with metavar DIR/FILE/PATH... needs a kind in PATH_KINDS."""
    found: list[tuple[str, str | None, completion.Value]] = []
    for hv, distro in pairs(plugins):
        spec = completion.pair_spec(hv, distro, plugins)
        values = {f: v for flags, v in spec.values for f in flags}
        for s in cli.make_context(hv, distro, plugins).settings.table.values():
            if s.type != "bool":
                found.append((s.flag, s.metavar, values[s.flag]))
    for hv in by_kind(plugins, "hypervisor"):
        parsers = command_parsers(plugins, hv)
        assert set(parsers) == set(commands_for(plugins, hv)), "a command without a parser to complete from"
        for name, parser in parsers.items():
            spec = completion.parser_spec(parser)
            values = {f: v for flags, v in spec.values for f in flags}
            for action in parser._actions:
                metavar = action.metavar if isinstance(action.metavar, str) else None
                if not action.option_strings:
                    assert spec.positional is not None
                    found.append((f"{name} {action.dest}", metavar, spec.positional))
                elif action.nargs != 0:
                    found.append((action.option_strings[-1], metavar, values[action.option_strings[-1]]))
    assert len(found) > 40
    assert unmapped_paths(found) == []
    # the check itself catches a path-like metavar that PATH_KINDS does not know
    new = Setting("key-path", "a key", metavar="KEYFILE")
    value = completion.value_for(new.name, new.metavar, new.choices, False, {})
    assert unmapped_paths([(new.flag, new.metavar, value)]) == ["--key-path"]


def test_suite_generation_needs_no_network(plugins: Plugins, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The devel-series probe asks the archive; generation must not, even without distro-info-data."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive was asked")

    monkeypatch.setattr(suites, "fetch_release_fields", no_network)
    monkeypatch.setattr(suites, "DISTRO_INFO_DIR", tmp_path)  # empty: no csv at all
    text = completion.bash_script(completion.collect(plugins))
    assert "kind=suite wl='devel lts stable' info='ubuntu 10.4'" in text
