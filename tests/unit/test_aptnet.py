"""aptnet: the retry and timeout options every apt run gets, and the one-line cause read back from a
failed apt/mmdebstrap/debootstrap run (the lines are what apt 2.6 and mmdebstrap 1.3 print)."""

from __future__ import annotations

import pytest

from vmbuilder_lxc import aptnet
from vmbuilder_lxc.bootstrap import BootstrapRequest, mmdebstrap_argv
from vmbuilder_lxc.packages import APT_GET

URL = "http://mirror.test/ubuntu/pool/main/s/sed/sed_4.9-2_amd64.deb"
TAIL = ["E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?",
        "E: apt download failed: E: apt-get --yes install ... failed", "E: mmdebstrap failed to run"]  # fmt: skip

CASES = {
    "500": ([f"E: Failed to fetch {URL}  500  Internal Server Error [IP: 127.0.0.1 37977]", *TAIL],
            f"HTTP 500 Internal Server Error from the mirror ({URL})"),
    "404": ([f"Err:3 {URL}", "  404  Not Found [IP: 127.0.0.1 80]", f"E: Failed to fetch {URL}  404  Not Found",
             *TAIL], f"HTTP 404 Not Found from the mirror ({URL})"),
    "truncated": ([f"E: Failed to fetch {URL}  File has unexpected size (340857 != 681714). Mirror sync in progress? "
                   "[IP: 127.0.0.1 35693]", *TAIL],
                  f"a file from the mirror has the wrong size (truncated, or a mirror sync in progress) ({URL})"),
    "hash": ([f"E: Failed to fetch {URL}  Hash Sum mismatch", "   Hashes of expected file:", *TAIL],
             f"hash sum mismatch: a file from the mirror is not what its signed index says ({URL})"),
    "stalled": ([f"Err:1 {URL}", "  Connection timed out [IP: 127.0.0.1 42797]",
                 f"E: Failed to fetch {URL}  Connection timed out [IP: 127.0.0.1 42797]", *TAIL],
                f"the mirror stalled: no data within the timeout ({URL})"),
    "refused": (["E: Failed to fetch http://mirror.test/ubuntu/dists/noble/InRelease  Could not connect to "
                 "127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)",
                 "E: Failed to fetch http://mirror.test/ubuntu/dists/noble-updates/InRelease  Unable to connect to "
                 "127.0.0.1:9:", "E: apt-get update --error-on=any failed"],
                "connection refused by the mirror or the proxy (127.0.0.1:9)"),
    "reset": ([f"E: Failed to fetch {URL}  Error reading from server - read (104: Connection reset by peer)", *TAIL],
              f"the connection to the mirror broke off ({URL})"),
    "badsig": (["Err:1 http://mirror.test/ubuntu noble InRelease",
                "  The following signatures were invalid: BADSIG 871920D1991BC93C Ubuntu Archive Automatic Signing Key",
                "W: GPG error: http://mirror.test noble InRelease: The following signatures were invalid: BADSIG",
                "E: The repository 'http://mirror.test/ubuntu noble InRelease' is not signed.",
                "E: apt-get update --error-on=any failed"], "the mirror's signature is invalid"),
    "expired": (["E: Release file for http://mirror.test/ubuntu/dists/noble/InRelease is expired (invalid since "
                 "1d 3h 2min 1s). Updates for this repository will not be applied.", "E: apt-get update failed"],
                "the mirror's Release file has expired (its Valid-Until is in the past)"),
    "unknown-key": (["W: GPG error: http://mirror.test noble InRelease: The following signatures couldn't be "
                     "verified because the public key is not available: NO_PUBKEY 871920D1991BC93C"],
                    "the mirror's Release file is signed by a key that is not in the keyring (--keyring)"),
    "debootstrap-sig": (["E: Invalid Release signature (key id 871920D1991BC93C)"],
                        "the mirror's signature is invalid"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose_names_the_fault(case: str) -> None:
    lines, cause = CASES[case]
    assert aptnet.diagnose(lines) == cause


def test_a_signature_failure_is_named_before_what_follows_it() -> None:
    lines = CASES["badsig"][0] + CASES["500"][0]
    assert aptnet.diagnose(lines) == "the mirror's signature is invalid"


def test_unknown_output_has_no_cause() -> None:
    assert aptnet.diagnose(["E: Sub-process /usr/bin/dpkg returned an error code (1)"]) is None
    assert aptnet.diagnose([]) is None


def test_only_apt_tools_are_diagnosed() -> None:
    assert aptnet.is_apt_tool(["mmdebstrap", "--mode=root"])
    assert aptnet.is_apt_tool(["chroot", "/root", "apt-get", "-y", "update"])
    assert aptnet.is_apt_tool(["/usr/sbin/debootstrap", "noble"])
    assert not aptnet.is_apt_tool(["virsh", "-c", "lxc:///", "define", "x.xml"])


def test_every_apt_run_retries_with_bounded_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(aptnet.TEST_TIMEOUT_ENV, raising=False)
    opts = dict(aptnet.options())
    assert opts == {"Acquire::Retries": "3", "Acquire::Retries::Delay": "false", "Acquire::http::Timeout": "60",
                    "Acquire::https::Timeout": "60"}  # fmt: skip
    assert not any("Allow" in k or "Check" in k or "Trusted" in k for k in opts), "nothing about signatures"
    req = BootstrapRequest(suite="noble", arch="amd64", mirror="http://mirror.test/ubuntu", components=("main",),
                           include=("apt",), keyring=None)  # fmt: skip
    assert '--aptopt=Acquire::Retries "3"' in mmdebstrap_argv(req, __import__("pathlib").Path("/tmp/x"))
    joined = " ".join(APT_GET)
    assert "-o Acquire::Retries=3" in joined and "-o Acquire::http::Timeout=" in joined


@pytest.mark.parametrize(("value", "seconds"), [("5", 5), ("600", 600), ("0", 60), ("601", 60), ("x", 60), ("", 60)])
def test_the_test_only_timeout(monkeypatch: pytest.MonkeyPatch, value: str, seconds: int) -> None:
    monkeypatch.setenv(aptnet.TEST_TIMEOUT_ENV, value)
    assert aptnet.timeout() == seconds
