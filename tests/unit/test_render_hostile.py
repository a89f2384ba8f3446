"""Every template rendered with hostile values in every variable, and read back by its format's reader.

Issue 12: a value with a newline used to become extra lines (`--bridge $'br0\\nlxc.x=1'` wrote a
key into DEST/config). Each case here renders one template with one variable set to a hostile
string and expects one of two outcomes: a clean refusal (FormatError, a one-line UserError), or a
file whose structure (keys, sections, elements, stanzas, fields) is exactly that of the same
render with a harmless marker, and in which the value reads back exactly where the marker did.
The readers are in format_parsers.py; where the real reader is installed and cheap, it is run too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import meta
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit import format_parsers as fp
from tests.unit.conftest import ContextFactory
from vmbuilder_lxc import formats
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.data import templates_dir
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.formats import FormatError
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.render import Templates, apt_deb822_check, apt_one_line_check, lxc_config_keys
from vmbuilder_lxc.source.archive import ArchiveSource

MARKER = "Mk7q"
HOSTILE = [
    "x\nlxc.hook.pre-start = /bin/sh -c id",
    "x\r\nkey=1",
    "x\rkey=1",
    'x"y',
    "x'y",
    "'quoted'",
    '"quoted"',
    "<b>&amp;",
    "]]>",
    "-- -->",
    "x%ny%%",
    "$(id)",
    "`id`",
    "${HOME}",
    "a:b",
    "#x",
    "x #y",
    "[trusted=yes]",
    "[trusted=yes] http://127.0.0.1:9/x",
    "x\u2028y",
    "x\u2029y",
    "x\u0085y",
    "x\x00y",
    "x\ty",
    "x\x0by\x0cz",
    "x\x1by",
    "x\x7fy",
    " lead",
    "trail ",
    "-x",
    "a\\",
    "a\\nb",
    "x;y",
    "x]y[",
    "a=b",
    "a b",
    "ü€😀",
    "\ufeffbom",
]

JOB = types.SimpleNamespace(name="web1", distro="ubuntu", suite="noble", version="24.04", arch="amd64",
                            epoch=1700000000, serial="20231114_22:13",
                            description="Ubuntu 24.04 noble amd64 (20231114_22:13)")  # fmt: skip
MIRROR = "http://127.0.0.1:9/ubuntu"
APT = {"mirror": MIRROR, "suite": "noble", "pockets": ["updates", "security"], "components": ["main", "universe"],
       "security_mirror": "http://127.0.0.1:9/security"}  # fmt: skip
GUEST_LXC = {
    "lxc_arch": "x86_64",
    "halt_signal": "SIGRTMIN+5",
    "ttys": 4,
    "tty_dir_empty": True,
    "container_ttys": "pts/1 pts/2",
}
LXC = {"version": "0.1.0", "name": "web1", "lxcpath": "/srv/ct", "lxcpath_arg": True, "includes": [],
       "rootfs": "/srv/ct/web1/rootfs", "hostname": "web1", **GUEST_LXC, "network": "veth", "bridge": "lxcbr0",
       "mac": "00:16:3e:12:34:56", "mem": 256, "cpus": 2, "autostart": True, "cgroup_layout": "unified (cgroup2)",
       "cgroup_v1_memory": False, "cgroup_v1_cpu": False, "backing": "dir", "overlay_lower": "",
       "overlay_upper": "", "idmap": []}  # fmt: skip
DOMAIN = {"name": "web1", "version": "0.1.0", "uuid": "0b6f6d2a-8a39-4f3a-9d7e-3c1f3f6d2b11", "mem": 512, "cpus": 2,
          "arch": "x86_64", "init": "/sbin/init", "rootfs": "/srv/ct/web1/rootfs", "network": "bridge",
          "network_name": "lxcbr0", "mac": "00:16:3e:12:34:56", "distro": "ubuntu", "suite": "noble",
          "idmap_uid": 100000, "idmap_gid": 200000, "idmap_count": 65536}  # fmt: skip
STATIC = {"iface": "eth0", "dhcp": False, "address": "10.0.3.10", "prefix": 24, "gateway": "10.0.3.1",
          "dns": ["10.0.3.1"], "domain": "example.org"}  # fmt: skip
SBUILD = {"job": JOB, "chroot": "noble-amd64-sbuild", "conf": "noble-amd64-sbuild.conf", "readable": False,
          "description": "Ubuntu 24.04 noble/amd64 autobuilder", "directory": "/srv/ct/b/rootfs",
          "file": "/srv/out/noble-amd64.tar.zst", "suffix": ".zst"}  # fmt: skip

# Each template's contexts, with the variable names its callers use; several where branches differ.
CONTEXTS: dict[str, list[dict[str, Any]]] = {
    "apt/deb822.sources.j2": [{**APT, "keyring": "/usr/share/keyrings/ubuntu-archive-keyring.gpg"}],
    "apt/sources.list-deb822.j2": [{"distro": "ubuntu"}],
    "apt/sources.list.j2": [APT],
    "common/hostname.j2": [{"hostname": "web1"}],
    "common/hosts.j2": [{"hostname": "web1", "domain": "example.org", "fqdn": "web1.example.org"}],
    "common/locale.j2": [{"lang": "en_US.UTF-8"}],
    "common/resolv.conf.j2": [{"dns": ["10.0.3.1"], "domain": "example.org"}],
    "exports/lxc-config.j2": [{"job": JOB, "userns": True, **GUEST_LXC}],
    "exports/lxc-create-message.j2": [{"job": JOB}],
    "exports/lxd-metadata.yaml.j2": [{"job": JOB, "architecture": "x86_64", "expiry": 1702592000, "variant": "default",
                                      "image_name": "ubuntu-noble", "templates": {"/etc/hostname": "hostname.tpl"}}],
    "exports/sbuild-schroot.conf.j2": [SBUILD, {**SBUILD, "directory": ""}],
    "exports/template.properties.j2": [{"job": JOB, "filename": "web1.tar", "size": 1234, "sha256": "ab" * 32,
                                        "download": "web1.tar.gz", "arch": "x86_64"}],
    "ifupdown/interfaces.j2": [{"nic": True, "iface": "eth0", "dhcp": True, "init": "systemd", "address": "",
                                "netmask": "", "gateway": ""},
                               {"nic": True, "iface": "eth0", "dhcp": False, "init": "systemd", "address": "10.0.3.10",
                                "netmask": "255.255.255.0", "gateway": "10.0.3.1"}],
    "libvirt/domain.xml.j2": [DOMAIN, {**DOMAIN, "network": "network", "network_name": "default"}],
    "lxc/config.j2": [LXC, {**LXC, "cgroup_v1_memory": True, "cgroup_v1_cpu": True, "includes": ["/etc/lxc/x.conf"],
                            "idmap": ["u 0 100000 65536", "g 0 100000 65536"]},
                      {**LXC, "backing": "overlay", "overlay_lower": "/var/cache/vmbuilder-lxc/bases/k.tree/rootfs",
                       "overlay_upper": "/srv/ct/web1/overlay/delta"}],
    "lxc/guest.conf.j2": [GUEST_LXC],
    "netplan/10-lxc.yaml.j2": [STATIC],
    "networkd/10-lxc-eth0.network.j2": [STATIC],
    "systemd/firstboot.service.j2": [{"script": "/var/lib/vmbuilder-lxc/firstboot"}],
    "upstart/dhclient.conf.j2": [{"hostname": "web1"}],
    "upstart/firstboot.conf.j2": [{"script": "/var/lib/vmbuilder-lxc/firstboot"}],
    "upstart/fstab.j2": [{"manager_mounts": [("/proc", "proc")]}],
}  # fmt: skip
# Variables that only steer a branch and are never printed.
CONTROL_ONLY = {
    ("lxc/config.j2", "network"),
    ("lxc/config.j2", "backing"),
    ("libvirt/domain.xml.j2", "network"),
    ("ifupdown/interfaces.j2", "init"),
    ("common/hosts.j2", "domain"),
}

TEMPLATES = Templates()
ALL = sorted(str(p.relative_to(templates_dir())) for p in templates_dir().rglob("*.j2"))


def variables(name: str) -> set[str]:
    """The template's free variables, with those of the templates it includes."""
    source = TEMPLATES.env.loader.get_source(TEMPLATES.env, name)[0]  # type: ignore[union-attr]
    ast = TEMPLATES.env.parse(source)
    found = set(meta.find_undeclared_variables(ast))
    for included in meta.find_referenced_templates(ast):
        found |= variables(str(included))
    return found


def job_attrs(name: str) -> set[str]:
    source = TEMPLATES.env.loader.get_source(TEMPLATES.env, name)[0]  # type: ignore[union-attr]
    return set(re.findall(r"\bjob\.(\w+)", source))


Leaf = tuple[Any, ...]


def leaves(name: str, ctx: dict[str, Any]) -> Iterator[Leaf]:
    """Every place in the context a string sits: a variable, a job attribute, a list item, a dict key or value."""
    for key, value in ctx.items():
        if isinstance(value, str):
            yield (key,)
        elif isinstance(value, types.SimpleNamespace):
            yield from ((key, attr) for attr in sorted(job_attrs(name)) if isinstance(getattr(value, attr), str))
        elif isinstance(value, list):
            if value and isinstance(value[0], tuple):
                yield from ((key, "+", i) for i in range(len(value[0])))
            else:
                yield (key, "+")
        elif isinstance(value, dict):
            yield from ((key, "k"), (key, "v"))


def with_leaf(ctx: dict[str, Any], leaf: Leaf, text: str) -> dict[str, Any]:
    new = dict(ctx)
    key = leaf[0]
    value = ctx[key]
    if len(leaf) == 1:
        new[key] = text
    elif isinstance(value, types.SimpleNamespace):
        new[key] = types.SimpleNamespace(**{**vars(value), leaf[1]: text})
    elif isinstance(value, list) and len(leaf) == 3:
        item = list(value[0])
        item[leaf[2]] = text
        new[key] = [*value, tuple(item)]
    elif isinstance(value, list):
        new[key] = [*value, text]
    else:
        first_key, first_value = next(iter(value.items()))
        new[key] = {**value, **({text: first_value} if leaf[1] == "k" else {first_key: text})}
    return new


def cases() -> Iterator[Any]:
    for name, contexts in CONTEXTS.items():
        for index, ctx in enumerate(contexts):
            for leaf in leaves(name, ctx):
                yield pytest.param(name, index, leaf, id=f"{name}-{index}-{'.'.join(map(str, leaf))}")


# -- the real readers, where installed -------------------------------------------------------------


def lxc_info_values(text: str, keys: list[str], tmp: Path) -> dict[str, str] | None:
    """liblxc's own reading of the config (lxc-info -c works on a stopped container); None if liblxc
    refuses the file (a value it does not accept is a refusal, not an injection)."""
    if not shutil.which("lxc-info"):
        return None
    (tmp / "c").mkdir(exist_ok=True)
    (tmp / "c/config").write_text(text)
    found = {}
    for key in keys:
        result = subprocess.run(["lxc-info", "-P", str(tmp), "-n", "c", "-c", key], capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        if result.returncode != 0:
            return None
        found[key] = result.stdout.rstrip("\n").partition(" = ")[2]
    return found


def apt_targets(text: str, deb822: bool, tmp: Path) -> set[tuple[str, ...]]:
    """apt's own reading of the sources (offline): repository, suite, component, type of every index."""
    parts = tmp / "parts"
    parts.mkdir(exist_ok=True)
    sources = tmp / "sources.list"
    sources.write_text("" if deb822 else text)
    (parts / "x.sources").write_text(text if deb822 else "")
    if not deb822:
        (parts / "x.sources").unlink()
    options = {"Dir::Etc::sourcelist": sources, "Dir::Etc::sourceparts": parts, "Dir::State::Lists": tmp,
               "Dir::State::status": "/dev/null", "Dir::Cache": tmp, "Debug::NoLocking": 1}  # fmt: skip
    argv = ["apt-get", "indextargets", "--no-release-info", "--format", "$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)"]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return {tuple(line.split("\t")) for line in result.stdout.splitlines()}


def systemd_runs(hostile: str, tmp: Path) -> None:
    """systemd's own reading of the unit: a script at a path holding the value is what it would run
    (systemd-analyze verify fails on a command it cannot find or parse)."""
    script = tmp / "sd" / f"fb{hostile}"
    try:
        text = TEMPLATES.render("systemd/firstboot.service.j2", {"script": str(script)})
    except FormatError:
        return
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (tmp / "vmb-fb.service").write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp / "vmb-fb.service")], capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def sh_value(text: str, variable: str, tmp: Path) -> str:
    """What sh reads from a KEY=VALUE file it sources."""
    (tmp / "env").write_text(text)
    result = subprocess.run(["sh", "-c", f'. "$1" && printf %s "${variable}"', "sh", str(tmp / "env")],
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return result.stdout


# -- the tests -------------------------------------------------------------------------------------


# What liblxc does to a value it reads (beyond the line format): lxc.net.0.link is an interface name
# (IFNAMSIZ), lxc.rootfs.path a cleaned path. Other keys (lxc.arch, lxc.net.0.hwaddr) are interpreted.
LIBLXC_READS = {
    "lxc.uts.name": lambda v: v,
    "lxc.environment": lambda v: v,
    "lxc.net.0.link": lambda v: v[:15],
    "lxc.rootfs.path": lambda v: re.sub("/+", "/", v.removeprefix("dir:")),
}
# Where a reader takes only an absolute path, the values go below one.
PREFIX = {("systemd/firstboot.service.j2", "script"): "/var/lib/vmbuilder-lxc/"}
APT_PREFIX = {"mirror": MIRROR + "/", "security_mirror": MIRROR + "/", "keyring": "/usr/share/keyrings/"}
# Formats where every value is escaped and none needs refusing.
ESCAPING_ONLY = {
    ("exports/template.properties.j2", "job"),
    ("exports/template.properties.j2", "sha256"),
    ("exports/template.properties.j2", "arch"),
}


def test_every_template_has_contexts_or_no_variables() -> None:
    for name in ALL:
        if name not in CONTEXTS:
            assert not variables(name), f"{name} has variables but no hostile-value cases here"


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_contexts_use_the_templates_variable_names(name: str) -> None:
    for ctx in CONTEXTS[name]:
        assert variables(name) <= set(ctx), f"{name}: add {variables(name) - set(ctx)}"
        assert set(ctx) <= variables(name), f"{name}: {set(ctx) - variables(name)} is not used"


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_value_reaches_the_file(name: str) -> None:
    """The marker shows up for every leaf in some context: every variable is really exercised."""
    for leaf in {leaf for ctx in CONTEXTS[name] for leaf in leaves(name, ctx)}:
        if (name, leaf[0]) in CONTROL_ONLY:
            continue
        marker = PREFIX.get((name, leaf[0]), "") + MARKER
        texts = [TEMPLATES.render(name, with_leaf(ctx, leaf, marker)) for ctx in CONTEXTS[name] if leaf[0] in ctx]
        assert any(MARKER in text for text in texts), f"{name}: {leaf} never appears in the output"


@pytest.mark.parametrize("name", ALL)
def test_benign_render_parses(name: str) -> None:
    for ctx in CONTEXTS.get(name, [{}]):
        text = TEMPLATES.render(name, ctx)
        if name in fp.PARSERS:
            fp.PARSERS[name](text)


@pytest.mark.parametrize(("name", "index", "leaf"), list(cases()))
def test_hostile_value(name: str, index: int, leaf: Leaf, tmp_path: Path) -> None:
    base = CONTEXTS[name][index]
    parse = fp.PARSERS[name]
    prefix = PREFIX.get((name, leaf[0]), "")
    marked_text = TEMPLATES.render(name, with_leaf(base, leaf, prefix + MARKER))
    marked = parse(marked_text)
    accepted = 0
    for hostile in HOSTILE:
        try:
            text = TEMPLATES.render(name, with_leaf(base, leaf, prefix + hostile))
        except FormatError as exc:
            assert str(exc).isprintable() and exc.hint, repr(str(exc))  # one line, and says what to do
            continue
        accepted += 1
        # No line break or control character from a value reaches any file, escaped formats included.
        assert formats.bad_char(text.replace("\n", "")) is None, (hostile, text)
        assert len(fp.lines_of(text)) == len(fp.lines_of(marked_text)), (hostile, text)
        got = parse(text)
        assert got.structure == marked.structure, (hostile, text)
        for value in marked.values:
            if MARKER in value:
                assert value.replace(MARKER, hostile) in got.values, (hostile, value, got.values)
        real_reader_check(name, index, leaf, hostile, marked, text, tmp_path)
    if (name, leaf[0]) not in CONTROL_ONLY | ESCAPING_ONLY and MARKER in marked_text:
        assert accepted < len(HOSTILE), "nothing was refused: is the filter missing?"


def real_reader_check(name: str, index: int, leaf: Leaf, hostile: str, marked: fp.Parsed, text: str,
                      tmp: Path) -> None:  # fmt: skip
    """The installed readers agree: liblxc, apt, sh, bash."""
    if name == "lxc/config.j2" and index == 0:
        pairs = dict(zip(marked.structure, marked.values, strict=True))
        keys = [k for k, v in pairs.items() if MARKER in v and k in LIBLXC_READS]
        real = lxc_info_values(text, keys, tmp)
        if real is not None:
            for key in keys:
                assert real[key] == LIBLXC_READS[key](pairs[key].replace(MARKER, hostile)), (key, real)
    elif name.startswith("apt/") and name != "apt/sources.list-deb822.j2":
        # apt reads a URI and a keyring path only when they look like one: the values go below a real one.
        prefix = APT_PREFIX.get(leaf[0], "")
        deb822 = name.endswith("deb822.sources.j2")
        try:
            text = TEMPLATES.render(name, with_leaf(CONTEXTS[name][index], leaf, prefix + hostile))
        except FormatError:
            return
        marked_text = TEMPLATES.render(name, with_leaf(CONTEXTS[name][index], leaf, prefix + MARKER))
        (tmp / "m").mkdir(exist_ok=True)
        (tmp / "h").mkdir(exist_ok=True)
        want = {tuple(f.replace(MARKER, hostile) for f in t) for t in apt_targets(marked_text, deb822, tmp / "m")}
        assert apt_targets(text, deb822, tmp / "h") == want
    elif name == "systemd/firstboot.service.j2" and shutil.which("systemd-analyze"):
        systemd_runs(hostile, tmp)
    elif name == "common/locale.j2":
        assert sh_value(text, "LANG", tmp) == hostile
    elif name == "upstart/firstboot.conf.j2":
        body = text.split("\nscript\n", 1)[1].split("\nend script", 1)[0]
        subprocess.run(["bash", "-n"], input=body, text=True, timeout=60, check=True)


@pytest.mark.skipif(not shutil.which("virt-xml-validate") or not shutil.which("xmllint"),
                    reason="virt-xml-validate (libvirt-clients) and xmllint (libxml2-utils) are needed")  # fmt: skip
@pytest.mark.parametrize("hostile", HOSTILE)
def test_domain_xml_validates_with_hostile_text(hostile: str, tmp_path: Path) -> None:
    """libvirt's own schema accepts the domain with a hostile value in every free-text place, or the
    value was refused; it never sees an extra element."""
    ctx = {**DOMAIN, "name": hostile, "distro": hostile, "suite": hostile}
    try:
        text = TEMPLATES.render("libvirt/domain.xml.j2", ctx)
    except FormatError:
        return
    (tmp_path / "d.xml").write_text(text)
    result = subprocess.run(["virt-xml-validate", str(tmp_path / "d.xml"), "domain"], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("virt-xml-validate") or not shutil.which("xmllint"), reason="needs libxml2-utils")
def test_benign_domain_xml_validates(tmp_path: Path) -> None:
    for ctx in CONTEXTS["libvirt/domain.xml.j2"]:
        (tmp_path / "d.xml").write_text(TEMPLATES.render("libvirt/domain.xml.j2", ctx))
        result = subprocess.run(["virt-xml-validate", str(tmp_path / "d.xml"), "domain"], capture_output=True,
                                text=True, timeout=120, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


# -- the guard: every interpolation has its format's filter ----------------------------------------

# Which filters fit which template (comments and prose may use `line`; shell snippets `sh`).
FAMILY = {
    "apt/": {"apt", "apt_uri", "word"},
    "common/locale.j2": {"envword"},
    "common/": {"word"},
    "exports/lxc-config.j2": {"line", "lxc"},
    "exports/lxc-create-message.j2": {"line"},
    "exports/lxd-metadata.yaml.j2": {"yaml"},
    "exports/sbuild-schroot.conf.j2": {"ini", "ini_section", "line", "sh"},
    "exports/template.properties.j2": {"properties", "line"},
    "ifupdown/": {"word", "sh"},
    "libvirt/": {"xml", "xml_comment"},
    "lxc/": {"lxc", "line", "sh"},
    "netplan/": {"yaml"},
    "networkd/": {"networkd"},
    "systemd/": {"systemd", "systemd_exec"},
    "upstart/dhclient.conf.j2": {"dhclient"},
    "upstart/fstab.j2": {"fstab"},
    "upstart/": {"sh"},
}


def family(name: str) -> set[str]:
    return next(filters for prefix, filters in FAMILY.items() if name.startswith(prefix))


@pytest.mark.parametrize("name", ALL)
def test_every_interpolation_ends_in_a_format_filter(name: str) -> None:
    source = (templates_dir() / name).read_text()
    for expression in re.findall(r"\{\{(.*?)\}\}", source, re.S):
        match = re.search(r"\|\s*(\w+)\s*(\([^|]*\))?\s*$", expression)
        assert match, f"{name}: {{{{{expression}}}}} has no format filter"
        assert match[1] in formats.FILTERS, f"{name}: {match[1]} is not a format filter"
        assert match[1] in family(name), f"{name}: {match[1]} does not fit this format ({sorted(family(name))})"


def test_an_override_template_without_filters_still_cannot_add_lines(tmp_path: Path) -> None:
    """finalize() checks every value: a site template that forgets a filter gets a refusal, not a key."""
    (tmp_path / "lxc").mkdir()
    (tmp_path / "lxc/config.j2").write_text("lxc.net.0.link = {{ bridge }}\nlxc.mount.auto = proc:mixed\n")
    templates = Templates([tmp_path])
    assert templates.render("lxc/config.j2", {"bridge": "br0"}) == "lxc.net.0.link = br0\nlxc.mount.auto = proc:mixed\n"
    with pytest.raises(FormatError, match="newline"):
        templates.render("lxc/config.j2", {"bridge": "br0\nlxc.hook.pre-start = /bin/sh"})


def test_an_override_xml_template_is_still_escaped(tmp_path: Path) -> None:
    (tmp_path / "libvirt").mkdir()
    (tmp_path / "libvirt/domain.xml.j2").write_text("<domain><name>{{ name }}</name></domain>\n")
    text = Templates([tmp_path]).render("libvirt/domain.xml.j2", {"name": "a</name><x/>"})
    assert fp.xml_doc(text).structure == [("domain", []), ("name", [])]


def test_lxc_config_read_back_refuses_a_key_the_template_does_not_write() -> None:
    assert lxc_config_keys("# c\n\nlxc.arch = 'x'\n", "lxc/config.j2", True) == [("lxc.arch", "x")]
    with pytest.raises(FormatError, match="unexpected LXC config line"):
        lxc_config_keys("lxc.arch = x\nlxc.hook.pre-start = /bin/sh\n", "lxc/config.j2", True)
    with pytest.raises(FormatError, match="unexpected LXC config line"):
        lxc_config_keys("lxc.arch = x\nbr0\n", "lxc/config.j2", False)
    assert lxc_config_keys("lxc.hook.pre-start = /x\n", "lxc/config.j2", False)  # an override may add keys


def test_filters_are_callable_from_python() -> None:
    assert formats.lxc(" br0") == '" br0"'
    assert formats.yaml(["a", 'b"#: \ufeff']) == '["a", "b\\"#: \\ufeff"]'
    assert formats.sh("a b") == "'a b'"
    assert formats.properties("a=b\n ü") == "a\\=b\\n \\u00fc"
    assert formats.apt_uri("http://[::1]:9/ubuntu") == "http://[::1]:9/ubuntu"  # an IPv6 host is no option
    assert formats.xml("a'<&>\"") == "a&#39;&lt;&amp;&gt;&#34;"
    assert formats.fstab("/a b#\\") == "/a\\040b\\043\\134"
    assert formats.systemd_exec("/a b/c%d") == '"/a b/c%%d"'
    assert formats.chpasswd_line("root", "p:ss") == "root:p:ss"
    with pytest.raises(FormatError):
        formats.chpasswd_line("root", "x\nroot:owned")
    with pytest.raises(FormatError):
        formats.chpasswd_line("ro:ot", "x")
    with pytest.raises(FormatError):
        formats.chpasswd_line("root", "x" * 5000)
    with pytest.raises(FormatError):
        formats.sudoers_user("x ALL=(ALL) NOPASSWD:ALL")


# -- through the plugins: values that got past the validators still cannot add a key --------------


def lxc_plugin_context(fs: FakeFilesystem, make_ctx: ContextFactory) -> Context:
    ctx = make_ctx("--arch", "amd64", "--hostname", "web1", "-d", "/srv/ct/web1", "--mirror", MIRROR)
    ctx.hypervisor.set_defaults()
    ctx.workdir = Path("/build")
    fs.create_dir("/build/rootfs")
    return ctx


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("bridge", "br0\nlxc.hook.pre-start = /bin/sh -c 'id > /tmp/owned'"),
        ("bridge", "br0\rlxc.x = 1"),
        ("hostname", "web1\nlxc.mount.entry = / host none bind 0 0"),
        ("mac", "00:16:3e:00:00:01\u2028lxc.x = 1"),
        ("mem", "256\nlxc.x = 1"),
    ],
)
def test_lxc_plugin_refuses_a_value_that_would_add_a_key(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, setting: str, value: str
) -> None:
    """Settings set directly (as a plugin or a future code path could), bypassing every validator."""
    ctx = lxc_plugin_context(fake_fs, make_ctx)
    ctx.settings.set(setting, value)
    with pytest.raises(UserError, match="cannot be written into the LXC config"):
        ctx.hypervisor.finalize()
    assert not Path("/build/config").exists()


def test_lxc_plugin_writes_the_benign_config(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = lxc_plugin_context(fake_fs, make_ctx)
    ctx.hypervisor.finalize()
    keys = lxc_config_keys(Path("/build/config").read_text(), "lxc/config.j2", True)
    assert ("lxc.net.0.link", "lxcbr0") in keys and ("lxc.uts.name", "web1") in keys


@pytest.mark.parametrize(
    ("setting", "value"), [("pass", "secret\nroot:owned"), ("rootpass", "x\r\nroot:owned"), ("pass", "a\x00b")]
)
def test_chpasswd_input_stays_one_line_per_user(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch, setting: str, value: str
) -> None:
    ctx = lxc_plugin_context(fake_fs, make_ctx)
    ctx.settings.set(setting, value)
    assert isinstance(ctx.distro, DebianFamily)
    ctx.distro.source = ArchiveSource(ctx.distro)  # set_defaults' choice without --from-template
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(ctx.distro, "run_in_target", lambda *argv, **kw: ran.append(argv))
    with pytest.raises(UserError, match="chpasswd"):
        ctx.distro.configure_users()
    assert not [argv for argv in ran if argv[0] == "chpasswd"]


def test_apt_sources_read_back_refuses_options_and_unknown_fields() -> None:
    apt_one_line_check("# c\ndeb http://127.0.0.1:9/u noble main\n", "apt/sources.list.j2", True)
    with pytest.raises(FormatError, match="unexpected apt sources line"):
        apt_one_line_check("deb [trusted=yes] http://127.0.0.1:9/u noble main\n", "apt/sources.list.j2", True)
    apt_one_line_check("deb [arch=amd64] http://127.0.0.1:9/u noble main\n", "apt/sources.list.j2", False)
    apt_deb822_check("Types: deb\nURIs: http://127.0.0.1:9/u\n\nSuites: noble\n", "apt/deb822.sources.j2", True)
    with pytest.raises(FormatError, match="unexpected deb822 sources line"):
        apt_deb822_check("Types: deb\nTrusted: yes\n", "apt/deb822.sources.j2", True)
    with pytest.raises(FormatError, match="unexpected deb822 sources line"):
        apt_deb822_check("Types: deb\n more\n", "apt/deb822.sources.j2", False)


PROPERTIES_READER = """
import java.io.*; import java.util.*;
public class P { public static void main(String[] a) throws Exception { for (String f : a) {
    Properties p = new Properties(); try (InputStream in = new FileInputStream(f)) { p.load(in); }
    for (String k : new TreeSet<>(p.stringPropertyNames())) { StringBuilder sb = new StringBuilder();
        for (char c : p.getProperty(k).toCharArray()) sb.append(String.format("%04x", (int) c));
        System.out.println(f + "\\t" + k + "\\t" + sb); } } } }
"""


@pytest.mark.skipif(not shutil.which("java"), reason="java is not installed")
def test_template_properties_read_back_by_java(tmp_path: Path) -> None:
    """CloudStack reads template.properties with java.util.Properties.load(InputStream): so does this."""
    base = CONTEXTS["exports/template.properties.j2"][0]
    written: dict[str, str] = {}
    for i, hostile in enumerate(HOSTILE):
        ctx = {**base, "job": types.SimpleNamespace(**{**vars(JOB), "name": hostile}), "sha256": hostile}
        out = tmp_path / f"{i}.properties"
        out.write_text(TEMPLATES.render("exports/template.properties.j2", ctx), encoding="ascii")
        written[str(out)] = hostile
    (tmp_path / "P.java").write_text(PROPERTIES_READER)
    result = subprocess.run(["java", str(tmp_path / "P.java"), *written], capture_output=True, text=True,
                            timeout=300, check=True)  # fmt: skip
    read: dict[str, dict[str, str]] = {}
    for row in result.stdout.splitlines():
        path, key, hexed = row.split("\t")
        read.setdefault(path, {})[key] = bytes.fromhex(hexed).decode("utf-16-be")  # pairs combine
    benign = set(fp.java_properties(TEMPLATES.render("exports/template.properties.j2", base)).structure)
    for path, hostile in written.items():
        assert set(read[path]) == benign, (hostile, read[path])
        assert read[path]["uniquename"] == hostile
        assert read[path]["checksum"] == "{SHA-256}" + hostile


def test_hook_environment_values_are_one_line() -> None:
    """Built-in hooks get the tweak variables as VM_*; a hook writes some into files (/etc/timezone)."""
    from vmbuilder_lxc.tweakactions import _env_value

    assert _env_value(["10.0.3.1", "1.1.1.1"]) == "10.0.3.1 1.1.1.1"
    with pytest.raises(FormatError, match="hook"):
        _env_value("Etc/UTC\nroot:x:0:0::/root:/bin/sh")
