"""Issue 12, item 8: a table of bad inputs, one real `vmbuilder` run each.

Every case must end in preflight, before anything slow: exit 2, exactly one line on stderr
(`vmbuilder: error: <problem>; <fix>`), no traceback, no "internal error", and nothing written
into the destination's parent directory or the cache directory. The cases cover every option,
config files (bad values, FIFOs, /proc files, huge, binary and non-UTF-8 files) and the
`vmbuilder lxc validate` and `vmbuilder lxc export` commands.

Placeholders in a case's arguments name inputs made fresh for each case: {fifo}, {file} (a small
text file), {dir}, {big} (2 MiB), {bin} (NUL and 0xff bytes), {latin1} (not UTF-8), {cfg} (the
case's config text), {copy} (the case's --copy list), {build} (a finished build for `export`),
{ro} (a read-only tmpfs, mounted only for the cases that use it) and {missing}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import vmbuilder_command

SECRET = "hunter2-SECRET"


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    needle: str
    command: str = "build"  # build: `lxc ubuntu ARGS -d DEST --cache-dir CACHE`; raw: `lxc ARGS`; top: `ARGS`
    config: str = ""  # the text of {cfg}
    copy: str = ""  # the text of {copy}


def build(id: str, needle: str, *args: str, config: str = "", copy: str = "") -> Case:
    return Case(id, args, needle, config=config, copy=copy)


def raw(id: str, needle: str, *args: str) -> Case:
    return Case(id, args, needle, command="raw")


CASES = [
    # -- values that would inject lines, options or shell --------------------------------------
    build("bridge-newline", "control character: newline", "--bridge", "br0\nlxc.hook.pre-start=/bin/true"),
    build("bridge-tab", "control character: tab", "--bridge", "br0\tx"),
    build("bridge-slash", "interface name", "--bridge", "br/0"),
    build("bridge-too-long", "interface name", "--bridge", "b" * 16),
    build("hostname-newline", "control character", "--hostname", "web\nx"),
    build("hostname-underscore", "letters, digits", "--hostname", "web_1"),
    build("domain-bad", "not a valid DNS domain", "--domain", "exa mple.com"),
    build("mirror-trusted", "[brackets]", "--mirror", "[trusted=yes] http://mirror.invalid/ubuntu"),
    build("mirror-ftp", "URL", "--mirror", "ftp://mirror.invalid/ubuntu"),
    build("mirror-space", "spaces", "--mirror", "http://mirror.invalid/ubuntu main"),
    build("mirror-no-host", "no host", "--mirror", "http:///ubuntu"),
    build("mirror-query", "query", "--mirror", "http://mirror.invalid/ubuntu?x=1"),
    build("mirror-quote", "not accepted in a URL", "--mirror", 'http://mirror.invalid/"x'),
    build("mirror-bad-port", "port", "--mirror", "http://mirror.invalid:99999/ubuntu"),
    build("security-mirror-options", "[brackets]", "--security-mirror", "[signed-by=/x] http://m.invalid/"),
    build("install-mirror-relative-file", "file URL", "--install-mirror", "file://srv/mirror"),
    build("install-security-mirror-scheme", "URL", "--install-security-mirror", "gopher://m.invalid/"),
    build("proxy-quote-semicolon", "not accepted in a URL", "--proxy", 'http://p.invalid:3128";Acquire::x=1'),
    build("proxy-scheme", "URL", "--proxy", "ftp://p.invalid:21"),
    build("proxy-space", "spaces", "--proxy", "http://p.invalid:3128 x"),
    build("proxy-no-host", "no host", "--proxy", "http://"),
    build("addpkg-option", "option, not a package", "--addpkg=--allow-unauthenticated"),
    build("addpkg-shell", "not a Debian package name", "--addpkg", "vim;reboot"),
    build("addpkg-uppercase", "not a Debian package name", "--addpkg", "Vim"),
    build("addpkg-local-deb", "not a Debian package name", "--addpkg", "./evil.deb"),
    build("addpkg-remove-suffix", "not a Debian package name", "--addpkg", "openssh-server-"),
    build("removepkg-option", "option, not a package", "--removepkg=-oAPT::Get::AllowUnauthenticated=1"),
    build("removepkg-subshell", "not a Debian package name", "--removepkg", "$(id)"),
    build("components-bang", "not an archive component", "--components", "main,Bad!"),
    build("components-brackets", "not an archive component", "--components", "[trusted=yes]"),
    # -- users -----------------------------------------------------------------------------------
    build("uid-root", "root's id", "--uid", "0"),
    build("uid-nobody", "nobody's id", "--uid", "65534"),
    build("uid-system", "1000 to 59999", "--uid", "999"),
    build("uid-not-a-number", "whole number", "--uid", "abc"),
    build("user-daemon", "already has", "--user", "daemon"),
    build("user-root", "root always exists", "--user", "root"),
    build("user-sshd", "already has", "--user", "sshd"),
    build("user-systemd-network", "already has", "--user", "systemd-network"),
    build("user-uppercase", "a user name starts with", "--user", "Bad User"),
    build("name-colon", "cannot contain ':'", "--name", "Ada:Lovelace"),
    build("name-comma", "cannot contain ','", "--name", "Ada, Room 1"),
    build("name-newline", "control character", "--name", "Ada\nroot::0:0::/:/bin/sh"),
    build("pass-newline", "control character", "--pass", f"{SECRET}\nroot:x"),
    build("rootpass-escape", "control character: escape", "--rootpass", f"\x1b[31m{SECRET}"),
    build("ssh-key-not-a-key", "OpenSSH public keys", "--ssh-key", "{file}"),
    build("ssh-user-key-missing", "does not exist", "--ssh-user-key", "{missing}"),
    # -- network ---------------------------------------------------------------------------------
    build("ip-bad", "not an IPv4 address", "--ip", "10.0.0.256"),
    build("gw-bad", "not an IP address", "--ip", "10.0.3.5", "--gw", "gateway"),
    build("dns-bad", "not an IP address", "--dns", "1.2.3"),
    build("mask-bad", "not a netmask", "--mask", "33"),
    build("mac-multicast", "multicast", "--mac", "01:00:5e:00:00:01"),
    build("mac-bad", "not a MAC address", "--mac", "zz"),
    build("network-space", "network name", "--network", "my net"),
    build("network-newline", "control character", "--network", "none\nlxc.x=1"),
    # -- locale, release, architecture ---------------------------------------------------------
    build("lang-shell", "not a locale name", "--lang", "en_US.UTF-8; rm -rf /"),
    build("timezone-traversal", "not a time zone name", "--timezone", "../../etc/passwd"),
    build("suite-shell", "not a release name", "--suite", "no;ble"),
    build("suite-unknown-version", "unknown ubuntu suite", "--suite", "99.99"),
    build("variant-bad", "must be one of", "--variant", "tiny"),
    build("arch-bad", "unknown architecture", "--arch", "sparc"),
    build("bootstrapper-bad", "must be one of", "--bootstrapper", "cdebootstrap"),
    build("initctl-listener-bad", "must be one of", "--initctl-listener", "maybe"),
    # -- input files -----------------------------------------------------------------------------
    build("keyring-fifo", "a FIFO", "--keyring", "{fifo}"),
    build("keyring-missing", "does not exist", "--keyring", "{missing}"),
    build("seedfile-dir", "a directory", "--seedfile", "{dir}"),
    build("copy-unbalanced-quote", "No closing quotation", "--copy", "{copy}", copy="'/etc/hostname /x\n"),
    build("copy-relative-dest", "absolute guest path", "--copy", "{copy}", copy="/etc/hostname etc/x\n"),
    build("copy-dotdot-dest", "absolute guest path", "--copy", "{copy}", copy="/etc/hostname /../../x\n"),
    build("copy-missing-source", "does not exist", "--copy", "{copy}", copy="/nonexistent/x /x\n"),
    build("copy-fifo", "a FIFO", "--copy", "{fifo}"),
    build("copy-source-device", "a character device", "--copy", "{copy}", copy="/dev/zero /zero\n"),
    build("copy-source-proc", "kernel interfaces", "--copy", "{copy}", copy="/proc/self/environ /environ\n"),
    build("execscript-missing", "does not exist", "--execscript", "{missing}"),
    build("firstboot-fifo", "a FIFO", "--firstboot", "{fifo}"),
    build("from-template-fifo", "a FIFO", "--from-template", "{fifo}"),
    build("templates-file", "does not exist", "--templates", "{file}"),
    build("hook-dir-missing", "does not exist", "--hook-dir", "{missing}"),
    build("libvirt-qemu", "LXC driver", "--libvirt", "qemu:///system"),
    build("libvirt-quote", "libvirt URI", "--libvirt", 'lxc:///"x'),
    build("libvirt-xml-fifo", "a FIFO", "--libvirt", "lxc:///", "--libvirt-xml", "{fifo}"),
    # -- exports ---------------------------------------------------------------------------------
    build("export-unknown", "unknown export format", "--export", "zip"),
    build("export-dir-file", "not a directory", "--export", "tar", "--export-dir", "{file}"),
    build("export-dir-proc", "kernel", "--export", "tar", "--export-dir", "/proc/vmbuilder-x"),
    build("compression-bad", "must be one of", "--export", "tar", "--compression", "rar"),
    build("compression-level-xz", "xz takes levels from 0 to 9", "--export", "lxc", "--compression-level", "15"),
    build("compression-level-range", "from 0 to 22", "--compression-level", "99"),
    # -- limits ----------------------------------------------------------------------------------
    build("mem-words", "expected megabytes", "--mem", "lots"),
    build("mem-tiny", "less than 32 MB", "--mem", "16"),
    build("mem-huge", "16 TB", "--mem", "99999G"),
    build("cpus-zero", "from 1 to 8192", "--cpus", "0"),
    build("cache-max-age-negative", "from 0 to 36500", "--cache-max-age", "-1"),
    # -- places the build writes to ------------------------------------------------------------
    build("cache-dir-file", "not a directory", "--cache-dir", "{file}"),
    build("cache-dir-proc", "kernel", "--cache-dir", "/proc/vmbuilder-cache"),
    build("dest-proc", "kernel", "-d", "/proc/vmbuilder-x"),
    build("dest-sys", "kernel", "-d", "/sys/fs/vmbuilder-x"),
    build("dest-read-only", "read-only", "-d", "{ro}/web1"),
    build("dest-under-a-file", "not a directory", "-d", "{file}/web1"),
    build("dest-root", "refusing to build into /", "-d", "/"),
    build("lxc-path-proc", "kernel", "--lxc-path", "/proc/lxc"),
    build("unknown-option", "did you mean --hostname", "--hostnme", "x"),
    build("unknown-option-newline", "unrecognized arguments: --hostnme=a\\nb", "--hostnme=a\nb"),
    Case("hypervisor-newline", ("lx\nc", "ubuntu"), "unknown hypervisor 'lx\\nc'", command="top"),
    # -- options that contradict each other (found in preflight, still before anything slow) -----
    build("arch-not-in-suite", "has no i386 base system", "--suite", "noble", "--arch", "i386"),
    build("export-only-without-export", "--export-only without --export", "--export-only"),
    build("libvirt-xml-without-libvirt", "--libvirt-xml needs --libvirt", "--libvirt-xml", "{file}"),
    build("bridge-with-network-none", "contradict", "--network", "none", "--bridge", "br0"),
    build("named-network-without-libvirt", "named networks need libvirt", "--network", "lan"),
    # -- config files ----------------------------------------------------------------------------
    build("config-fifo", "a FIFO", "-c", "{fifo}"),
    build("config-proc-file", "kernel", "-c", "/proc/self/status"),
    build("config-huge", "more than", "-c", "{big}"),
    build("config-binary", "binary", "-c", "{bin}"),
    build("config-latin1", "not UTF-8", "-c", "{latin1}"),
    build("config-directory", "a directory", "-c", "{dir}"),
    build("config-missing", "does not exist", "-c", "{missing}"),
    build("config-continuation-line", "control character: newline", "-c", "{cfg}",
          config="[lxc]\nbridge = br0\n  lxc.hook.pre-start = /bin/true\n"),
    build("config-mirror-trusted", "[brackets]", "-c", "{cfg}",
          config="[ubuntu]\nmirror = [trusted=yes] http://mirror.invalid/ubuntu\n"),
    build("config-uid-root", "root's id", "-c", "{cfg}", config="[ubuntu]\nuid = 0\n"),
    build("config-addpkg-option", "option, not a package", "-c", "{cfg}", config="[DEFAULT]\naddpkg = -oX=1\n"),
    build("config-proxy-quote", "not accepted in a URL", "-c", "{cfg}", config='[ubuntu]\nproxy = http://p";\n'),
    build("config-user-daemon", "already has", "-c", "{cfg}", config="[ubuntu]\nuser = daemon\n"),
    build("config-unknown-key", "did you mean 'suite'", "-c", "{cfg}", config="[ubuntu]\nsuit = noble\n"),
    build("config-no-section", "cannot read config file", "-c", "{cfg}", config="suite = noble\n"),
    build("config-control-in-key", "malformed key", "-c", "{cfg}", config="[ubuntu]\nsu\x1bite = noble\n"),
    build("config-bool-cache", "expected yes/no", "-c", "{cfg}", config="[DEFAULT]\ncache = perhaps\n"),
    build("config-insecure", "can only be given on the command line; use --insecure", "-c", "{cfg}",
          config="[ubuntu]\ninsecure = yes\n"),
    build("config-bool-autostart", "expected yes/no", "-c", "{cfg}", config="[lxc]\nautostart = 2\n"),
    build("config-bool-keep-apt-lists", "expected yes/no", "-c", "{cfg}",
          config="[DEFAULT]\nkeep-apt-lists = sometimes\n"),
    build("config-bool-template-setuid", "expected yes/no", "-c", "{cfg}",
          config="[ubuntu]\ntemplate-setuid = maybe\n"),
    build("config-command-line-only-key", "can only be given on the command line", "-c", "{cfg}",
          config="[DEFAULT]\nlist-suites = yes\n"),
    build("config-vmbuilder-only-key", "rootsize", "-c", "{cfg}", config="[ubuntu]\nrootsize = 4096\n"),
    # -- the validate and export commands ------------------------------------------------------
    raw("validate-binary", "", "validate", "{bin}"),
    raw("validate-fifo", "", "validate", "{fifo}"),
    raw("validate-missing", "", "validate", "{missing}"),
    raw("export-dir-is-a-file", "", "export", "{build}", "--export", "tar", "--export-dir", "{file}"),
    raw("export-unknown-format", "", "export", "{build}", "--export", "zip"),
    raw("export-not-a-build", "", "export", "{dir}", "--export", "tar"),
    raw("validate-no-file", "", "validate"),
    raw("export-no-arguments", "", "export"),
    raw("export-level-not-a-number", "", "export", "{build}", "--export", "tar", "--compression-level", "x"),
    raw("export-command-dir-proc", "", "export", "{build}", "--export", "tar", "--export-dir", "/proc/vmbuilder-x"),
]  # fmt: skip


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs of the test's own, unmounted afterwards."""
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "vmbuilder-test-ro", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def make_inputs(case: Case, base: Path, ro: Path | None) -> dict[str, str]:
    base.mkdir()
    fifo = base / "fifo"
    os.mkfifo(fifo)
    (base / "file").write_text("hello\n")
    (base / "dir").mkdir()
    (base / "big.cfg").write_text("[DEFAULT]\n" + "# padding\n" * (220 * 1024))
    (base / "bin").write_bytes(b"\x7fELF\x00\x01\xff\xfe" * 64)
    (base / "latin1.cfg").write_bytes(b"[ubuntu]\nname = J\xf6rg\n")
    (base / "case.cfg").write_text(case.config)
    (base / "copy.list").write_text(case.copy)
    build_dir = base / "build"
    (build_dir / "rootfs").mkdir(parents=True)
    (build_dir / "vmbuilder-lxc.json").write_text('{"status": "ok", "settings": {}}\n')
    return {
        "fifo": str(fifo), "file": str(base / "file"), "dir": str(base / "dir"), "big": str(base / "big.cfg"),
        "bin": str(base / "bin"), "latin1": str(base / "latin1.cfg"), "cfg": str(base / "case.cfg"),
        "copy": str(base / "copy.list"), "build": str(build_dir), "missing": str(base / "missing"),
        "ro": str(ro) if ro else "/nonexistent-ro",
    }  # fmt: skip


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ro = request.getfixturevalue("read_only_dir") if any("{ro}" in a for a in case.args) else None
    inputs = make_inputs(case, tmp_path / "in", ro)
    parent, cache, home = tmp_path / "out", tmp_path / "cache", tmp_path / "home"
    for d in (parent, cache, home):
        d.mkdir()
    args = [a.format(**inputs) if "{" in a else a for a in case.args]
    if case.command == "build":
        argv = [vmbuilder_command(), "lxc", "ubuntu", "-d", str(parent / "web1"), "--cache-dir", str(cache), *args]
    elif case.command == "raw":
        argv = [vmbuilder_command(), "lxc", *args]
    else:
        argv = [vmbuilder_command(), *args]
    env = {**os.environ, "HOME": str(home)}  # no ~/.vmbuilder.cfg of the tester's
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=parent, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    shown = f"argv={argv!r}\nexit={proc.returncode}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, shown
    assert "internal error" not in proc.stderr, shown
    assert proc.returncode == 2, shown
    assert len(lines) == 1, shown
    assert lines[0].startswith("vmbuilder: error: "), shown
    assert case.needle in lines[0], shown
    assert SECRET not in proc.stderr, shown
    assert tree(parent) == [], f"written into DEST's parent: {tree(parent)}"
    assert tree(cache) == [], f"written into the cache: {tree(cache)}"


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory `nobody` can reach (pytest's tmp_path lies below a root-only directory)."""
    path = Path(tempfile.mkdtemp(prefix="vmbuilder-nobody-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_options_without_effect_are_one_warning_each(nobody_dir: Path) -> None:
    """Item 6: accepted, but said. Run as nobody, the build stops right after preflight (it needs
    root), so the warnings, printed only once every check passed, are seen without a bootstrap."""
    tmp_path = nobody_dir
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    home = tmp_path / "home"
    home.mkdir()
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", vmbuilder_command(), "lxc", "ubuntu",
            "--arch", arch, "--suite", "noble", "--mask", "16", "--gw", "10.0.3.1", "--network", "none",
            "--mac", "00:16:3e:00:00:01", "--compression", "xz", "--no-template-setuid",
            "-d", str(tmp_path / "out" / "web1"), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "HOME": str(home)})  # fmt: skip
    warnings = [ln.strip() for ln in proc.stderr.splitlines() if "warning:" in ln]
    assert sorted(warnings) == sorted([
        "vmbuilder: warning: --mask has no effect without a static --ip (the guest uses DHCP)",
        "vmbuilder: warning: --gw has no effect without a static --ip (the guest uses DHCP)",
        "vmbuilder: warning: --mac has no effect with --network none (the container has no network card)",
        "vmbuilder: warning: --compression has no effect without --export",
        "vmbuilder: warning: --no-template-setuid has no effect without --from-template",
    ]), proc.stderr  # fmt: skip
    assert proc.stderr.strip().splitlines()[-1].startswith("vmbuilder: error: building needs root"), proc.stderr
    assert proc.returncode == 2
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
