"""The libvirt plugin without a daemon: the domain template, the network choice, the virsh backend
(against a fake virsh) and the refusals that must come before any bootstrap work."""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import ContextFactory
from vmbuilder_lxc import cli, virt
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.render import Templates
from vmbuilder_lxc.run import CommandError, CommandResult

Libvirt: Any = importlib.import_module("vmbuilder_lxc.plugins.libvirt").Libvirt

BASE: dict[str, Any] = {
    "version": "0.1.0", "name": "web1", "uuid": "6a1f2c4e-2d7b-4f0e-9a55-3c0b8f2b9d11", "mem": 512,
    "cpus": None, "arch": "x86_64", "init": "/sbin/init", "rootfs": "/srv/ct/web1/rootfs", "network": "none",
    "network_name": "", "mac": "00:16:3e:12:34:56", "distro": "ubuntu", "suite": "noble",
    "idmap_uid": 0, "idmap_gid": 0, "idmap_count": 0,
}  # fmt: skip


def domain(**changes: Any) -> ET.Element:
    return ET.fromstring(Templates().render("libvirt/domain.xml.j2", {**BASE, **changes}))


def test_template_network_none_is_a_private_namespace() -> None:
    root = domain()
    assert root.get("type") == "lxc" and root.findtext("name") == "web1"
    assert root.find("features/privnet") is not None and root.find("devices/interface") is None
    assert root.find("os/type").text == "exe" and root.find("os/type").get("arch") == "x86_64"  # type: ignore[union-attr]
    assert root.findtext("os/init") == "/sbin/init"
    fs = root.find("devices/filesystem")
    assert fs is not None and fs.get("type") == "mount"
    assert fs.find("source").get("dir") == "/srv/ct/web1/rootfs" and fs.find("target").get("dir") == "/"  # type: ignore[union-attr]
    assert [c.get("type") for c in root.findall("devices/console")] == ["pty"]
    assert root.find("memory").text == "512" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert [root.findtext(k) for k in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy", "restart", "destroy"]
    assert root.find("cputune") is None


@pytest.mark.parametrize(("network", "source"), [("bridge", "bridge"), ("network", "network")])
def test_template_bridge_or_libvirt_network(network: str, source: str) -> None:
    root = domain(network=network, network_name="br0")
    assert root.find("features") is None
    iface = root.find("devices/interface")
    assert iface is not None and iface.get("type") == network
    assert iface.find("source").get(source) == "br0"  # type: ignore[union-attr]
    assert iface.find("mac").get("address") == BASE["mac"]  # type: ignore[union-attr]
    assert iface.find("guest").get("dev") == "eth0"  # type: ignore[union-attr]


def test_template_cpus_become_a_cfs_quota_and_paths_are_escaped() -> None:
    root = domain(cpus=2, rootfs="/srv/a&b's/rootfs")
    assert root.findtext("vcpu") == "2" and root.findtext("cputune/quota") == "200000"
    assert root.find("devices/filesystem/source").get("dir") == "/srv/a&b's/rootfs"  # type: ignore[union-attr]


# -- settings --------------------------------------------------------------------------------------


def libvirt_plugin(ctx: Any) -> Any:
    return next(p for p in ctx.plugins if isinstance(p, Libvirt))


def test_network_defaults_to_libvirts_default_network(no_host_config: Path, make_ctx: ContextFactory) -> None:
    ctx = make_ctx("--libvirt", "lxc:///", "-d", "/srv/ct/web1")
    for p in ctx.plugins:
        p.set_defaults()
    assert ctx.settings["network"] == "default" and ctx.hook_env["NETWORK"] == "network:default"


def test_a_bridge_keeps_the_bridge(no_host_config: Path, make_ctx: ContextFactory) -> None:
    ctx = make_ctx("--libvirt", "lxc:///", "--bridge", "br0", "-d", "/srv/ct/web1")
    for p in ctx.plugins:
        p.set_defaults()
    assert ctx.hook_env["NETWORK"] == "bridge:br0"


@pytest.mark.parametrize(("argv", "message"), [
    (("--libvirt", "lxc:///", "--bridge", "br0", "--network", "lan"), "both --bridge br0 and --network lan"),
    (("--libvirt-xml", "/etc/hostname"), "--libvirt-xml needs --libvirt URI"),
])  # fmt: skip
def test_contradictions_are_refused(
    no_host_config: Path, make_ctx: ContextFactory, argv: Sequence[str], message: str
) -> None:
    ctx = make_ctx(*argv, "-d", "/srv/ct/web1")
    with pytest.raises(UserError, match=message):
        libvirt_plugin(ctx).set_defaults()


def test_without_libvirt_named_networks_are_refused(no_host_config: Path, make_ctx: ContextFactory) -> None:
    ctx = make_ctx("--network", "lan", "-d", "/srv/ct/web1")
    for p in ctx.plugins:
        p.set_defaults()
    with pytest.raises(UserError, match="named networks need libvirt"):
        ctx.hypervisor.preflight_check()


# -- the virsh backend, against a fake virsh -------------------------------------------------------


class FakeVirsh:
    """Answers the virsh commands VirshConnection runs, from a small table of domains."""

    def __init__(self, domains: dict[str, dict[str, str]], networks: dict[str, bool] | None = None) -> None:
        self.domains = domains
        self.networks = networks or {}
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], check: bool = True, ok_codes: Sequence[int] = (0,), **_: Any
    ) -> CommandResult:
        args = [str(a) for a in argv][4:]  # drop: virsh -q -c URI
        self.calls.append(args)
        code, out = self.answer(args)
        if code not in ok_codes:
            raise CommandError(list(argv), code, [f"error: {out}"])
        return CommandResult(list(argv), code, out)

    def answer(self, args: list[str]) -> tuple[int, str]:
        match args:
            case ["uri"]:
                return 0, "lxc:///\n"
            case ["list", "--all", "--name"]:
                return 0, "".join(f"{n}\n" for n in self.domains)
            case ["domuuid", name]:
                return 0, self.domains[name]["uuid"] + "\n"
            case ["dominfo", name]:
                if name not in self.domains:
                    return 1, f"error: failed to get domain '{name}'"
                d = self.domains[name]
                fields = {"Id": "-", "Name": name, "UUID": d["uuid"], "State": d["state"], "Persistent": "yes",
                          "Autostart": d["autostart"]}  # fmt: skip
                return 0, "".join(f"{k + ':':<16}{v}\n" for k, v in fields.items())
            case ["net-info", name]:
                if name not in self.networks:
                    return 1, f"failed to get network '{name}'"
                return 0, f"Name:           {name}\nActive:         {'yes' if self.networks[name] else 'no'}\n"
            case ["define", "--validate", path]:
                root = ET.fromstring(Path(path).read_text())
                self.domains[root.findtext("name") or ""] = {"uuid": root.findtext("uuid") or "", "state": "shut off",
                                                             "autostart": "disable"}  # fmt: skip
                return 0, "Domain defined\n"
            case ["autostart", *rest]:
                self.domains[rest[-1]]["autostart"] = "disable" if "--disable" in rest else "enable"
                return 0, ""
        return 1, f"unexpected virsh call {args}"


@pytest.fixture
def fake_virsh(monkeypatch: pytest.MonkeyPatch) -> FakeVirsh:
    fake = FakeVirsh(
        {"web1": {"uuid": "11111111-2222-3333-4444-555555555555", "state": "shut off", "autostart": "enable"}},
        {"default": True, "idle": False},
    )
    monkeypatch.setattr(virt, "run", fake)
    monkeypatch.setenv("VMBUILDER_LIBVIRT_BACKEND", "virsh")
    monkeypatch.setattr(virt, "have_virsh", lambda: True)
    return fake


def test_virsh_backend_reads_domains_and_networks(fake_virsh: FakeVirsh) -> None:
    conn = virt.connect("lxc:///")
    assert conn.backend == "virsh"
    assert conn.domains() == {"web1": "11111111-2222-3333-4444-555555555555"}
    info = conn.lookup("web1")
    assert info is not None and info.state == "shut off" and not info.active and info.autostart
    assert conn.lookup("nope") is None
    assert conn.network_active("default") is True and conn.network_active("idle") is False
    assert conn.network_active("nope") is None
    conn.define(Templates().render("libvirt/domain.xml.j2", {**BASE, "name": "db1"}))
    conn.set_autostart("db1", True)
    assert fake_virsh.domains["db1"]["autostart"] == "enable"


def preflight(make_ctx: ContextFactory, *argv: str) -> Any:
    ctx = make_ctx("--libvirt", "lxc:///", *argv)
    for p in ctx.plugins:
        p.set_defaults()
    plugin = libvirt_plugin(ctx)
    plugin.preflight_check()
    return plugin


def test_an_existing_domain_needs_overwrite(
    no_host_config: Path, make_ctx: ContextFactory, fake_virsh: FakeVirsh
) -> None:
    with pytest.raises(UserError, match="libvirt domain web1 already exists at lxc:///") as exc:
        preflight(make_ctx, "-d", "/srv/ct/web1", "--network", "none")
    assert "--overwrite" in str(exc.value)
    plugin = preflight(make_ctx, "-d", "/srv/ct/web1", "--network", "none", "--overwrite")
    assert plugin._replacing is not None and plugin._replacing.uuid.startswith("11111111")


def test_a_running_domain_is_never_replaced(
    no_host_config: Path, make_ctx: ContextFactory, fake_virsh: FakeVirsh
) -> None:
    fake_virsh.domains["web1"]["state"] = "running"
    with pytest.raises(UserError, match="libvirt domain web1 at lxc:/// is running") as exc:
        preflight(make_ctx, "-d", "/srv/ct/web1", "--network", "none", "--overwrite")
    assert "shutdown web1" in str(exc.value)


def test_an_unknown_network_is_refused(no_host_config: Path, make_ctx: ContextFactory, fake_virsh: FakeVirsh) -> None:
    with pytest.raises(UserError, match="libvirt network 'lan' does not exist"):
        preflight(make_ctx, "-d", "/srv/ct/db1", "--network", "lan")
    preflight(make_ctx, "-d", "/srv/ct/db1")  # the default network exists


def test_a_failing_virsh_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(argv: Sequence[str], **_: Any) -> CommandResult:
        raise CommandError(list(argv), 1, ["error: failed to connect to the hypervisor",
                                           "error: Failed to connect socket: No such file or directory"])  # fmt: skip

    monkeypatch.setattr(virt, "run", broken)
    monkeypatch.setattr(virt, "have_virsh", lambda: True)
    monkeypatch.setenv("VMBUILDER_LIBVIRT_BACKEND", "virsh")
    with pytest.raises(UserError) as exc:
        virt.connect("lxc:///")
    assert "No such file or directory" in str(exc.value) and "\n" not in str(exc.value)


# -- `vmbuilder lxc validate` ----------------------------------------------------------------------


def test_top_help_lists_the_validate_command(no_host_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "lxc validate" in capsys.readouterr().out


def write_domain(tmp_path: Path, rootfs: Path, **changes: Any) -> Path:
    path = tmp_path / "domain.xml"
    path.write_text(Templates().render("libvirt/domain.xml.j2", {**BASE, "rootfs": str(rootfs), **changes}))
    return path


@pytest.fixture
def guest(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "lib/systemd").mkdir(parents=True)
    (root / "sbin").mkdir()
    (root / "lib/systemd/systemd").write_text("#!/bin/sh\n")
    (root / "lib/systemd/systemd").chmod(0o755)
    (root / "sbin/init").symlink_to("/lib/systemd/systemd")
    return root


def test_validate_passes_our_domain(
    no_host_config: Path, tmp_path: Path, guest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_domain(tmp_path, guest)
    assert cli.main(["lxc", "validate", str(path)]) == 0
    assert "valid (0 errors" in capsys.readouterr().out


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda t: t.replace("<init>", "<kernel>/boot/vmlinuz</kernel><init>"), "<kernel>"),
    (lambda t: t.split("<filesystem")[0] + t.split("</filesystem>")[1], "filesystem"),
])  # fmt: skip
def test_validate_fails_with_a_reason(
    no_host_config: Path, tmp_path: Path, guest: Path, capsys: pytest.CaptureFixture[str], edit: Any, needle: str
) -> None:
    path = write_domain(tmp_path, guest)
    path.write_text(edit(path.read_text()))
    assert cli.main(["lxc", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors and needle in errors[0]


def test_validate_on_a_missing_or_broken_file(
    no_host_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["lxc", "validate", str(tmp_path / "nope.xml")]) == 2
    (tmp_path / "bad.xml").write_text("<domain")
    assert cli.main(["lxc", "validate", str(tmp_path / "bad.xml")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err


def test_a_bad_libvirt_xml_is_refused_before_bootstrap(
    no_host_config: Path, make_ctx: ContextFactory, fake_virsh: FakeVirsh, tmp_path: Path
) -> None:
    xml = tmp_path / "mine.xml"
    good = Templates().render("libvirt/domain.xml.j2", {**BASE, "name": "db1", "rootfs": "/srv/ct/db1/rootfs"})
    xml.write_text(good.replace("<init>", "<kernel>/boot/vmlinuz</kernel><init>"))
    with pytest.raises(UserError, match=r"mine.xml: error: <os><kernel>"):
        preflight(make_ctx, "-d", "/srv/ct/db1", "--network", "none", "--libvirt-xml", str(xml))
    xml.write_text(good.replace("/srv/ct/db1/rootfs", "/elsewhere/rootfs"))
    with pytest.raises(UserError, match="the root <filesystem> is /elsewhere/rootfs, but this build writes"):
        preflight(make_ctx, "-d", "/srv/ct/db1", "--network", "none", "--libvirt-xml", str(xml))
    xml.write_text(good.replace("<name>db1</name>", "<name>web1</name>"))
    with pytest.raises(UserError, match="libvirt domain web1 already exists"):  # its <name> names the domain
        preflight(make_ctx, "-d", "/srv/ct/db1", "--network", "none", "--libvirt-xml", str(xml))
    xml.write_text(good)
    plugin = preflight(make_ctx, "-d", "/srv/ct/db1", "--network", "none", "--libvirt-xml", str(xml))
    assert plugin.domain_name() == "db1"


def test_idmap_renders_both_maps_and_validates(
    no_host_config: Path, tmp_path: Path, guest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--idmap: <idmap> with the lxc plugin's ranges (root first), and `vmbuilder lxc validate` passes it."""
    ids = {"idmap_uid": 100000, "idmap_gid": 200000, "idmap_count": 65536}
    maps = domain(**ids).find("idmap")
    assert maps is not None
    assert [(e.tag, dict(e.attrib)) for e in maps] == [
        ("uid", {"start": "0", "target": "100000", "count": "65536"}),
        ("gid", {"start": "0", "target": "200000", "count": "65536"}),
    ]
    assert domain().find("idmap") is None
    path = write_domain(tmp_path, guest, **ids)
    assert cli.main(["lxc", "validate", str(path)]) == 0
    assert "valid (0 errors" in capsys.readouterr().out
