"""Pre-flight checks for libvirt-lxc domain XML, run before every `virsh define`.

The LXC driver of libvirt 9.0 has no validate callback of its own: most mistakes are accepted at
define time and either silently ignored or reported only at `virsh start`, some only in the
container's log. These checks catch them first, each with the element concerned, why LXC rejects
or ignores it, and the fix. The rules are data (RULES, one small function each); the reference in
docs/libvirt-validation.md is generated from them (`python3 -m vmbuilder_lxc.docgen libvirt-validation`).

Severities: "error" when libvirt rejects the definition (at define, with `--validate`, at start or
inside the container) or when it would share the host's root or network; "warning" when the LXC
driver silently ignores something or the XML is not portable.

The package: model.py (Rule, Domain, Finding), helpers.py (shared by the rules), one module of
rules per area (domain, os_init, resources, devices, network), and here the entry points. RULES is
the areas' rules in that order, which is the order of the findings and of the doc.
"""

from __future__ import annotations

import os
import platform
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..log import UserError
from .devices import IGNORED_DEVICES
from .devices import RULES as DEVICE_RULES
from .domain import RULES as DOMAIN_RULES
from .helpers import resolve_in_root, root_mount_source, text_of
from .model import ERROR, LXC_NS, WARNING, Domain, DomainXMLError, Finding, Issue, Rule
from .network import RULES as NETWORK_RULES
from .os_init import BOOT_ELEMENTS
from .os_init import RULES as OS_INIT_RULES
from .resources import RULES as RESOURCE_RULES

# `uname -m` spellings that libvirt files under another name.
HOST_ARCH_ALIASES: dict[str, str] = {"i386": "i686", "i486": "i686", "i586": "i686", "arm64": "aarch64"}
# Domain XML is untrusted input: bounded before it is parsed (parse_domain_xml, _parse).
MAX_XML_BYTES = 1 << 20  # libvirt's own domain definitions are a few KiB
MAX_XML_DEPTH = 64  # element nesting; a domain needs about 6
XML_HINT = "give a libvirt domain XML file (UTF-8 text, at most 1 MiB, without a DOCTYPE)"

RULES: tuple[Rule, ...] = DOMAIN_RULES + OS_INIT_RULES + RESOURCE_RULES + DEVICE_RULES + NETWORK_RULES
SEVERITY = {rule.id: rule.severity for rule in RULES}
# The rules that look into the guest's rootfs: a caller checking before the rootfs is built drops them.
ROOTFS_RULES = frozenset(rule.id for rule in RULES if rule.needs_rootfs)

__all__ = [
    "BOOT_ELEMENTS",
    "Domain",
    "DomainXMLError",
    "ERROR",
    "Finding",
    "HOST_ARCH_ALIASES",
    "IGNORED_DEVICES",
    "Issue",
    "LXC_NS",
    "MAX_XML_BYTES",
    "MAX_XML_DEPTH",
    "ROOTFS_RULES",
    "RULES",
    "Rule",
    "SEVERITY",
    "UserError",
    "WARNING",
    "XML_HINT",
    "check_domain",
    "domain_name",
    "errors",
    "format_report",
    "parse_domain_xml",
    "resolve_in_root",
    "root_source",
    "rules_markdown",
]


# -- entry points ----------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised from inside expat's callbacks to stop at a DTD or at too deep a nesting."""


def _screen(xml_text: str) -> None:
    """Refuse, in bounded time and memory, what must not reach ElementTree: too large, DTDs, deep nesting.

    A DOCTYPE is refused whole (it is where entities are declared: billion laughs, external entities
    such as file:///etc/passwd, which are therefore never read); libvirt never writes one.
    """
    size = len(xml_text.encode("utf-8", "surrogateescape"))
    if size > MAX_XML_BYTES:
        raise DomainXMLError(f"the XML is {size} bytes, more than the limit of {MAX_XML_BYTES}")
    if "\0" in xml_text:
        raise DomainXMLError("the file is binary (it has NUL bytes), not XML text")
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0

    def doctype(*_: object) -> None:
        raise _Refused("it has a DOCTYPE declaration (DTDs and entities are refused)")

    def entity(*_: object) -> None:
        raise _Refused("it declares an entity (DTDs and entities are refused)")

    def start(*_: object) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise _Refused(f"its elements are nested more than {MAX_XML_DEPTH} deep")

    def end(*_: object) -> None:
        nonlocal depth
        depth -= 1

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = entity  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(xml_text, True)
    except UnicodeError:
        raise DomainXMLError("the text is not valid UTF-8") from None
    except _Refused as exc:
        raise DomainXMLError(str(exc)) from None
    except xml.parsers.expat.ExpatError as exc:
        raise DomainXMLError(" ".join(f"not well-formed XML: {exc}".split())) from None


def _parse(xml_text: str) -> ET.Element:
    _screen(xml_text)
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise DomainXMLError(" ".join(f"not well-formed XML: {exc}".split())) from None
    if root.tag != "domain":
        raise DomainXMLError(f"not a libvirt domain: the root element is <{root.tag}>, not <domain>")
    return root


def parse_domain_xml(data: bytes, source: str) -> str:
    """The text of a domain XML file's bytes, after the checks that make parsing it safe.

    For `--libvirt-xml FILE` and `vmbuilder lxc validate FILE`: a file over MAX_XML_BYTES (read at
    most one byte more), binary or non-UTF-8 data, a DOCTYPE or entity declaration, nesting deeper
    than MAX_XML_DEPTH, malformed XML or a root other than <domain> raise UserError with one line
    naming `source`. The text returned is what check_domain() and domain_name() take.
    """
    if len(data) > MAX_XML_BYTES:
        raise UserError(f"{source} is larger than {MAX_XML_BYTES} bytes; a domain XML is a few KiB", XML_HINT)
    if b"\0" in data:
        raise UserError(f"{source} is a binary file (it has NUL bytes), not domain XML", XML_HINT)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source} is not UTF-8 text (byte {exc.start} cannot be decoded)", XML_HINT) from None
    try:
        _parse(text)
    except DomainXMLError as exc:
        raise UserError(f"{source}: {exc}", "fix the XML" if "XML" in str(exc) else XML_HINT) from None
    return text


def domain_name(xml_text: str) -> str:
    """The domain's <name>; DomainXMLError if the XML is broken or has no name."""
    name = text_of(_parse(xml_text).find("name"))
    if not name:
        raise DomainXMLError("the domain has no <name>")
    return name


def root_source(xml_text: str) -> Path | None:
    """The host directory of the root filesystem (<filesystem type='mount'> with <target dir='/'/>)."""
    return root_mount_source(_parse(xml_text))


def check_domain(
    xml_text: str,
    rootfs: Path | None = None,
    *,
    other_domains: Mapping[str, str] | None = None,
    host_arch: str | None = None,
) -> list[Finding]:
    """Every finding of every rule, in rule order; raises DomainXMLError for text that is no <domain>.

    rootfs is the host directory of the guest's /; by default the root mount's source, if it exists
    here (otherwise the checks that look into the rootfs, or at host paths, are skipped).
    other_domains maps the names of the connection's other domains to their UUIDs; None skips the
    duplicate checks. host_arch defaults to this machine's.
    """
    root = _parse(xml_text)
    rootfs_given = rootfs is not None
    source = root_mount_source(root)
    found = source is not None and source.is_absolute() and source.is_dir()
    if rootfs is None and found and source is not None and os.path.normpath(source) not in ("/", "//"):
        rootfs = source
    arch = host_arch or platform.machine()
    domain = Domain(
        root, rootfs, rootfs is not None or found, other_domains, HOST_ARCH_ALIASES.get(arch, arch), rootfs_given
    )
    return [
        Finding(rule.id, rule.severity, issue.element, issue.why, issue.fix)
        for rule in RULES
        for issue in rule.check(domain)
    ]


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that stop libvirt (or would share the host's root or network)."""
    return [f for f in findings if f.severity == ERROR]


def format_report(findings: Iterable[Finding]) -> str:
    """One line per finding, errors first, for the CLI."""
    ordered = sorted(findings, key=lambda f: f.severity != ERROR)
    return "\n".join(f.line() for f in ordered)


def rules_markdown() -> str:
    """docs/libvirt-validation.md, generated from RULES."""

    def cell(text: str) -> str:
        """XML in backticks, so that Markdown shows the elements instead of taking them for HTML."""
        return re.sub(r"(?:<[^<>]*>)+", lambda m: f"`{m.group(0)}`", text).replace("|", "\\|")

    lines = [
        "# Checks on libvirt-lxc domain XML",
        "",
        "Generated from the rule table by `python3 -m vmbuilder_lxc.docgen libvirt-validation`; do not edit.",
        "",
        "These checks run before every `virsh define` and with `vmbuilder lxc validate FILE`. libvirt 9.0's",
        "LXC driver accepts most definitions at define time and then ignores parts of them, or fails only at",
        "`virsh start` or inside the container; the checks report such problems first.",
        "",
        "- **error**: libvirt rejects the definition (at define, with `define --validate`, at start or inside",
        "  the container), or the container would share the host's root or network. A build refuses to define it.",
        "- **warning**: the LXC driver silently ignores the element, or the definition is not portable.",
        "",
        "Stage says when libvirt itself would notice: `define`, `define --validate` (the RNG schema),",
        "`start` (host side of `virsh start`), `container start` (in the container's log), `never`",
        "(silently ignored) or `tool policy` (our rule, not libvirt's). Checks that look into the rootfs",
        "or at host paths run only when the rootfs is on this host. `<on_poweroff>`, `<on_reboot>` and",
        "`<on_crash>` are ignored by the driver as well (a guest reboot always restarts the container), but",
        "they are harmless and not reported.",
        "",
        "| rule | severity | stage | checks that | libvirt |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{r.id}` | {r.severity} | {r.stage} | {cell(r.checks)} | {cell(r.libvirt)} |" for r in RULES]
    return "\n".join(lines) + "\n"
