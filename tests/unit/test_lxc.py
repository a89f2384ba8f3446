"""The LXC config the `lxc` plugin writes: network, cgroup v1/v2 limits, consoles, paths.

The template is rendered directly for the matrix of cases, and once through LXC.finalize() in a
fake file system (fake /sys/fs/cgroup), which is the code path a build takes.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import ContextFactory
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.plugin import Hypervisor
from vmbuilder_lxc.render import Templates

BASE_VARS: dict[str, Any] = {
    "version": "0.1.0",
    "name": "web1",
    "lxcpath": "/var/lib/lxc",
    "lxcpath_arg": False,
    "includes": [],
    "lxc_arch": "x86_64",
    "halt_signal": "",
    "rootfs": "/var/lib/lxc/web1/rootfs",
    "backing": "dir",
    "overlay_lower": "",
    "overlay_upper": "",
    "idmap": [],
    "hostname": "web1",
    "ttys": 4,
    "container_ttys": "pts/1 pts/2 pts/3 pts/4",
    "tty_dir_empty": False,
    "network": "veth",
    "bridge": "lxcbr0",
    "mac": "00:16:3e:12:34:56",
    "mem": None,
    "cpus": None,
    "autostart": False,
    "cgroup_layout": "unified (cgroup2)",
    "cgroup_v1_memory": False,
    "cgroup_v1_cpu": False,
}


def render(**changes: Any) -> list[str]:
    text = Templates().render("lxc/config.j2", {**BASE_VARS, **changes})
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def keys(lines: list[str]) -> dict[str, str]:
    return dict(ln.split(" = ", 1) for ln in lines if ln.startswith("lxc.") and not ln.startswith("lxc.include"))


# -- the template ------------------------------------------------------------------------------------


def test_bridge_network() -> None:
    k = keys(render())
    assert k["lxc.net.0.type"] == "veth"
    assert k["lxc.net.0.link"] == "lxcbr0"
    assert k["lxc.net.0.flags"] == "up"
    assert k["lxc.net.0.name"] == "eth0"
    assert k["lxc.net.0.hwaddr"] == "00:16:3e:12:34:56"


def test_network_none_is_an_empty_namespace() -> None:
    """'empty' gives the container loopback only; omitting lxc.net would share the host's network."""
    k = keys(render(network="none"))
    assert k["lxc.net.0.type"] == "empty"
    assert not any(key.startswith("lxc.net.0.") and key != "lxc.net.0.type" for key in k)


def test_consoles_and_container_ttys() -> None:
    """LXC 5.0.2 does not pass container_ttys to init (lxc/lxc#4198); without it no getty runs."""
    k = keys(render())
    assert k["lxc.tty.max"] == "4"
    assert k["lxc.environment"] == "container_ttys=pts/1 pts/2 pts/3 pts/4"


def test_basic_keys() -> None:
    lines = render()
    assert lines[0] == "lxc.include = /usr/share/lxc/config/common.conf"
    k = keys(lines)
    assert k["lxc.arch"] == "x86_64"
    assert k["lxc.rootfs.path"] == "dir:/var/lib/lxc/web1/rootfs"
    assert k["lxc.uts.name"] == "web1"
    assert "lxc.start.auto" not in k
    assert keys(render(autostart=True))["lxc.start.auto"] == "1"


def test_no_limits_no_cgroup_keys() -> None:
    assert not [ln for ln in render() if "cgroup" in ln]


def test_cgroup2_limits() -> None:
    lines = render(mem=512, cpus=2)
    assert "lxc.cgroup2.memory.max = 512M" in lines
    assert "lxc.cgroup2.cpu.max = 200000 100000" in lines
    assert not [ln for ln in lines if ln.startswith("lxc.cgroup.")]


def test_cgroup1_limits() -> None:
    lines = render(mem=512, cpus=2, cgroup_v1_memory=True, cgroup_v1_cpu=True, cgroup_layout="legacy (cgroup v1)")
    assert "lxc.cgroup.memory.limit_in_bytes = 512M" in lines
    assert "lxc.cgroup.cpu.cfs_period_us = 100000" in lines
    assert "lxc.cgroup.cpu.cfs_quota_us = 200000" in lines
    assert not [ln for ln in lines if ln.startswith("lxc.cgroup2.")]


def test_memory_only_and_cpu_only() -> None:
    assert [ln for ln in render(mem=1024) if "cgroup" in ln] == ["lxc.cgroup2.memory.max = 1024M"]
    assert [ln for ln in render(cpus=1) if "cgroup" in ln] == ["lxc.cgroup2.cpu.max = 100000 100000"]


def test_start_hint_names_the_lxc_path() -> None:
    text = Templates().render("lxc/config.j2", {**BASE_VARS, "lxcpath": "/srv/ct", "lxcpath_arg": True})
    assert "lxc-start -P /srv/ct -n web1" in text


# -- through the plugin --------------------------------------------------------------------------------


def configured(fs: FakeFilesystem, make_ctx: ContextFactory, *argv: str) -> Context:
    ctx = make_ctx("--arch", "arm64", "--hostname", "web1", "--mirror", "http://ports.test/ubuntu-ports", *argv)
    ctx.hypervisor.set_defaults()
    ctx.workdir = Path("/build")
    fs.create_dir("/build/rootfs")
    return ctx


@pytest.mark.parametrize(
    ("cgroup_files", "layout", "expected"),
    [
        (["cgroup.controllers"], "unified (cgroup2)",
         ["lxc.cgroup2.memory.max = 256M", "lxc.cgroup2.cpu.max = 300000 100000"]),
        (["memory/tasks", "cpu,cpuacct/tasks", "unified/cgroup.procs"], "hybrid (cgroup v1 + v2)",
         ["lxc.cgroup.memory.limit_in_bytes = 256M", "lxc.cgroup.cpu.cfs_period_us = 100000",
          "lxc.cgroup.cpu.cfs_quota_us = 300000"]),
        (["memory/tasks", "cpu/tasks"], "legacy (cgroup v1)",
         ["lxc.cgroup.memory.limit_in_bytes = 256M", "lxc.cgroup.cpu.cfs_period_us = 100000",
          "lxc.cgroup.cpu.cfs_quota_us = 300000"]),
    ],
)  # fmt: skip
def test_finalize_writes_the_config_for_this_hosts_cgroups(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, cgroup_files: list[str], layout: str, expected: list[str]
) -> None:
    for name in cgroup_files:
        fake_fs.create_file(f"/sys/fs/cgroup/{name}")
    ctx = configured(fake_fs, make_ctx, "-d", "/srv/ct/web1", "--mem", "256", "--cpus", "3")
    ctx.hypervisor.finalize()
    text = Path("/build/config").read_text()
    assert f"cgroup layout: {layout}" in text
    lines = [ln for ln in text.splitlines() if "cgroup" in ln and not ln.startswith("#")]
    assert lines == expected
    k = keys(text.splitlines())
    assert k["lxc.arch"] == "aarch64"
    assert k["lxc.rootfs.path"] == "dir:/srv/ct/web1/rootfs"  # the final place, not the build dir
    assert k["lxc.environment"] == "container_ttys=pts/1 pts/2 pts/3 pts/4"
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", k["lxc.net.0.hwaddr"])
    assert ctx.summary["lxc"]["start"] == "lxc-start -P /srv/ct -n web1"
    assert ctx.summary["lxc"]["mac"] == k["lxc.net.0.hwaddr"]


def test_finalize_with_network_none_and_fixed_mac(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "-d", "/var/lib/lxc/web1", "--network", "none")
    ctx.hypervisor.finalize()
    k = keys(Path("/build/config").read_text().splitlines())
    assert k["lxc.net.0.type"] == "empty"
    assert ctx.summary["lxc"]["mac"] is None


@pytest.mark.parametrize(
    ("dest", "start"),
    [("/var/lib/lxc/web1", "lxc-start -n web1"), ("/var/lib/lxc/web1/", "lxc-start -n web1"),
     ("/srv/ct/web1", "lxc-start -P /srv/ct -n web1")],
)  # fmt: skip
def test_start_command_omits_the_default_lxc_path(
    no_host_config: Path, make_ctx: ContextFactory, dest: str, start: str
) -> None:
    """Real file system here: pyfakefs' Path objects never equal the module-level DEFAULT_LXC_PATH."""
    ctx = make_ctx("--arch", "amd64", "-d", dest)
    hypervisor = ctx.hypervisor
    assert isinstance(hypervisor, Hypervisor)
    assert hypervisor.next_steps()[1].split(":", 1)[1].strip() == start


def test_finalize_uses_a_given_mac(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "-d", "/srv/ct/web1", "--mac", "00:16:3E:AA:BB:CC", "--bridge", "br0")
    ctx.hypervisor.finalize()
    k = keys(Path("/build/config").read_text().splitlines())
    assert k["lxc.net.0.hwaddr"] == "00:16:3e:aa:bb:cc"
    assert k["lxc.net.0.link"] == "br0"
    assert ctx.hook_env["NETWORK"] == "bridge:br0"


def test_lxc_path_sets_dest_from_the_hostname(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "--lxc-path", "/srv/lxc")
    assert ctx.dest == Path("/srv/lxc/web1")
    assert ctx.settings.source("dest") == "--lxc-path"


def test_lxc_path_and_a_dest_elsewhere_contradict(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    with pytest.raises(UserError, match="is not inside --lxc-path"):
        configured(fake_fs, make_ctx, "--lxc-path", "/srv/lxc", "-d", "/tmp/web1")


def test_next_steps_name_the_commands(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = configured(fake_fs, make_ctx, "-d", "/srv/ct/web1")
    hypervisor = ctx.hypervisor
    assert isinstance(hypervisor, Hypervisor)
    steps = "\n".join(hypervisor.next_steps())
    assert "lxc-start -P /srv/ct -n web1" in steps
    assert "lxc-attach -P /srv/ct -n web1" in steps
    assert "lxc-console -P /srv/ct -n web1" in steps


def test_pre_precise_upstart_guests_get_their_ttys_on_dev_ttyN() -> None:
    text = Templates().render("lxc/config.j2", {**BASE_VARS, "tty_dir_empty": True})
    assert "\nlxc.tty.dir =\n" in text
    assert "lxc.tty.dir" not in Templates().render("lxc/config.j2", BASE_VARS)


def test_a_dead_lxcfs_mount_is_a_warning_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed lxcfs leaves its mount behind, answering ENOTCONN to every stat()."""
    lxc = importlib.import_module("vmbuilder_lxc.plugins.lxc")

    def enotconn(self: Path) -> bool:
        raise OSError(107, "Transport endpoint is not connected")

    assert lxc.lxcfs_state(tmp_path) == "absent"
    (tmp_path / "proc").mkdir()
    assert lxc.lxcfs_state(tmp_path) == "running"
    monkeypatch.setattr(Path, "is_dir", enotconn)
    assert lxc.lxcfs_state(tmp_path) == "stale"


def test_idmap_config_is_unprivileged_with_a_read_only_sys() -> None:
    """--idmap: userns.conf, the maps, and /sys kept read-only (systemd >= 258 and console-getty)."""
    text = Templates().render("lxc/config.j2", {**BASE_VARS, "includes": ["/usr/share/lxc/config/userns.conf"],
                                                "idmap": ["u 0 100000 65536", "g 0 100000 65536"]})  # fmt: skip
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    at = lines.index("lxc.include = /usr/share/lxc/config/userns.conf")
    assert lines[at - 1] == "lxc.include = /usr/share/lxc/config/common.conf"
    assert lines[at + 1 : at + 3] == ["lxc.mount.auto =", "lxc.mount.auto = cgroup:mixed proc:mixed sys:mixed"]
    assert "lxc.idmap = u 0 100000 65536" in lines and "lxc.idmap = g 0 100000 65536" in lines
    plain = Templates().render("lxc/config.j2", BASE_VARS)
    assert "lxc.idmap" not in plain and "lxc.mount.auto" not in plain
