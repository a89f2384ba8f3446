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
import os
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

    # No inode outside the map (the guest would see it as nobody and could not chown it back).
    assert outside_map(dest / "rootfs", start, count) == []

    # ping keeps cap_net_raw through the shift: a v3 capability whose root id is the map's root.
    # trixie's iputils-ping has no file capability (it relies on net.ipv4.ping_group_range, which
    # the manager sets): there the user's ping is not the shift's to keep, and root's is checked.
    rootid = v3_rootid(dest / "rootfs/usr/bin/ping")
    if rootid is None:
        assert suite == "trixie", f"{suite}: /usr/bin/ping lost its file capability"
        assert "1 received" in c.sh("ping -c1 -W5 127.0.0.1")
    else:
        assert rootid == start
        assert "cap_net_raw" in c.sh("getcap /usr/bin/ping")
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


def v3_rootid(path: Path) -> int | None:
    """The root id of PATH's v3 security.capability; None without one (a v2 one fails the test)."""
    try:
        raw = os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None
    assert raw[3] == 3 and len(raw) == 24, f"{path}: not a v3 capability: {raw.hex()}"
    return int.from_bytes(raw[20:24], "little")


def outside_map(root: Path, start: int, count: int) -> list[str]:
    """Paths under ROOT (not crossing mounts) whose owner or group is not a host id of the map."""
    bad = []
    dev = root.lstat().st_dev
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(top, name))
            if st.st_dev == dev and not (start <= st.st_uid < start + count and start <= st.st_gid < start + count):
                bad.append(os.path.join(top, name))
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == dev]
    return bad[:5]


def ping_group_excludes(c: Container, user: str) -> bool:
    """True when the user's groups are outside net.ipv4.ping_group_range, so ping must use its capability."""
    low, high = (int(x) for x in c.sh("cat /proc/sys/net/ipv4/ping_group_range").split())
    groups = [int(g) for g in c.sh(f"id -G {user}").split()]
    return not any(low <= g <= high for g in groups)


def test_idmap_ranges_do_not_overlap(parent: Path) -> None:
    """`auto` gave every container of the module its own range (it reads its siblings' markers)."""
    starts = [json.loads(m.read_text())["idmap"]["uid_start"] for m in parent.glob("*/vmbuilder-lxc.json")]
    assert len(starts) >= 2 and len(starts) == len(set(starts))
