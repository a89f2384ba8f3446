"""The rule model: what a rule reports (Issue, Finding), what it looks at (Domain), and RuleTable,
which keeps the rules of one area in the order they are written (the order of findings and of the
generated doc)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

LXC_NS = "http://libvirt.org/schemas/domain/lxc/1.0"
ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem in a domain definition, phrased so that the user can act on it."""

    rule: str
    severity: str
    element: str
    why: str
    fix: str

    def line(self) -> str:
        """The finding on one line, for logs and the CLI (newlines in user data are escaped)."""
        text = f"{self.severity}: {self.element}: {self.why}; fix: {self.fix}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class DomainXMLError(ValueError):
    """The text is not well-formed XML or not a <domain>; the message is one line."""


class Issue(NamedTuple):
    """What a rule function reports; the rule adds its id and severity to make a Finding."""

    element: str
    why: str
    fix: str


@dataclass
class Domain:
    """A parsed definition plus what the checks may know about the host."""

    root: ET.Element
    rootfs: Path | None  # where the guest's / is on this host, when known
    local: bool  # the definition is for this host, so its host paths can be checked
    other_domains: Mapping[str, str] | None
    host_arch: str
    rootfs_given: bool = False  # the caller named the rootfs: the root mount's source may not exist yet

    @property
    def os(self) -> ET.Element | None:
        return self.root.find("os")

    def devices(self, tag: str) -> list[ET.Element]:
        return self.root.findall(f"devices/{tag}")

    def filesystems(self) -> list[ET.Element]:
        return self.devices("filesystem")

    def namespace_children(self) -> list[ET.Element]:
        return [child for ns in self.root.findall(f"{{{LXC_NS}}}namespace") for child in ns]


CheckFn = Callable[[Domain], Iterable[Issue]]


@dataclass(frozen=True)
class Rule:
    """A rule descriptor: what it checks and what libvirt does about it, for the generated doc."""

    id: str
    severity: str
    stage: str  # when libvirt notices: define, define --validate, start, container start, never, tool policy
    checks: str
    libvirt: str  # libvirt's message or behaviour
    check: CheckFn = field(repr=False, compare=False)
    needs_rootfs: bool = False  # looks into the guest's rootfs (skipped while it is unknown)


class RuleTable:
    """The rules of one area; each area module decorates its check functions with its own table."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def __call__(
        self, rule_id: str, severity: str, stage: str, checks: str, libvirt: str, *, needs_rootfs: bool = False
    ) -> Callable[[CheckFn], CheckFn]:
        def register(fn: CheckFn) -> CheckFn:
            self.rules.append(Rule(rule_id, severity, stage, checks, libvirt, fn, needs_rootfs))
            return fn

        return register
