"""Nothing a user types reaches apt, mmdebstrap or debootstrap as an option, and only --insecure
turns signature checks off.

Three layers are tried with hostile values: the checks where argv, sources lines and apt.conf
lines are built (vmbuilder_lxc.aptargs, called by bootstrap.py, distro.py and chroot.py), the
package phase with the settings' validators bypassed (the defense in depth must hold on its own),
and the whole command line, which must end in exit 2 and one line before anything runs. Where the
host has apt, the rendered apt.conf is read back by the real apt-config, and apt-get shows that an
operand after `--` is a package name, never an option.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Plugins
from vmbuilder_lxc import aptargs, cli, pipeline
from vmbuilder_lxc import run as run_module
from vmbuilder_lxc.bootstrap import INSECURE_APTOPTS, BootstrapRequest, debootstrap_argv, mmdebstrap_argv
from vmbuilder_lxc.chroot import proxy_conf
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.packages import APT_GET, insecure_apt_options
from vmbuilder_lxc.source import archive as archive_source
from vmbuilder_lxc.source.archive import ArchiveSource

MIRROR = "http://mirror.test/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
INSECURE_WORDS = ("AllowInsecureRepositories", "AllowUnauthenticated", "allow-unauthenticated", "no-check-gpg",
                  "trusted=yes", "allow-insecure", "AllowDowngradeToInsecure", "Check-Valid-Until")  # fmt: skip

HOSTILE_PACKAGES = [
    "--allow-unauthenticated",
    "-oAPT::Get::AllowUnauthenticated=true",
    "-o",
    "-",
    "--",
    "",
    "vim --allow-unauthenticated",
    "vim\n--allow-unauthenticated",
    "./evil.deb",  # apt-get installs a local .deb, unsigned
    "/var/cache/apt/archives/evil.deb",
    "vim/unstable",
    "vim;reboot",
    "$(reboot)",
    "Vim",
]
HOSTILE_MIRRORS = [
    "[trusted=yes] http://evil.test/debian",
    "http://evil.test/debian [trusted=yes]",
    "[allow-insecure=yes]http://evil.test/debian",
    "http://[::1]/debian",
    "-oAcquire::AllowInsecureRepositories=true",
    "--aptopt=Acquire::AllowInsecureRepositories true",
    "http://evil.test/debian\ndeb [trusted=yes] http://evil.test/debian",
    "http://evil.test/deb ian",
    'http://evil.test/debian"',
    "http://evil.test/debian#x",
    "ftp://evil.test/debian",
    "copy:///srv/debian",
    "http:///debian",
    "file:srv/debian",
    "/etc/apt/sources.list",  # mmdebstrap reads an existing file as a sources list
    "-",  # ... and standard input
]
HOSTILE_PROXIES = [
    'http://proxy.test:3128";Acquire::AllowInsecureRepositories "true',
    'http://proxy.test:3128";\nAcquire::AllowInsecureRepositories "true',
    "http://proxy.test:3128\nAcquire::AllowInsecureRepositories true",
    "http://proxy.test:3128 x",
    "http://proxy.test:3128/{x}",
    "http://proxy.test:3128;x",
    "http://proxy.test:3128\\",
    "http://proxy.test:99999",
    "-ohttp://proxy.test",
    "ftp://proxy.test",
    "proxy.test:3128",
]
HOSTILE_COMPONENTS = ["-o", "--allow-unauthenticated", "main restricted", "[trusted=yes]", "main\nuniverse", ""]


# -- the checks where the argv and config lines are built ----------------------------------------------


@pytest.mark.parametrize("value", HOSTILE_PACKAGES)
def test_hostile_package_names_are_refused(value: str) -> None:
    with pytest.raises(UserError):
        aptargs.package(value, "--addpkg")


@pytest.mark.parametrize("value", ["vim", "libc6:i386", "openssh-server=1:9.2p1-2", "g++", "python3.11"])
def test_package_names_apt_takes(value: str) -> None:
    assert aptargs.package(value) == value


@pytest.mark.parametrize("value", HOSTILE_MIRRORS)
def test_hostile_mirrors_are_refused(value: str) -> None:
    with pytest.raises(UserError):
        aptargs.mirror(value)


@pytest.mark.parametrize(
    "value", [MIRROR, "https://user:secret@mirror.test:8443/debian/", "file:///srv/mirror/debian", "http://10.0.0.1/x"]
)
def test_mirrors_that_are_plain_urls(value: str) -> None:
    assert aptargs.mirror(value) == value
    assert aptargs.source_line(value, "bookworm", ["main", "contrib"]) == f"deb {value} bookworm main contrib"


@pytest.mark.parametrize("value", HOSTILE_PROXIES)
def test_hostile_proxies_are_refused(value: str) -> None:
    with pytest.raises(UserError):
        aptargs.proxy(value)
    with pytest.raises(UserError):
        proxy_conf(value)


@pytest.mark.parametrize("value", ["http://proxy.test:3142", "http://u:p@[::1]:3142/", "socks5h://127.0.0.1:1080"])
def test_proxies_that_are_plain_urls(value: str) -> None:
    assert proxy_conf(value) == f'Acquire::http::Proxy "{value}";\nAcquire::https::Proxy "{value}";\n'


@pytest.mark.parametrize("value", HOSTILE_COMPONENTS)
def test_hostile_components_are_refused(value: str) -> None:
    with pytest.raises(UserError):
        aptargs.source_line(MIRROR, "bookworm", ["main", value])


def test_apt_conf_values_cannot_end_their_quotes() -> None:
    for value in ('x";Y "1', "x;", "x{", "x}", "x\ny", "x y", "x\\"):
        with pytest.raises(UserError):
            aptargs.apt_conf("Acquire::http::Proxy", value)


# -- mmdebstrap and debootstrap argument vectors ----------------------------------------------------------


def request(**changes: Any) -> BootstrapRequest:
    base = BootstrapRequest(
        suite="bookworm", arch="amd64", mirror=MIRROR, components=("main",), include=("apt", "sudo"),
        keyring=KEYRING, pockets=("updates", "security"), security_mirror=MIRROR + "-security",
        proxy="http://proxy.test:3142",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_mmdebstrap_operands_follow_the_end_of_options(tmp_path: Path) -> None:
    req = request()
    argv = mmdebstrap_argv(req, tmp_path / "rootfs")
    end = argv.index("--")
    assert all(a.startswith("--") for a in argv[1:end]), argv
    assert argv[end + 1 :] == ["bookworm", str(tmp_path / "rootfs"), *req.source_lines()]
    assert not any(a.startswith("-") for a in argv[end + 1 :])
    assert '--aptopt=Acquire::http::Proxy "http://proxy.test:3142";' in argv
    assert not any(word in a for a in argv for word in INSECURE_WORDS), argv


def test_debootstrap_operands_never_look_like_options(tmp_path: Path) -> None:
    argv = debootstrap_argv(request(script="sid"), Path("relative/rootfs"))
    options = [a for a in argv[1:] if a.startswith("-")]
    operands = argv[1 + len(options) :]
    assert argv[1 : 1 + len(options)] == options  # options first: debootstrap stops at the suite
    assert operands[0] == "bookworm" and operands[1].startswith("/") and operands[2] == MIRROR
    assert all("=" in o for o in options)  # every value is inside its own --opt=VALUE argument
    assert "--no-check-gpg" not in argv


@pytest.mark.parametrize(
    "changes",
    [{"mirror": m} for m in HOSTILE_MIRRORS[:8]]
    + [{"security_mirror": m} for m in HOSTILE_MIRRORS[:8]]
    + [{"proxy": p} for p in HOSTILE_PROXIES[:6]]
    + [{"components": ("main", c)} for c in HOSTILE_COMPONENTS]
    + [{"suite": "-oX=1"}, {"suite": "bookworm main"}, {"arch": "--foreign"}, {"arch": "amd64 x"},
       {"include": ("apt", "--allow-unauthenticated")}, {"variant": "--foreign"}],
)  # fmt: skip
def test_hostile_values_never_reach_a_bootstrapper(changes: dict[str, Any], tmp_path: Path) -> None:
    req = request(**changes)
    for build in (mmdebstrap_argv, debootstrap_argv):
        with pytest.raises(UserError):
            build(req, tmp_path)


def test_only_insecure_turns_signature_checks_off(tmp_path: Path) -> None:
    """--insecure is the one way: the request has no keyring then, and only then the options appear."""
    secure, insecure = request(), request(keyring=None)
    for build in (mmdebstrap_argv, debootstrap_argv):
        assert not any(word in a for a in build(secure, tmp_path) for word in INSECURE_WORDS)
    assert "--no-check-gpg" in debootstrap_argv(insecure, tmp_path)
    assert [f"--aptopt={o}" for o in INSECURE_APTOPTS] == [
        a for a in mmdebstrap_argv(insecure, tmp_path) if "Insecure" in a or "Unauthenticated" in a
    ]


# -- the package phase, with the settings' validators bypassed --------------------------------------------


class RecordingChroot:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, *argv: str, input: str | None = None, progress: str | None = None) -> None:
        self.calls.append(list(argv))


@pytest.fixture
def debian(plugins: Plugins, no_host_config: Path, tmp_path: Path) -> DebianFamily:
    """A bookworm build configured from the command line, its rootfs an empty directory."""
    ctx = cli.make_context("lxc", "debian", plugins)
    cli.configure(ctx, ["--arch", "amd64", "--suite", "bookworm", "--mirror", MIRROR, "-d", str(tmp_path / "ct")])
    for plugin in ctx.plugins:
        plugin.set_defaults()
    ctx.workdir = tmp_path / "work"
    (ctx.rootfs / "etc/apt").mkdir(parents=True)
    assert isinstance(ctx.distro, DebianFamily)
    return ctx.distro


def archive(distro: DebianFamily) -> ArchiveSource:
    """The distro's source, a bootstrap from the archive (set_defaults chose it)."""
    assert isinstance(distro.source, ArchiveSource)
    return distro.source


def _apt_calls(chroot: RecordingChroot) -> dict[str, list[str]]:
    return {argv[len(APT_GET)]: argv for argv in chroot.calls if argv[: len(APT_GET)] == APT_GET}


def test_package_names_are_operands_after_the_end_of_options(debian: DebianFamily) -> None:
    debian.settings.set("addpkg", ["vim", "curl"])
    debian.settings.set("removepkg", ["nano"])
    chroot = RecordingChroot()
    debian.package_phase(chroot, archive(debian).bootstrap_request())  # type: ignore[arg-type]
    calls = _apt_calls(chroot)
    assert calls["install"][len(APT_GET) :] == ["install", "--", "vim", "curl"]
    assert calls["purge"][len(APT_GET) :] == ["purge", "--autoremove", "--", "nano"]
    assert not any(word in a for argv in chroot.calls for a in argv for word in INSECURE_WORDS)
    sources = (debian.context.rootfs / "etc/apt/sources.list").read_text()
    assert sources.splitlines()[0] == f"deb {MIRROR} bookworm main"


@pytest.mark.parametrize("setting", ["addpkg", "removepkg"])
@pytest.mark.parametrize("value", ["--allow-unauthenticated", "-oAPT::Get::AllowUnauthenticated=1", "./x.deb"])
def test_hostile_packages_stop_the_package_phase_before_apt(debian: DebianFamily, setting: str, value: str) -> None:
    debian.settings.set(setting, ["vim", value])
    chroot = RecordingChroot()
    with pytest.raises(UserError):
        debian.check_package_inputs()
    with pytest.raises(UserError):
        debian.package_phase(chroot, archive(debian).bootstrap_request())  # type: ignore[arg-type]
    assert not any("install" in argv or "purge" in argv for argv in chroot.calls)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("mirror", HOSTILE_MIRRORS[0]), ("security-mirror", HOSTILE_MIRRORS[1]), ("install-mirror", "-oX=1"),
     ("proxy", HOSTILE_PROXIES[0]), ("components", ["main", "-o"])],
)  # fmt: skip
def test_hostile_settings_stop_the_request(debian: DebianFamily, setting: str, value: Any) -> None:
    debian.settings.set(setting, value)
    with pytest.raises(UserError):
        archive(debian).bootstrap_request().check()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("mirror", HOSTILE_MIRRORS[0]), ("security-mirror", HOSTILE_MIRRORS[2]), ("components", ["main", "[x=y]"])],
)
def test_hostile_values_never_reach_the_guest_sources(debian: DebianFamily, setting: str, value: Any) -> None:
    """The guest's apt sources templates get their mirror and components from guest_vars()."""
    debian.settings.set(setting, value)
    with pytest.raises(UserError):
        debian.check_package_inputs()
    with pytest.raises(UserError):
        debian.guest_vars()


def test_insecure_options_only_with_insecure(debian: DebianFamily) -> None:
    chroot = RecordingChroot()
    debian.package_phase(chroot, dataclasses.replace(archive(debian).bootstrap_request(), keyring=None))  # type: ignore[arg-type]
    update = next(argv for argv in chroot.calls if "update" in argv)
    assert update[: len(APT_GET)] == APT_GET and update[len(APT_GET) : -1] == insecure_apt_options()


def test_the_guest_keeps_no_insecure_apt_options(debian: DebianFamily) -> None:
    """mmdebstrap writes its --aptopt lines into the base; --insecure's are removed with the proxy's."""
    conf = debian.context.rootfs / "etc/apt/apt.conf.d/99mmdebstrap"
    conf.parent.mkdir(parents=True)
    conf.write_text("".join(f"{o};\n" for o in INSECURE_APTOPTS) + 'APT::Install-Recommends "false";\n')
    debian.scrub_base()
    assert conf.read_text() == 'APT::Install-Recommends "false";\n'


# -- the real apt reads what we render ---------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("apt-config"), reason="needs apt-config")
def test_apt_config_reads_the_proxy_as_one_value(tmp_path: Path) -> None:
    conf = tmp_path / "proxy.conf"
    conf.write_text(proxy_conf("http://u:p@[::1]:3142/"))
    dump = subprocess.run(["apt-config", "-c", str(conf), "dump", "Acquire"], capture_output=True, text=True,
                          check=True, timeout=60).stdout  # fmt: skip
    assert 'Acquire::http::Proxy "http://u:p@[::1]:3142/";' in dump.splitlines()
    assert 'Acquire::https::Proxy "http://u:p@[::1]:3142/";' in dump.splitlines()
    # What the unchecked rendering of the proxy did: a second key, signatures off.
    hostile = HOSTILE_PROXIES[0]
    conf.write_text(f'Acquire::http::Proxy "{hostile}";\n')
    naive = subprocess.run(["apt-config", "-c", str(conf), "dump", "Acquire"], capture_output=True, text=True,
                           check=True, timeout=60).stdout  # fmt: skip
    assert 'Acquire::AllowInsecureRepositories "true";' in naive.splitlines()


@pytest.mark.skipif(not shutil.which("apt-get"), reason="needs apt-get")
def test_apt_get_takes_an_operand_after_the_end_of_options_as_a_package() -> None:
    result = subprocess.run(
        ["apt-get", "-s", "-q", "-o", "Debug::NoLocking=1", "install", "--", "--allow-unauthenticated"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Unable to locate package --allow-unauthenticated" in result.stdout + result.stderr


MMDEBSTRAP = Path("/usr/bin/mmdebstrap")


@pytest.mark.skipif(not shutil.which("perl") or not MMDEBSTRAP.is_file(), reason="needs perl and mmdebstrap")
def test_mmdebstrap_getopt_takes_everything_after_the_end_of_options_as_operands(tmp_path: Path) -> None:
    """mmdebstrap's own Getopt::Long configuration (read from the script) on the argv we build:
    without `--` an option after the suite would still be parsed (Getopt permutes); after it, never."""
    config = re.search(r"Getopt::Long::Configure\(([^)]*)\)", MMDEBSTRAP.read_text(errors="replace"))
    assert config is not None
    script = (
        f"use Getopt::Long; Getopt::Long::Configure({config.group(1)}); my @opts;"
        'Getopt::Long::GetOptionsFromArray(\\@ARGV, "aptopt=s@" => \\@opts, map { $_ => sub {} }'
        " qw(mode=s arch=s components=s variant=s include=s keyring=s setup-hook=s)) or die;"
        'print join("\\n", "OPTS", @opts, "ARGS", @ARGV), "\\n";'
    )
    hostile = "--aptopt=Acquire::AllowInsecureRepositories true"
    argv = mmdebstrap_argv(request(), tmp_path / "rootfs")[1:]

    def parse(args: list[str]) -> tuple[list[str], list[str]]:
        out = subprocess.run(["perl", "-e", script, "--", *args], capture_output=True, text=True, check=True,
                             timeout=60).stdout.splitlines()  # fmt: skip
        split = out.index("ARGS")
        return out[1:split], out[split + 1 :]

    opts, operands = parse([*argv, hostile])
    assert "Acquire::AllowInsecureRepositories true" not in opts and operands[-1] == hostile
    without_end = [a for a in argv if a != "--"]
    opts, operands = parse([*without_end, hostile])
    assert "Acquire::AllowInsecureRepositories true" in opts  # what `--` prevents


# -- the whole command line: exit 2, one line, nothing run --------------------------------------------------


@pytest.fixture
def cli_run(
    monkeypatch: pytest.MonkeyPatch, no_host_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Any:
    """main() with the keyring check passed and every step after preflight a tripwire."""
    ran: list[list[str]] = []

    def tripwire(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the build directory was reached")

    real_run = run_module.run

    def recording_run(argv: Any, **kwargs: Any) -> Any:
        ran.append([str(a) for a in argv])
        if Path(str(argv[0])).name in ("apt-get", "mmdebstrap", "debootstrap", "chroot", "dpkg"):
            raise AssertionError(f"{argv[0]} was run")
        return real_run(argv, **kwargs)

    monkeypatch.setattr(pipeline, "enter_private_mount_namespace", tripwire)
    monkeypatch.setattr(pipeline, "_make_workdir", tripwire)
    monkeypatch.setattr(archive_source, "require_keyring", lambda path, name: ["0" * 40])
    monkeypatch.setattr("vmbuilder_lxc.arches.run", recording_run)
    monkeypatch.setattr("vmbuilder_lxc.bootstrap.run", recording_run)
    monkeypatch.setattr("vmbuilder_lxc.bootstrap.shutil.which", lambda *a, **k: "/usr/bin/true")

    def call(*argv: str, distro: str = "ubuntu") -> tuple[int, str]:
        before = sorted(p.name for p in tmp_path.iterdir())
        code = cli.main(["lxc", distro, "--arch", "amd64", "--mirror", MIRROR, *argv])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside DEST
        return code, err

    return call


def one_line(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("vmbuilder: error: "), err
    assert "internal error" not in err
    return lines[0]


def test_a_valid_build_passes_preflight(cli_run: Any, tmp_path: Path) -> None:
    """The control: with sane values, main() gets as far as the build directory."""
    code, err = cli_run("--suite", "noble", "-d", str(tmp_path / "ct"), "--addpkg", "vim",
                        "--proxy", "http://proxy.test:3142")  # fmt: skip
    assert code == 1 and "the build directory was reached" in err


@pytest.mark.parametrize(
    "argv",
    [["--addpkg=--allow-unauthenticated"], ["--addpkg", "vim,-oAPT::Get::AllowUnauthenticated=1"],
     ["--removepkg=-oDpkg::Options::=--force-all"], ["--addpkg", "./evil.deb"], ["--addpkg", "vim;reboot"],
     ["--mirror", "[trusted=yes] http://evil.test/ubuntu"], ["--security-mirror", "http://evil.test/u [trusted=yes]"],
     ["--install-mirror", "-oAcquire::AllowInsecureRepositories=1"], ["--mirror", "http://x/u\ndeb http://y/u"],
     ["--proxy", HOSTILE_PROXIES[0]], ["--proxy", HOSTILE_PROXIES[2]], ["--proxy", "http://p:3128/{x}"],
     ["--components", "main,-o"], ["--components", "main,[trusted=yes]"]],
)  # fmt: skip
def test_hostile_options_end_in_one_line_before_anything_runs(cli_run: Any, tmp_path: Path, argv: list[str]) -> None:
    one_line(*cli_run("--suite", "noble", "-d", str(tmp_path / "ct"), *argv))


@pytest.mark.parametrize(
    ("distro", "suite", "arch", "listed"),
    [("ubuntu", "focal", "i386", "amd64, arm64, armhf, ppc64el, riscv64, s390x"),
     ("ubuntu", "noble", "armel", "amd64, arm64, armhf"),
     ("ubuntu", "xenial", "riscv64", "amd64, arm64, armhf, i386, powerpc, ppc64el, s390x"),
     ("debian", "bookworm", "riscv64", "amd64, arm64, armel, armhf, i386, mips64el, mipsel, ppc64el, s390x")],
)  # fmt: skip
def test_an_architecture_the_suite_lacks_is_one_line(
    cli_run: Any, tmp_path: Path, distro: str, suite: str, arch: str, listed: str
) -> None:
    line = one_line(*cli_run("--suite", suite, "--arch", arch, "-d", str(tmp_path / "ct"), distro=distro))
    assert f"has no {arch} base system" in line and listed in line


@pytest.mark.parametrize(("suite", "arch"), [("bionic", "i386"), ("disco", "i386"), ("noble", "riscv64")])
def test_architectures_the_suite_has(plugins: Plugins, no_host_config: Path, suite: str, arch: str) -> None:
    ctx = cli.make_context("lxc", "ubuntu", plugins)
    cli.configure(ctx, ["--arch", arch, "--suite", suite, "--mirror", MIRROR])
    ctx.distro.set_defaults()
    assert isinstance(ctx.distro, DebianFamily)
    ctx.distro.check_suite_arch(arch)


def test_seedfile_that_is_not_text_is_one_line(cli_run: Any, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.write_bytes(b"\xff\xfe\x00binary")
    one_line(*cli_run("--suite", "noble", "-d", str(tmp_path / "ct"), "--seedfile", str(seed)))


@pytest.mark.parametrize("section", ["DEFAULT", "lxc", "ubuntu"])
def test_insecure_cannot_come_from_a_config_file(cli_run: Any, tmp_path: Path, section: str) -> None:
    """A config file may be shared: only --insecure on the command line switches signatures off."""
    cfg = tmp_path / "shared.cfg"
    cfg.write_text(f"[{section}]\ninsecure = true\n")
    code, err = cli_run("--suite", "noble", "-d", str(tmp_path / "ct"), "-c", str(cfg))
    assert code == 2 and "can only be given on the command line; use --insecure" in err
    assert "the build directory was reached" not in err
