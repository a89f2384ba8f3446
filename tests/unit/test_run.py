"""run(): the one place commands are run, with both sh 2.x (PyPI) and sh 1.14 (Debian 12's python3-sh).

Every test runs once per sh flavour: Debian's copy is loaded from /usr/lib/python3/dist-packages
under a private module name and swapped in for vmbuilder_lxc.run.sh.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import sh as pypi_sh

from vmbuilder_lxc import run as run_module
from vmbuilder_lxc.log import UserError, setup_logging
from vmbuilder_lxc.run import BASE_PATH, CommandError, clean_env, run

DEBIAN_SH = Path("/usr/lib/python3/dist-packages/sh.py")


def load_debian_sh() -> ModuleType:
    name = "_vmbuilder_test_debian_sh"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEBIAN_SH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # sh replaces its own sys.modules entry with a wrapper
        spec.loader.exec_module(module)
    loaded: ModuleType = sys.modules[name]
    return loaded


@pytest.fixture(params=["pypi", "debian"], autouse=True)
def sh_flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "debian":
        if not DEBIAN_SH.is_file():
            pytest.skip(f"{DEBIAN_SH} (Debian's python3-sh) is not installed")
        module = load_debian_sh()
        assert module.__version__.startswith("1.")
        monkeypatch.setattr(run_module, "sh", module)
    else:
        assert pypi_sh.__version__.startswith("2.")
        monkeypatch.setattr(run_module, "sh", pypi_sh)
    yield request.param


def test_output_is_captured_with_stderr_merged() -> None:
    result = run(["sh", "-c", "echo out; echo err >&2; printf 'no newline'"])
    assert result.returncode == 0
    assert result.output == "out\nerr\nno newline"
    assert result.lines == ["out", "err", "no newline"]
    assert result.argv == ["sh", "-c", "echo out; echo err >&2; printf 'no newline'"]


def test_path_arguments_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("content\n")
    assert run(["cat", tmp_path / "f"]).output == "content\n"


def test_invalid_utf8_output_is_replaced() -> None:
    assert run(["printf", "a\\377b\\n"]).output == "a\ufffdb\n"


def test_exit_code_raises_command_error_with_the_tail() -> None:
    with pytest.raises(CommandError) as err:
        run(["sh", "-c", "seq 1 100; exit 3"])
    assert err.value.returncode == 3
    assert err.value.tail == [str(n) for n in range(76, 101)]  # the last 25 lines
    assert str(err.value) == "command failed with exit code 3: sh -c 'seq 1 100; exit 3'"


def test_check_false_returns_the_exit_code() -> None:
    result = run(["sh", "-c", "echo partial; exit 42"], check=False)
    assert result.returncode == 42
    assert result.output == "partial\n"


def test_ok_codes() -> None:
    assert run(["sh", "-c", "exit 1"], ok_codes=(0, 1)).returncode == 1
    with pytest.raises(CommandError):
        run(["sh", "-c", "exit 2"], ok_codes=(0, 1))


def test_killed_command_reports_a_negative_code() -> None:
    result = run(["sh", "-c", "kill -TERM $$"], check=False)
    assert result.returncode == -signal.SIGTERM


def test_input_is_passed_on_stdin() -> None:
    assert run(["cat"], input="line 1\nline 2\n").output == "line 1\nline 2\n"
    assert run(["wc", "-l"], input="a\nb\nc\n").output.strip() == "3"


def test_without_input_stdin_is_at_end_of_file() -> None:
    """A command that reads stdin must see EOF at once, not wait for input that never comes.

    `timeout` turns the hang into exit code 124 so that this test cannot block the suite.
    """
    assert run(["sh", "-c", "timeout 0.3 cat; echo rc=$?"]).output == "rc=0\n"


def test_env_is_passed_as_given() -> None:
    env = {"PATH": BASE_PATH, "GREETING": "moin"}
    assert run(["sh", "-c", "echo $GREETING; env | sort"], env=env).lines[0] == "moin"
    names = {ln.split("=", 1)[0] for ln in run(["env"], env=env).lines}
    assert names <= {"PATH", "GREETING", "PWD", "SHLVL", "_"}


def test_default_env_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's locale and variables never reach debootstrap or the chroot."""
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("LC_MESSAGES", "de_DE.UTF-8")
    monkeypatch.setenv("SECRET_TOKEN", "xyz")
    env = dict(ln.split("=", 1) for ln in run(["env"]).lines if "=" in ln)
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["DEBIAN_FRONTEND"] == "noninteractive"
    assert "LANG" not in env and "LC_MESSAGES" not in env and "SECRET_TOKEN" not in env
    assert env["PATH"].startswith(BASE_PATH)


def test_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/tools/bin")
    env = clean_env({"SUITE": "noble", "LC_ALL": "C"})
    assert env["SUITE"] == "noble"
    assert env["LC_ALL"] == "C"  # extra wins
    assert env["PATH"] == f"{BASE_PATH}:/opt/tools/bin"
    assert clean_env(host_path=False)["PATH"] == BASE_PATH
    assert env["HOME"] == "/root" and env["TERM"] == "dumb"


def test_cwd(tmp_path: Path) -> None:
    assert run(["pwd"], cwd=tmp_path).output.strip() == str(tmp_path)


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        ("debootstrap", "install it with: apt-get install debootstrap"),
        ("lxc-start", "install it with: apt-get install lxc"),
        ("mksquashfs", "install it with: apt-get install squashfs-tools"),
        ("no-such-tool-xyz", "install it and retry"),
    ],
)
def test_command_not_found_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, hint: str
) -> None:
    empty = str(tmp_path)
    monkeypatch.setenv("PATH", empty)
    with pytest.raises(UserError) as err:
        run([command, "--version"], env={"PATH": empty})
    assert err.value.message == f"command '{command}' not found"
    assert err.value.hint == hint


def test_commands_are_found_on_the_given_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\necho mytool ran\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert run(["mytool"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).output == "mytool ran\n"


def test_output_is_logged_with_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(2)
    run(["sh", "-c", "echo visible"])
    err = capsys.readouterr().err
    assert "+ sh -c 'echo visible'" in err
    assert "| visible" in err


def test_output_is_quiet_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(0)
    run(["sh", "-c", "echo hidden"])
    assert "hidden" not in capsys.readouterr().err


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return not any(ln.startswith("State:") and "Z" in ln for ln in status.splitlines())


def _wait_for_pid(pidfile: Path, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"the command did not write {pidfile}")


def _main_thread_waits_in_run() -> bool:
    """True once the main thread is inside run()'s proc.wait() (not still launching the command)."""
    main = threading.main_thread().ident
    frame = sys._current_frames().get(main) if main is not None else None
    while frame is not None:
        caller = frame.f_back
        if (
            frame.f_code.co_name == "wait"
            and caller is not None
            and caller.f_code.co_name == "run"
            and caller.f_code.co_filename == run_module.__file__
        ):
            return True
        frame = caller
    return False


def _interrupt_main_thread() -> None:
    """A real SIGINT for the main thread: _thread.interrupt_main() only sets a flag, which a thread
    blocked in waitpid() does not see until the child exits."""
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, signal.SIGINT)


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _assert_gone(pid: int, grace: float = 5) -> None:
    try:
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the command's child survived the interrupt"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_interrupt_while_waiting_terminates_the_process_group(tmp_path: Path, sigint_raises: None) -> None:
    """Ctrl-C while a command runs must kill its children too, before cleanup starts."""
    pidfile = tmp_path / "sleep.pid"

    def interrupt() -> None:
        _wait_for_pid(pidfile)
        deadline = time.monotonic() + 10
        while not _main_thread_waits_in_run() and time.monotonic() < deadline:
            time.sleep(0.01)
        _interrupt_main_thread()

    thread = threading.Thread(target=interrupt, daemon=True)
    start = time.monotonic()
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"])
    finally:
        thread.join(15)
    assert time.monotonic() - start < 15, "run() did not react to the interrupt"
    _assert_gone(_wait_for_pid(pidfile))


def test_interrupt_during_launch_terminates_the_command(
    tmp_path: Path, sigint_raises: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launch takes milliseconds (more on a loaded host); a Ctrl-C then must not leak the command.

    The SIGINT is sent from inside the launch call, once the command is running, so the test does
    not depend on timing. Under load the same happens with a real Ctrl-C.
    """
    pidfile = tmp_path / "sleep.pid"
    real = run_module.sh

    def command(path: str) -> object:
        launch = real.Command(path)

        def started(*args: object, **kwargs: object) -> object:
            proc = launch(*args, **kwargs)
            _wait_for_pid(pidfile)
            _interrupt_main_thread()  # the KeyboardInterrupt surfaces before this returns
            return proc

        return started

    fake = types.SimpleNamespace(
        Command=command, CommandNotFound=real.CommandNotFound, ErrorReturnCode=real.ErrorReturnCode
    )
    monkeypatch.setattr(run_module, "sh", fake)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"])
    finally:
        monkeypatch.setattr(run_module, "sh", real)
    _assert_gone(_wait_for_pid(pidfile), grace=1)
