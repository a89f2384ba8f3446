"""Fixtures for integration tests: real debootstrap/mmdebstrap, real lxc-start, real lxcfs.

Bases are cached per test session in one cache directory, so each suite is bootstrapped once per
run. With VMBUILDER_REQUIRE_INTEGRATION=1 (set by quickstart.sh test, hence by CI) a missing
prerequisite fails the run instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("VMBUILDER_REQUIRE_INTEGRATION") == "1"
TOOLS = ("vmbuilder", "mmdebstrap", "debootstrap", "lxc-start", "lxc-attach", "lxc-stop", "lxcfs", "zstd")
KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
BUILD_TIMEOUT = 900


def vmbuilder_command() -> str:
    """The vmbuilder installed with the interpreter running the tests, else the one on PATH."""
    beside = Path(sys.executable).parent / "vmbuilder"
    return str(beside) if beside.exists() else "vmbuilder"


def missing_prerequisites() -> list[str]:
    missing = [f"command {t}" for t in TOOLS if not shutil.which(t)]
    if os.geteuid() != 0:
        missing.append("root")
    if not KEYRING.exists():
        missing.append(str(KEYRING))
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [i for i in items if here in Path(str(i.fspath)).parents]
    for item in ours:
        item.add_marker(pytest.mark.integration)
    missing = missing_prerequisites()
    if not missing or not ours:
        return
    if REQUIRED:
        raise pytest.UsageError(
            "integration tests are required (VMBUILDER_REQUIRE_INTEGRATION=1) but these are missing: "
            + ", ".join(missing)
        )
    skip = pytest.mark.skip(reason="integration prerequisites missing: " + ", ".join(missing))
    for item in ours:
        item.add_marker(skip)


@dataclass
class Build:
    """The result of one `vmbuilder` run."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> Path:
        return Path(self.summary["dest"])

    @property
    def rootfs(self) -> Path:
        return Path(self.summary["rootfs"])

    def check(self) -> Build:
        assert self.returncode == 0, f"vmbuilder failed ({self.returncode}):\n{self.stderr[-4000:]}"
        return self


class Builder:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def argv(self, *args: str, distro: str = "ubuntu") -> list[str]:
        return [vmbuilder_command(), "lxc", distro, "--json", "--cache-dir", str(self.cache_dir), *args]

    def run(self, *args: str, distro: str = "ubuntu", timeout: int = BUILD_TIMEOUT) -> Build:
        start = time.monotonic()
        proc = subprocess.run(self.argv(*args, distro=distro), capture_output=True, text=True, timeout=timeout, cwd="/")
        build = Build(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        try:
            build.summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError:
            pass
        return build


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache that starts empty, so the first build of each suite in a run is a cold one."""
    return tmp_path_factory.mktemp("vmbuilder-cache")


@pytest.fixture(scope="session")
def builder(cache_dir: Path) -> Builder:
    return Builder(cache_dir)


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "K")], check=True)
    return directory / "K.pub"


def _lxcfs_answers(mount: Path) -> bool:
    try:
        return (mount / "proc/meminfo").exists()
    except OSError:
        return False


@pytest.fixture(scope="session")
def lxcfs() -> Path:
    """lxcfs mounted at /var/lib/lxcfs (started here if the host does not run it)."""
    mount = Path("/var/lib/lxcfs")
    mounted = f" {mount} " in Path("/proc/self/mountinfo").read_text()
    if mounted and not _lxcfs_answers(mount):
        # The daemon died (ENOTCONN) but its mount stayed: drop it so a new lxcfs can mount.
        subprocess.run(["umount", "-l", str(mount)], check=True)
    if not _lxcfs_answers(mount):
        mount.mkdir(parents=True, exist_ok=True)
        subprocess.Popen(
            ["lxcfs", str(mount)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(100):
            if _lxcfs_answers(mount):
                break
            time.sleep(0.1)
    assert _lxcfs_answers(mount), "lxcfs did not come up"
    return mount


def boot_within(container: Callable[[Path], Container], dest: Path, label: str, limit: float = 15) -> Container:
    """Start DEST and require `running` within LIMIT seconds: nothing may wait for an absent network."""
    started = time.monotonic()
    c = container(dest)
    state = c.wait_running(timeout=30)
    seconds = time.monotonic() - started
    assert state == "running", f"{label}: {state}, failed units: {c.failed_units()}"
    assert seconds < limit, f"{label} took {seconds:.1f} s to reach running"
    return c


class Guest:
    """What the boot tests ask of a running systemd guest, however its manager lets us in."""

    name: str

    def enter(self, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        """Run ARGV inside the guest (lxc-attach, virsh lxc-enter-namespace); ARGV[0] is a full path."""
        raise NotImplementedError

    def sh(self, script: str, check: bool = True, timeout: int = 60) -> str:
        result = self.enter(["/bin/sh", "-c", script], timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{script!r} failed in {self.name}: {result.stdout}{result.stderr}")
        return result.stdout.strip()

    def wait_running(self, timeout: float = 30) -> str:
        """Poll `systemctl is-system-running` until it settles; returns the final state."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", check=False) or "unknown"
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        return state

    def failed_units(self) -> list[str]:
        out = self.sh("systemctl list-units --failed --no-legend --plain || true")
        return [line.split()[0] for line in out.splitlines() if line.strip()]


class Container(Guest):
    """A container started with lxc-start; always stopped again by the fixture."""

    def __init__(self, lxcpath: Path, name: str) -> None:
        self.lxcpath = lxcpath
        self.name = name

    def _lxc(self, tool: str, *args: str, timeout: int = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [tool, "-P", str(self.lxcpath), "-n", self.name, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, cwd="/")

    def start(self) -> None:
        self._lxc("lxc-start", "--logfile", str(self.lxcpath / f"{self.name}.log"), "--logpriority", "INFO")

    def enter(self, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        return self._lxc("lxc-attach", "--clear-env", "--", *argv, timeout=timeout, check=False)

    def ssh_login(self, rootfs: Path, private_key: Path, user: str, command: str) -> str:
        """Run COMMAND as USER over SSH to the container's own sshd (key login, no password)."""
        copy = rootfs / "root/test-login-key"
        copy.write_bytes(private_key.read_bytes())
        copy.chmod(0o600)
        try:
            options = "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            return self.sh(f"ssh -i /root/test-login-key {options} {user}@127.0.0.1 '{command}' 2>/dev/null")
        finally:
            copy.unlink()

    def stop(self) -> float:
        start = time.monotonic()
        self._lxc("lxc-stop", timeout=60)
        return time.monotonic() - start

    def kill(self) -> None:
        self._lxc("lxc-stop", "--kill", check=False, timeout=30)

    def state(self) -> str:
        result = self._lxc("lxc-info", "-s", check=False)
        m = re.search(r"State:\s+(\w+)", result.stdout)
        return m.group(1) if m else "UNKNOWN"


@pytest.fixture
def container() -> Iterator[Any]:
    """Factory: container(dest) starts DEST with lxc-start -P dirname -n basename."""
    started: list[Container] = []

    def start(dest: Path) -> Container:
        c = Container(dest.parent, dest.name)
        c.start()
        started.append(c)
        return c

    yield start
    for c in started:
        if c.state() != "STOPPED":
            c.kill()


def mounts_mentioning(path: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path) in line]


def leftovers(parent: Path) -> list[Path]:
    """Build directories a failed build might have left in DEST's parent."""
    return [p for p in parent.iterdir() if p.name.endswith(".vmbuilder-partial")] if parent.exists() else []


# -- libvirt-lxc ---------------------------------------------------------------------------------

LIBVIRT_URI = "lxc:///"
LIBVIRT_TOOLS = ("libvirtd", "virtlogd", "virsh")


def _virsh_answers() -> bool:
    try:
        return subprocess.run(["virsh", "-c", LIBVIRT_URI, "uri"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[str]:
    """libvirtd with the LXC driver, started as ../shared/testbed.md describes unless it runs.

    libvirt 9.0 cannot start containers on a hybrid cgroup host (it tries to create directories in
    /sys/fs/cgroup/unified), so the daemon gets a private mount namespace without that mount.
    """
    missing = [t for t in LIBVIRT_TOOLS if not shutil.which(t)]
    if missing:
        message = "libvirt is not installed (apt-get install libvirt-daemon-driver-lxc libvirt-clients): " + ", ".join(
            missing
        )
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    started: int | None = None
    if not _virsh_answers():
        # The qemu driver, which libvirt-daemon pulls in, refuses to load without these.
        if subprocess.run(["getent", "group", "libvirt-qemu"], capture_output=True).returncode != 0:
            subprocess.run(["groupadd", "-r", "libvirt-qemu"], check=True)
        if subprocess.run(["id", "libvirt-qemu"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-r", "-g", "libvirt-qemu", "-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin",
                            "libvirt-qemu"], check=True)  # fmt: skip
        for d in ("/var/log/libvirt", "/var/lib/libvirt", "/run/libvirt"):
            Path(d).mkdir(parents=True, exist_ok=True)
        if subprocess.run(["pgrep", "-x", "virtlogd"], capture_output=True).returncode != 0:
            subprocess.run(["virtlogd", "-d"], check=True)
        script = "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec libvirtd -d"
        subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], check=True)
        for _ in range(150):
            if _virsh_answers():
                break
            time.sleep(0.2)
        pidfile = Path("/run/libvirtd.pid")
        started = int(pidfile.read_text()) if pidfile.exists() else None
    assert _virsh_answers(), f"libvirtd does not answer at {LIBVIRT_URI}"
    yield LIBVIRT_URI
    if started:
        subprocess.run(["kill", str(started)], check=False)


class Domain(Guest):
    """A libvirt-lxc domain driven with virsh; the fixture destroys and undefines it afterwards."""

    def __init__(self, uri: str, name: str) -> None:
        self.uri = uri
        self.name = name

    def virsh(self, *args: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        argv = ["virsh", "-q", "-c", self.uri, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {result.stdout}{result.stderr}")
        return result

    def info(self) -> dict[str, str]:
        out = self.virsh("dominfo", self.name).stdout
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if k}

    def state(self) -> str:
        result = self.virsh("domstate", self.name, check=False)
        return result.stdout.strip() if result.returncode == 0 else "undefined"

    def enter(self, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        return self.virsh("lxc-enter-namespace", self.name, "--noseclabel", "--", *argv, check=False, timeout=timeout)

    def wait_state(self, want: str, timeout: float) -> float:
        """Seconds until the domain reaches state WANT; fails after TIMEOUT."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.state() == want:
                return time.monotonic() - start
            time.sleep(0.5)
        raise AssertionError(f"{self.name} is still {self.state()!r} after {timeout} s (wanted {want!r})")

    def remove(self) -> None:
        if self.state() not in ("shut off", "undefined"):
            self.virsh("destroy", self.name, check=False)
        if self.state() != "undefined":
            self.virsh("undefine", self.name, check=False)


@pytest.fixture
def domains(libvirtd: str) -> Iterator[Callable[[str], Domain]]:
    """Factory: domains(name) is a Domain at the test libvirtd; all are removed afterwards."""
    made: list[Domain] = []

    def make(name: str) -> Domain:
        d = Domain(libvirtd, name)
        made.append(d)
        return d

    yield make
    for d in made:
        d.remove()


# -- LXD -----------------------------------------------------------------------------------------

LXD_TOOLS = ("lxd", "lxc")  # here `lxc` is LXD's client (package lxd-client), not LXC's lxc-* tools
LXD_LOG = Path("/var/log/lxd/lxd.log")


def lxc_client(*args: str, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run LXD's `lxc` client; with CHECK a failure is an assertion that shows its output."""
    result = subprocess.run(["lxc", *args], capture_output=True, text=True, timeout=timeout, cwd="/")
    if check and result.returncode != 0:
        raise AssertionError(f"lxc {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def _lxd_answers() -> bool:
    try:
        return subprocess.run(["lxd", "waitready", "--timeout", "1"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def lxd(lxcfs: Path) -> Iterator[None]:
    """LXD 5.0 started as ../shared/testbed.md describes unless it runs, with a `dir` pool as root disk.

    `lxd init --auto` fails here (no free subnet), so the pool and the default profile's root disk
    are made by hand; instances get no network. lxcfs comes first so that LXD sees it at start.
    A daemon that does not come up fails the run: these tests are never skipped for it.
    """
    missing = [t for t in LXD_TOOLS if not shutil.which(t)]
    if missing:
        pytest.fail("LXD is not installed (apt-get install lxd lxd-client): missing " + ", ".join(missing))
    started: subprocess.Popen[bytes] | None = None
    if not _lxd_answers():
        LXD_LOG.parent.mkdir(parents=True, exist_ok=True)
        started = subprocess.Popen(
            ["lxd", "--group", "root", "--logfile", str(LXD_LOG)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        ready = subprocess.run(["lxd", "waitready", "--timeout", "60"], capture_output=True, text=True)
        if ready.returncode != 0:
            started.kill()
            log = LXD_LOG.read_text(errors="replace")[-3000:] if LXD_LOG.exists() else "(no log)"
            pytest.fail(f"LXD did not start: {ready.stderr.strip()}\n{LXD_LOG}:\n{log}")
    try:
        if lxc_client("storage", "show", "default", check=False).returncode != 0:
            lxc_client("storage", "create", "default", "dir")
        if "root" not in lxc_client("profile", "device", "list", "default").stdout.split():
            lxc_client("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default")
        yield
    finally:
        if started is not None:
            started.terminate()
            try:
                started.wait(timeout=30)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=10)


# -- Incus ---------------------------------------------------------------------------------------

INCUS_DAEMON = Path("/usr/libexec/incus/incusd")  # Debian's incus-base keeps the daemon off PATH
INCUS_LOG = Path("/var/log/incus/incus.log")


def incus_client(*args: str, check: bool = True, timeout: int = 120, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the `incus` client; with CHECK a failure is an assertion that shows its output."""
    result = subprocess.run(["incus", *args], capture_output=True, text=True, timeout=timeout, cwd="/", env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"incus {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def incus_version() -> str:
    """The server's version, as `incus version` prints it."""
    out = incus_client("version").stdout
    m = re.search(r"^Server version:\s*(\S+)", out, re.M)
    return m.group(1) if m else out.strip()


def _incus_answers() -> bool:
    try:
        argv = ["incus", "admin", "waitready", "--timeout", "1"]
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


SUBIDS = (Path("/etc/subuid"), Path("/etc/subgid"))


def _one_root_range(argv: list[str]) -> list[str]:
    """ARGV, run in a private mount namespace whose subuid/subgid files give root only its first range
    when the host's give it more.

    incusd reads root's ranges once, at start, and with two of them (test_rootless.py adds one to root
    for its run) Incus 6.0.4 maps both from id 0, so every start fails in newuidmap ("write to uid_map
    failed: Invalid argument"). newuidmap, run from inside the daemon, reads the same filtered files.
    """
    binds = []
    for path in SUBIDS:
        lines = path.read_text().splitlines() if path.exists() else []
        roots = [line for line in lines if line.startswith("root:")]
        if len(roots) > 1:
            copy = Path("/run/vmbuilder-test-incus") / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(
                "\n".join(line for line in lines if not line.startswith("root:") or line == roots[0]) + "\n"
            )
            binds.append(f"mount --bind {copy} {path}")
    if not binds:
        return argv
    script = " && ".join([*binds, 'exec "$@"'])
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]


class IncusDaemon:
    """incusd as the tests run it: started by hand unless something else runs it, stoppable only then."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    def start(self) -> None:
        if _incus_answers():
            return
        INCUS_LOG.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            _one_root_range([str(INCUS_DAEMON), "--group", "root", "--logfile", str(INCUS_LOG)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        ready = subprocess.run(["incus", "admin", "waitready", "--timeout", "60"], capture_output=True, text=True)
        if ready.returncode != 0:
            self.stop()
            log = INCUS_LOG.read_text(errors="replace")[-3000:] if INCUS_LOG.exists() else "(no log)"
            pytest.fail(f"Incus did not start: {ready.stderr.strip()}\n{INCUS_LOG}:\n{log}")

    def stop(self) -> None:
        """SIGTERM leaves instances running (SIGPWR would stop them); the tests delete their own."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> bool:
        """Restart the daemon if the tests started it; False if it is not theirs to restart.

        incusd (Go) reads the system CA store once, at its first TLS check, so a CA trusted after
        that is unknown to it until it restarts (checked with Incus 6.0.4: "x509: certificate signed
        by unknown authority" for a remote whose CA was added later, fine after a restart).
        """
        if self.proc is None:
            return False
        self.stop()
        self.start()
        return True


@pytest.fixture(scope="session")
def incus(lxcfs: Path) -> Iterator[IncusDaemon]:
    """Incus (6.0 from bookworm-backports, as quickstart.sh installs it) with a `dir` pool as root disk.

    There is no systemd here, so incusd is started by hand like LXD (`--group root`); it sits beside
    LXD without conflict (/var/lib/incus, its own socket, no bridge: instances get no network), and
    lxcfs comes first so that it sees it at start. `incus admin init --auto` would make a bridge, so
    the pool and the default profile's root disk are made by hand. A daemon that is missing or does
    not come up fails the run: these tests are never skipped for it.
    """
    if not shutil.which("incus") or not INCUS_DAEMON.exists():
        message = "Incus is not installed (bash quickstart.sh test installs incus-base from bookworm-backports)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    daemon = IncusDaemon()
    daemon.start()
    try:
        if incus_client("storage", "show", "default", check=False).returncode != 0:
            incus_client("storage", "create", "default", "dir")
        if "root" not in incus_client("profile", "device", "list", "default").stdout.split():
            incus_client("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default")
        daemon.version = incus_version()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def published_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image tree for the session's publish tests (LXD, lxc-create, Incus), so that a later module
    reads what an earlier one published instead of building and publishing again."""
    return tmp_path_factory.mktemp("published") / "tree"
