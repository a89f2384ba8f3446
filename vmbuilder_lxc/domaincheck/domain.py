"""Rules on the domain itself: its type, name and UUID, and clashes with the connection's other domains."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .helpers import tag_of, text_of
from .model import ERROR, WARNING, Domain, Issue, Rule, RuleTable

UUID_TEXT = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_rule = RuleTable()


def _raw_name(d: Domain) -> str:
    """<name> as libvirt reads it (not stripped: a newline around the name counts too)."""
    el = d.root.find("name")
    return (el.text or "") if el is not None else ""


def _uuid_key(text: str) -> str:
    return text.strip().replace("-", "").lower()


@_rule(
    "domain-type",
    ERROR,
    "define",
    "<domain type=...> is 'lxc'",
    "the lxc:/// connection has capabilities only for type lxc: 'could not find capabilities for ... domaintype=...'",
)
def _domain_type(d: Domain) -> Iterator[Issue]:
    kind = d.root.get("type")
    if kind != "lxc":
        yield Issue(
            tag_of(d.root, "type") if kind else "<domain>",
            "the LXC driver defines only domains of type 'lxc'",
            "use <domain type='lxc'>",
        )


@_rule(
    "name",
    ERROR,
    "define",
    "<name> is present, not empty and has no newline",
    "the schema requires a name; lxcDomainDefineXMLFlags rejects a newline in it",
)
def _name(d: Domain) -> Iterator[Issue]:
    name = _raw_name(d)
    if not name.strip():
        yield Issue("<name>", "a domain needs a name", "add <name>HOSTNAME</name>")
    elif "\n" in name:
        yield Issue("<name>", "libvirt rejects a domain name containing a newline", "put the name on one line")


@_rule(
    "name-hostname",
    WARNING,
    "container start",
    "<name> has only letters, digits and '-', not leading",
    "the container's hostname is the name with other characters dropped",
)
def _name_hostname(d: Domain) -> Iterator[Issue]:
    name = _raw_name(d)
    if name.strip() and "\n" not in name and (re.search(r"[^A-Za-z0-9-]", name) or name.startswith("-")):
        hostname = re.sub(r"[^A-Za-z0-9-]", "", name).lstrip("-")
        yield Issue(
            "<name>",
            f"libvirt makes the container's hostname from the name '{name}' by dropping other "
            f"characters than letters, digits and '-' and a leading '-', giving '{hostname}'",
            "use a name of letters, digits and '-' that does not start with '-'",
        )


@_rule(
    "uuid",
    ERROR,
    "define --validate",
    "<uuid>, if given, is 32 hex digits (optionally as 8-4-4-4-12)",
    "the schema and libvirt's UUID parser reject anything else",
)
def _uuid(d: Domain) -> Iterator[Issue]:
    el = d.root.find("uuid")
    if el is not None and not UUID_TEXT.fullmatch(text_of(el)):
        yield Issue(
            "<uuid>",
            f"'{text_of(el)}' is not a UUID",
            "give a UUID like 6a1f2c4e-2d7b-4f0e-9a55-3c0b8f2b9d11 or leave <uuid> out",
        )


@_rule(
    "duplicate-name",
    ERROR,
    "define",
    "no other domain on the connection has this name (another UUID)",
    "'domain 'X' already exists with uuid ...'",
)
def _duplicate_name(d: Domain) -> Iterator[Issue]:
    name = text_of(d.root.find("name"))
    if d.other_domains is None or name not in d.other_domains:
        return
    uuid = text_of(d.root.find("uuid"))
    if not uuid or _uuid_key(uuid) != _uuid_key(d.other_domains[name]):
        yield Issue(
            "<name>",
            f"a domain named {name} already exists (uuid {d.other_domains[name]})",
            "pick another --hostname/name, or use --overwrite to replace it",
        )


@_rule(
    "duplicate-uuid",
    ERROR,
    "define",
    "no other domain on the connection has this UUID",
    "'domain 'Y' is already defined with uuid ...'",
)
def _duplicate_uuid(d: Domain) -> Iterator[Issue]:
    uuid = text_of(d.root.find("uuid"))
    if d.other_domains is None or not uuid:
        return
    name = text_of(d.root.find("name"))
    for other, other_uuid in d.other_domains.items():
        if other != name and _uuid_key(other_uuid) == _uuid_key(uuid):
            yield Issue(
                "<uuid>",
                f"the domain {other} already uses uuid {uuid}",
                "leave <uuid> out so that libvirt generates one, or give a new one",
            )


RULES: tuple[Rule, ...] = tuple(_rule.rules)
