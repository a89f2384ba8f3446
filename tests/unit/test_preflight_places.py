"""Preflight checks of the places a build or command writes to and the files it reads: -d,
--cache-dir, `lxc validate FILE` and `lxc export DEST --export-dir DIR`.

Each bad input ends in exit 2 with one line, before the build directory is made (pipeline's
workdir step is a tripwire) and without writing anything. Read-only and virtual filesystems are
simulated with a mountinfo file the test writes, so no test mounts anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import cli, pipeline, places
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.places import check_writable_dir, mount_of
from vmbuilder_lxc.source import archive as archive_source

MIRROR = "http://mirror.test/ubuntu"
HINT = "the fix"


def mountinfo(tmp_path: Path, *mounts: tuple[str, str, str]) -> Path:
    """A mountinfo file: / as ext4, then (mount point, fstype, options) for each extra mount."""
    lines = ["1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro"]
    for i, (point, fstype, options) in enumerate(mounts, start=2):
        escaped = point.replace(" ", "\\040")
        lines.append(f"{i} 1 0:{i} / {escaped} {options} shared:{i} - {fstype} {fstype} {options}")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- places.check_writable_dir -------------------------------------------------------------------------------


def test_a_writable_directory_passes(tmp_path: Path) -> None:
    check_writable_dir(tmp_path / "new" / "deeper", "-d", HINT, mountinfo=mountinfo(tmp_path))


@pytest.mark.parametrize("path", ["/proc/x", "/proc", "/sys/fs/x", "/dev/x", "/dev/shm/x"])
def test_kernel_filesystems_are_refused(path: str) -> None:
    with pytest.raises(UserError, match="a kernel filesystem"):
        check_writable_dir(Path(path), "-d", HINT)


def test_a_symlink_into_proc_is_refused(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/proc/self")
    with pytest.raises(UserError, match="kernel filesystem"):
        check_writable_dir(tmp_path / "link" / "x", "-d", HINT)


def test_a_file_on_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        check_writable_dir(tmp_path / "file" / "x", "--cache-dir", HINT)


def test_a_read_only_mount_is_refused(tmp_path: Path) -> None:
    info = mountinfo(tmp_path, (str(tmp_path / "ro dir"), "ext4", "ro,relatime"))
    (tmp_path / "ro dir").mkdir()
    with pytest.raises(UserError, match="mounted read-only"):
        check_writable_dir(tmp_path / "ro dir" / "ct", "-d", HINT, mountinfo=info)
    check_writable_dir(tmp_path / "ct", "-d", HINT, mountinfo=info)  # beside it is fine


@pytest.mark.parametrize("fstype", ["cgroup2", "tracefs", "fuse.lxcfs", "configfs"])
def test_other_virtual_filesystems_are_refused(tmp_path: Path, fstype: str) -> None:
    info = mountinfo(tmp_path, (str(tmp_path), fstype, "rw"))
    with pytest.raises(UserError, match=f"a {fstype} filesystem"):
        check_writable_dir(tmp_path / "ct", "-d", HINT, mountinfo=info)


def test_the_deepest_and_last_mount_wins(tmp_path: Path) -> None:
    info = mountinfo(tmp_path, (str(tmp_path), "tmpfs", "ro"), (str(tmp_path), "ext4", "rw"), ("/tm", "xfs", "ro"))
    assert mount_of(tmp_path / "a", info) == (tmp_path, "ext4", frozenset({"rw"}))


# -- the command line --------------------------------------------------------------------------------------------


@pytest.fixture
def build(
    monkeypatch: pytest.MonkeyPatch, no_host_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Any:
    """main() for `lxc ubuntu --suite noble`: preflight runs for real, the build directory is a tripwire."""

    def tripwire(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the build directory was reached")

    monkeypatch.setattr(pipeline, "enter_private_mount_namespace", tripwire)
    monkeypatch.setattr(pipeline, "_make_workdir", tripwire)
    monkeypatch.setattr(archive_source, "require_keyring", lambda path, name: ["0" * 40])
    monkeypatch.setattr("vmbuilder_lxc.bootstrap.shutil.which", lambda *a, **k: "/usr/bin/true")
    return lambda *argv: _main(capsys, ["lxc", "ubuntu", "--arch", "amd64", "--suite", "noble", "--mirror", MIRROR,
                                        *argv])  # fmt: skip


def _main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def one_line(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("vmbuilder: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


def test_the_control_build_reaches_the_build_directory(build: Any, tmp_path: Path) -> None:
    code, err = build("-d", str(tmp_path / "ct"), "--cache-dir", str(tmp_path / "cache"))
    assert code == 1 and "the build directory was reached" in err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("dest", ["/proc/vmb-test", "/sys/vmb-test", "/dev/vmb-test", "/proc/self/fd/x"])
def test_dest_in_a_kernel_filesystem(build: Any, dest: str) -> None:
    assert "kernel filesystem" in one_line(*build("-d", dest))


def test_dest_below_a_file(build: Any, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    one_line(*build("-d", str(tmp_path / "file" / "ct")))


def test_dest_on_a_read_only_filesystem(build: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(places, "MOUNTINFO", mountinfo(tmp_path, (str(tmp_path / "ro"), "ext4", "ro")))
    assert "read-only" in one_line(*build("-d", str(tmp_path / "ro" / "ct")))


def test_dest_with_export_only_is_checked_too(build: Any) -> None:
    one_line(*build("-d", "/proc/vmb-test", "--export", "tar", "--export-only"))


@pytest.mark.parametrize("kind", ["file", "bases-file", "proc", "below-file"])
def test_cache_dir_that_cannot_be_a_directory(build: Any, tmp_path: Path, kind: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "bases").write_text("x")
    cache = {"file": tmp_path / "file", "bases-file": tmp_path / "cache", "proc": Path("/proc/vmb-cache"),
             "below-file": tmp_path / "file" / "cache"}[kind]  # fmt: skip
    one_line(*build("-d", str(tmp_path / "ct"), "--cache-dir", str(cache)))


# -- vmbuilder lxc validate FILE ---------------------------------------------------------------------------------


@pytest.fixture
def command(no_host_config: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    return lambda *argv: _main(capsys, ["lxc", *argv])


@pytest.mark.parametrize("kind", ["binary", "latin1", "nul", "huge", "fifo", "directory", "missing", "device"])
def test_validate_refuses_what_is_not_a_domain_xml_file(command: Any, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "domain.xml"
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "latin1":
        path.write_bytes("<domain type='lxc'><name>caf\xe9</name></domain>".encode("latin-1"))
    elif kind == "nul":
        path.write_text("<domain type='lxc'>\0</domain>")
    elif kind == "huge":
        with path.open("wb") as fh:
            fh.truncate(64 << 20)  # sparse: 64 MiB claimed, nothing written
    elif kind == "fifo":
        os.mkfifo(path)  # never opened: reading it would block forever
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = Path("/dev/zero")
    one_line(*command("validate", str(path)))


def test_validate_refuses_a_rootfs_that_is_not_a_directory(command: Any, tmp_path: Path) -> None:
    xml = tmp_path / "d.xml"
    xml.write_text("<domain type='lxc'><name>x</name></domain>")
    one_line(*command("validate", str(xml), "--rootfs", str(xml)))


# -- vmbuilder lxc export DEST -------------------------------------------------------------------------------------


def a_build(tmp_path: Path) -> Path:
    dest = tmp_path / "ct"
    (dest / "rootfs").mkdir(parents=True)
    (dest / "vmbuilder-lxc.json").write_text(json.dumps({"status": "ok", "settings": {}, "release": {}}))
    return dest


@pytest.mark.parametrize("kind", ["file", "proc", "below-file", "ro"])
def test_export_dir_that_cannot_be_written(
    command: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    dest = a_build(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(places, "MOUNTINFO", mountinfo(tmp_path, (str(tmp_path / "ro"), "ext4", "ro")))
    out = {"file": tmp_path / "file", "proc": Path("/proc/vmb-out"), "below-file": tmp_path / "file" / "out",
           "ro": tmp_path / "ro"}[kind]  # fmt: skip
    assert "--export-dir" in one_line(*command("export", str(dest), "--export", "tar", "--export-dir", str(out)))


@pytest.mark.parametrize("kind", ["missing", "empty", "file", "fifo-marker", "bad-json", "binary-json", "list-json",
                                  "no-rootfs", "rootfs-symlink"])  # fmt: skip
def test_export_of_something_that_is_not_a_build(command: Any, tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "ct"
    marker = dest / "vmbuilder-lxc.json"
    if kind == "file":
        dest.write_text("x")
    elif kind != "missing":
        dest.mkdir()
        if kind != "empty":
            (dest / "rootfs").mkdir()
    if kind == "fifo-marker":
        os.mkfifo(marker)
    elif kind == "bad-json":
        marker.write_text("{not json")
    elif kind == "binary-json":
        marker.write_bytes(b"\xff\xfe{}")
    elif kind == "list-json":
        marker.write_text("[]")
    elif kind in ("no-rootfs", "rootfs-symlink"):
        marker.write_text("{}")
        (dest / "rootfs").rmdir()
        if kind == "rootfs-symlink":
            (dest / "rootfs").symlink_to("/")
    one_line(*command("export", str(dest), "--export", "tar"))
    assert not (tmp_path / "ct.tar").exists()


# -- pipeline.check_destination on its own (the validators bypassed) -------------------------------------------


@pytest.mark.parametrize("dest", ["/proc/vmb-test", "/sys/kernel/vmb", "{file}/ct", "{ro}/ct"])
def test_check_destination_holds_without_the_validators(
    plugins: Any, no_host_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dest: str
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(places, "MOUNTINFO", mountinfo(tmp_path, (str(tmp_path / "ro"), "ext4", "ro")))
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    cli.configure(ctx, ["--arch", "amd64"])
    ctx.settings.set("dest", dest.format(file=tmp_path / "file", ro=tmp_path / "ro"))
    for keep in (True, False):  # --export-only builds beside DEST too
        ctx.keep_dest = keep
        with pytest.raises(UserError):
            pipeline.check_destination(ctx)


def test_control_characters_in_paths_are_one_line(command: Any, tmp_path: Path) -> None:
    one_line(*command("validate", str(tmp_path / "d\0.xml")))
    dest = a_build(tmp_path)
    for out in (tmp_path / "out\nx", tmp_path / "out\0x"):
        one_line(*command("export", str(dest), "--export", "tar", "--export-dir", str(out)))
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize(
    "argv", [["--export", ","], ["--export", "bogus"], ["--export", "lxc", "--compression-level", "12"],
             ["--export", "sbuild", "--compression", "gzip", "--compression-level", "0"]]
)  # fmt: skip
def test_export_formats_and_levels_are_checked_first(command: Any, tmp_path: Path, argv: list[str]) -> None:
    dest = a_build(tmp_path)
    one_line(*command("export", str(dest), *argv))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "home"]  # home: no_host_config
