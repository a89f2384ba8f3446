"""`--idmap auto` (issue 16): a shifted rootfs boots unprivileged under a root `lxc-start`.

One warm build per suite (the session cache), booted once; every check runs against that boot:
0 failed units, the map seen from inside and outside, `ping` through the shifted file capability
as the initial user, `sudo`, an `apt-get install` of a local .deb (the container has no network),
`dpkg --audit`, and no file left outside the map. The containers live in one directory under
/var/tmp: pytest's tmp directory is 0700, which the container's root (a host uid of the map)
cannot search (the build warns about that).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Builder, Container

# noble and bookworm are the acceptance's; the others are the releases the issue lists.
SUITES = [("ubuntu", "noble"), ("debian", "bookworm"), ("ubuntu", "jammy"), ("ubuntu", "resolute"),
          ("debian", "trixie")]  # fmt: skip
USER = "tester"


@pytest.fixture(scope="module")
def parent() -> Iterator[Path]:
    """Where the module's containers go: searchable by every container's root, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="vmbuilder-idmap-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def local_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Architecture: all package, so that apt-get install needs no archive."""
    root = tmp_path_factory.mktemp("deb") / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: vmb-idmap-probe\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: vmbuilder-lxc tests <tests@example.invalid>\nDescription: idmap test package\n"
    )
    (root / "usr/share/doc/vmb-idmap-probe").mkdir(parents=True)
    (root / "usr/share/doc/vmb-idmap-probe/README").write_text("probe\n")
    out = root.parent / "vmb-idmap-probe_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)], check=True, capture_output=True)
    return out


def host_uid_of(pid: int) -> int:
    """The real uid of a host process, as `ps -o uid` shows it."""
    m = re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m
    return int(m.group(1))


def init_pid(c: Container) -> int:
    out = subprocess.run(["lxc-info", "-P", str(c.lxcpath), "-n", c.name, "-p", "-H"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return int(out.strip())


@pytest.mark.parametrize(("distro", "suite"), SUITES)
def test_idmap_auto_boots_unprivileged(
    distro: str,
    suite: str,
    builder: Builder,
    parent: Path,
    local_deb: Path,
    container: Callable[[Path], Container],
    lxcfs: Path,
) -> None:
    dest = parent / suite
    b = builder.run("--suite", suite, "-d", str(dest), "--idmap", "auto", "--network", "none",
                    "--user", USER, distro=distro).check()  # fmt: skip
    ids = b.summary["idmap"]
    start, count = ids["uid_start"], ids["count"]
    assert ids["gid_start"] == start and count == 65536
    assert f"{start}-{start + count - 1}" in b.stderr + b.stdout  # the summary says it
    marker = (dest / "vmbuilder-lxc.json").read_text()
    assert '"idmap"' in marker
    config = (dest / "config").read_text()
    assert f"lxc.idmap = u 0 {start} {count}" in config and f"lxc.idmap = g 0 {start} {count}" in config
    assert "lxc.include = /usr/share/lxc/config/userns.conf" in config
    st = (dest / "rootfs").stat()
    assert (st.st_uid, st.st_gid) == (start, start)

    c = container(dest)
    state = c.wait_running(timeout=60)
    assert state == "running", f"{suite}: {state}, failed units: {c.failed_units()}"
    assert c.failed_units() == []

    # The map, from inside and from the host.
    assert c.sh("cat /proc/self/uid_map").split() == ["0", str(start), str(count)]
    assert c.sh("cat /proc/self/gid_map").split() == ["0", str(start), str(count)]
    assert host_uid_of(init_pid(c)) == start
    ps = subprocess.run(["ps", "-o", "uid=", "-p", str(init_pid(c))], capture_output=True, text=True, check=True)
    assert ps.stdout.strip() == str(start)

    # No file outside the map (it would show as nobody and could not be chowned back).
    assert c.sh("find / -xdev \\( -nouser -o -nogroup \\) -print 2>/dev/null | head -5", check=False) == ""

    # ping keeps cap_net_raw through the shift (ping_group_range leaves users to the raw socket).
    assert "cap_net_raw" in c.sh("getcap /usr/bin/ping /bin/ping 2>/dev/null || true")
    assert ping_group_excludes(c, USER), "ICMP sockets are open to the user: ping would not need its capability"
    assert "1 received" in c.sh(f"su -l {USER} -c 'ping -c1 -W5 127.0.0.1'")
    # sudo (setuid root, shifted with its bit) works for the initial user.
    assert c.sh(f"su -l {USER} -c 'sudo -n id -u'") == "0"

    # apt-get install of a local package, then a clean dpkg database.
    with local_deb.open("rb") as f:
        r = subprocess.run(["lxc-attach", "-P", str(c.lxcpath), "-n", c.name, "--clear-env", "--", "/bin/sh", "-c",
                            "cat > /tmp/probe.deb"], stdin=f, capture_output=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    c.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/probe.deb >/tmp/apt.log 2>&1 "
         "|| { cat /tmp/apt.log; exit 1; }", timeout=180)  # fmt: skip
    assert c.sh("dpkg-query -W -f '${Status}' vmb-idmap-probe") == "install ok installed"
    assert c.sh("dpkg --audit") == ""
    c.stop()


def ping_group_excludes(c: Container, user: str) -> bool:
    """True when the user's groups are outside net.ipv4.ping_group_range, so ping must use its capability."""
    low, high = (int(x) for x in c.sh("cat /proc/sys/net/ipv4/ping_group_range").split())
    groups = [int(g) for g in c.sh(f"id -G {user}").split()]
    return not any(low <= g <= high for g in groups)


def test_idmap_ranges_do_not_overlap(parent: Path) -> None:
    """`auto` gave every container of the module its own range (it reads its siblings' markers)."""
    starts = [json.loads(m.read_text())["idmap"]["uid_start"] for m in parent.glob("*/vmbuilder-lxc.json")]
    assert len(starts) >= 2 and len(starts) == len(set(starts))
