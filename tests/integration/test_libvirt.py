"""libvirt-lxc with a real libvirtd (issue #4): register, autostart, boot, shut down cleanly.

libvirtd runs as ../shared/testbed.md describes (see the libvirtd fixture). Guests with systemd 258
or newer cannot boot under libvirt 9.0 on this hybrid-cgroup host, so resolute's initctl listener
is tested under lxc-start instead, with exactly the request libvirt writes.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmbuilder_lxc.verified import LIBVIRT, booted

from .conftest import Builder, Container, Domain, vmbuilder_command

INITREQ_MAGIC = 0x03091969
CMD_RUNLVL = 1
DEBIAN_PYTHON = Path("/usr/bin/python3")
ROOT = Path(__file__).resolve().parents[2]


def initreq(runlevel: str) -> bytes:
    """struct init_request as libvirt's virInitctlSetRunLevel fills it: 384 bytes, host byte order."""
    return struct.pack("=iiii368s", INITREQ_MAGIC, CMD_RUNLVL, ord(runlevel), 0, b"")


def build_domain(builder: Builder, suite: str, dest: Path, uri: str, *extra: str) -> dict[str, object]:
    build = builder.run("--suite", suite, "--libvirt", uri, "--hostname", dest.name, "-d", str(dest), *extra).check()
    return build.summary


def boot(domain: Domain, label: str) -> None:
    domain.virsh("start", domain.name)
    state = domain.wait_running(timeout=60)
    assert state == "running", f"{label}: {state}, failed units: {domain.failed_units()}"


def mem_total_kb(domain: Domain) -> int:
    m = re.search(r"^MemTotal:\s+(\d+) kB", domain.sh("cat /proc/meminfo"), re.M)
    assert m, "no MemTotal in /proc/meminfo"
    return int(m.group(1))


# The suites booted under libvirt are vmbuilder_lxc/verified.py's (--list-suites: "booted (lxc, libvirt)").
SUITES = booted("ubuntu", LIBVIRT)
# suite -> (domain name, extra options, MemTotal in kB); others get the 1024 MiB default.
CASES: dict[str, tuple[str, tuple[str, ...], int]] = {
    "noble": ("n1", (), 1024 * 1024),  # the command; libvirt needs a size: 1024 MiB by default
    "jammy": ("j1", ("--mem", "512"), 512 * 1024),
}


@pytest.mark.parametrize(("suite", "name", "extra", "mem_kb"), [
    (suite, *CASES.get(suite, (f"{suite[:6]}1", (), 1024 * 1024))) for suite in SUITES
])  # fmt: skip
def test_register_autostart_boot_and_shutdown(
    suite: str, name: str, extra: tuple[str, ...], mem_kb: int, builder: Builder, tmp_path: Path,
    domains: Callable[[str], Domain], libvirtd: str,
) -> None:  # fmt: skip
    """Acceptance 1 and 3: defined with autostart, boots to running, `virsh shutdown` within 30 s."""
    dest = tmp_path / "t" / name
    domain = domains(name)
    summary = build_domain(builder, suite, dest, libvirtd, "--network", "none", "--autostart", *extra)
    record = summary["libvirt"]
    assert isinstance(record, dict) and record["domain"] == name and record["autostart"] is True
    assert record["backend"] == "virsh"  # the test venv has no python3-libvirt: the fallback path
    info = domain.info()
    assert info["State"] == "shut off" and info["Persistent"] == "yes" and info["Autostart"] == "enable"
    # The LXC config must not autostart the same rootfs a second time.
    assert "lxc.start.auto" not in (dest / "config").read_text()
    dumped = domain.virsh("dumpxml", name).stdout
    assert "<privnet/>" in dumped and f"<source dir='{dest}/rootfs'/>" in dumped

    boot(domain, suite)
    time.sleep(2)
    assert domain.failed_units() == []
    assert domain.sh("hostname") == name
    assert mem_total_kb(domain) == mem_kb
    # /dev/tty1 and /dev/console are one pty under libvirt: exactly one getty, on the console.
    gettys = domain.sh("ps -eo args= | grep '[a]getty' || true").splitlines()
    units = domain.sh("systemctl list-units --no-legend --plain --state=active '*getty@*' console-getty.service")
    assert len(gettys) == 1 and [u.split()[0] for u in units.splitlines()] == ["console-getty.service"], gettys
    # No interface but lo: the host's network namespace is not shared.
    assert domain.sh("ls /sys/class/net").split() == ["lo"]

    domain.virsh("shutdown", name)
    seconds = domain.wait_state("shut off", timeout=30)
    print(f"{suite}: virsh shutdown took {seconds:.1f} s")


def test_our_initctl_listener_under_libvirt(
    builder: Builder, tmp_path: Path, domains: Callable[[str], Domain], libvirtd: str
) -> None:
    """noble with systemd-initctl.socket masked and our listener instead: shutdown and reboot work.

    This is how 25.10+ guests (no systemd-initctl) behave under libvirt, on a release this host can
    boot under libvirt.
    """
    dest = tmp_path / "il1"
    domain = domains("il1")
    build_domain(builder, "noble", dest, libvirtd, "--network", "none", "--initctl-listener", "always")
    assert (dest / "rootfs/etc/systemd/system/systemd-initctl.socket").resolve() == Path("/dev/null")
    boot(domain, "noble + our listener")
    assert domain.sh("systemctl is-active vmbuilder-initctl.socket") == "active"
    assert domain.sh("test -p /run/initctl && echo fifo") == "fifo"

    domain.sh("touch /run/before-reboot")
    domain.virsh("reboot", domain.name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and domain.sh("test -e /run/before-reboot && echo yes", check=False) == "yes":
        time.sleep(0.5)
    assert domain.sh("test -e /run/before-reboot || echo gone", check=False) == "gone", "virsh reboot did nothing"
    assert domain.wait_running(timeout=60) == "running"

    domain.virsh("shutdown", domain.name)
    domain.wait_state("shut off", timeout=30)


def test_without_a_listener_virsh_shutdown_silently_does_nothing(
    builder: Builder, tmp_path: Path, domains: Callable[[str], Domain], libvirtd: str
) -> None:
    """The problem the listener solves, shown on this libvirt: no /run/initctl, exit 0, still running."""
    dest = tmp_path / "nl1"
    domain = domains("nl1")
    build_domain(builder, "noble", dest, libvirtd, "--network", "none", "--initctl-listener", "never")
    os.symlink("/dev/null", dest / "rootfs/etc/systemd/system/systemd-initctl.socket")
    boot(domain, "noble without a listener")
    assert domain.sh("test -e /run/initctl || echo none") == "none"
    assert domain.virsh("shutdown", domain.name).returncode == 0
    time.sleep(10)
    assert domain.state() == "running"


def test_resolute_listener_under_lxc_start(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """Acceptance 2: resolute (systemd 259, no systemd-initctl) powers off and reboots on libvirt's request.

    The request is written the way libvirt writes it: O_WRONLY|O_NONBLOCK on the guest's
    /run/initctl (here reached through /proc/PID/root instead of setns).
    """
    dest = tmp_path / "r1"
    builder.run("--suite", "resolute", "--network", "none", "-d", str(dest)).check()
    c = container(dest)
    assert c.wait_running(60) == "running", c.failed_units()

    def send(runlevel: str) -> int:
        pid = int(c._lxc("lxc-info", "-p", "-H").stdout.strip())
        fd = os.open(f"/proc/{pid}/root/run/initctl", os.O_WRONLY | os.O_NONBLOCK)
        try:
            assert os.write(fd, initreq(runlevel)) == 384
        finally:
            os.close(fd)
        return pid

    old_pid = send("6")
    deadline = time.monotonic() + 30
    new_pid = old_pid
    while time.monotonic() < deadline:
        out = c._lxc("lxc-info", "-p", "-H", check=False).stdout.strip()
        if out.isdigit() and int(out) != old_pid:
            new_pid = int(out)
            break
        time.sleep(0.5)
    assert new_pid != old_pid, "runlevel 6 did not reboot the container"
    assert c.wait_running(60) == "running", c.failed_units()

    send("0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and c.state() != "STOPPED":
        time.sleep(0.5)
    assert c.state() == "STOPPED", "runlevel 0 did not power the container off within 30 s"


def test_register_twice_overwrite_and_running_domain(
    builder: Builder, tmp_path: Path, domains: Callable[[str], Domain], libvirtd: str
) -> None:
    """Acceptance 5; the first registration goes through python3-libvirt (Debian's python3)."""
    dest = tmp_path / "a" / "dup1"
    domain = domains("dup1")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(ROOT)],
                   check=True)  # fmt: skip
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(DEBIAN_PYTHON), "-m", "vmbuilder_lxc", "lxc", "ubuntu", "--json", "--suite", "noble", "--network", "none",
         "--libvirt", libvirtd, "--cache-dir", str(builder.cache_dir), "-d", str(dest)],
        env=env, capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"backend": "python3-libvirt"' in proc.stdout
    uuid = domain.info()["UUID"]

    # Again, same -d and another -d with the same name: refused up front, naming the domain.
    for again in (dest, tmp_path / "b" / "dup1"):
        started = time.monotonic()
        second = builder.run("--suite", "noble", "--network", "none", "--libvirt", libvirtd, "-d", str(again))
        assert second.returncode == 2, second.stderr
        assert "libvirt domain dup1 already exists" in second.stderr and "--overwrite" in second.stderr
        assert "Bootstrapping" not in second.stderr and time.monotonic() - started < 15
    assert not (tmp_path / "b").exists()

    # A running domain is never replaced, not even with --overwrite.
    boot(domain, "dup1")
    refused = builder.run(
        "--suite", "noble", "--network", "none", "--libvirt", libvirtd, "--overwrite", "-d", str(dest)
    )
    assert refused.returncode == 2 and "is running" in refused.stderr, refused.stderr
    assert "Bootstrapping" not in refused.stderr
    domain.virsh("shutdown", "dup1")
    domain.wait_state("shut off", timeout=30)

    # Shut off: --overwrite replaces the rootfs and the domain, which keeps its UUID.
    replaced = builder.run("--suite", "noble", "--network", "none", "--libvirt", libvirtd, "--overwrite",
                           "-d", str(dest)).check()  # fmt: skip
    assert replaced.summary["libvirt"]["replaced"] == uuid
    assert domain.info()["UUID"] == uuid and domain.info()["Autostart"] == "disable"


def test_bridge_network_and_bad_choices(
    builder: Builder, tmp_path: Path, domains: Callable[[str], Domain], libvirtd: str
) -> None:
    """--bridge gives a bridged veth with the LXC config's MAC; bad network choices fail up front."""
    dest = tmp_path / "br1"
    domain = domains("br1")
    build_domain(builder, "noble", dest, libvirtd, "--bridge", "vmbtest0")
    dumped = domain.virsh("dumpxml", "br1").stdout
    mac = re.search(r"^lxc\.net\.0\.hwaddr = (\S+)", (dest / "config").read_text(), re.M)
    assert mac and "<interface type='bridge'>" in dumped and "<source bridge='vmbtest0'/>" in dumped
    assert f"<mac address='{mac.group(1)}'/>" in dumped

    for args, message in (
        (("--network", "nosuchnet"), "libvirt network 'nosuchnet' does not exist"),
        (("--network", "nosuchnet", "--bridge", "br0"), "both --bridge br0 and --network nosuchnet"),
    ):
        bad = builder.run("--suite", "noble", "--libvirt", libvirtd, "-d", str(tmp_path / "bad"), *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_validate_command_on_the_generated_domain(builder: Builder, tmp_path: Path, libvirtd: str,
                                                  domains: Callable[[str], Domain]) -> None:  # fmt: skip
    """Acceptance 4 end to end: the domain we define passes `vmbuilder lxc validate`; broken ones fail."""
    dest = tmp_path / "v1"
    domains("v1")
    build_domain(builder, "noble", dest, libvirtd, "--network", "none")
    xml = dest / "libvirt.xml"
    ok = subprocess.run([vmbuilder_command(), "lxc", "validate", str(xml), "--libvirt", libvirtd],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = xml.read_text()
    for broken, needle in (
        (text.replace("<init>", "<kernel>/boot/vmlinuz</kernel><init>"), "<kernel>"),
        (re.sub(r"<filesystem.*?</filesystem>", "", text, flags=re.S), "filesystem"),
    ):
        bad = tmp_path / "bad.xml"
        bad.write_text(broken)
        result = subprocess.run([vmbuilder_command(), "lxc", "validate", str(bad)], capture_output=True, text=True)
        assert result.returncode != 0 and needle in result.stdout, result.stdout + result.stderr
