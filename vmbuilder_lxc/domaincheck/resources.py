"""Rules on resources (memory, vCPUs, cgroup partition, id maps, timers) and on <features> and <cpu>."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from .helpers import tag_of, text_of
from .model import ERROR, WARNING, Domain, Issue, Rule, RuleTable

USED_FEATURES = ("privnet", "capabilities")
MAX_ID_MAPS = 340
MIN_MEMORY = 64 * 1024**2
WHOLE_NUMBER = re.compile(r"[0-9]+")
# libvirt's memory units (case-insensitive): bytes, powers of 1024 (k, KiB) and of 1000 (KB).
MEMORY_UNITS: dict[str, int] = {"b": 1, "byte": 1, "bytes": 1}
for _power, _prefix in enumerate("kmgtpe", start=1):
    MEMORY_UNITS |= {_prefix: 1024**_power, f"{_prefix}ib": 1024**_power, f"{_prefix}b": 1000**_power}
MEMORY_ELEMENTS = (
    "memory",
    "currentMemory",
    "memtune/hard_limit",
    "memtune/soft_limit",
    "memtune/swap_hard_limit",
    "memtune/min_guarantee",
)

_rule = RuleTable()


def _memory_bytes(el: ET.Element) -> int:
    """The size in bytes; ValueError saying what is wrong (libvirt's default unit is KiB)."""
    text = text_of(el)
    if not WHOLE_NUMBER.fullmatch(text):
        raise ValueError(f"'{text}' is not a whole number")
    unit = el.get("unit", "KiB")
    scale = MEMORY_UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(f"unit '{unit}' is not one of b, KiB, MiB, GiB, TiB, KB, MB, GB, TB")
    return int(text) * scale


def _size(size: int) -> str:
    """A memory size for messages: MiB, or KiB/bytes for tiny ones."""
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def _memory_label(path: str) -> str:
    return "".join(f"<{p}>" for p in path.split("/"))


@_rule(
    "memory",
    ERROR,
    "define",
    "<memory> is present and non-zero; memory sizes are whole numbers with a libvirt unit",
    "'Memory size must be specified via <memory> ...'; other sizes fail to parse",
)
def _memory(d: Domain) -> Iterator[Issue]:
    if d.root.find("memory") is None:
        yield Issue("<memory>", "the container's memory limit is required", "add <memory unit='MiB'>512</memory>")
    for path in MEMORY_ELEMENTS:
        for el in d.root.findall(path):
            try:
                size = _memory_bytes(el)
            except ValueError as exc:
                yield Issue(_memory_label(path), str(exc), "give a whole number and a unit such as MiB or GiB")
                continue
            if path == "memory" and size == 0:
                yield Issue("<memory>", "libvirt rejects a memory size of 0", "give the limit, e.g. 512 MiB")


def _two_sizes(d: Domain, first: str, second: str) -> tuple[int, int] | None:
    """Both sizes in bytes, or None when either is absent or unparsable (the "memory" rule says so)."""
    a, b = d.root.find(first), d.root.find(second)
    if a is None or b is None:
        return None
    try:
        return _memory_bytes(a), _memory_bytes(b)
    except ValueError:
        return None


@_rule(
    "current-memory",
    ERROR,
    "define",
    "<currentMemory> is not larger than <memory>",
    "libvirt silently lowers it to <memory>, so the definition does not say what runs",
)
def _current_memory(d: Domain) -> Iterator[Issue]:
    sizes = _two_sizes(d, "memory", "currentMemory")
    if sizes is None:
        return
    limit, cur = sizes
    if cur > limit:
        yield Issue(
            "<currentMemory>",
            f"{_size(cur)} is more than <memory> ({_size(limit)}); libvirt lowers it",
            "make <currentMemory> equal to <memory> or leave it out",
        )


@_rule(
    "memory-small",
    WARNING,
    "tool policy",
    "<memory> is at least 64 MiB",
    "accepted, but systemd guests do not boot reliably below it",
)
def _memory_small(d: Domain) -> Iterator[Issue]:
    el = d.root.find("memory")
    try:
        size = _memory_bytes(el) if el is not None else 0
    except ValueError:
        return
    if 0 < size < MIN_MEMORY:
        yield Issue(
            "<memory>",
            f"{_size(size)} is below 64 MiB, too little for a systemd guest to boot reliably",
            "give at least 64 MiB (256 MiB or more for a useful guest)",
        )


@_rule(
    "memtune-hard-limit",
    WARNING,
    "start",
    "<memtune><hard_limit> is not below <memory>",
    "both are applied; the lower hard limit wins while the guest sees <memory> as MemTotal",
)
def _memtune_hard_limit(d: Domain) -> Iterator[Issue]:
    sizes = _two_sizes(d, "memory", "memtune/hard_limit")
    if sizes is None:
        return
    limit, hard_limit = sizes
    if hard_limit < limit:
        yield Issue(
            "<memtune><hard_limit>",
            f"{_size(hard_limit)} is below <memory> ({_size(limit)}): the guest reports more memory than it may use",
            "set <memory> to the hard limit, or raise the limit",
        )


@_rule("vcpu", ERROR, "define", "<vcpu>, if given, is a positive whole number", "libvirt rejects other counts")
def _vcpu(d: Domain) -> Iterator[Issue]:
    el = d.root.find("vcpu")
    if el is not None and not (WHOLE_NUMBER.fullmatch(text_of(el)) and int(text_of(el)) > 0):
        yield Issue("<vcpu>", f"'{text_of(el)}' is not a positive whole number", "give a count such as 2")


@_rule(
    "vcpu-quota",
    WARNING,
    "never",
    "<vcpu> above 1 comes with a <cputune><quota>",
    "the LXC driver only reports the vCPU count; it does not limit CPU use",
)
def _vcpu_quota(d: Domain) -> Iterator[Issue]:
    count = text_of(d.root.find("vcpu"))
    if WHOLE_NUMBER.fullmatch(count) and int(count) > 1 and d.root.find("cputune/quota") is None:
        yield Issue(
            "<vcpu>",
            "the LXC driver does not limit CPU use by the vCPU count; the container may use every host CPU",
            f"add <cputune><period>100000</period><quota>{int(count) * 100000}</quota></cputune>",
        )


@_rule(
    "resource-partition",
    ERROR,
    "start",
    "<resource><partition> starts with '/'",
    "'Resource partition ... must start with '/''",
)
def _resource_partition(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("resource/partition"):
        if not text_of(el).startswith("/"):
            yield Issue(
                "<resource><partition>",
                f"'{text_of(el)}' is not an absolute cgroup path",
                "use /machine or leave <resource> out",
            )


@_rule(
    "idmap",
    ERROR,
    "define / start",
    "<idmap> maps both uid and gid, root first, at most 340 ranges, sane numbers",
    "'uid and gid should be mapped both' / 'You must map the root user of container' / 'Too many id mappings defined.'",
)
def _idmap(d: Domain) -> Iterator[Issue]:
    idmap = d.root.find("idmap")
    if idmap is None:
        return
    maps = {kind: idmap.findall(kind) for kind in ("uid", "gid")}
    if bool(maps["uid"]) != bool(maps["gid"]):
        missing = "gid" if maps["uid"] else "uid"
        yield Issue(
            "<idmap>",
            "uid and gid should be mapped both; with one alone libvirt uses no user namespace",
            f"add <{missing} start='0' target='100000' count='65536'/>",
        )
    for kind, entries in maps.items():
        ranges: list[tuple[int, int, int]] = []
        for el in entries:
            values = [el.get(a, "") for a in ("start", "target", "count")]
            if not all(WHOLE_NUMBER.fullmatch(v) for v in values) or int(values[2]) == 0:
                yield Issue(
                    f"<idmap>{tag_of(el, 'start', 'target', 'count')}",
                    "start, target and count must be whole numbers and count above 0",
                    f"e.g. <{kind} start='0' target='100000' count='65536'/>",
                )
                continue
            ranges.append((int(values[0]), int(values[1]), int(values[2])))
        if ranges and min(ranges)[0] != 0:
            yield Issue(
                f"<idmap><{kind}>", "the container's root (id 0) must be mapped", f"add a <{kind} start='0' ...> range"
            )
        if len(entries) > MAX_ID_MAPS:
            yield Issue(
                f"<idmap><{kind}>",
                f"{len(entries)} ranges; the kernel takes at most {MAX_ID_MAPS}",
                "merge adjacent ranges",
            )


@_rule(
    "clock-timer",
    ERROR,
    "start",
    "<clock><timer> is rtc or hpet, or has present='no'",
    "'unsupported timer type (name) ...'",
)
def _clock_timer(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("clock/timer"):
        if el.get("name") not in ("rtc", "hpet") and el.get("present") != "no":
            yield Issue(
                f"<clock>{tag_of(el, 'name')}",
                "the LXC driver can only expose the host's rtc or hpet",
                "remove the timer (or mark it present='no')",
            )


# -- features --------------------------------------------------------------------------------------


@_rule(
    "capabilities-policy",
    ERROR,
    "define",
    "<features><capabilities policy=...> is default, allow or deny; states are on/off",
    "the parser rejects other values",
)
def _capabilities_policy(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("features/capabilities"):
        if el.get("policy", "default") not in ("default", "allow", "deny"):
            yield Issue(
                f"<features>{tag_of(el, 'policy')}", "the policy is one of default, allow, deny", "use policy='default'"
            )
        for cap in el:
            if cap.get("state") not in ("on", "off"):
                yield Issue(
                    f"<features><capabilities><{cap.tag}>",
                    "each capability needs state='on' or 'off'",
                    f"use <{cap.tag} state='off'/>",
                )


@_rule(
    "ignored-feature",
    WARNING,
    "never",
    "<features> has only privnet and capabilities",
    "other features (acpi, apic, pae, hyperv, ...) are parsed and ignored",
)
def _ignored_feature(d: Domain) -> Iterator[Issue]:
    for el in d.root.findall("features/*"):
        if el.tag not in USED_FEATURES:
            yield Issue(f"<features><{el.tag}>", "the LXC driver ignores it", "remove it")


@_rule("ignored-cpu", WARNING, "never", "no <cpu> model or mode", "parsed and ignored; the host's CPU runs the guest")
def _ignored_cpu(d: Domain) -> Iterator[Issue]:
    if d.root.find("cpu") is not None:
        yield Issue("<cpu>", "the LXC driver ignores it; a container runs on the host's CPU", "remove it")


RULES: tuple[Rule, ...] = tuple(_rule.rules)
