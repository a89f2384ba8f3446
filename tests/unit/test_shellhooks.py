"""User hook directories (--hook-dir): stages, order, cache digest, environment and failures.

Hooks are real shell scripts in tmp_path (run() starts processes, which a fake file system cannot
serve); each dumps its environment and arguments to a file for the assertions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuilder_lxc.data import hooks_dir
from vmbuilder_lxc.log import setup_logging
from vmbuilder_lxc.shellhooks import (
    CACHED_STAGES,
    STAGES,
    HookError,
    digest,
    run_builtin,
    run_stage,
    stage_of,
    stage_scripts,
    unknown_scripts,
)

HOOK_ENV = {"SUITE": "noble", "ARCH": "amd64", "DISTRO": "ubuntu", "HOSTNAME": "web1"}


def hook(directory: Path, name: str, body: str = "", *, executable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\nset -e\n{body}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def dumping_hook(directory: Path, name: str, out: Path) -> Path:
    """A hook that records its arguments and environment in out/NAME.env."""
    return hook(directory, name, f'{{ echo "ARG1=$1"; echo "ARGC=$#"; env; }} > "{out}/{name}.env"')


def read_env(path: Path) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in path.read_text().splitlines() if "=" in ln)


# -- stages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stage"),
    [
        ("setup", "setup"),
        ("setup-01-apt-proxy", "setup"),
        ("essential.sh", "essential"),
        ("customize10", "customize"),
        ("finalize-zz", "finalize"),
        ("customise", None),  # British spelling is not a stage (mmdebstrap's names)
        ("01-setup", None),
        ("README", None),
        ("Setup", None),
    ],
)
def test_stage_of(name: str, stage: str | None) -> None:
    assert stage_of(name) == stage


def test_stage_names_follow_mmdebstrap() -> None:
    assert STAGES == ("setup", "essential", "customize", "finalize")
    assert CACHED_STAGES == ("setup", "essential")


def test_stage_scripts_are_ordered_by_directory_then_name(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    hook(a, "customize-20")
    hook(a, "customize-10")
    hook(a, "setup-00")
    hook(b, "customize-05")
    hook(b, "customize-15")
    (a / "customize-dir").mkdir()  # directories are not hooks
    assert [p.name for p in stage_scripts([a, b], "customize")] == [
        "customize-10", "customize-20", "customize-05", "customize-15",
    ]  # fmt: skip
    assert stage_scripts([a, b], "setup") == [a / "setup-00"]
    assert stage_scripts([a, b], "finalize") == []


def test_non_executable_hooks_are_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(0)
    hook(tmp_path, "customize-10", executable=False)
    hook(tmp_path, "customize-20")
    assert [p.name for p in stage_scripts([tmp_path], "customize")] == ["customize-20"]
    err = capsys.readouterr().err
    assert f"hook {tmp_path / 'customize-10'} is not executable; skipped" in err
    assert "chmod +x" in err


def test_unknown_scripts(tmp_path: Path) -> None:
    hook(tmp_path, "customize")
    hook(tmp_path, "cleanup")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in unknown_scripts([tmp_path])] == ["cleanup", "notes.txt"]


# -- digest ------------------------------------------------------------------------------------------


def test_digest_changes_with_content_and_name(tmp_path: Path) -> None:
    """setup/essential hooks shape the cached base: editing one must invalidate the cache."""
    empty = digest([tmp_path])
    script = hook(tmp_path, "essential-10", "echo one")
    first = digest([tmp_path])
    assert first != empty
    assert digest([tmp_path]) == first  # stable
    script.write_text("#!/bin/sh\necho two\n")
    second = digest([tmp_path])
    assert second != first
    script.rename(tmp_path / "essential-20")
    assert digest([tmp_path]) != second


def test_digest_ignores_stages_after_the_cache(tmp_path: Path) -> None:
    """customize/finalize hooks run on every build; changing them must not throw the cache away."""
    hook(tmp_path, "setup-10", "echo base")
    before = digest([tmp_path])
    hook(tmp_path, "customize-10", "echo later")
    hook(tmp_path, "finalize-10", "echo later")
    assert digest([tmp_path]) == before


def test_digest_ignores_non_executable_hooks(tmp_path: Path) -> None:
    """A skipped hook does not shape the base."""
    before = digest([tmp_path])
    hook(tmp_path, "setup-10", executable=False)
    assert digest([tmp_path]) == before


def test_digest_without_hook_dirs_is_constant() -> None:
    assert digest([]) == digest([])


# -- running -----------------------------------------------------------------------------------------


def test_run_stage_passes_rootfs_and_hook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    hooks, out, rootfs = tmp_path / "hooks", tmp_path / "out", tmp_path / "root fs"
    out.mkdir()
    rootfs.mkdir()
    dumping_hook(hooks, "customize-10", out)
    dumping_hook(hooks, "setup-10", out)  # another stage: must not run
    ran = run_stage([hooks], "customize", rootfs, HOOK_ENV)
    assert ran == [str(hooks / "customize-10")]
    env = read_env(out / "customize-10.env")
    assert env["ARG1"] == str(rootfs)
    assert env["ARGC"] == "1"  # the path with a space is one argument
    assert env["ROOTFS"] == str(rootfs)
    assert env["STAGE"] == "customize"
    assert env["SUITE"] == "noble"
    assert env["ARCH"] == "amd64"
    assert env["HOSTNAME"] == "web1"
    assert env["LC_ALL"] == "C.UTF-8"
    assert "LANG" not in env
    assert not (out / "setup-10.env").exists()


def test_run_stage_runs_hooks_in_order(tmp_path: Path) -> None:
    log = tmp_path / "order"
    for name in ("essential-b", "essential-a", "essential-c"):
        hook(tmp_path / "hooks", name, f'echo {name} >> "{log}"')
    run_stage([tmp_path / "hooks"], "essential", tmp_path, HOOK_ENV)
    assert log.read_text().split() == ["essential-a", "essential-b", "essential-c"]


def test_failing_hook_raises_hook_error(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hook(hooks, "finalize-10", 'echo "checking"; echo "something is wrong" >&2; exit 3')
    later = hook(hooks, "finalize-20", f'touch "{tmp_path}/later-ran"')
    with pytest.raises(HookError) as err:
        run_stage([hooks], "finalize", tmp_path, HOOK_ENV)
    assert str(err.value) == f"hook {hooks / 'finalize-10'} failed with exit code 3"
    assert err.value.returncode == 3
    assert err.value.tail == ["checking", "something is wrong"]
    assert not (tmp_path / "later-ran").exists(), f"{later} ran after a failure"


def test_hook_killed_by_a_signal(tmp_path: Path) -> None:
    hook(tmp_path / "hooks", "customize", "kill -KILL $$")
    with pytest.raises(HookError, match="failed with exit code -9"):
        run_stage([tmp_path / "hooks"], "customize", tmp_path, HOOK_ENV)


def test_no_hooks_run_nothing(tmp_path: Path) -> None:
    assert run_stage([], "setup", tmp_path, HOOK_ENV) == []


# -- packaged hooks (hooks/NAME.sh) ---------------------------------------------------------------------


@pytest.fixture
def guest_with_zones(tmp_path: Path) -> Path:
    """A rootfs with two zone files and no tzdata.list, so the hook does not chroot (no root needed)."""
    if not (hooks_dir() / "timezone.sh").is_file():
        pytest.skip("this version has no hooks/timezone.sh")
    rootfs = tmp_path / "rootfs"
    for zone in ("Etc/UTC", "Europe/Berlin"):
        path = rootfs / "usr/share/zoneinfo" / zone
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"TZif2")
    (rootfs / "etc").mkdir()
    (rootfs / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    assert not (rootfs / "var/lib/dpkg/info/tzdata.list").exists()
    return rootfs


def test_timezone_hook_links_localtime(guest_with_zones: Path) -> None:
    run_builtin("timezone", guest_with_zones, {"VM_TIMEZONE": "Europe/Berlin"})
    assert os.readlink(guest_with_zones / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"


def test_timezone_hook_refuses_a_zone_the_guest_lacks(guest_with_zones: Path) -> None:
    with pytest.raises(HookError) as err:
        run_builtin("timezone", guest_with_zones, {"VM_TIMEZONE": "Mars/Olympus_Mons"})
    assert str(err.value) == f"hook {hooks_dir() / 'timezone.sh'} failed with exit code 1"
    assert any("Mars/Olympus_Mons does not exist in the guest" in line for line in err.value.tail)
    assert os.readlink(guest_with_zones / "etc/localtime") == "/usr/share/zoneinfo/Etc/UTC"  # unchanged


def test_timezone_hook_needs_its_input(guest_with_zones: Path) -> None:
    with pytest.raises(HookError):
        run_builtin("timezone", guest_with_zones, {})


@pytest.mark.parametrize("zone", ["UTC", "Etc/UTC"])
def test_timezone_hook_leaves_the_zone_tzdata_already_recorded(guest_with_zones: Path, zone: str) -> None:
    """The base's zone in tzdata's own form: no dpkg-reconfigure (here it would fail: no chroot)."""
    (guest_with_zones / "usr/share/zoneinfo/UTC").symlink_to("Etc/UTC")
    (guest_with_zones / "etc/timezone").write_text("Etc/UTC\n")
    (guest_with_zones / "var/lib/dpkg/info").mkdir(parents=True)
    (guest_with_zones / "var/lib/dpkg/info/tzdata.list").write_text("")
    run_builtin("timezone", guest_with_zones, {"VM_TIMEZONE": zone})
    assert os.readlink(guest_with_zones / "etc/localtime") == "/usr/share/zoneinfo/Etc/UTC"
    with pytest.raises(HookError):  # another zone does reconfigure tzdata (which this fake guest lacks)
        run_builtin("timezone", guest_with_zones, {"VM_TIMEZONE": "Europe/Berlin"})


def test_timezone_hook_reconfigures_when_etc_timezone_disagrees(guest_with_zones: Path) -> None:
    (guest_with_zones / "etc/timezone").write_text("Europe/Berlin\n")
    (guest_with_zones / "var/lib/dpkg/info").mkdir(parents=True)
    (guest_with_zones / "var/lib/dpkg/info/tzdata.list").write_text("")
    with pytest.raises(HookError):
        run_builtin("timezone", guest_with_zones, {"VM_TIMEZONE": "Etc/UTC"})
