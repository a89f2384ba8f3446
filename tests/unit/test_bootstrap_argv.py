"""The argument vectors of mmdebstrap and debootstrap, built without running either.

Every value a user sets must land in one of two places: inside a single `--opt=VALUE` argument,
or as an operand after the options end (`--` for mmdebstrap, the suite for debootstrap). These
tests pin the vectors option by option, so a reordering that would let a value be read as an
option, or a lost component, keyring or variant, fails here and not only in a root build.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import aptnet
from vmbuilder_lxc import bootstrap as bootstrap_module
from vmbuilder_lxc.bootstrap import (
    INSECURE_APTOPTS,
    BootstrapRequest,
    bootstrap,
    choose_backend,
    debootstrap_argv,
    mmdebstrap_argv,
)
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.mirrors import DEBOOTSTRAP_SCRIPTS

MIRROR = "http://archive.mirror.test/ubuntu"
SECURITY = "http://security.mirror.test/ubuntu"
KEYRING = Path("/usr/share/keyrings/test-archive-keyring.gpg")
TARGET = Path("/srv/build/.ct.1.vmbuilder-partial/rootfs")


def request(**changes: Any) -> BootstrapRequest:
    base = BootstrapRequest(
        suite="noble", arch="arm64", mirror=MIRROR, components=("main", "universe"), include=("apt", "sudo"),
        keyring=KEYRING,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def split_mmdebstrap(argv: list[str]) -> tuple[list[str], list[str]]:
    """(options, operands) around the `--` that ends mmdebstrap's options."""
    assert argv[0] == "mmdebstrap"
    end = argv.index("--")
    return argv[1:end], argv[end + 1 :]


def split_debootstrap(argv: list[str]) -> tuple[list[str], list[str]]:
    """(options, operands): debootstrap's option loop stops at the first non-option (the suite)."""
    assert argv[0] == "debootstrap"
    first = next(i for i, a in enumerate(argv[1:], 1) if not a.startswith("-"))
    return argv[1:first], argv[first:]


# -- mmdebstrap -----------------------------------------------------------------------------------


def test_mmdebstrap_vector_option_by_option() -> None:
    aptopts = aptnet.aptopts()
    argv = mmdebstrap_argv(request(), TARGET)
    assert argv == [
        "mmdebstrap", "--mode=root", "--arch=arm64", "--components=main,universe", "--variant=minbase",
        "--include=apt,sudo", f"--keyring={KEYRING}", *aptopts, '--aptopt=APT::Install-Recommends "false"',
        "--", "noble", str(TARGET), f"deb {MIRROR} noble main universe",
    ]  # fmt: skip


def test_mmdebstrap_pockets_and_security_mirror_are_source_operands() -> None:
    argv = mmdebstrap_argv(request(pockets=("updates", "security"), security_mirror=SECURITY), TARGET)
    options, operands = split_mmdebstrap(argv)
    assert operands == [
        "noble", str(TARGET),
        f"deb {MIRROR} noble main universe",
        f"deb {MIRROR} noble-updates main universe",
        f"deb {SECURITY} noble-security main universe",
    ]  # fmt: skip
    assert not any(MIRROR in o or SECURITY in o for o in options)


def test_mmdebstrap_security_pocket_without_a_security_mirror_uses_the_mirror() -> None:
    _, operands = split_mmdebstrap(mmdebstrap_argv(request(pockets=("security",)), TARGET))
    assert operands[-1] == f"deb {MIRROR} noble-security main universe"


@pytest.mark.parametrize(("variant", "expected"), [("minbase", ["--variant=minbase"]), ("buildd", ["--variant=buildd"]),
                                                   (None, [])])  # fmt: skip
def test_variant(variant: str | None, expected: list[str]) -> None:
    for build, split in ((mmdebstrap_argv, split_mmdebstrap), (debootstrap_argv, split_debootstrap)):
        options, _ = split(build(request(variant=variant), TARGET))
        assert [o for o in options if o.startswith("--variant")] == expected


def test_an_unknown_variant_is_refused() -> None:
    for build in (mmdebstrap_argv, debootstrap_argv):
        with pytest.raises(UserError):
            build(request(variant="fakechroot"), TARGET)


def test_no_include_means_no_include_option() -> None:
    for build, split in ((mmdebstrap_argv, split_mmdebstrap), (debootstrap_argv, split_debootstrap)):
        options, _ = split(build(request(include=()), TARGET))
        assert not any(o.startswith("--include") for o in options)


def test_mmdebstrap_insecure_replaces_the_keyring_with_the_two_apt_options() -> None:
    secure, _ = split_mmdebstrap(mmdebstrap_argv(request(), TARGET))
    insecure, _ = split_mmdebstrap(mmdebstrap_argv(request(keyring=None), TARGET))
    assert f"--keyring={KEYRING}" in secure
    assert not any(o.startswith("--keyring") for o in insecure)
    assert [o for o in insecure if o not in secure] == [f"--aptopt={opt}" for opt in INSECURE_APTOPTS]
    assert not any("Insecure" in o or "Unauthenticated" in o for o in secure)


def test_mmdebstrap_proxy_is_one_quoted_apt_option() -> None:
    options, operands = split_mmdebstrap(mmdebstrap_argv(request(proxy="http://proxy.test:3142"), TARGET))
    assert '--aptopt=Acquire::http::Proxy "http://proxy.test:3142";' in options
    assert not any("proxy.test" in o for o in operands)


def test_a_relative_target_becomes_absolute() -> None:
    for build, split in ((mmdebstrap_argv, split_mmdebstrap), (debootstrap_argv, split_debootstrap)):
        _, operands = split(build(request(), Path("-rootfs")))
        assert operands[1] == str(Path("-rootfs").absolute())
        assert operands[1].startswith("/")


# -- debootstrap ----------------------------------------------------------------------------------


def test_debootstrap_vector_option_by_option() -> None:
    assert debootstrap_argv(request(), TARGET) == [
        "debootstrap", "--arch=arm64", "--components=main,universe", "--variant=minbase", "--include=apt,sudo",
        f"--keyring={KEYRING}", "noble", str(TARGET), MIRROR,
    ]  # fmt: skip


def test_debootstrap_script_is_the_last_operand() -> None:
    argv = debootstrap_argv(request(script="gutsy"), TARGET)
    _, operands = split_debootstrap(argv)
    assert operands == ["noble", str(TARGET), MIRROR, str(DEBOOTSTRAP_SCRIPTS / "gutsy")]


def test_debootstrap_insecure_is_no_check_gpg_and_only_then() -> None:
    secure, _ = split_debootstrap(debootstrap_argv(request(), TARGET))
    insecure, _ = split_debootstrap(debootstrap_argv(request(keyring=None), TARGET))
    assert "--no-check-gpg" not in secure and f"--keyring={KEYRING}" in secure
    assert "--no-check-gpg" in insecure and not any(o.startswith("--keyring") for o in insecure)


def test_debootstrap_ignores_pockets_and_proxy_in_its_vector() -> None:
    """debootstrap takes one mirror; the proxy goes through the environment (see bootstrap())."""
    argv = debootstrap_argv(request(pockets=("updates",), security_mirror=SECURITY, proxy="http://p.test:3142"), TARGET)
    assert argv == debootstrap_argv(request(), TARGET)


# -- user input only as operands or inside one option argument ------------------------------------


USER_VALUES = {"suite": "noble", "mirror": MIRROR, "security_mirror": SECURITY}


@pytest.mark.parametrize("build", [mmdebstrap_argv, debootstrap_argv])
def test_user_values_are_never_an_argument_of_their_own_before_the_options_end(build: Any) -> None:
    req = request(pockets=("security",), security_mirror=SECURITY, include=("openssh-server",))
    argv = build(req, TARGET)
    options, operands = (split_mmdebstrap if build is mmdebstrap_argv else split_debootstrap)(argv)
    assert all(o.startswith("--") for o in options), options
    # Each option is `--name` or `--name=VALUE`: the value can never be a separate argument.
    assert all(o.split("=", 1)[0].lstrip("-").replace("-", "").isalnum() for o in options), options
    for value in USER_VALUES.values():
        assert value not in options
    assert operands[0] == "noble"
    assert not any(o.startswith("-") for o in operands), operands


@pytest.mark.parametrize(
    "changes",
    [{"suite": "--foreign"}, {"suite": "-v"}, {"mirror": "--help"}, {"arch": "--variant=buildd"},
     {"components": ("main", "--no-check-gpg")}, {"include": ("--keyring=/tmp/k",)}],
)  # fmt: skip
def test_values_that_look_like_options_never_become_a_vector(changes: dict[str, Any]) -> None:
    for build in (mmdebstrap_argv, debootstrap_argv):
        with pytest.raises(UserError):
            build(request(**changes), TARGET)


# -- running: hooks, environment, backend choice (run() and which() faked) ------------------------


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(bootstrap_module, "run", lambda argv, env, progress: calls.append((list(argv), dict(env))))
    return calls


def test_mmdebstrap_setup_hooks_are_options_before_the_end_of_options(
    ran: list[tuple[list[str], dict[str, str]]], tmp_path: Path
) -> None:
    hook = tmp_path / "hooks dir/setup-10"
    target = tmp_path / "rootfs"
    argv = bootstrap("mmdebstrap", request(proxy="http://p.test:3142"), target, setup_hooks=[hook])
    assert ran[0][0] == argv
    options, operands = split_mmdebstrap(argv)
    assert options[0] == f"--setup-hook='{hook}' \"$1\""
    assert operands[:2] == ["noble", str(target)]
    env = ran[0][1]
    assert env["ROOTFS"] == str(target) and env["STAGE"] == "setup"
    assert env["http_proxy"] == env["https_proxy"] == "http://p.test:3142"
    assert target.is_dir()


def test_debootstrap_setup_hooks_run_before_it(
    ran: list[tuple[list[str], dict[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    monkeypatch.setattr(bootstrap_module, "run_script", lambda hook, target, env, STAGE: order.append(str(hook)))
    target = tmp_path / "rootfs"
    argv = bootstrap("debootstrap", request(), target, setup_hooks=[tmp_path / "setup-a", tmp_path / "setup-b"])
    assert order == [str(tmp_path / "setup-a"), str(tmp_path / "setup-b")]
    assert ran == [(argv, ran[0][1])] and argv == debootstrap_argv(request(), target)
    assert "http_proxy" not in ran[0][1]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    tools: set[str] = set()
    monkeypatch.setattr(bootstrap_module.shutil, "which", lambda name, path=None: f"/usr/bin/{name}" if name in tools
                        else None)  # fmt: skip
    return tools


def test_auto_prefers_mmdebstrap(installed: set[str]) -> None:
    installed.update({"mmdebstrap", "debootstrap"})
    assert choose_backend("auto", request()) == "mmdebstrap"
    assert choose_backend("auto", request(mmdebstrap_ok=False)) == "debootstrap"
    installed.discard("mmdebstrap")
    assert choose_backend("auto", request()) == "debootstrap"


def test_a_backend_that_cannot_be_used_is_refused(installed: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    installed.add("mmdebstrap")
    with pytest.raises(UserError, match="debootstrap"):
        choose_backend("debootstrap", request())
    with pytest.raises(UserError):
        choose_backend("mmdebstrap", request(mmdebstrap_ok=False))
    installed.add("debootstrap")
    monkeypatch.setattr(bootstrap_module, "DEBOOTSTRAP_SCRIPTS", Path("/nonexistent/scripts"))
    with pytest.raises(UserError, match="script"):
        choose_backend("debootstrap", request(script="gutsy"))


def test_choose_backend_checks_the_request_first(installed: set[str]) -> None:
    installed.update({"mmdebstrap", "debootstrap"})
    with pytest.raises(UserError):
        choose_backend("auto", request(mirror="--help"))
