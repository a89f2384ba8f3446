"""Acceptance 7: bad input gives one line on stderr, a non-zero exit code, no traceback, and
nothing is lost (an existing destination is untouched)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import Builder, vmbuilder_command


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([vmbuilder_command(), *args], capture_output=True, text=True, timeout=120, cwd="/")


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith("vmbuilder: error: ")
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_unknown_suite_lists_the_known_ones(tmp_path: Path) -> None:
    result = run_cli("lxc", "ubuntu", "--suite", "nobel", "-d", str(tmp_path / "x"))
    assert_one_line_error(result, "unknown ubuntu suite 'nobel'", "noble", "jammy", "--suite")
    assert result.returncode == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("hostname", "needle"),
    [("web_1", "letters, digits"), ("web1.example.com", "--domain"), ("-web", "letters, digits")],
)
def test_bad_hostname(tmp_path: Path, hostname: str, needle: str) -> None:
    result = run_cli("lxc", "ubuntu", "--suite", "noble", f"--hostname={hostname}", "-d", str(tmp_path / "x"))
    assert_one_line_error(result, "--hostname", needle)


def test_missing_ssh_key_file(tmp_path: Path) -> None:
    result = run_cli("lxc", "ubuntu", "--ssh-user-key", str(tmp_path / "nope.pub"), "-d", str(tmp_path / "x"))
    assert_one_line_error(result, "--ssh-user-key", "does not exist")


def test_private_key_instead_of_public_key(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    result = run_cli("lxc", "ubuntu", "--ssh-user-key", str(tmp_path / "k"), "-d", str(tmp_path / "x"))
    assert_one_line_error(result, "private key", ".pub")


def test_existing_destination_needs_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "web1"
    dest.mkdir()
    (dest / "precious").write_text("keep me")
    # --overwrite replaces only our own builds, never an arbitrary directory: it is not suggested.
    for extra in ((), ("--overwrite",)):
        result = run_cli("lxc", "ubuntu", "--suite", "noble", *extra, "-d", str(dest))
        assert_one_line_error(result, "not built by vmbuilder-lxc", "refused, even with --overwrite")
        assert "pass --overwrite" not in result.stderr
        assert (dest / "precious").read_text() == "keep me"


def test_unknown_option_and_bad_values() -> None:
    assert_one_line_error(run_cli("lxc", "ubuntu", "--hostnme", "x"), "--hostnme", "did you mean --hostname")
    assert_one_line_error(run_cli("lxc", "ubuntu", "--mem", "lots"), "--mem")
    assert_one_line_error(run_cli("lxc", "ubuntu", "--bootstrapper", "cdebootstrap"), "mmdebstrap")
    assert_one_line_error(run_cli("kvm", "ubuntu"), "unknown hypervisor 'kvm'", "lxc")
    assert_one_line_error(run_cli("lxc"), "missing DISTRO", "ubuntu")


def test_bad_config_file_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[ubuntu]\nsuit = noble\n")
    assert_one_line_error(run_cli("lxc", "ubuntu", "-c", str(cfg)), "unknown key 'suit'", "did you mean 'suite'")


def test_overwrite_replaces_an_earlier_build(builder: Builder, tmp_path: Path) -> None:
    dest = tmp_path / "ow1"
    first = builder.run("--suite", "noble", "--network", "none", "-d", str(dest)).check()
    again = builder.run("--suite", "noble", "--network", "none", "-d", str(dest))
    assert again.returncode == 2 and "already exists" in again.stderr
    mac_before = (dest / "config").read_text()
    second = builder.run("--suite", "noble", "--network", "none", "--hostname", "renamed", "-o", "-d", str(dest))
    second.check()
    assert first.dest == second.dest
    assert (dest / "rootfs/etc/hostname").read_text().strip() == "renamed"
    assert (dest / "config").read_text() != mac_before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ow1.")]
