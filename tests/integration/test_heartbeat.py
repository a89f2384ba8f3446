"""The heartbeat promised in docs/design.md: with stderr not a terminal, a long step prints a line
at least every 15 s, even while a silent command (xz compressing an LXD image) runs.

One build on the session cache, then `vmbuilder lxc export DEST --export lxd --json` with stderr
piped and read while it runs, each line stamped with the time it arrived. The bound is generous
(15 s plus slack for a loaded host); stdout must still be nothing but the JSON summary.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from tests.integration.conftest import Builder, vmbuilder_command

HEARTBEAT = 15.0
SLACK = 5.0  # a busy CI host may be late to schedule the heartbeat thread or the reader


def read_stamped(proc: subprocess.Popen[str]) -> list[tuple[float, str]]:
    """Every stderr line with the monotonic time it was read (in a thread, while stdout is read)."""
    lines: list[tuple[float, str]] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append((time.monotonic(), line.rstrip("\n")))
    return lines


def test_an_lxd_export_prints_a_heartbeat_into_a_pipe(builder: Builder, tmp_path: Path) -> None:
    dest = tmp_path / "hb1"
    builder.run("--suite", "noble", "--network", "none", "-d", str(dest)).check()
    out = tmp_path / "out"
    # xz, not the zstd default: the test needs a step that is long and silent.
    argv = [vmbuilder_command(), "lxc", "export", str(dest), "--export", "lxd", "--compression", "xz",
            "--export-dir", str(out), "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    stamped: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: stamped.extend(read_stamped(proc)))
    started = time.monotonic()
    reader.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()  # the JSON comes at the end; stderr is read meanwhile
    proc.wait(timeout=1800)
    reader.join(timeout=60)
    text = "\n".join(line for _, line in stamped)
    assert proc.returncode == 0, text
    assert json.loads(stdout)["status"] == "ok"  # heartbeats never reach stdout

    # "    --> Exporting lxd (xz)": a step inside "==> Staging the rootfs for export"
    begin = next((i for i, (_, line) in enumerate(stamped) if line.lstrip().startswith("--> Exporting lxd")), None)
    assert begin is not None, text
    end = next(i for i, (_, line) in enumerate(stamped) if i > begin and "done in" in line)
    during = stamped[begin : end + 1]
    times = [t for t, _ in during]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= HEARTBEAT + SLACK, f"gaps {gaps}:\n{text}"
    beats = [line for _, line in during if "still running after" in line]
    if times[-1] - times[0] > HEARTBEAT + SLACK:  # the usual case: xz takes most of a minute
        assert beats, text
    assert all(line.startswith("    ") for line in beats), beats  # indented inside the step
    assert time.monotonic() - started < 1800
