"""What a build says, and when (issue 13, item 5): --overwrite is suggested only where it works, the
"no password and no SSH key" note comes with the summary after the build, the libvirt memory
default is shown in --help and the summary, and long steps keep a heartbeat going when stderr is
not a terminal. The heartbeat is driven by a fake clock; nothing here waits on time.
"""

from __future__ import annotations

import importlib
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ContextFactory
from tests.unit.test_buildd import configured, distro_of
from vmbuilder_lxc import cli, log, pipeline
from vmbuilder_lxc.log import HEARTBEAT_SECONDS, Heartbeat, Progress, UserError, setup_logging, step
from vmbuilder_lxc.source import archive as archive_source

libvirt_module: Any = importlib.import_module("vmbuilder_lxc.plugins.libvirt")
lxc_module: Any = importlib.import_module("vmbuilder_lxc.plugins.lxc")


# -- DEST: --overwrite is offered only where it would work ----------------------------------------------


def dest_ctx(make_ctx: ContextFactory, dest: Path, *argv: str) -> Any:
    """The context with `dest` set past the -d validator (which refuses a file already), as the
    check before the move into place sees it."""
    ctx = make_ctx("--arch", "amd64", "-d", str(dest.parent / "new"), *argv)
    ctx.settings.set("dest", str(dest))
    return ctx


def refusal(make_ctx: ContextFactory, dest: Path, *argv: str) -> str:
    with pytest.raises(UserError) as exc:
        pipeline.check_destination(dest_ctx(make_ctx, dest, *argv))
    return str(exc.value)


@pytest.mark.parametrize("kind", ["foreign", "file", "symlink"])
def test_a_destination_that_is_not_ours_is_refused_and_overwrite_is_not_offered(
    no_host_config: Path, make_ctx: ContextFactory, tmp_path: Path, kind: str
) -> None:
    dest = tmp_path / "ct"
    if kind == "foreign":
        dest.mkdir()
        (dest / "precious").write_text("keep me")
        why = "was not built by vmbuilder-lxc (it holds no vmbuilder-lxc.json)"
    elif kind == "file":
        dest.write_text("keep me")
        why = "is not a directory"
    else:
        (tmp_path / "elsewhere").mkdir()
        dest.symlink_to(tmp_path / "elsewhere")
        why = "is a symbolic link"
    for argv in ((), ("--overwrite",)):
        message = refusal(make_ctx, dest, *argv)
        assert why in message and "refused, even with --overwrite" in message, message
        assert "pass --overwrite" not in message and "\n" not in message
        assert message.endswith("; remove it yourself or choose another -d")
    assert kind == "symlink" or "keep me" in ((dest / "precious") if kind == "foreign" else dest).read_text()


@pytest.mark.parametrize("ours", ["marker", "empty"])
def test_an_earlier_build_needs_overwrite_and_says_so(
    no_host_config: Path, make_ctx: ContextFactory, tmp_path: Path, ours: str
) -> None:
    dest = tmp_path / "ct"
    dest.mkdir()
    if ours == "marker":
        (dest / pipeline.MARKER).write_text("{}")
        (dest / "rootfs").mkdir()
    message = refusal(make_ctx, dest)
    assert message == f"destination {dest} already exists; pass --overwrite to replace it, or choose another -d"
    pipeline.check_destination(dest_ctx(make_ctx, dest, "--overwrite"))  # and then it works


def test_a_mounted_build_says_to_unmount_before_overwrite(
    no_host_config: Path, make_ctx: ContextFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "ct"
    dest.mkdir()
    (dest / pipeline.MARKER).write_text("{}")
    monkeypatch.setattr(pipeline, "mounts_below", lambda path: [path / "rootfs/proc"])
    assert refusal(make_ctx, dest).endswith("; stop it and unmount it, then pass --overwrite to replace it")
    assert refusal(make_ctx, dest, "--overwrite").endswith("; stop it and unmount it")


def test_not_replaceable_names_each_reason(tmp_path: Path) -> None:
    assert pipeline.not_replaceable(tmp_path) is None  # empty
    (tmp_path / "x").write_text("")
    assert "not built by vmbuilder-lxc" in str(pipeline.not_replaceable(tmp_path))
    (tmp_path / pipeline.MARKER).write_text("{}")
    assert pipeline.not_replaceable(tmp_path) is None


# -- the "no password and no SSH key" note belongs to the summary -----------------------------------------


def test_the_no_login_note_is_kept_for_the_summary_not_printed_in_preflight(
    fake_fs: FakeFilesystem,
    make_ctx: ContextFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archive_source, "require_keyring", lambda path, name: [])
    monkeypatch.setattr(archive_source, "choose_backend", lambda requested, req: "mmdebstrap")
    monkeypatch.setattr(archive_source, "check_cache_dir", lambda path: None)
    ctx = configured(fake_fs, make_ctx, "--suite", "noble", "--network", "none")
    distro_of(ctx).preflight_check()
    assert "no password" not in capsys.readouterr().err  # nothing before the first step
    note = "user 'ubuntu' has no password and no SSH key; use lxc-attach to get in"
    assert ctx.summary["notes"] == [note]  # what --json prints (summarize copies ctx.summary)
    lines = pipeline.summary_lines(ctx)
    assert lines[-1] == f"note: {note}"
    assert lines[0].startswith("Container b1 is ready in /srv/ct/b1")  # after how to use the result
    assert pipeline.summarize(ctx, "ok")["notes"] == [note]


def test_with_a_key_there_is_no_note(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_source, "require_keyring", lambda path, name: [])
    monkeypatch.setattr(archive_source, "choose_backend", lambda requested, req: "mmdebstrap")
    monkeypatch.setattr(archive_source, "check_cache_dir", lambda path: None)
    ctx = configured(fake_fs, make_ctx, "--suite", "noble", "--network", "none", "--pass", "secret")
    distro_of(ctx).preflight_check()
    assert "notes" not in ctx.summary
    assert not [line for line in pipeline.summary_lines(ctx) if line.startswith("note:")]


def test_cli_prints_the_summary_lines_after_the_build(
    no_host_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_build(ctx: Any) -> dict[str, Any]:
        log.LOG.info("==> the last step")
        ctx.summary["notes"] = ["something to know"]
        return {"status": "ok"}

    monkeypatch.setattr(pipeline, "build", fake_build)
    assert cli.main(["lxc", "ubuntu", "--arch", "amd64", "-d", "/srv/ct/n1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err.index("==> the last step") < err.index("note: something to know") == len(err) - 1


# -- --libvirt's memory default in --help and the summary ------------------------------------------------


def test_mem_help_shows_the_libvirt_default_from_its_constant(
    no_host_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lxc_module.default_mem_text() == "1024 MB (1 GiB)"
    monkeypatch.setattr(lxc_module, "DEFAULT_MEM_MB", 2048)
    try:
        cli.main(["lxc", "ubuntu", "--help"])
    except SystemExit:
        pass
    help_text = " ".join(capsys.readouterr().out.split())
    assert (
        "--mem MB memory limit in MB (also accepts 2G); without it: no limit, but with --libvirt 2048 MB (2 GiB)"
        in (help_text)
    )


@pytest.mark.parametrize(
    ("argv", "shown", "mb"),
    [((), "1024 MB (1 GiB), the default; --mem changes it", 1024), (("--mem", "2G"), "2048 MB (--mem)", 2048)],
)
def test_the_summary_shows_the_domains_memory_limit(
    no_host_config: Path, make_ctx: ContextFactory, argv: tuple[str, ...], shown: str, mb: int
) -> None:
    ctx = make_ctx("--libvirt", "lxc:///", "--network", "none", "-d", "/srv/ct/web1", *argv)
    plugin = next(p for p in ctx.plugins if isinstance(p, libvirt_module.Libvirt))
    assert plugin.memory_mb() == mb
    assert f"    memory limit:  {shown}" in pipeline.summary_lines(ctx)


# -- the heartbeat ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_default_interval_is_15_seconds() -> None:
    assert HEARTBEAT_SECONDS == 15.0 and Heartbeat().interval == 15.0


def test_a_heartbeat_is_due_after_an_interval_of_silence() -> None:
    clock = Clock()
    beat = Heartbeat(clock=clock)
    assert beat.due(clock.now + 100) is None  # nothing running: nothing to report
    act = beat.push("Exporting lxd (xz)", depth=1)
    clock.now += 14.9
    assert beat.due(clock.now) is None
    clock.now += 0.1
    assert beat.due(clock.now) == ("Exporting lxd (xz): still running after 15 s", 1)
    clock.now += 10
    assert beat.due(clock.now) is None  # the heartbeat itself counts as output
    clock.now += 5
    assert beat.due(clock.now) == ("Exporting lxd (xz): still running after 30 s", 1)
    clock.now += 10
    beat.output()  # any other line printed postpones the next heartbeat
    clock.now += 14
    assert beat.due(clock.now) is None
    clock.now += 1
    assert beat.due(clock.now) is not None
    beat.pop(act)
    clock.now += 60
    assert beat.due(clock.now) is None


def test_the_innermost_activity_is_named_with_its_last_output_line() -> None:
    clock = Clock()
    beat = Heartbeat(clock=clock)
    outer = beat.push("Bootstrapping noble", depth=1)
    clock.now += 5
    inner = beat.push("apt-get dist-upgrade", depth=2)
    beat.saw("Unpacking libc6 (2.39-0ubuntu8) ...\n")
    beat.saw("   ")  # blank lines are not quoted
    clock.now += 15
    assert beat.due(clock.now) == (
        "apt-get dist-upgrade: still running after 15 s (Unpacking libc6 (2.39-0ubuntu8) ...)",
        2,
    )
    beat.pop(inner)
    clock.now += 15
    assert beat.due(clock.now) == ("Bootstrapping noble: still running after 35 s", 1)
    beat.pop(outer)


@pytest.fixture
def heartbeat(monkeypatch: pytest.MonkeyPatch) -> Heartbeat:
    """A fresh heartbeat in place of the module's, on a fake clock (its thread never runs)."""
    beat = Heartbeat(clock=Clock())
    beat._thread = threading.current_thread()  # already "started": push() starts nothing
    monkeypatch.setattr(log, "HEARTBEAT", beat)
    return beat


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_only_a_stream_that_is_not_a_terminal_gets_heartbeats(
    heartbeat: Heartbeat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    setup_logging(0, Terminal())
    assert not heartbeat.enabled
    setup_logging(0, io.StringIO())
    assert heartbeat.enabled
    monkeypatch.setenv("TERM", "dumb")
    setup_logging(0, Terminal())
    assert heartbeat.enabled


def test_steps_and_progress_labels_are_activities_and_quiet_steps_are_not(heartbeat: Heartbeat) -> None:
    setup_logging(0, io.StringIO())
    with step("Checking settings", quiet=True):
        assert heartbeat.activities == []
    with step("Exporting lxd (xz)"):
        assert [a.label for a in heartbeat.activities] == ["Exporting lxd (xz)"]
        bar = Progress("writing ct.lxd.tar.xz", stream=io.StringIO())
        bar.update("some output\n")
        assert [(a.label, a.last_line) for a in heartbeat.activities][-1] == ("writing ct.lxd.tar.xz", "some output")
        bar.close()
        assert len(heartbeat.activities) == 1
    assert heartbeat.activities == []


def test_a_progress_line_prints_nothing_itself_when_not_on_a_terminal(heartbeat: Heartbeat) -> None:
    stream = io.StringIO()
    bar = Progress("writing x", stream=stream)
    for i in range(100):
        bar.update(f"line {i}\n")
    bar.close()
    assert stream.getvalue() == ""


def test_a_step_logs_heartbeats_indented_on_stderr_and_nothing_on_stdout(
    heartbeat: Heartbeat, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(0)  # sys.stderr, captured: not a terminal
    clock = heartbeat.clock
    assert isinstance(clock, Clock)
    with step("Exporting lxd (xz)"):
        clock.now += 15
        due = heartbeat.due(clock.now)
        assert due is not None
        log.LOG.info("%s", due[0], extra={"depth": due[1]})  # what the heartbeat thread does
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[:2] == [
        "==> Exporting lxd (xz)",
        "    Exporting lxd (xz): still running after 15 s",
    ]


def test_the_thread_beats_while_a_step_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real thread, with an interval short enough that the first beat comes at once; the wait
    for it is an event with a hang guard, not a timed assertion."""
    beat = Heartbeat(interval=0.01)
    monkeypatch.setattr(log, "HEARTBEAT", beat)
    seen = threading.Event()

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            if "still running after" in text:
                seen.set()
            return super().write(text)

    stream = Stream()
    setup_logging(0, stream)
    with step("Compressing"):
        assert seen.wait(timeout=60), stream.getvalue()
    assert "    Compressing: still running after" in stream.getvalue()
