"""Build real containers and boot them with lxc-start (issue #2 acceptance 1-3 and 5)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc.verified import LXC, booted

from .conftest import Build, Builder, Container, boot_within

# Every systemd-era suite the archive serves (see ../shared/testbed.md); they share one cache per run.
# The list is vmbuilder_lxc/verified.py's, which --list-suites shows as "booted (lxc)".
SUITES = booted("ubuntu", LXC)
FIRST_BUILDS: dict[str, Build] = {}


def build_web1(builder: Builder, suite: str, dest: Path, ssh_key: Path) -> Build:
    build = builder.run(
        "--suite", suite, "--hostname", "web1", "--user", "alice", "--ssh-user-key", str(ssh_key),
        "--network", "none", "-d", str(dest),
    ).check()  # fmt: skip
    FIRST_BUILDS.setdefault(suite, build)
    return build


def assert_lang(c: Container, lang: str, label: str, localectl: bool = True) -> None:
    """After boot, a fresh login and systemd-localed both see the build's LANG (issue 13).

    Container.enter runs lxc-attach with --clear-env, so no LANG of the host's can stand in for it.
    `su -l` is a login as pam_env makes it (the way ssh and the console log in); localectl asks
    localed, which reads /etc/locale.conf (xenial's localed does not answer in a container: its
    D-Bus activation times out). A locale that was not generated makes `locale` complain.
    """
    login = c.enter(["/bin/su", "-l", "root", "-c", "locale"], 60)
    assert login.returncode == 0, f"{label}: {login.stderr}"
    assert login.stdout.splitlines()[0] == f"LANG={lang}", f"{label}: a login shell's locale:\n{login.stdout}"
    # root's .profile runs `mesg n`, which complains without a terminal (xenial, bionic): only locale's own words count
    assert "annot set" not in login.stderr and "No such file" not in login.stderr, f"{label}: {login.stderr}"
    if lang != "C.UTF-8":
        wanted = lang.replace("UTF-8", "utf8")
        assert wanted in c.sh("locale -a").split(), f"{label}: {lang} was not generated"
    if localectl:
        status = c.sh("localectl status")
        assert f"LANG={lang}" in status, f"{label}: localectl status:\n{status}"


def host_key_fingerprint(rootfs: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(rootfs / "etc/ssh/ssh_host_ed25519_key.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()[1]


@pytest.mark.parametrize("suite", SUITES)
def test_container_boots_and_is_configured(
    suite: str, builder: Builder, ssh_key: Path, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """Acceptance 1 and 2: the documented command gives a container that boots to `running`."""
    dest = tmp_path / "web1"
    build = build_web1(builder, suite, dest, ssh_key)
    assert (dest / "config").is_file() and (dest / "rootfs/etc/os-release").is_file()
    assert build.summary["release"]["series"] == suite

    # Nothing waits for the (absent) network: booting takes seconds, not a DHCP timeout.
    c = boot_within(container, dest, suite)
    # sshd must work with the keys made at first boot (socket activation starts it on connect);
    # without them ssh.service fails a second or so after `running` was reported.
    assert "ssh-ed25519" in c.sh("ssh-keyscan -T 10 -t ed25519 127.0.0.1 2>/dev/null")
    # alice logs in with her key (her password is locked) and sudo needs no password.
    login = c.ssh_login(dest / "rootfs", ssh_key.with_suffix(""), "alice", "id -un; sudo -n id -u")
    assert login.split() == ["alice", "0"]
    time.sleep(2)
    assert c.failed_units() == []
    assert c.sh("systemctl is-system-running") == "running"
    assert c.sh("hostname") == "web1"
    assert_lang(c, "C.UTF-8", suite, localectl=suite != "xenial")
    groups = c.sh("id -nG alice").split()
    assert "sudo" in groups
    assert c.sh("passwd -S alice").split()[1] == "L", "alice's password must be locked"
    assert c.sh("passwd -S root").split()[1] == "L", "root must be locked"
    assert re.fullmatch(r"[0-9a-f]{32}", c.sh("cat /etc/machine-id"))
    assert c.sh("systemctl is-active console-getty.service") == "active"
    # Separate -o options: xenial's procps does not take "tty=,args=". The console is pts/0, which
    # ps names "console" on older procps.
    ps = c.sh("ps -e -o tty= -o args=")
    ttys = sorted("pts/0" if tty == "console" else tty for tty, args in (ln.split(None, 1) for ln in ps.splitlines())
                  if "getty" in args)  # fmt: skip
    assert ttys.count("pts/0") == 1, f"exactly one getty on the console: {ps}"
    assert ttys == ["pts/0", "pts/1", "pts/2", "pts/3", "pts/4"]
    assert c.sh("cat /home/alice/.ssh/authorized_keys") == ssh_key.read_text().strip()
    assert c.sh("stat -c %a /home/alice/.ssh") == "700"
    # apt and dpkg work (the rootfs must also serve as a plain chroot).
    assert c.sh("apt-get --version | head -1").startswith("apt ")
    assert "ii  openssh-server" in c.sh("dpkg -l openssh-server")
    seconds = c.stop()
    assert seconds < 10, f"lxc-stop took {seconds:.1f} s"


def test_second_container_from_cache_gets_its_own_identity(
    builder: Builder, ssh_key: Path, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """Acceptance 2 and 5: a cache hit, faster than the cold build, with fresh machine-id and keys.

    The second build also sets --lang, which must survive the first boot (issue 13)."""
    first = build_web1(builder, "noble", tmp_path / "a/web1", ssh_key)
    second = builder.run("--suite", "noble", "--network", "none", "--lang", "de_DE.UTF-8",
                         "-d", str(tmp_path / "b/web2")).check()  # fmt: skip
    assert second.summary["cache"]["hit"] is True
    assert "cache hit" in second.stderr
    cold = FIRST_BUILDS["noble"]
    if cold.summary["cache"]["hit"] is False:
        assert second.seconds < cold.seconds, f"cache hit {second.seconds:.1f}s vs cold {cold.seconds:.1f}s"
    for build, lang in ((first, "C.UTF-8"), (second, "de_DE.UTF-8")):
        c = container(build.dest)
        assert c.wait_running(30) == "running"
        assert_lang(c, lang, build.dest.name)
        c.stop()
    assert (first.rootfs / "etc/machine-id").read_text() != (second.rootfs / "etc/machine-id").read_text()
    assert host_key_fingerprint(first.rootfs) != host_key_fingerprint(second.rootfs)


def test_lang_survives_the_first_boot_on_jammy(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """--lang on the last release that keeps LANG in /etc/default/locale (noble: the test above)."""
    build = builder.run("--suite", "jammy", "--network", "none", "--lang", "de_DE.UTF-8",
                        "-d", str(tmp_path / "l1")).check()  # fmt: skip
    c = container(build.dest)
    assert c.wait_running(30) == "running", c.failed_units()
    assert_lang(c, "de_DE.UTF-8", "jammy")


def test_memory_limit_is_visible_through_lxcfs(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """Acceptance 3: --mem 512 and lxcfs give MemTotal: 524288 kB inside."""
    build = builder.run("--suite", "noble", "--network", "none", "--mem", "512", "-d", str(tmp_path / "m1")).check()
    config = (build.dest / "config").read_text()
    assert re.search(r"^lxc\.cgroup2?\.memory\.(limit_in_bytes|max) = 512M$", config, re.M)
    c = container(build.dest)
    assert c.wait_running(30) == "running"
    assert c.sh("grep MemTotal /proc/meminfo").split()[1:] == ["524288", "kB"]
    assert c.sh("grep -c lxcfs /proc/self/mountinfo") != "0"


def test_json_summary_describes_the_build(builder: Builder, tmp_path: Path) -> None:
    build = builder.run("--suite", "noble", "--network", "none", "-d", str(tmp_path / "j1")).check()
    s: dict[str, Any] = build.summary
    assert s["status"] == "ok" and s["name"] == "j1"
    assert s["lxc"]["start"] == f"lxc-start -P {tmp_path} -n j1"
    assert {t["name"] for t in s["tweaks"]} >= {"fstab", "hostname", "machine-id", "ssh-host-keys"}
    assert [st["title"] for st in s["steps"]][0].startswith("Checking")
    assert all(st["seconds"] >= 0 for st in s["steps"])
    assert s["settings"]["pass"] is None
    marker = (build.dest / "vmbuilder-lxc.json").read_text()
    assert '"status": "ok"' in marker


def test_devel_series_builds_and_boots(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """`--suite devel` works even when distro-info-data does not know the series yet."""
    build = builder.run("--suite", "devel", "--network", "none", "-d", str(tmp_path / "dev1"))
    if build.returncode != 0 and re.search(r"unmet dependencies|not installable|Broken packages", build.stderr):
        pytest.xfail("the development archive is currently not installable: " + build.stderr[-300:])
    build.check()
    series = build.summary["release"]["series"]
    assert series != "devel" and re.fullmatch(r"[a-z]+", series)
    os_release = (build.rootfs / "etc/os-release").read_text()
    assert f"VERSION_CODENAME={series}" in os_release
    c = container(build.dest)
    assert c.wait_running(30) == "running", c.failed_units()
