"""The initctl listener: libvirt-lxc's `virsh shutdown` and `virsh reboot` reach the guest's init.

libvirt writes a SysV `struct init_request` (384 bytes, host byte order) to the guest's
/run/initctl FIFO, opened O_WRONLY|O_NONBLOCK, and reports success even when no FIFO exists. The
packaged listener script is run here for real, with every POSIX shell this host has, on records
built with struct.pack in both byte orders; fake `systemctl` and `shutdown` on PATH record what it
would have done. The FIFO tests open the FIFO exactly as libvirt does. The tweak tests check which
builds get the listener (--initctl-listener auto|always|never) on a fake rootfs.
"""

from __future__ import annotations

import configparser
import errno
import os
import shutil
import signal
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.conftest import ROOT
from tests.unit.test_tweaks import TWEAKS, Tweaked, TweakFactory, tweak  # noqa: F401  (tweak: the fixture)
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.render import Templates
from vmbuilder_lxc.suites import Release
from vmbuilder_lxc.tweakguest import Guest
from vmbuilder_lxc.tweaks import ReleaseTraits, When

INITREQ_MAGIC = 0x03091969
CMD_RUNLVL = 1
SCRIPT = "/usr/local/lib/vmbuilder-lxc/initctl-listener"
SOCKET = "/etc/systemd/system/vmbuilder-initctl.socket"
SERVICE = "/etc/systemd/system/vmbuilder-initctl.service"


def _works(argv: list[str]) -> bool:
    if not shutil.which(argv[0]):
        return False
    return subprocess.run([*argv, "-c", "true"], capture_output=True).returncode == 0


# Every POSIX shell here that a guest's /bin/sh may be: dash (Debian, Ubuntu), busybox, bash.
SHELLS = [argv for argv in (["/bin/sh"], ["dash"], ["busybox", "sh"], ["bash", "--posix"]) if _works(argv)]


def initreq(runlevel: str | int, order: str = "<", *, magic: int = INITREQ_MAGIC, cmd: int = CMD_RUNLVL) -> bytes:
    """struct init_request: int magic, cmd, runlevel, sleeptime; char data[368]."""
    level = ord(runlevel) if isinstance(runlevel, str) else runlevel
    return struct.pack(f"{order}iiii368s", magic, cmd, level, 0, b"")


def render(template: str) -> str:
    return Templates().render(template, {})


@dataclass
class Listener:
    """The packaged listener script with fake systemctl and shutdown on PATH."""

    script: Path
    tmp: Path
    systemd_dir: Path

    @property
    def calls_file(self) -> Path:
        return self.tmp / "calls"

    def calls(self) -> list[str]:
        return self.calls_file.read_text().splitlines() if self.calls_file.exists() else []

    def env(self, systemd: bool = True) -> dict[str, str]:
        return {
            "PATH": f"{self.tmp / 'bin'}:{os.environ['PATH']}",
            "CALLS": str(self.calls_file),
            "VMBUILDER_INITCTL_SYSTEMD_DIR": str(self.systemd_dir if systemd else self.tmp / "no-systemd"),
        }

    def run(self, stream: bytes, shell: list[str], systemd: bool = True) -> subprocess.CompletedProcess[str]:
        """Feed a stream of requests on standard input (a regular file: one read is one record)."""
        requests = self.tmp / "requests"
        requests.write_bytes(stream)
        with requests.open("rb") as stdin:
            return subprocess.run(
                [*shell, str(self.script)], stdin=stdin, env=self.env(systemd), capture_output=True, text=True,
                timeout=30,
            )  # fmt: skip


@pytest.fixture
def listener(tmp_path: Path) -> Listener:
    script = tmp_path / "initctl-listener"
    script.write_text(render("initctl/initctl-listener.j2"))
    script.chmod(0o755)
    (tmp_path / "bin").mkdir()
    for name in ("systemctl", "shutdown"):
        fake = tmp_path / "bin" / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n')
        fake.chmod(0o755)
    systemd_dir = tmp_path / "run-systemd-system"
    systemd_dir.mkdir()
    return Listener(script, tmp_path, systemd_dir)


def shell_id(argv: list[str]) -> str:
    return " ".join(argv)


# -- the script ----------------------------------------------------------------------------------------


def test_the_template_is_the_script_verbatim() -> None:
    """Rendering must not change a byte (no Jinja syntax in it), and the guest default is sd_booted()'s test."""
    raw = (Templates().origin("initctl/initctl-listener.j2")).read_text()
    assert render("initctl/initctl-listener.j2") == raw
    assert raw.startswith("#!/bin/sh\n")
    assert "${VMBUILDER_INITCTL_SYSTEMD_DIR:-/run/systemd/system}" in raw
    assert "set -u" in raw.splitlines()


@pytest.mark.parametrize("shell", SHELLS, ids=shell_id)
@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize(
    ("systemd", "runlevel", "expected"),
    [
        (True, "0", "systemctl --no-block poweroff"),
        (True, "6", "systemctl --no-block reboot"),
        (False, "0", "shutdown -h now"),
        (False, "6", "shutdown -r now"),
    ],
)
def test_runlevel_0_powers_off_and_6_reboots(
    listener: Listener, shell: list[str], order: str, systemd: bool, runlevel: str, expected: str
) -> None:
    result = listener.run(initreq(runlevel, order), shell, systemd)
    assert result.returncode == 0, result.stderr
    assert listener.calls() == [expected]
    assert result.stderr == ""


BAD_REQUESTS = {
    "bad magic": initreq("0", magic=0x12345678),
    "magic in the other byte order": struct.pack(">i", INITREQ_MAGIC) + initreq("0")[4:],
    "cmd in the other byte order": initreq("0")[:4] + struct.pack(">i", CMD_RUNLVL) + initreq("0")[8:],
    "cmd 2 (power fail)": initreq("0", cmd=2),
    "runlevel 5": initreq("5"),
    "runlevel 1": initreq("1"),
    "runlevel S": initreq("S"),
    "runlevel 0 as a number, not '0'": initreq(0),
    "all zeros": bytes(384),
}


@pytest.mark.parametrize("shell", SHELLS, ids=shell_id)
@pytest.mark.parametrize("bad", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_other_requests_are_logged_and_ignored(listener: Listener, shell: list[str], bad: bytes) -> None:
    """Nothing runs for them, one line says why, and the next request is still carried out."""
    result = listener.run(bad + initreq("0"), shell)
    assert result.returncode == 0
    assert listener.calls() == ["systemctl --no-block poweroff"]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("initctl-listener: ignored a request"), lines


@pytest.mark.parametrize("shell", SHELLS, ids=shell_id)
def test_several_requests_in_one_stream(listener: Listener, shell: list[str]) -> None:
    stream = initreq("0") + initreq("6", ">") + initreq("3") + initreq("0", ">") + initreq("6")
    result = listener.run(stream, shell, systemd=False)
    assert result.returncode == 0
    assert listener.calls() == ["shutdown -h now", "shutdown -r now", "shutdown -h now", "shutdown -r now"]
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("shell", SHELLS, ids=shell_id)
def test_end_of_file_ends_the_listener(listener: Listener, shell: list[str]) -> None:
    empty = listener.run(b"", shell)
    assert (empty.returncode, empty.stderr, listener.calls()) == (0, "", [])
    # A truncated request at the end is reported, not acted on.
    short = listener.run(initreq("6") + initreq("0")[:10], shell)
    assert short.returncode == 0
    assert listener.calls() == ["systemctl --no-block reboot"]
    assert short.stderr == "initctl-listener: ignored a short request of 10 bytes\n"


def test_a_failing_command_is_logged_and_the_listener_goes_on(listener: Listener) -> None:
    (listener.tmp / "bin/systemctl").write_text('#!/bin/sh\necho "systemctl $*" >> "$CALLS"\nexit 1\n')
    result = listener.run(initreq("0") + initreq("6"), ["/bin/sh"])
    assert result.returncode == 0
    assert listener.calls() == ["systemctl --no-block poweroff", "systemctl --no-block reboot"]
    assert result.stderr.splitlines() == ["initctl-listener: poweroff failed", "initctl-listener: reboot failed"]


# -- a real FIFO, written the way libvirt writes it ------------------------------------------------------


def libvirt_write(fifo: Path, request: bytes) -> None:
    """virInitctlSetRunLevel: open O_WRONLY|O_NONBLOCK (ENXIO when nobody reads), one write."""
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, request) == 384
    finally:
        os.close(fd)


def wait_for_calls(listener: Listener, count: int, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(listener.calls()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return listener.calls()


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts in their own session; each is ended by its id afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def upstart_job_script(tmp: Path, script: Path) -> str:
    """The `script` section of our upstart job, with its guest paths moved under `tmp`."""
    job = render("upstart/initctl.conf.j2")
    body = job.split("\nscript\n", 1)[1].split("\nend script", 1)[0]
    return (
        body.replace(SCRIPT, str(script))
        .replace("/dev/initctl", str(tmp / "dev/initctl"))
        .replace("/run", str(tmp / "run"))
    )


@pytest.mark.parametrize("has_run", [True, False], ids=["/run (oneiric on)", "no /run (lucid to natty)"])
def test_the_upstart_job_makes_the_fifo_and_the_listener_serves_libvirt(
    listener: Listener, running: list[subprocess.Popen[bytes]], has_run: bool
) -> None:
    """The job's own script (run with `sh -e`, as upstart does) and libvirt's writes, for real."""
    tmp = listener.tmp
    (tmp / "dev").mkdir()
    if has_run:
        (tmp / "run").mkdir()
    fifo = tmp / ("run/initctl" if has_run else "dev/initctl")
    with pytest.raises(OSError) as err:  # before the job: no FIFO at all, libvirt finds nothing
        libvirt_write(fifo, initreq("0"))
    assert err.value.errno == errno.ENOENT

    proc = subprocess.Popen(
        ["/bin/sh", "-e", "-c", upstart_job_script(tmp, listener.script)],
        env=listener.env(systemd=False), start_new_session=True, stderr=subprocess.PIPE,
    )  # fmt: skip
    running.append(proc)
    deadline = time.monotonic() + 15
    while not fifo.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_IMODE(fifo.stat().st_mode) == 0o600
    other = tmp / ("dev/initctl" if has_run else "run/initctl")
    assert not other.exists()

    # The open succeeds at once (a reader is there) and the write is one whole request.
    time.sleep(0.2)
    libvirt_write(fifo, initreq("0"))
    assert wait_for_calls(listener, 1) == ["shutdown -h now"]
    # The writer closed its end, yet the listener goes on: opened read-write, the FIFO has no EOF.
    time.sleep(0.3)
    assert proc.poll() is None
    libvirt_write(fifo, initreq("6", ">"))
    assert wait_for_calls(listener, 2) == ["shutdown -h now", "shutdown -r now"]
    assert proc.poll() is None


def test_the_job_replaces_a_stale_file_that_is_not_a_fifo(
    listener: Listener, running: list[subprocess.Popen[bytes]]
) -> None:
    tmp = listener.tmp
    (tmp / "run").mkdir()
    (tmp / "run/initctl").write_text("not a fifo")
    proc = subprocess.Popen(["/bin/sh", "-e", "-c", upstart_job_script(tmp, listener.script)],
                            env=listener.env(systemd=False), start_new_session=True)  # fmt: skip
    running.append(proc)
    deadline = time.monotonic() + 15
    while not stat.S_ISFIFO((tmp / "run/initctl").stat().st_mode) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    libvirt_write(tmp / "run/initctl", initreq("0"))
    assert wait_for_calls(listener, 1) == ["shutdown -h now"]


def test_no_reader_means_enxio_for_libvirt(tmp_path: Path) -> None:
    """A FIFO that nobody reads fails libvirt's open: why the socket unit removes it when it stops."""
    fifo = tmp_path / "initctl"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(OSError) as err:
        libvirt_write(fifo, initreq("0"))
    assert err.value.errno == errno.ENXIO


def test_a_non_blocking_fifo_is_drained_and_the_listener_exits(listener: Listener) -> None:
    """systemd opens the FIFO O_RDWR|O_NONBLOCK; it clears O_NONBLOCK for StandardInput=socket, but if
    a manager did not, the listener handles what is queued and exits 0, to be started again on the
    next request (socket activation)."""
    fifo = listener.tmp / "initctl"
    os.mkfifo(fifo, 0o600)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        libvirt_write(fifo, initreq("6"))
        libvirt_write(fifo, initreq("0", ">"))
        result = subprocess.run(["/bin/sh", str(listener.script)], stdin=fd, env=listener.env(),
                                capture_output=True, text=True, timeout=30)  # fmt: skip
    finally:
        os.close(fd)
    assert result.returncode == 0
    assert listener.calls() == ["systemctl --no-block reboot", "systemctl --no-block poweroff"]


# -- the systemd units --------------------------------------------------------------------------------


def unit(template: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(render(template))
    return parser


def test_socket_unit_listens_on_run_initctl_from_early_boot() -> None:
    socket = unit("systemd/initctl.socket.j2")
    assert dict(socket["Socket"]) == {
        "ListenFIFO": "/run/initctl", "Symlinks": "/dev/initctl", "SocketMode": "0600", "RemoveOnStop": "yes",
    }  # fmt: skip
    assert socket["Unit"]["DefaultDependencies"] == "no"
    assert socket["Unit"]["Before"].split() == ["sockets.target", "shutdown.target"]
    assert socket["Unit"]["Conflicts"] == "shutdown.target"
    assert socket["Install"]["WantedBy"] == "sockets.target"


def test_service_reads_the_fifo_on_stdin_and_logs_to_the_journal() -> None:
    service = unit("systemd/initctl.service.j2")
    assert service["Service"]["ExecStart"] == SCRIPT
    assert service["Service"]["StandardInput"] == "socket"
    # Left at its default (inherit), output would go into the FIFO the listener reads.
    assert service["Service"]["StandardOutput"] == "journal" and service["Service"]["StandardError"] == "journal"
    assert service["Unit"]["DefaultDependencies"] == "no"
    assert service["Unit"]["Conflicts"] == "shutdown.target" and service["Unit"]["Before"] == "shutdown.target"
    assert "Install" not in service, "started by its socket only"


# -- which builds get it -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "selected"),
    [
        (ReleaseTraits(init="systemd", systemd_version=259, initctl=False), True),  # resolute
        (ReleaseTraits(init="systemd", systemd_version=262, initctl=False), True),  # Debian forky
        (ReleaseTraits(init="systemd", systemd_version=255, initctl=True), False),  # noble
        (ReleaseTraits(init="upstart", initctl=False), False),  # upstart has its own job
    ],
)
def test_when_initctl(traits: ReleaseTraits, selected: bool) -> None:
    release = Release("ubuntu", "x", "26.04", "X", None, None, None)
    guest = Guest(Path("/nonexistent"), lambda n, v: "", {}, {})
    systemd_tweak = next(t for t in TWEAKS if t.name == "initctl-listener")
    assert systemd_tweak.when == When(init="systemd", initctl=False)
    assert systemd_tweak.when.matches(release, traits, guest) is selected


def check_installed(t: Tweaked) -> None:
    assert "initctl-listener" in t.chosen
    mode = stat.S_IMODE((ROOT / SCRIPT.lstrip("/")).stat().st_mode)
    assert mode == 0o755
    assert t.read(SCRIPT) == render("initctl/initctl-listener.j2")
    assert "ListenFIFO=/run/initctl" in t.read(SOCKET)
    assert "StandardInput=socket" in t.read(SERVICE)
    assert t.link("/etc/systemd/system/sockets.target.wants/vmbuilder-initctl.socket") == SOCKET
    assert t.link("/etc/systemd/system/systemd-initctl.socket") == "/dev/null"
    record = next(r for r in t.record if r["name"] == "initctl-listener")
    assert record["paths"] == [
        SCRIPT, SOCKET, SERVICE, "/etc/systemd/system/sockets.target.wants/vmbuilder-initctl.socket",
        "/etc/systemd/system/systemd-initctl.socket",
    ]  # fmt: skip


def check_absent(t: Tweaked) -> None:
    assert not any(name.startswith("initctl-listener") for name in t.chosen)
    for path in (SCRIPT, SOCKET, SERVICE, "/etc/systemd/system/systemd-initctl.socket"):
        assert not t.exists(path), path


def test_resolute_gets_the_listener_by_default(tweak: TweakFactory) -> None:  # noqa: F811
    t = tweak("--suite", "resolute")
    check_installed(t)
    assert t.ctx.hook_env["INITCTL_LISTENER"] == "vmbuilder"
    assert t.ctx.summary["initctl_listener"] == "vmbuilder"
    assert t.distro.traits.initctl is False, "the release traits keep their meaning"


def test_noble_keeps_systemd_initctl_by_default(tweak: TweakFactory) -> None:  # noqa: F811
    t = tweak("--suite", "noble")
    check_absent(t)
    assert t.ctx.hook_env["INITCTL_LISTENER"] == "systemd"


def test_always_replaces_systemd_initctl(tweak: TweakFactory) -> None:  # noqa: F811
    """How the integration test proves our listener under a real libvirtd: noble, which libvirt 9.0 can boot."""
    t = tweak("--suite", "noble", "--initctl-listener", "always")
    check_installed(t)
    assert t.ctx.hook_env["INITCTL_LISTENER"] == "vmbuilder"
    assert t.distro.traits.initctl is True and t.distro.tweak_traits().initctl is False


@pytest.mark.parametrize(("suite", "who"), [("noble", "systemd"), ("resolute", "none")])
def test_never_installs_nothing_and_warns_where_nothing_listens(
    tweak: TweakFactory,  # noqa: F811
    suite: str,
    who: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    t = tweak("--suite", suite, "--initctl-listener", "never")
    check_absent(t)
    assert t.ctx.hook_env["INITCTL_LISTENER"] == who
    capsys.readouterr()
    t.distro.check_initctl_listener()
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "initctl" in ln]
    if who == "none":
        assert len(warned) == 1 and "warning" in warned[0] and "virsh shutdown" in warned[0], warned
        assert "do nothing" in warned[0]
    else:
        assert warned == []


def test_a_bad_mode_is_refused(tweak: TweakFactory) -> None:  # noqa: F811
    with pytest.raises(UserError, match="initctl-listener"):
        tweak("--suite", "noble", "--initctl-listener", "sometimes", do_apply=False)
