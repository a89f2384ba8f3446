"""Build Debian containers with the real tool and boot them with lxc-start (issue #3, the debian plugin).

One cold build per suite; the second test reuses the cached base (a cache hit takes seconds) to check
networkd with a real eth0 on a throwaway bridge that has no DHCP server.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmbuilder_lxc.verified import LXC, booted

from .conftest import Build, Builder, Container, boot_within
from .test_boot import assert_lang

SUITES = booted("debian", LXC)  # vmbuilder_lxc/verified.py: what --list-suites shows as booted
BUILDS: dict[str, Build] = {}
TEST_BRIDGE = "vmbdeb0"


def build(builder: Builder, suite: str, dest: Path, *args: str) -> Build:
    result = builder.run("--suite", suite, *args, "-d", str(dest), distro="debian").check()
    BUILDS.setdefault(suite, result)
    return result


@pytest.mark.parametrize("suite", SUITES)
def test_debian_boots_to_running(
    suite: str, builder: Builder, ssh_key: Path, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """`vmbuilder lxc debian --suite SUITE` boots to `running` with no failed units."""
    dest = tmp_path / "deb1"
    b = build(builder, suite, dest, "--hostname", "deb1", "--user", "alice", "--ssh-user-key", str(ssh_key),
              "--network", "none")  # fmt: skip
    assert b.summary["release"] == {
        "distro": "debian", "series": suite, "version": {"bookworm": "12", "trixie": "13"}[suite],
        "codename": suite.capitalize(), "init": "systemd", "network": "networkd",
    }  # fmt: skip
    print(f"{suite}: cold build {b.seconds:.1f} s (cache hit: {b.summary['cache']['hit']})")
    rootfs = b.rootfs
    assert f"VERSION_CODENAME={suite}" in (rootfs / "etc/os-release").read_text()
    assert not list((rootfs / "etc/ssh").glob("ssh_host_*")), "the image must carry no host keys"

    c = boot_within(container, dest, suite)
    # sshd runs with keys made at this boot, and alice logs in with her key and may sudo.
    assert "ssh-ed25519" in c.sh("ssh-keyscan -T 10 -t ed25519 127.0.0.1 2>/dev/null")
    assert c.sh("systemctl is-active ssh.service") == "active"
    assert c.sh("ls /etc/ssh/ssh_host_ed25519_key.pub") == "/etc/ssh/ssh_host_ed25519_key.pub"
    login = c.ssh_login(rootfs, ssh_key.with_suffix(""), "alice", "id -un; sudo -n id -u")
    assert login.split() == ["alice", "0"]
    time.sleep(2)
    assert c.failed_units() == []
    assert c.sh("systemctl is-system-running") == "running"
    assert c.sh("hostname") == "deb1"
    assert_lang(c, "C.UTF-8", suite)
    assert "sudo" in c.sh("id -nG alice").split()
    assert c.sh("passwd -S root").split()[1] == "L", "root must be locked"
    assert re.fullmatch(r"[0-9a-f]{32}", c.sh("cat /etc/machine-id"))
    # networkd and resolved run; nothing waits for the (absent) eth0.
    assert c.sh("systemctl is-active systemd-networkd.service systemd-resolved.service").split() == ["active"] * 2
    assert c.sh("systemctl is-enabled systemd-networkd-wait-online.service || true") != "enabled"
    assert c.sh("readlink /etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    assert c.sh("systemctl is-active console-getty.service") == "active"
    # apt and dpkg are consistent, without the network.
    c.sh("apt-get check -q")
    assert c.sh("dpkg --audit") == ""
    sources = c.sh("cat /etc/apt/sources.list.d/debian.sources 2>/dev/null || cat /etc/apt/sources.list")
    assert f"{suite}-security" in sources and "/debian-security" in sources
    assert c.stop() < 10


@pytest.fixture
def test_bridge() -> Iterator[str]:
    """A host bridge with no DHCP server, removed afterwards."""
    subprocess.run(["ip", "link", "del", TEST_BRIDGE], check=False, capture_output=True)  # left by a killed run
    subprocess.run(["ip", "link", "add", TEST_BRIDGE, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", TEST_BRIDGE, "up"], check=True)
        yield TEST_BRIDGE
    finally:
        subprocess.run(["ip", "link", "del", TEST_BRIDGE], check=False)


# The static build also sets --lang (trixie links /etc/default/locale to /etc/locale.conf at boot).
@pytest.mark.parametrize(
    ("ip", "expected", "lang"), [("dhcp", None, "C.UTF-8"), ("10.213.7.10", "10.213.7.10/24", "de_DE.UTF-8")]
)
def test_networkd_configures_eth0_without_blocking_boot(
    ip: str,
    expected: str | None,
    lang: str,
    builder: Builder,
    tmp_path: Path,
    container: Callable[[Path], Container],
    lxcfs: Path,
    test_bridge: str,
) -> None:
    """With an eth0 and no DHCP answer boot does not wait; a static --ip is applied by networkd."""
    args = ["--bridge", test_bridge, "--ip", ip, "--lang", lang]
    args += ["--gw", "10.213.7.1", "--dns", "10.213.7.1"] if expected else []
    b = build(builder, "trixie", tmp_path / "net1", *args)
    started = time.monotonic()
    c = container(b.dest)
    assert c.wait_running(30) == "running", c.failed_units()
    assert time.monotonic() - started < 15
    links = c.sh("networkctl list --no-legend eth0")
    assert "configur" in links or "routable" in links or "degraded" in links, links
    if expected:
        for _ in range(20):
            if expected in c.sh("ip -4 -o addr show dev eth0"):
                break
            time.sleep(0.5)
        assert expected in c.sh("ip -4 -o addr show dev eth0")
        assert "default via 10.213.7.1" in c.sh("ip -4 route")
        assert "10.213.7.1" in c.sh("resolvectl dns eth0")
    assert_lang(c, lang, f"trixie --lang {lang}")
    assert c.failed_units() == []
