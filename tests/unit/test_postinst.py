"""--firstboot installs a job of the guest's own init: a systemd unit, or an upstart job up to utopic
(a systemd unit alone would never run on an upstart guest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ContextFactory

ROOTFS = Path("/build/rootfs")


def configure(fake_fs: FakeFilesystem, make_ctx: ContextFactory, init: str) -> None:
    fake_fs.create_file("/host/first.sh", contents="#!/bin/sh\necho ran\n", st_mode=0o100755)
    fake_fs.create_dir(ROOTFS)
    ctx = make_ctx("--firstboot", "/host/first.sh", "--mirror", "http://mirror.test/ubuntu")
    ctx.workdir = ROOTFS.parent
    ctx.hook_env["INIT"] = init
    (postinst,) = [p for p in ctx.plugins if p.name == "postinst"]
    postinst.configure_os()


def test_systemd_guest_gets_an_enabled_unit(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    configure(fake_fs, make_ctx, "systemd")
    unit = ROOTFS / "etc/systemd/system/vmbuilder-firstboot.service"
    assert 'ExecStart="/var/lib/vmbuilder-lxc/firstboot"\n' in unit.read_text()  # quoted (formats.systemd_exec)
    link = ROOTFS / "etc/systemd/system/multi-user.target.wants/vmbuilder-firstboot.service"
    assert str(link.readlink()) == "/etc/systemd/system/vmbuilder-firstboot.service"
    assert not (ROOTFS / "etc/init/vmbuilder-firstboot.conf").exists()
    assert (ROOTFS / "var/lib/vmbuilder-lxc/firstboot").stat().st_mode & 0o777 == 0o755


def test_upstart_guest_gets_an_upstart_task(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    configure(fake_fs, make_ctx, "upstart")
    job = (ROOTFS / "etc/init/vmbuilder-firstboot.conf").read_text()
    stanzas = [ln.strip() for ln in job.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "start on runlevel [2345]" in stanzas and "task" in stanzas
    body = stanzas[stanzas.index("script") + 1 : stanzas.index("end script")]
    assert body == [
        "[ -x /var/lib/vmbuilder-lxc/firstboot ] || exit 0",
        "/var/lib/vmbuilder-lxc/firstboot",
        "mv /var/lib/vmbuilder-lxc/firstboot /var/lib/vmbuilder-lxc/firstboot.done",
    ]
    assert not (ROOTFS / "etc/systemd/system/vmbuilder-firstboot.service").exists()


@pytest.mark.parametrize("init", ["systemd", "upstart"])
def test_the_script_is_copied_executable(fake_fs: FakeFilesystem, make_ctx: ContextFactory, init: str) -> None:
    configure(fake_fs, make_ctx, init)
    assert (ROOTFS / "var/lib/vmbuilder-lxc/firstboot").read_text() == "#!/bin/sh\necho ran\n"
