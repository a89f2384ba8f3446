"""The `libvirt` plugin: register the container as a libvirt-lxc domain (VMBuilder's --libvirt URI).

The domain XML comes from templates/libvirt/domain.xml.j2 (or --libvirt-xml FILE) and is checked
by vmbuilder_lxc.domaincheck twice: against the new rootfs before it is moved into place (so a bad
domain never costs the old build), and by libvirt's schema at define time. Everything that can
refuse the build (an existing or running domain, an unknown network) is checked in preflight,
before any bootstrap work. docs/libvirt.md has the details.
"""

from __future__ import annotations

import json
import platform
import stat
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vmbuilder_lxc import __version__, idmap
from vmbuilder_lxc import validators as v
from vmbuilder_lxc.arches import foreign, kernel_arch
from vmbuilder_lxc.cliparse import CommandParser
from vmbuilder_lxc.log import LOG, UserError, die
from vmbuilder_lxc.plugin import Plugin
from vmbuilder_lxc.settings import Setting
from vmbuilder_lxc.virt import Connection, DomainInfo, connect

from .lxc import DEFAULT_MEM_MB, LIBVIRT_NETWORK, cgroup_layout, default_mem_text, network_mode

GROUP = "libvirt options"
XML_MAX = 1 << 20  # a domain XML is a few KiB; anything beyond a megabyte is not one


DEFAULT_NETWORK = LIBVIRT_NETWORK  # libvirt's usual NAT network; --network's help names it
VALIDATE_DESCRIPTION = "Check a libvirt-lxc domain XML for what the LXC driver rejects or ignores."
XML_NAME = "libvirt.xml"  # DEST/libvirt.xml: the domain as defined


class Libvirt(Plugin):
    name: ClassVar[str] = "libvirt"
    description: ClassVar[str] = "define the container as a libvirt-lxc domain (--libvirt lxc:///)"
    hypervisors: ClassVar[tuple[str, ...] | None] = ("lxc",)
    commands: ClassVar[dict[str, str]] = {"validate": "validate_command"}

    _conn: Connection | None = None
    _replacing: DomainInfo | None = None
    _name: str | None = None

    def register_options(self) -> Sequence[Setting]:
        return [
            Setting("libvirt", "define the container as a domain at this libvirt URI (e.g. lxc:///)",
                    metavar="URI", validate=v.libvirt_uri, group=GROUP),
            Setting("libvirt-xml", "define this domain XML instead of the generated one; it is validated "
                    "first and its root <filesystem> must be DEST/rootfs", metavar="FILE",
                    validate=v.existing_file, group=GROUP),
        ]  # fmt: skip

    # -- settings -------------------------------------------------------------------------------

    @property
    def uri(self) -> str | None:
        return self.settings.get_str("libvirt")

    def set_defaults(self) -> None:
        s = self.settings
        if s.get_str("libvirt-xml") and not self.uri:
            die("--libvirt-xml needs --libvirt URI", "add --libvirt lxc:///")
        if not self.uri:
            return
        if s.explicit("bridge") and s.explicit("network") and str(s["network"]) not in ("bridge", "none"):
            die(
                f"both --bridge {s['bridge']} and --network {s['network']} were given",
                "give --bridge BR for a host bridge or --network NAME for a libvirt network, not both",
            )
        if not s.explicit("network") and not s.explicit("bridge"):
            s.set("network", DEFAULT_NETWORK, "--libvirt")

    def connection(self) -> Connection:
        if self._conn is None:
            assert self.uri
            self._conn = connect(self.uri)
        return self._conn

    # -- preflight: everything that can refuse the build, before bootstrap ----------------------

    def preflight_check(self) -> None:
        if not self.uri:
            return
        if self.context.hook_env.get("PROFILE") == "buildd":
            die("--libvirt cannot register a buildd chroot (--variant buildd): it has no init to boot",
                "drop --libvirt, or build a container (--variant minbase)")  # fmt: skip
        arch = str(self.settings["arch"])
        if self.uri.startswith("lxc:///") and foreign(arch):
            die(f"libvirt's LXC driver runs only this host's architecture ({platform.machine()}), so a {arch} "
                f"domain cannot be defined at {self.uri}",
                f"drop --libvirt (lxc-start runs {arch} through qemu-user), or define it on a {arch} host")  # fmt: skip
        conn = self.connection()
        name = self.domain_name()
        existing = conn.lookup(name)
        if existing is not None:
            if existing.active:
                die(
                    f"libvirt domain {name} at {self.uri} is {existing.state}; a running domain is never replaced",
                    f"shut it down first (virsh -c {self.uri} shutdown {name}), or choose another name",
                )
            if not self.settings.get_bool("overwrite"):
                die(
                    f"libvirt domain {name} already exists at {self.uri}",
                    "pass --overwrite to replace it (it is shut off), or choose another name with -d",
                )
            self._replacing = existing
        kind, net = network_mode(self.settings)
        if kind == "network":
            active = conn.network_active(net)
            if active is None:
                die(
                    f"libvirt network '{net}' does not exist at {self.uri}",
                    "define it (virsh net-define), or use --bridge BR or --network none",
                )
            if not active:
                LOG.warning("libvirt network '%s' is not active; start it (virsh net-start %s) before the domain",
                            net, net)  # fmt: skip
        xml_file = self.settings.get_str("libvirt-xml")
        if xml_file:
            self._check(
                read_domain_xml(Path(xml_file), f"--libvirt-xml {xml_file}"), rootfs=None, source=xml_file, static=True
            )
        self._warn_cgroup_v1()

    def _warn_cgroup_v1(self) -> None:
        """systemd 258+ needs cgroup v2 controllers, which libvirt 9 cannot give it on a v1/hybrid host."""
        systemd = self.context.hook_env.get("SYSTEMD_VERSION", "")
        layout = str(cgroup_layout()["cgroup_layout"])
        if systemd.isdigit() and int(systemd) >= 258 and not layout.startswith("unified"):
            LOG.warning(
                "systemd %s in this guest needs cgroup v2 controllers, and this host's cgroup layout is %s: "
                "under libvirt-lxc the domain will exit at once; use lxc-start or a host with the unified layout",
                systemd,
                layout,
            )

    def domain_name(self) -> str:
        """The domain's name: the container's, or the <name> of --libvirt-xml (read once)."""
        from vmbuilder_lxc import domaincheck  # here, not at the top: an LXC-only build never needs it

        if self._name is None:
            self._name = self.context.name
            xml_file = self.settings.get_str("libvirt-xml")
            if xml_file:
                try:
                    self._name = domaincheck.domain_name(read_domain_xml(Path(xml_file), f"--libvirt-xml {xml_file}"))
                except domaincheck.DomainXMLError as exc:
                    die(f"--libvirt-xml {xml_file}: {exc}", "fix the XML")
        return self._name

    def _check(self, xml: str, rootfs: Path | None, source: str, static: bool = False) -> None:
        """Refuse a domain with errors (printing every finding); warnings are logged."""
        from vmbuilder_lxc import domaincheck

        try:
            others = {n: u for n, u in self.connection().domains().items() if n != self.domain_name()}
            findings = domaincheck.check_domain(xml, rootfs, other_domains=others)
        except domaincheck.DomainXMLError as exc:
            die(f"{source}: {exc}", "fix the XML")
        want = str(self.context.dest / "rootfs")
        root = domaincheck.root_source(xml)
        if root is not None and str(root) != want:
            die(f"{source}: the root <filesystem> is {root}, but this build writes {want}",
                f"set <source dir='{want}'/> in the root <filesystem>")  # fmt: skip
        if static:  # before bootstrap the rootfs does not exist yet: its checks come in finalize
            findings = [f for f in findings if f.rule not in domaincheck.ROOTFS_RULES]
        for f in findings:
            if f.severity != "error":
                LOG.warning("%s: %s", source, f.line())
        errors = domaincheck.errors(findings)
        for f in errors[1:]:
            LOG.error("%s: %s", source, f.line())
        if errors:
            die(f"{source}: {errors[0].line()}", None)

    # -- the domain -------------------------------------------------------------------------------

    def render(self) -> str:
        xml_file = self.settings.get_str("libvirt-xml")
        if xml_file:
            return read_domain_xml(Path(xml_file), f"--libvirt-xml {xml_file}")
        s = self.settings
        kind, net = network_mode(s)
        return self.context.render(
            "libvirt/domain.xml.j2",
            {
                "version": __version__,
                "name": self.domain_name(),
                "uuid": self._replacing.uuid if self._replacing else str(uuidlib.uuid4()),
                "mem": self.memory_mb(),
                "cpus": s.get_int("cpus"),
                "arch": kernel_arch(str(s["arch"])),
                "init": self.context.hook_env.get("INIT_PATH", "/sbin/init"),
                "rootfs": str(self.context.dest / "rootfs"),
                "network": kind,
                "network_name": net,
                "mac": s["mac"],
                "distro": self.context.distro_name,
                "suite": s["suite"],
                **self._idmap_vars(),
            },
        )

    def _idmap_vars(self) -> dict[str, int]:
        """--idmap as the lxc plugin resolved it (summary["idmap"]): <idmap> maps the same ranges; count 0: none."""
        ids = idmap.of_summary(self.context.summary)
        if ids is None:
            return {"idmap_uid": 0, "idmap_gid": 0, "idmap_count": 0}
        return {"idmap_uid": ids.uid_start, "idmap_gid": ids.gid_start, "idmap_count": ids.count}

    def memory_mb(self) -> int:
        """The domain's memory limit: --mem, or DEFAULT_MEM_MB (a domain must have one)."""
        return self.settings.get_int("mem") or DEFAULT_MEM_MB

    def finalize(self) -> None:
        if not self.uri:
            return
        assert self.context.workdir is not None
        xml = self.render()
        self._check(xml, self.context.rootfs, source="the domain XML")
        (self.context.workdir / XML_NAME).write_text(xml, encoding="utf-8")
        self.context.summary["libvirt"] = {
            "uri": self.uri,
            "domain": self.domain_name(),
            "xml": str(self.context.dest / XML_NAME),
            "autostart": self.settings.get_bool("autostart"),
            "backend": self.connection().backend,
            "replaced": self._replacing.uuid if self._replacing else None,
            "memory_mb": None if self.settings.get_str("libvirt-xml") else self.memory_mb(),
        }

    def deploy(self) -> None:
        if not self.uri:
            return
        conn = self.connection()
        name = self.domain_name()
        xml_path = self.context.dest / XML_NAME
        current = conn.lookup(name)
        if current is not None and current.active:  # started while we were building
            die(f"libvirt domain {name} was started during the build; it was not replaced",
                f"shut it down, then: virsh -c {self.uri} define {xml_path}")  # fmt: skip
        try:
            conn.define(xml_path.read_text(encoding="utf-8"))
            conn.set_autostart(name, self.settings.get_bool("autostart"))
        except UserError as exc:
            raise UserError(f"{exc.args[0]} (the rootfs is in place; the domain is in {xml_path})",
                            f"fix it, then: virsh -c {self.uri} define {xml_path}") from None  # fmt: skip
        LOG.info("defined libvirt domain %s at %s%s", name, self.uri,
                 " (autostart)" if self.settings.get_bool("autostart") else "")  # fmt: skip

    def next_steps(self) -> list[str]:
        if not self.uri:
            return []
        virsh = f"virsh -c {self.uri}"
        name = self.domain_name()
        return [
            f"  libvirt domain {name}:",
            f"    memory limit:  {self._memory_text()}",
            f"    start it:      {virsh} start {name}",
            f"    login prompt:  {virsh} console {name}",
            f"    get a shell:   {virsh} lxc-enter-namespace {name} --noseclabel /bin/bash",
            f"    shut it down:  {virsh} shutdown {name}",
        ]

    def _memory_text(self) -> str:
        if self.settings.get_str("libvirt-xml"):
            return "as --libvirt-xml sets it"
        if self.settings["mem"]:
            return f"{self.memory_mb()} MB (--mem)"
        return f"{default_mem_text()}, the default; --mem changes it"

    # -- `vmbuilder lxc validate FILE` ------------------------------------------------------------

    @staticmethod
    def validate_parser() -> CommandParser:
        """The parser of `vmbuilder lxc validate` (built apart so that the man page can list it)."""
        parser = CommandParser("vmbuilder lxc validate", VALIDATE_DESCRIPTION, operand=("FILE", "the domain XML"))
        parser.add_argument(
            "--rootfs", metavar="DIR", help="the guest's root (default: the root <filesystem>'s source)"
        )
        parser.add_argument("--libvirt", metavar="URI", help="also check the name and UUID against this connection")
        parser.add_output_options("print the findings as JSON")
        return parser

    @staticmethod
    def validate_command(argv: list[str]) -> int:
        """Check a domain XML file the way a build checks its own; exit 1 on errors."""
        from vmbuilder_lxc import domaincheck

        args = Libvirt.validate_parser().parse_command(argv)
        xml = read_domain_xml(Path(args.file), args.file)
        if args.rootfs and not Path(args.rootfs).is_dir():
            raise UserError(f"--rootfs {args.rootfs} is not a directory", "give the guest's root directory")
        others = None
        try:
            if args.libvirt:
                name = domaincheck.domain_name(xml)
                others = {n: u for n, u in connect(args.libvirt).domains().items() if n != name}
            findings = domaincheck.check_domain(xml, Path(args.rootfs) if args.rootfs else None, other_domains=others)
        except domaincheck.DomainXMLError as exc:
            raise UserError(f"{args.file}: {exc}", "fix the XML") from None
        except (OSError, ValueError) as exc:  # what the file or --rootfs holds, never an internal error
            raise UserError(f"cannot check {args.file}: {exc}", "fix the XML or --rootfs") from None
        errors = domaincheck.errors(findings)
        if args.json:
            print(json.dumps({"file": args.file, "valid": not errors,
                              "findings": [f.__dict__ for f in findings]}, indent=2))  # fmt: skip
        else:
            report = domaincheck.format_report(findings)
            if report:
                print(report)
            print(f"{args.file}: {'invalid' if errors else 'valid'} ({len(errors)} errors, "
                  f"{len(findings) - len(errors)} warnings)")  # fmt: skip
        return 1 if errors else 0


def read_domain_xml(path: Path, shown: str) -> str:
    """A domain XML file's text: a regular file of sane size, UTF-8, no NUL; else one-line UserError.

    The file is checked before it is opened, so a FIFO or device is never read from.
    """
    hint = "give the path of a libvirt domain XML file"
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{shown} is not a regular file", hint)
        with path.open("rb") as fh:
            data = fh.read(XML_MAX + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise UserError(f"cannot read {shown!r}: {getattr(exc, 'strerror', None) or exc}", hint) from None
    if len(data) > XML_MAX:
        raise UserError(f"{shown} is larger than {XML_MAX // 1024} KiB, far more than a domain XML", hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{shown} is not UTF-8 text (a binary file?)", hint) from None
    if "\0" in text:
        raise UserError(f"{shown} is not text (it holds NUL bytes)", hint)
    return text
