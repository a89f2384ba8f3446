"""Customisation: --hook-dir stages, --templates overrides, and VMBuilder's --copy, --execscript
and --firstboot, checked in a booted container."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conftest import Builder, Container, leftovers

HOOK_ENV = "ROOTFS|SUITE|ARCH|STAGE|HOSTNAME|DISTRO|RELEASE_VERSION|DEST|NAME"
RECORDER = '#!/bin/sh\n{{ echo "arg=$1"; env | grep -E \'^(' + HOOK_ENV + ")=' | sort; }} > {out}/$STAGE.env\n"


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_hooks_templates_copy_execscript_firstboot(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    out = tmp_path / "recorded"
    out.mkdir()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    executable(hooks / "customize10-record", RECORDER.format(out=out))
    executable(hooks / "finalize10-record", RECORDER.format(out=out))
    templates = tmp_path / "templates/common"
    templates.mkdir(parents=True)
    (templates / "fstab.j2").write_text("# site fstab for {{ hostname }}\n")
    payload = tmp_path / "motd"
    payload.write_text("managed by the site\n")
    copy_list = tmp_path / "copy.list"
    copy_list.write_text(f"# source destination\n{payload} /etc/motd.d/site\n")
    execscript = executable(tmp_path / "exec.sh", '#!/bin/sh\necho from-execscript > "$1/etc/execscript-ran"\n')
    firstboot = executable(tmp_path / "first.sh", "#!/bin/sh\necho ran > /root/firstboot-ran\n")

    dest = tmp_path / "cust1"
    build = builder.run(
        "--suite", "noble", "--network", "none", "--hostname", "cust", "-d", str(dest),
        "--hook-dir", str(hooks), "--templates", str(tmp_path / "templates"),
        "--copy", str(copy_list), "--execscript", str(execscript), "--firstboot", str(firstboot),
    ).check()  # fmt: skip

    rootfs = build.rootfs
    for stage in ("customize", "finalize"):
        env = dict(line.split("=", 1) for line in (out / f"{stage}.env").read_text().splitlines() if "=" in line)
        assert env["STAGE"] == stage
        assert env["SUITE"] == "noble" and env["ARCH"] and env["DISTRO"] == "ubuntu"
        assert env["HOSTNAME"] == "cust" and env["NAME"] == "cust1" and env["DEST"] == str(dest)
        assert env["arg"] == env["ROOTFS"] and env["ROOTFS"].endswith("/rootfs")
    assert (rootfs / "etc/fstab").read_text() == "# site fstab for cust\n"
    assert (rootfs / "etc/motd.d/site").read_text() == "managed by the site\n"
    assert (rootfs / "etc/execscript-ran").read_text() == "from-execscript\n"

    c = container(dest)
    assert c.wait_running(30) == "running", c.failed_units()
    assert c.sh("cat /root/firstboot-ran") == "ran"
    assert c.sh("test -e /var/lib/vmbuilder-lxc/firstboot.done && echo done") == "done"


def test_failing_hook_stops_the_build(builder: Builder, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    script = executable(hooks / "customize20-broken", "#!/bin/sh\necho 'about to fail' >&2\nexit 3\n")
    dest = tmp_path / "broken1"
    build = builder.run("--suite", "noble", "--network", "none", "--hook-dir", str(hooks), "-d", str(dest))
    assert build.returncode == 1
    assert f"hook {script} failed with exit code 3" in build.stderr
    assert "about to fail" in build.stderr
    assert "Traceback" not in build.stderr
    assert not dest.exists() and leftovers(tmp_path) == []


def test_broken_netplan_override_fails_the_build_not_the_boot(builder: Builder, tmp_path: Path) -> None:
    """The guest's own netplan checks the network configuration at build time."""
    override = tmp_path / "templates/netplan"
    override.mkdir(parents=True)
    (override / "10-lxc.yaml.j2").write_text("network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: maybe\n")
    dest = tmp_path / "np1"
    build = builder.run("--suite", "noble", "--network", "none", "--templates", str(tmp_path / "templates"),
                        "-d", str(dest))  # fmt: skip
    assert build.returncode == 1
    assert "invalid boolean value 'maybe'" in build.stderr
    assert not dest.exists() and leftovers(tmp_path) == []
