"""Issue 12, mirror faults: the real bootstrap through a fault-injecting proxy on 127.0.0.1.

Every fault ends the build with exit code 1 and one error line naming the cause, leaves no DEST and
no build directory; the signature failures refuse however often apt retries; a transient fault (one
HTTP 500, one reset connection) is retried and the build succeeds. Builds use --no-cache (a cache
hit would never reach the mirror) and fail early, except the one that succeeds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc.mirrors import default_mirror

from .conftest import Builder, leftovers
from .faultlib import error_lines
from .faultproxy import FaultProxy, Rule

SUITE = "noble"
BASE = ("--suite", SUITE, "--network", "none", "--no-cache")
TEST_TIMEOUT = {"VMBUILDER_TEST_APT_TIMEOUT": "5"}  # the stalled mirror fails in seconds, not minutes


def mirror_host() -> str:
    host = urllib.parse.urlsplit(default_mirror("gutsy", "amd64", SUITE)).hostname
    assert host
    return host


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy(mirror_host()) as p:
        yield p


def run_build(builder: Builder, tmp_path: Path, proxy_url: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    dest = tmp_path / "out" / "m"
    argv = builder.argv(*BASE, "--proxy", proxy_url, "-d", str(dest), *extra)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd="/", env={**os.environ, **(env or {})})
    return proc, dest


def assert_failed_with(proc: subprocess.CompletedProcess[str], dest: Path, cause: str) -> None:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"vmbuilder: error: {cause}"), errors[0][:400]
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def deb(path: str) -> bool:
    return path.endswith(".deb")


def first_deb() -> Callable[[str], bool]:
    """Matches the first .deb requested, and every later request of that same file."""
    seen: list[str] = []

    def match(path: str) -> bool:
        if deb(path) and not seen:
            seen.append(path)
        return bool(seen) and path == seen[0]

    return match


def in_release(path: str) -> bool:
    return path.endswith(f"/dists/{SUITE}/InRelease")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused(builder: Builder, tmp_path: Path) -> None:
    proc, dest = run_build(builder, tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert_failed_with(proc, dest, "connection refused by the mirror or the proxy (127.0.0.1:")


FAULTS = {
    # name: (rule, the start of the error line)
    "http-500": (lambda: Rule(deb, "status", status=500), "HTTP 500 Internal Server Error from the mirror (http://"),
    "truncated-deb": (lambda: Rule(deb, "truncate"), "a file from the mirror has the wrong size"),
    "hash-mismatch": (lambda: Rule(deb, "corrupt"), "hash sum mismatch: a file from the mirror is not what its"),
    "stalled": (lambda: Rule(first_deb(), "stall"), "the mirror stalled: no data within the timeout"),
    "bad-signature": (
        lambda: Rule(in_release, "rewrite", rewrite=lambda p, b: b.replace(b"\nSuite: ", b"\nSuite:  ", 1)),
        "the mirror's signature is invalid",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_mirror_fault(fault: str, builder: Builder, tmp_path: Path, proxy: FaultProxy) -> None:
    make_rule, cause = FAULTS[fault]
    rule = proxy.add(make_rule())
    proc, dest = run_build(builder, tmp_path, proxy.url, env=TEST_TIMEOUT)
    assert rule.hits, "the fault was never injected"
    assert_failed_with(proc, dest, cause)
    if fault == "bad-signature":  # never retried into success, never passed over
        assert "--allow-unauthenticated" not in proc.stderr and "AllowInsecure" not in proc.stderr


def make_test_key(home: Path) -> Path:
    """A signing key in a private GnuPG home; returns its public keyring for --keyring."""
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "vmbuilder test archive <test@invalid>", "ed25519", "sign", "never"],
                   check=True, capture_output=True)  # fmt: skip
    keyring = home.parent / "test-archive.gpg"
    keyring.write_bytes(subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout)
    return keyring


def resign(home: Path, expire: bool) -> Callable[[str, bytes], bytes]:
    """Rewrite an InRelease: its signed text (with Valid-Until in the past if EXPIRE), signed by the test key."""

    def rewrite(path: str, body: bytes) -> bytes:
        text = body.decode()
        signed = text.split("\n\n", 1)[1].split("\n-----BEGIN PGP SIGNATURE-----")[0] + "\n"
        if expire and in_release(path):
            lines = signed.splitlines(keepends=True)
            at = next(i for i, ln in enumerate(lines) if ln.startswith("Date:")) + 1
            lines.insert(at, "Valid-Until: Thu, 01 Jan 2015 00:00:00 UTC\n")
            signed = "".join(lines)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
        out = subprocess.run([*gpg, "--clearsign", "--digest-algo", "SHA512"], input=signed.encode(), check=True,
                             capture_output=True)  # fmt: skip
        return out.stdout

    return rewrite


def test_expired_release_file_is_refused(builder: Builder, tmp_path: Path, proxy: FaultProxy) -> None:
    """A Release whose Valid-Until passed, validly signed (by a test key given with --keyring): apt's
    expiry check still refuses it, since the tool never passes an option that turns it off."""
    keyring = make_test_key(tmp_path / "gnupg")
    rule = proxy.add(Rule(lambda p: p.endswith("/InRelease"), "rewrite", rewrite=resign(tmp_path / "gnupg", True)))
    proc, dest = run_build(builder, tmp_path, proxy.url, "--keyring", str(keyring))
    assert rule.hits
    assert_failed_with(proc, dest, "the mirror's Release file has expired")
    assert "Check-Valid-Until" not in proc.stderr


def test_a_transient_fault_is_retried(builder: Builder, tmp_path: Path, proxy: FaultProxy) -> None:
    """One HTTP 500 and one reset connection, each on the first request of a file: apt retries, the build succeeds."""
    first_500 = proxy.add(Rule(first_deb(), "status", times=1))
    second = first_deb()
    reset = proxy.add(Rule(lambda p: deb(p) and not first_500.matches(p) and second(p), "reset", times=1))
    proc, dest = run_build(builder, tmp_path, proxy.url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (dest / "rootfs/etc/os-release").is_file()
    for rule in (first_500, reset):
        assert len(rule.hits) == 1
        faulted = rule.hits[0]
        assert proxy.requested(faulted.__eq__)[1:], f"{faulted} was not fetched again after the fault"
