"""--arch: which architectures a suite has (its Release file, less the partial ones), the ports
mirror, the guest's `emulated` fact and the cache key.

The Release headers in fixtures/release/ are copies of the real InRelease files' first paragraph
(signature cut). No test fetches anything: the conftest's archive answers nothing unless a test
patches these fixtures in.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmbuilder_lxc import arches, cli, mirrors
from vmbuilder_lxc.bootstrap import choose_backend
from vmbuilder_lxc.cache import cache_key
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.lxcconf import guest_config_vars
from vmbuilder_lxc.source.archive import ArchiveSource
from vmbuilder_lxc.suites import (
    ReleaseTable,
    fetch_release_fields,  # the real one: conftest patches the module's name
)
from vmbuilder_lxc.tweaks import ReleaseTraits

from .conftest import Plugins

RELEASES = Path(__file__).parent / "fixtures" / "release"
MIRROR = "http://mirror.test/archive"


def fields(distro: str, suite: str) -> dict[str, str]:
    return fetch_release_fields((RELEASES / f"{distro}-{suite}.InRelease").as_uri())


def serve_release(monkeypatch: pytest.MonkeyPatch, distro: str, calls: list[tuple[str, str | None]]) -> None:
    """The mirror answers with the fixture of the suite in the URL (and counts the requests)."""

    def fake(url: str, proxy: str | None = None) -> dict[str, str]:
        calls.append((url, proxy))
        suite = url.split("/dists/")[1].split("/")[0]
        path = RELEASES / f"{distro}-{suite}.InRelease"
        return fields(distro, suite) if path.exists() else {}

    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", fake)


def distro_for(plugins: Plugins, distro: str, *args: str) -> DebianFamily:
    ctx = cli.make_context("lxc", distro, plugins)
    cli.configure(ctx, [*args])
    ctx.distro.set_defaults()
    assert isinstance(ctx.distro, DebianFamily)
    return ctx.distro


# -- the Release files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distro", "suite", "partial", "expected"),
    [
        ("debian", "bookworm", (), ["amd64", "arm64", "armel", "armhf", "i386", "mips64el", "mipsel", "ppc64el",
                                    "s390x"]),
        ("debian", "trixie", (), ["amd64", "arm64", "armel", "armhf", "i386", "ppc64el", "riscv64", "s390x"]),
        ("ubuntu", "bionic", (), ["amd64", "arm64", "armhf", "i386", "ppc64el", "s390x"]),
        ("ubuntu", "noble", ("i386",), ["amd64", "arm64", "armhf", "ppc64el", "riscv64", "s390x"]),
    ],
)  # fmt: skip
def test_release_architectures(distro: str, suite: str, partial: tuple[str, ...], expected: list[str]) -> None:
    """`all` is never an architecture; a partial one is left out."""
    assert arches.release_architectures(fields(distro, suite), partial) == expected


def test_release_without_architectures_is_unknown() -> None:
    assert arches.release_architectures({}) == []
    assert arches.release_architectures({"Architectures": "all"}) == []


@pytest.mark.parametrize(
    ("distro", "suite", "arch", "ok"),
    [
        ("debian", "bookworm", "arm64", True),
        ("debian", "bookworm", "armhf", True),
        ("debian", "bookworm", "riscv64", False),  # a release architecture from trixie on
        ("debian", "trixie", "riscv64", True),
        ("debian", "trixie", "armel", True),
        ("ubuntu", "bionic", "i386", True),
        ("ubuntu", "focal", "i386", False),  # listed, but partial from 19.10 on
        ("ubuntu", "noble", "i386", False),
        ("ubuntu", "noble", "arm64", True),
        ("ubuntu", "noble", "s390x", True),
        ("ubuntu", "bionic", "riscv64", False),
    ],
)
def test_the_release_file_decides(plugins: Plugins, no_host_config: Path, monkeypatch: pytest.MonkeyPatch,
                                  distro: str, suite: str, arch: str, ok: bool) -> None:  # fmt: skip
    calls: list[tuple[str, str | None]] = []
    serve_release(monkeypatch, distro, calls)
    d = distro_for(plugins, distro, "--suite", suite, "--arch", arch, "--mirror", MIRROR)
    if ok:
        d.check_suite_arch(arch)
        return
    with pytest.raises(UserError) as err:
        d.check_suite_arch(arch)
    assert f"has no {arch} base system in {MIRROR}/dists/{suite}/InRelease" in err.value.message
    assert "--arch" in (err.value.hint or "")


def test_the_release_file_wins_over_the_table(plugins: Plugins, no_host_config: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A mirror that carries fewer architectures than the release has is believed (a partial mirror)."""
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields",
                        lambda url, proxy=None: {"Architectures": "all amd64"})  # fmt: skip
    d = distro_for(plugins, "debian", "--suite", "bookworm", "--arch", "arm64", "--mirror", MIRROR)
    with pytest.raises(UserError, match="its architectures: amd64"):
        d.check_suite_arch("arm64")


def test_unreachable_mirror_falls_back_to_the_table(plugins: Plugins, no_host_config: Path) -> None:
    d = distro_for(plugins, "debian", "--suite", "bookworm", "--arch", "arm64", "--mirror", MIRROR)
    listed, where = d.suite_arches()
    assert where == "" and "arm64" in listed and "riscv64" not in listed


def test_release_file_fetched_once_through_the_proxy(plugins: Plugins, no_host_config: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    calls: list[tuple[str, str | None]] = []
    serve_release(monkeypatch, "debian", calls)
    proxy = "http://127.0.0.1:3142"
    d = distro_for(plugins, "debian", "--suite", "trixie", "--arch", "arm64", "--mirror", MIRROR, "--proxy", proxy)
    d.check_suite_arch("arm64")
    d.check_suite_arch("arm64")
    d.archive_fields("trixie")
    assert calls == [(f"{MIRROR}/dists/trixie/InRelease", proxy)]


def test_a_request_the_cache_holds_does_not_ask_the_archive(
    plugins: Plugins, no_host_config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A warm build: the cache has a base for exactly this request, stored when the archive served it,
    and a hit downloads nothing, so preflight spares the round trip. Any other request still asks."""
    calls: list[tuple[str, str | None]] = []
    serve_release(monkeypatch, "debian", calls)
    args = ["--suite", "bookworm", "--arch", "arm64", "--mirror", MIRROR, "--cache-dir", str(tmp_path), "--insecure"]
    d = distro_for(plugins, "debian", *args)
    source = d.source
    assert isinstance(source, ArchiveSource)
    source.preflight()
    assert len(calls) == 1
    req = source.bootstrap_request()
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / f"{cache_key(source.cache_manifest(req, choose_backend('auto', req)))}.json").touch()
    for again in (args, [*args, "--addpkg", "less"]):
        d = distro_for(plugins, "debian", *again)
        d.source.preflight()
    assert len(calls) == 2  # only the request with --addpkg (another base) asked


def test_unsafe_mirror_is_refused_before_any_fetch(plugins: Plugins, no_host_config: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The Release file is read from the mirror the settings already checked (urlchecks)."""
    calls: list[tuple[str, str | None]] = []
    serve_release(monkeypatch, "debian", calls)
    ctx = cli.make_context("lxc", "debian", plugins)
    with pytest.raises(UserError):
        cli.configure(ctx, ["--suite", "bookworm", "--mirror", "file:///etc -o x"])
    assert calls == []


# -- mirrors, emulation, cache key -----------------------------------------------------------------


GUTSY_HEAD = """\
case $ARCH in
  amd64|i386)
\tdefault_mirror http://archive.mirror.test/ubuntu
\t;;
  *)
\tdefault_mirror http://ports.mirror.test/ubuntu-ports
\t;;
esac
"""


@pytest.mark.parametrize(("arch", "expected"), [("arm64", "http://ports.mirror.test/ubuntu-ports"),
                                                ("amd64", "http://archive.mirror.test/ubuntu")])  # fmt: skip
def test_ubuntu_arm64_gets_the_ports_mirror(
    plugins: Plugins, no_host_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, expected: str
) -> None:
    (tmp_path / "gutsy").write_text(GUTSY_HEAD)
    monkeypatch.setattr(mirrors, "DEBOOTSTRAP_SCRIPTS", tmp_path)
    d = distro_for(plugins, "ubuntu", "--suite", "noble", "--arch", arch)
    assert d.settings["mirror"] == expected


@pytest.mark.parametrize(
    ("machine", "arch", "emulated"),
    [("x86_64", "arm64", True), ("x86_64", "amd64", False), ("x86_64", "i386", False),
     ("aarch64", "armhf", False), ("aarch64", "amd64", True), ("x86_64", "riscv64", True)],
)  # fmt: skip
def test_foreign(machine: str, arch: str, emulated: bool) -> None:
    assert arches.foreign(arch, machine) is emulated


@pytest.mark.parametrize(("arch", "emulated"), [("arm64", True), ("amd64", False)])
def test_guest_vars_say_emulated(plugins: Plugins, no_host_config: Path, monkeypatch: pytest.MonkeyPatch,
                                 arch: str, emulated: bool) -> None:  # fmt: skip
    """When(emulated=True) tweak rows match guest.vars["emulated"]."""
    monkeypatch.setattr(arches.platform, "machine", lambda: "x86_64")
    d = distro_for(plugins, "debian", "--suite", "bookworm", "--arch", arch, "--mirror", MIRROR)
    assert d.guest_vars()["emulated"] is emulated


def test_cache_key_includes_the_architecture(plugins: Plugins, no_host_config: Path) -> None:
    keys: dict[str, str] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for arch in ("amd64", "arm64", "armhf"):
        d = distro_for(plugins, "debian", "--suite", "bookworm", "--arch", arch, "--mirror", MIRROR)
        source = d.source
        assert isinstance(source, ArchiveSource)
        manifests[arch] = source.cache_manifest(source.bootstrap_request(), "mmdebstrap")
        keys[arch] = cache_key(manifests[arch])
    assert manifests["arm64"]["arch"] == "arm64"
    assert len(set(keys.values())) == 3
    # and nothing but the architecture differs between two of them
    differing = {k for k in manifests["amd64"] if manifests["amd64"][k] != manifests["arm64"][k]}
    assert differing == {"arch"}


def test_emulated_rows_follow_the_guest_var() -> None:
    """The emulated tweak rows are selected by guest.vars["emulated"], which guest_vars() sets."""
    rows: Any = importlib.import_module("vmbuilder_lxc.plugins.emulated_tweaks").EMULATED_TWEAKS
    bookworm = next(r for r in ReleaseTable.load("debian").releases if r.series == "bookworm")
    traits = ReleaseTraits(init="systemd", network="networkd", systemd_version=252)
    for emulated in (True, False):
        guest: Any = SimpleNamespace(vars={"emulated": emulated}, is_installed=lambda name: True)
        chosen = [t.name for t in rows if t.when.matches(bookworm, traits, guest)]
        assert chosen == (["emulated-no-credentials", "emulated-skip-networkd"] if emulated else [])


def test_libvirt_refuses_a_foreign_domain_on_this_host(
    no_host_config: Path, make_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libvirt-lxc has capabilities for the host's architecture only: one line in preflight, before
    anything slow (the domain would carry <type arch='aarch64'>, which it cannot define)."""
    monkeypatch.setattr(arches.platform, "machine", lambda: "x86_64")
    ctx = make_ctx("--libvirt", "lxc:///", "--arch", "arm64", "--suite", "noble", "-d", "/srv/ct/web1",
                   "--network", "none")  # fmt: skip
    for plugin in ctx.plugins:
        plugin.set_defaults()
    libvirt = next(p for p in ctx.plugins if type(p).__name__ == "Libvirt")
    with pytest.raises(UserError, match="an? arm64 domain cannot be defined at lxc:///") as err:
        libvirt.preflight_check()
    assert "lxc-start" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("arch", "init", "here", "signal"),
    [("arm64", "systemd", True, "SIGRTMIN+5"), ("amd64", "systemd", True, ""), ("arm64", "systemd", False, ""),
     ("arm64", "upstart", True, "")],
)  # fmt: skip
def test_lxc_halt_signal_for_an_emulated_systemd(
    monkeypatch: pytest.MonkeyPatch, arch: str, init: str, here: bool, signal: str
) -> None:
    """lxc-stop reaches an emulated systemd only with qemu-user's numbering of SIGRTMIN+3; an image's
    config (here=False) may run natively and keeps LXC's own choice."""
    monkeypatch.setattr(arches.platform, "machine", lambda: "x86_64")
    assert guest_config_vars(arch, {"INIT": init}, on_this_host=here)["halt_signal"] == signal
