"""Checks on libvirt-lxc domain XML: a known-good domain has no findings, and every rule has a mutation
that produces exactly its finding and a close variant that produces none."""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import domaincheck as dc
from vmbuilder_lxc.domaincheck import RULES, SEVERITY, DomainXMLError, Finding, check_domain

UUID = "6a1f2c4e-2d7b-4f0e-9a55-3c0b8f2b9d11"
OTHER_UUID = "11111111-2222-4333-8444-555555555555"

# The minimal domain the tool writes: private network, one PTY console, the rootfs as a mount.
GOOD = f"""\
<domain type='lxc' xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'>
  <name>web1</name>
  <uuid>{UUID}</uuid>
  <memory unit='MiB'>512</memory>
  <os>
    <type>exe</type>
    <init>/sbin/init</init>
  </os>
  <features>
    <privnet/>
  </features>
  <devices>
    <filesystem type='mount'>
      <source dir='ROOTFS'/>
      <target dir='/'/>
    </filesystem>
    <console type='pty'/>
  </devices>
</domain>
"""

Edit = tuple[str, str]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A usrmerged guest: /sbin -> usr/sbin, /sbin/init -> /lib/systemd/systemd (absolute), and some traps."""
    root = tmp_path / "rootfs"
    for d in ("usr/bin", "usr/sbin", "usr/lib/systemd", "etc", "srv/data"):
        (root / d).mkdir(parents=True)
    links = {
        "bin": "usr/bin",
        "sbin": "usr/sbin",
        "lib": "usr/lib",
        "usr/sbin/init": "/lib/systemd/systemd",
        "usr/bin/hostonly": "/usr/bin/env",  # exists on the host, not in the guest
        "usr/bin/up": "../../../../../../bin/sh",  # '..' stops at the guest's /
        "usr/bin/loop": "loop",
        "usr/bin/dangling": "/nonexistent",
    }
    for link, target in links.items():
        (root / link).symlink_to(target)
    for exe in ("usr/bin/sh", "usr/lib/systemd/systemd"):
        (root / exe).write_text("#!/bin/true\n")
        (root / exe).chmod(0o755)
    (root / "usr/bin/noexec").write_text("")
    (root / "usr/bin/noexec").chmod(0o644)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nwww-data:x:33:\n")
    (root / "var.img").write_bytes(b"")
    return root


def apply(edits: tuple[Edit, ...], rootfs: Path) -> str:
    xml = GOOD
    for old, new in edits:
        assert xml.count(old) == 1, f"{old!r} must occur once in GOOD"
        xml = xml.replace(old, new)
    return xml.replace("ROOTFS", str(rootfs))


def run(edits: tuple[Edit, ...], kwargs: dict[str, Any], rootfs: Path) -> list[Finding]:
    args: dict[str, Any] = {"host_arch": "x86_64", "other_domains": {}, **kwargs}
    if args.get("rootfs") == "ROOTFS":
        args["rootfs"] = rootfs
    return check_domain(apply(edits, rootfs), **args)


def in_os(xml: str) -> Edit:
    return ("</os>", f"{xml}</os>")


def in_features(xml: str) -> Edit:
    return ("</features>", f"{xml}</features>")


def in_devices(xml: str) -> Edit:
    return ("</devices>", f"{xml}</devices>")


def in_domain(xml: str) -> Edit:
    return ("</domain>", f"{xml}</domain>")


def no_privnet() -> Edit:
    return ("<privnet/>", "")


def init(path: str) -> Edit:
    return ("<init>/sbin/init</init>", f"<init>{path}</init>")


def memory(xml: str) -> Edit:
    return ("<memory unit='MiB'>512</memory>", xml)


def root_fs(xml: str) -> Edit:
    return ("<filesystem type='mount'>\n      <source dir='ROOTFS'/>\n      <target dir='/'/>\n    </filesystem>", xml)


def iface(xml: str = "") -> str:
    return f"<interface type='bridge'><source bridge='br0'/>{xml}</interface>"


_ids: Counter[str] = Counter()


def case(rule: str, *edits: Edit, **kwargs: Any) -> Any:
    _ids[rule] += 1
    return pytest.param(rule, edits, kwargs, id=f"{rule}-{_ids[rule]}")


ID_MAPS = "<idmap><uid start='0' target='100000' count='65536'/><gid start='0' target='100000' count='65536'/></idmap>"
MANY_MAPS = "".join(
    f"<{k} start='{i * 10}' target='{100000 + i * 10}' count='10'/>" for k in ("uid", "gid") for i in range(341)
)
NS = "<lxc:namespace>{}</lxc:namespace>"

BAD = [
    case("domain-type", ("<domain type='lxc'", "<domain type='kvm'")),
    case("domain-type", ("<domain type='lxc'", "<domain")),
    case("name", ("<name>web1</name>", "")),
    case("name", ("<name>web1</name>", "<name> </name>")),
    case("name", ("<name>web1</name>", "<name>web\n1</name>")),
    case("name-hostname", ("<name>web1</name>", "<name>web_1</name>")),
    case("name-hostname", ("<name>web1</name>", "<name>-web1</name>")),
    case("name-hostname", ("<name>web1</name>", "<name>web1.example.com</name>")),
    case("uuid", (UUID, "not-a-uuid")),
    case("uuid", (UUID, UUID[:-1])),
    case("uuid", (UUID, "{" + UUID + "}")),
    case("duplicate-name", other_domains={"web1": OTHER_UUID}),
    case("duplicate-name", (f"<uuid>{UUID}</uuid>", ""), other_domains={"web1": UUID}),
    case("duplicate-uuid", other_domains={"web2": UUID.upper()}),
    case("os-type", ("<type>exe</type>", "<type>hvm</type>")),
    case("os-type", ("<type>exe</type>", "")),
    case("os-arch", ("<type>exe</type>", "<type arch='aarch64'>exe</type>")),
    case("os-arch", ("<type>exe</type>", "<type arch='i386'>exe</type>")),
    case("os-arch", ("<type>exe</type>", "<type arch='i686'>exe</type>"), host_arch="aarch64"),
    case("os-arch", ("<type>exe</type>", "<type arch='ppc'>exe</type>"), host_arch="ppc64le"),
    *[case("os-boot", in_os(f"<{tag}>x</{tag}>")) for tag in dc.BOOT_ELEMENTS],
    case("init", ("<init>/sbin/init</init>", "")),
    case("init", init("")),
    case("init", init("sbin/init")),
    case("init-path", init("/usr/bin/noexec")),
    case("init-path", init("/usr/bin/hostonly")),
    case("init-path", init("/usr/bin/loop")),
    case("init-path", init("/usr/bin/dangling")),
    case("init-path", init("/usr/bin")),
    case("init-path", init("/sbin/upstart")),
    case("init-path", rootfs=Path("/nonexistent/rootfs")),
    case("initarg", in_os("<initarg/>")),
    case("initarg", in_os("<initarg></initarg>")),
    case("initenv", in_os("<initenv>value</initenv>")),
    case("initenv", in_os("<initenv name='1X'>value</initenv>")),
    case("initenv", in_os("<initenv name='A-B'>value</initenv>")),
    case("initenv", in_os("<initenv name='X'/>")),
    case("initenv-value", in_os("<initenv name='X'>a&amp;b</initenv>")),
    case("initenv-value", in_os("<initenv name='X'>a&lt;b</initenv>")),
    case("initenv-value", in_os("<initenv name='X'>\"quoted\"</initenv>")),
    case("initenv-value", in_os("<initenv name='X'>it's</initenv>")),
    case("initenv-reserved", in_os("<initenv name='container'>lxc</initenv>")),
    case("initenv-reserved", in_os("<initenv name='PATH'>/usr/bin</initenv>")),
    case("initdir", in_os("<initdir>/</initdir>")),
    case("initdir", in_os("<initdir>root</initdir>")),
    case("inituser", in_os("<inituser>root</inituser>")),
    case("inituser", in_os("<initgroup>root</initgroup>")),
    case("inituser-exists", in_os("<inituser>nobody</inituser><initgroup>root</initgroup>")),
    case("inituser-exists", in_os("<inituser>root</inituser><initgroup>wheel</initgroup>")),
    case("memory", memory("")),
    case("memory", memory("<memory unit='MiB'>0</memory>")),
    case("memory", memory("<memory unit='MiB'>-5</memory>")),
    case("memory", memory("<memory unit='GiB'>1.5</memory>")),
    case("memory", memory("<memory unit='MiG'>512</memory>")),
    case("memory", in_domain("<currentMemory unit='XB'>1</currentMemory>")),
    case("memory", in_domain("<memtune><soft_limit>lots</soft_limit></memtune>")),
    case("current-memory", in_domain("<currentMemory unit='GiB'>1</currentMemory>")),
    case("memory-small", memory("<memory unit='MiB'>32</memory>")),
    case("memory-small", memory("<memory>1</memory>")),
    case("memtune-hard-limit", in_domain("<memtune><hard_limit unit='MiB'>256</hard_limit></memtune>")),
    case("vcpu", in_domain("<vcpu>0</vcpu>")),
    case("vcpu", in_domain("<vcpu>two</vcpu>")),
    case("vcpu", in_domain("<vcpu>-1</vcpu>")),
    case("vcpu-quota", in_domain("<vcpu>2</vcpu>")),
    case("vcpu-quota", in_domain("<vcpu>4</vcpu><cputune><shares>1024</shares></cputune>")),
    case("resource-partition", in_domain("<resource><partition>machine</partition></resource>")),
    case("idmap", in_domain("<idmap><uid start='0' target='100000' count='65536'/></idmap>")),
    case("idmap", in_domain("<idmap><gid start='0' target='100000' count='65536'/></idmap>")),
    case("idmap", in_domain(ID_MAPS.replace("<uid start='0'", "<uid start='1'"))),
    case("idmap", in_domain(ID_MAPS.replace("count='65536'/><gid", "count='0'/><gid"))),
    case(
        "idmap",
        in_domain(ID_MAPS.replace("target='100000' count='65536'/></idmap>", "target='-1' count='9'/></idmap>")),
    ),
    case("idmap", in_domain(f"<idmap>{MANY_MAPS}</idmap>")),
    case("clock-timer", in_domain("<clock offset='utc'><timer name='pit'/></clock>")),
    case("clock-timer", in_domain("<clock offset='utc'><timer name='kvmclock' present='yes'/></clock>")),
    case("capabilities-policy", in_features("<capabilities policy='drop'/>")),
    case("capabilities-policy", in_features("<capabilities policy='default'><sys_time state='maybe'/></capabilities>")),
    case("ignored-feature", in_features("<acpi/>")),
    case("ignored-feature", in_features("<pae/>")),
    case("ignored-cpu", in_domain("<cpu mode='host-passthrough'/>")),
    case("emulator", in_devices("<emulator>/usr/lib/libvirt/libvirt_lxc</emulator>")),
    case("console", ("<console type='pty'/>", "")),
    case("console", ("<console type='pty'/>", "<console type='file'><source path='/tmp/log'/></console>")),
    case("console", in_devices("<console type='tcp'/>")),
    case("root-filesystem", ("<target dir='/'/>", "<target dir='/srv'/>")),
    case(
        "root-filesystem",
        root_fs("<filesystem type='ram'><source usage='1024' units='MiB'/><target dir='/'/></filesystem>"),
    ),
    case("root-filesystem", root_fs("<filesystem type='template'><source name='t'/><target dir='/'/></filesystem>")),
    case("root-filesystem", ("<source dir='ROOTFS'/>", "<source dir='/'/>")),
    case("root-filesystem", ("<source dir='ROOTFS'/>", "<source/>")),
    case(
        "filesystem-type", in_devices("<filesystem type='template'><source name='t'/><target dir='/srv'/></filesystem>")
    ),
    case(
        "filesystem-type",
        in_devices("<filesystem type='volume'><source pool='p' volume='v'/><target dir='/srv'/></filesystem>"),
    ),
    case("filesystem-type", in_devices("<filesystem type='nfs'><source dir='/x'/><target dir='/srv'/></filesystem>")),
    case("filesystem-target", in_devices("<filesystem type='ram'><source usage='64'/></filesystem>")),
    case(
        "filesystem-target",
        in_devices(
            "<filesystem type='ram'><source usage='64'/><target dir='/tmp'/></filesystem>"
            "<filesystem type='ram'><source usage='64'/><target dir='/tmp/'/></filesystem>"
        ),
    ),
    case(
        "filesystem-source",
        in_devices("<filesystem type='mount'><source dir='ROOTFS/missing'/><target dir='/srv'/></filesystem>"),
    ),
    case(
        "filesystem-source",
        in_devices("<filesystem type='file'><source file='ROOTFS/missing.img'/><target dir='/srv'/></filesystem>"),
    ),
    case(
        "filesystem-driver",
        in_devices(
            "<filesystem type='file'><driver type='loop' format='qcow2'/>"
            "<source file='ROOTFS/var.img'/><target dir='/var/lib/app'/></filesystem>"
        ),
    ),
    case(
        "filesystem-driver",
        in_devices(
            "<filesystem type='file'><driver type='nbd'/>"
            "<source file='ROOTFS/var.img'/><target dir='/var/lib/app'/></filesystem>"
        ),
    ),
    case(
        "filesystem-driver",
        in_devices(
            "<filesystem type='file'><driver type='path'/>"
            "<source file='ROOTFS/var.img'/><target dir='/var/lib/app'/></filesystem>"
        ),
    ),
    case(
        "filesystem-driver",
        in_devices(
            "<disk type='file' device='disk'><driver name='nbd'/>"
            "<source file='ROOTFS/var.img'/><target dev='vda'/></disk>"
        ),
    ),
    case(
        "disk",
        in_devices("<disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='vda'/></disk>"),
    ),
    case("disk", in_devices("<disk type='block' device='disk'><target dev='sdb'/></disk>")),
    case(
        "hostdev",
        in_devices("<hostdev mode='subsystem' type='pci'><source><address bus='0' slot='1'/></source></hostdev>"),
    ),
    case("hostdev", in_devices("<hostdev type='scsi'/>")),
    case("hostdev", in_devices("<hostdev mode='capabilities' type='usb'/>")),
    *[case("ignored-device", in_devices(f"<{tag}/>")) for tag in dc.IGNORED_DEVICES],
    case("private-network", no_privnet()),
    case("interface-type", in_devices("<interface type='user'/>")),
    case("interface-type", in_devices("<interface type='vhostuser'/>")),
    case("interface-script", in_devices(iface("<script path='/etc/qemu-ifup'/>"))),
    case(
        "interface-direct",
        in_devices(
            "<interface type='direct'><source dev='eth0' mode='bridge'/>"
            "<bandwidth><inbound average='1000'/></bandwidth></interface>"
        ),
    ),
    case(
        "interface-direct",
        in_devices(
            "<interface type='direct'><source dev='eth0' mode='bridge'/><virtualport type='802.1Qbh'/></interface>"
        ),
    ),
    case("interface-source", in_devices("<interface type='network'/>")),
    case("interface-source", in_devices("<interface type='bridge'><source network='default'/></interface>")),
    case(
        "interface-source", in_devices("<interface type='network'><source network='default' bridge='br0'/></interface>")
    ),
    case("interface-source", in_devices("<interface type='direct'/>")),
    case("interface-mac", in_devices(iface("<mac address='52:54:00:12:34'/>"))),
    case("interface-mac", in_devices(iface("<mac address='01:00:5e:00:00:01'/>"))),
    case(
        "interface-mac",
        in_devices(iface("<mac address='52:54:00:12:34:56'/>") + iface("<mac address='52:54:00:12:34:56'/>")),
    ),
    case("interface-guest-dev", in_devices(iface("<guest dev='eth0'/>") * 2)),
    case("interface-guest-dev", in_devices(iface() + iface("<guest dev='eth0'/>"))),
    case("interface-guest-dev", in_devices(iface("<guest dev='eth1'/>") + iface() + iface())),
    case("lxc-namespace", in_domain(NS.format("<lxc:sharepid type='name' value='other'/>"))),
    case("lxc-namespace", in_domain(NS.format("<lxc:shareuts type='name'/>"))),
    case("lxc-namespace", in_domain(NS.format("<lxc:shareuts type='uuid' value='x'/>"))),
    case("lxc-namespace", in_domain(NS.format("<lxc:shareipc type='netns' value='red'/>"))),
    case("lxc-sharenet", in_domain(NS.format("<lxc:sharenet type='netns' value='red'/>"))),
    case(
        "lxc-sharenet", no_privnet(), in_devices(iface()), in_domain(NS.format("<lxc:sharenet type='name' value='x'/>"))
    ),
]

GOOD_VARIANTS = [
    case("domain-type", ("<domain type='lxc'", "<domain type='lxc' id='7'")),
    case("name", ("<name>web1</name>", "<name>web-2</name>")),
    case("name-hostname", ("<name>web1</name>", "<name>Web-01</name>")),
    case("uuid", (UUID, UUID.replace("-", "").upper())),
    case("uuid", (f"<uuid>{UUID}</uuid>", "")),
    case("duplicate-name", other_domains={"web1": UUID.replace("-", "").upper(), "web2": OTHER_UUID}),
    case("duplicate-uuid", other_domains={"web2": OTHER_UUID}),
    case("os-type", ("<type>exe</type>", "<type arch='x86_64'>exe</type>")),
    case("os-arch", ("<type>exe</type>", "<type arch='i686'>exe</type>")),
    case("os-arch", ("<type>exe</type>", "<type arch='armv7l'>exe</type>"), host_arch="aarch64"),
    case("os-arch", ("<type>exe</type>", "<type arch='i686'>exe</type>"), host_arch="i586"),
    case("os-arch", ("<type>exe</type>", "<type arch='ppc64le'>exe</type>"), host_arch="ppc64le"),
    case("os-boot", in_os("<initarg>--log-target=console</initarg>")),
    case("init", init("/lib/systemd/systemd")),
    case("init-path", init("/bin/sh")),
    case("init-path", init("/usr/bin/up")),
    case("init-path", init("/usr/lib/systemd/systemd")),
    case("init-path", init("/sbin/../sbin/./init")),
    case("init-path", rootfs="ROOTFS"),
    case("initarg", in_os("<initarg>--log-level=info</initarg><initarg> </initarg>")),
    case("initenv", in_os("<initenv name='_SYSTEMD_X1'>info</initenv>")),
    case("initenv-value", in_os("<initenv name='X'>a b=c/d:e</initenv>")),
    case("initenv-reserved", in_os("<initenv name='SYSTEMD_LOG_LEVEL'>info</initenv>")),
    case("initdir", in_os("<initdir>/root</initdir>")),
    case("inituser", in_os("<inituser>root</inituser><initgroup>root</initgroup>")),
    case("inituser-exists", in_os("<inituser>www-data</inituser><initgroup>www-data</initgroup>")),
    case("inituser-exists", in_os("<inituser>1000</inituser><initgroup>+1000</initgroup>")),
    case("memory", memory("<memory>524288</memory>")),
    case("memory", memory("<memory unit='G'>1</memory>")),
    case("memory", memory("<memory unit='bytes'>536870912</memory>")),
    case("memory", memory("<memory unit='mb'>512</memory>")),
    case("current-memory", in_domain("<currentMemory unit='MiB'>256</currentMemory>")),
    case("current-memory", in_domain("<currentMemory unit='KiB'>524288</currentMemory>")),
    case("memory-small", memory("<memory unit='MiB'>64</memory>")),
    case(
        "memtune-hard-limit",
        in_domain("<memtune><hard_limit unit='MiB'>512</hard_limit><soft_limit unit='MiB'>256</soft_limit></memtune>"),
    ),
    case("vcpu", in_domain("<vcpu>1</vcpu>")),
    case("vcpu-quota", in_domain("<vcpu>2</vcpu><cputune><period>100000</period><quota>200000</quota></cputune>")),
    case("resource-partition", in_domain("<resource><partition>/machine</partition></resource>")),
    case("idmap", in_domain(ID_MAPS)),
    case(
        "idmap",
        in_domain(
            "<idmap><uid start='1000' target='201000' count='10'/><uid start='0' target='100000' count='1000'/>"
            "<gid start='0' target='100000' count='65536'/></idmap>"
        ),
    ),
    case("clock-timer", in_domain("<clock offset='utc'><timer name='rtc'/><timer name='hpet'/></clock>")),
    case("clock-timer", in_domain("<clock offset='utc'><timer name='pit' present='no'/></clock>")),
    case("capabilities-policy", in_features("<capabilities policy='deny'><sys_time state='on'/></capabilities>")),
    case("capabilities-policy", in_features("<capabilities policy='default'/>")),
    case("ignored-feature", in_features("<capabilities policy='allow'/>")),
    case("ignored-cpu", in_domain("<cputune><shares>1024</shares></cputune>")),
    case("emulator", ("<console type='pty'/>", "<console type='pty'><target type='lxc' port='0'/></console>")),
    case("console", ("<console type='pty'/>", "<console/><console type='pty'><target type='lxc' port='1'/></console>")),
    case("root-filesystem", ("<source dir='ROOTFS'/>", "<source dir='ROOTFS/'/>")),
    case(
        "root-filesystem", root_fs("<filesystem type='block'><source dev='/dev/loop0'/><target dir='/'/></filesystem>")
    ),
    case(
        "filesystem-type",
        in_devices(
            "<filesystem type='ram'><source usage='64' units='MiB'/><target dir='/tmp'/></filesystem>"
            "<filesystem type='bind'><source dir='/srv/data'/><target dir='/data'/></filesystem>"
        ),
    ),
    case(
        "filesystem-target",
        in_devices(
            "<filesystem type='mount'><source dir='ROOTFS/srv'/><target dir='/srv'/></filesystem>"
            "<filesystem type='ram'><source usage='64'/><target dir='/srv/data'/></filesystem>"
        ),
    ),
    case(
        "filesystem-source",
        in_devices("<filesystem><source dir='ROOTFS/srv/data'/><target dir='/srv'/><readonly/></filesystem>"),
    ),
    case(
        "filesystem-source",
        in_devices("<filesystem type='mount'><source dir='relative/dir'/><target dir='/srv'/></filesystem>"),
    ),
    case(
        "filesystem-driver",
        in_devices(
            "<filesystem type='file'><driver type='loop' format='raw'/>"
            "<source file='ROOTFS/var.img'/><target dir='/var/lib/app'/></filesystem>"
        ),
    ),
    case(
        "filesystem-driver",
        in_devices(
            "<filesystem type='file'><driver type='nbd' format='qcow2'/>"
            "<source file='ROOTFS/var.img'/><target dir='/var/lib/app'/></filesystem>"
        ),
    ),
    case(
        "filesystem-driver",
        in_devices("<filesystem type='file'><source file='ROOTFS/var.img'/><target dir='/var/lib/app'/></filesystem>"),
    ),
    case("disk", in_devices("<disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='sdb'/></disk>")),
    case(
        "hostdev",
        in_devices(
            "<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source>"
            "</hostdev>"
            "<hostdev mode='capabilities' type='misc'><source><char>/dev/net/tun</char></source></hostdev>"
            "<hostdev mode='capabilities' type='storage'><source><block>/dev/sdf1</block></source></hostdev>"
        ),
    ),
    case(
        "ignored-device",
        in_devices("<hostdev mode='capabilities' type='misc'><source><char>/dev/fuse</char></source></hostdev>"),
    ),
    case("private-network", no_privnet(), in_devices(iface())),
    case(
        "private-network",
        no_privnet(),
        in_devices("<hostdev mode='capabilities' type='net'><source><interface>eth9</interface></source></hostdev>"),
    ),
    case("private-network", no_privnet(), in_domain(NS.format("<lxc:sharenet type='name' value='other'/>"))),
    case(
        "interface-type",
        in_devices("<interface type='ethernet'/><interface type='network'><source network='default'/></interface>"),
    ),
    case("interface-script", in_devices(iface("<target dev='vnet7'/>"))),
    case("interface-direct", in_devices("<interface type='direct'><source dev='eth0' mode='bridge'/></interface>")),
    case("interface-source", in_devices("<interface type='network'><source network='default'/></interface>")),
    case(
        "interface-mac",
        in_devices(iface("<mac address='52:54:00:12:34:56'/>") + iface("<mac address='52:54:00:AB:CD:EF'/>")),
    ),
    case("interface-guest-dev", in_devices(iface("<guest dev='eth1'/>") + iface())),
    case(
        "lxc-namespace",
        in_domain(NS.format("<lxc:shareuts type='name' value='other'/><lxc:shareipc type='pid' value='42'/>")),
    ),
    case("lxc-sharenet", no_privnet(), in_domain(NS.format("<lxc:sharenet type='netns' value='red'/>"))),
]


def test_the_known_good_domain_has_no_findings(rootfs: Path) -> None:
    assert run((), {}, rootfs) == []


@pytest.mark.parametrize(("rule", "edits", "kwargs"), BAD)
def test_mutation_produces_exactly_its_rules_finding(
    rule: str, edits: tuple[Edit, ...], kwargs: dict[str, Any], rootfs: Path
) -> None:
    findings = run(edits, kwargs, rootfs)
    assert findings, f"no finding for {rule}"
    assert {f.rule for f in findings} == {rule}, dc.format_report(findings)
    for f in findings:
        assert f.severity == SEVERITY[rule]
        assert f.element.startswith("<") and f.why and f.fix


@pytest.mark.parametrize(("rule", "edits", "kwargs"), GOOD_VARIANTS)
def test_good_variant_produces_no_finding(
    rule: str, edits: tuple[Edit, ...], kwargs: dict[str, Any], rootfs: Path
) -> None:
    assert run(edits, kwargs, rootfs) == []


def test_every_rule_has_a_bad_and_a_good_example() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert {p.values[0] for p in BAD} == set(ids)
    assert {p.values[0] for p in GOOD_VARIANTS} == set(ids)
    assert all(r.severity in (dc.ERROR, dc.WARNING) and r.checks and r.libvirt and r.stage for r in RULES)


def test_finding_line_is_one_line_with_element_why_and_fix() -> None:
    f = Finding("name", "error", "<name>", "libvirt rejects a name\nwith a newline", "put it on one line")
    assert f.line() == "error: <name>: libvirt rejects a name\\nwith a newline; fix: put it on one line"
    assert "\n" not in f.line()


def test_every_finding_of_a_bad_domain_is_one_line(rootfs: Path) -> None:
    xml = apply((("<name>web1</name>", "<name>web\n_1</name>"), no_privnet(), ("<console type='pty'/>", "")), rootfs)
    findings = check_domain(xml, host_arch="x86_64")
    assert {f.rule for f in findings} == {"name", "private-network", "console"}
    for f in findings:
        assert "\n" not in f.line() and f.element in f.line() and f.fix in f.line()


@pytest.mark.parametrize(
    "text", ["", "<domain type='lxc'><name>x</domain>", "not xml", "<domain type='lxc'>\n<name>x</name>\n"]
)
def test_malformed_xml_raises_a_one_line_error(text: str) -> None:
    with pytest.raises(DomainXMLError) as info:
        check_domain(text)
    assert "\n" not in str(info.value) and str(info.value).startswith("not well-formed XML")


def test_a_document_that_is_no_domain_is_refused() -> None:
    with pytest.raises(DomainXMLError, match="<network>"):
        check_domain("<network><name>default</name></network>")
    with pytest.raises(ValueError):  # DomainXMLError is a ValueError
        dc.root_source("<network/>")


def test_root_source_is_the_root_mounts_directory(rootfs: Path) -> None:
    assert dc.root_source(apply((), rootfs)) == rootfs
    assert dc.root_source(apply((("<target dir='/'/>", "<target dir='/srv'/>"),), rootfs)) is None
    block = root_fs("<filesystem type='block'><source dev='/dev/loop0'/><target dir='/'/></filesystem>")
    assert dc.root_source(apply((block,), rootfs)) is None


def test_domain_name_and_the_rules_that_need_the_rootfs(rootfs: Path) -> None:
    assert dc.domain_name(apply((), rootfs)) == "web1"
    with pytest.raises(DomainXMLError, match="no <name>"):
        dc.domain_name(apply((("<name>web1</name>", ""),), rootfs))
    assert dc.ROOTFS_RULES == {"init-path", "inituser-exists"}


def test_rootfs_and_host_path_checks_are_skipped_for_a_foreign_definition(tmp_path: Path) -> None:
    """A definition for another host: its rootfs and mount sources are not here, so they are not judged."""
    edits = (
        init("/sbin/nothing"),
        in_os("<inituser>nobody</inituser><initgroup>nogroup</initgroup>"),
        in_devices("<filesystem type='mount'><source dir='/nonexistent/data'/><target dir='/srv'/></filesystem>"),
    )
    assert check_domain(apply(edits, tmp_path / "elsewhere"), host_arch="x86_64") == []


def test_an_explicit_rootfs_is_where_init_is_looked_up(rootfs: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    findings = check_domain(apply((), rootfs), empty, host_arch="x86_64")
    assert [f.rule for f in findings] == ["init-path"]
    assert "/sbin/init does not exist" in findings[0].why


def test_symlinks_resolve_inside_the_rootfs(rootfs: Path) -> None:
    assert dc.resolve_in_root(rootfs, "/sbin/init") == rootfs / "usr/lib/systemd/systemd"
    assert dc.resolve_in_root(rootfs, "/usr/bin/up") == rootfs / "usr/bin/sh"
    assert dc.resolve_in_root(rootfs, "/usr/bin/hostonly") == rootfs / "usr/bin/env"
    with pytest.raises(Exception, match="symlinks"):
        dc.resolve_in_root(rootfs, "/usr/bin/loop")


def test_default_host_arch_is_this_machines(rootfs: Path) -> None:
    arch = dc.HOST_ARCH_ALIASES.get(platform.machine(), platform.machine())
    xml = apply((("<type>exe</type>", f"<type arch='{arch}'>exe</type>"),), rootfs)
    assert check_domain(xml) == []


def test_errors_and_report_put_errors_first(rootfs: Path) -> None:
    findings = run((in_devices("<graphics type='vnc'/>"), ("<console type='pty'/>", "")), {}, rootfs)
    assert sorted(f.rule for f in findings) == ["console", "ignored-device"]
    assert [f.rule for f in dc.errors(findings)] == ["console"]
    report = dc.format_report(reversed(findings))
    assert report.splitlines()[0].startswith("error: <devices><console>: ")
    assert report.splitlines()[1].startswith("warning: <devices><graphics>: ")
    assert dc.format_report([]) == ""


def test_a_named_rootfs_stands_for_the_root_mount_source(rootfs: Path, tmp_path: Path) -> None:
    """A build checks its domain against the new rootfs before moving it to the source path."""
    xml = apply((("<source dir='ROOTFS'/>", f"<source dir='{tmp_path}/not-yet/rootfs'/>"),), rootfs)
    assert check_domain(xml, rootfs, host_arch="x86_64", other_domains={}) == []


# -- hostile XML: bounded time and memory, one line -------------------------------------------------

XML_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from vmbuilder_lxc import domaincheck
from vmbuilder_lxc.log import UserError
path = Path(sys.argv[1])
with path.open("rb") as fh:
    data = fh.read(domaincheck.MAX_XML_BYTES + 1)
try:
    text = domaincheck.parse_domain_xml(data, str(path))
    domaincheck.check_domain(text, host_arch="x86_64")
    print("accepted")
except UserError as exc:
    print(f"refused: {exc}")
"""

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE domain [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10)
    )
    + "]>\n<domain type='lxc'><name>&lol9;</name></domain>\n"
)


def parse_in_child(path: Path) -> str:
    """The one line a child prints after parse_domain_xml() and check_domain(), under a hang guard."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", XML_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout[:2000]
    return lines[0]


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.xml"
    path.write_text(BILLION_LAUGHS)
    assert parse_in_child(path) == (
        f"refused: {path}: it has a DOCTYPE declaration (DTDs and entities are refused); " + dc.XML_HINT
    )


def test_an_external_entity_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("SECRET-CONTENTS\n")
    path = tmp_path / "xxe.xml"
    path.write_text(
        f'<!DOCTYPE domain [<!ENTITY x SYSTEM "file://{secret}">]>\n<domain type="lxc"><name>&x;</name></domain>\n'
    )
    line = parse_in_child(path)
    assert "DOCTYPE" in line and "SECRET" not in line
    before = secret.stat().st_atime_ns
    with pytest.raises(DomainXMLError, match="DOCTYPE"):
        check_domain(path.read_text())
    assert secret.stat().st_atime_ns == before  # (where atime is kept) the file was not opened for reading


def test_a_parameter_entity_and_an_internal_subset_alone_are_refused() -> None:
    for text in ('<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><domain/>', "<!DOCTYPE domain><domain/>"):
        with pytest.raises(DomainXMLError, match="DOCTYPE"):
            dc.domain_name(text)


def test_a_100_mb_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    with path.open("wb") as fh:
        fh.write(b"<domain type='lxc'><name>x</name><description>")
        fh.truncate(100 << 20)
    assert (
        parse_in_child(path)
        == f"refused: {path} is larger than 1048576 bytes; a domain XML is a few KiB; " + dc.XML_HINT
    )
    with pytest.raises(DomainXMLError, match="more than the limit of 1048576"):
        check_domain("<domain>" + " " * (2 << 20) + "</domain>")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.xml"
    path.write_text("<domain type='lxc'>" + "<a>" * 100_000 + "</a>" * 100_000 + "</domain>")
    assert path.stat().st_size < 1 << 20
    assert parse_in_child(path) == f"refused: {path}: its elements are nested more than 64 deep; " + dc.XML_HINT


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x7fELF\x02\x01\x01\x00" + bytes(64), "is a binary file (it has NUL bytes), not domain XML"),
        (b"<domain type='lxc'><name>caf\xe9</name></domain>", "is not UTF-8 text (byte 28 cannot be decoded)"),
    ],
    ids=["binary", "latin-1"],
)
def test_binary_and_non_utf8_input_is_one_line(tmp_path: Path, data: bytes, why: str) -> None:
    path = tmp_path / "x.xml"
    path.write_bytes(data)
    assert parse_in_child(path) == f"refused: {path} {why}; " + dc.XML_HINT


def test_parse_domain_xml_returns_the_text_of_a_good_domain(tmp_path: Path) -> None:
    text = GOOD.replace("ROOTFS", str(tmp_path))
    assert dc.parse_domain_xml(text.encode(), "d.xml") == text
    with pytest.raises(dc.UserError, match=r"^d.xml: not well-formed XML: .*; fix the XML$"):
        dc.parse_domain_xml(b"<domain>", "d.xml")
    with pytest.raises(dc.UserError, match=r"^d.xml: not a libvirt domain: the root element is <network>"):
        dc.parse_domain_xml(b"<network/>", "d.xml")


def test_text_with_undecodable_bytes_is_one_line() -> None:
    with pytest.raises(DomainXMLError, match="not valid UTF-8"):
        check_domain(b"<domain>\xff</domain>".decode("utf-8", "surrogateescape"))
