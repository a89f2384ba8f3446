"""Rules on the network: a private network namespace, interfaces, MACs and guest names, and
<lxc:namespace> sharing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator

from .helpers import tag_of
from .model import ERROR, LXC_NS, Domain, Issue, Rule, RuleTable

INTERFACE_TYPES = ("network", "bridge", "ethernet", "direct")
NAMESPACE_CHILDREN = ("sharenet", "shareipc", "shareuts")
NAMESPACE_SOURCES = ("name", "pid", "netns")
MAC_TEXT = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")

_rule = RuleTable()


def _has_net_hostdev(d: Domain) -> bool:
    return any(h.get("mode") == "capabilities" and h.get("type") == "net" for h in d.devices("hostdev"))


def _sharenet(d: Domain) -> ET.Element | None:
    return next((c for c in d.namespace_children() if c.tag == f"{{{LXC_NS}}}sharenet"), None)


@_rule(
    "private-network",
    ERROR,
    "start",
    "an <interface>, <features><privnet/>, a net hostdev or <lxc:sharenet> is present",
    "without one the container silently shares the host's network namespace",
)
def _private_network(d: Domain) -> Iterator[Issue]:
    if d.devices("interface") or d.root.find("features/privnet") is not None:
        return
    if _has_net_hostdev(d) or _sharenet(d) is not None:
        return
    yield Issue(
        "<features><privnet/> or <devices><interface>",
        "without either the container shares the host's network namespace (and can reconfigure the host's network)",
        "add <features><privnet/></features> or an <interface>",
    )


def _interface_label(el: ET.Element, child: str = "") -> str:
    return f"<devices>{tag_of(el, 'type')}{child}"


@_rule(
    "interface-type",
    ERROR,
    "start",
    "<interface> is of type network, bridge, ethernet or direct",
    "'Unsupported network type ...'",
)
def _interface_type(d: Domain) -> Iterator[Issue]:
    for el in d.devices("interface"):
        if el.get("type") not in INTERFACE_TYPES:
            yield Issue(
                _interface_label(el),
                "the LXC driver sets up only veth (network, bridge, ethernet) and macvlan (direct) interfaces",
                "use type='bridge' or type='network'",
            )


@_rule(
    "interface-script",
    ERROR,
    "start",
    "no <script> on an <interface>",
    "'scripts are not supported on LXC network interfaces'",
)
def _interface_script(d: Domain) -> Iterator[Issue]:
    for el in d.devices("interface"):
        if el.find("script") is not None:
            yield Issue(_interface_label(el, "<script>"), "the LXC driver runs no interface scripts", "remove <script>")


@_rule(
    "interface-direct",
    ERROR,
    "start",
    "a direct (macvlan) <interface> has no <bandwidth> and no <virtualport>",
    "'Unable to set network bandwidth on direct interfaces' / 'Unable to set port profile on direct interfaces'",
)
def _interface_direct(d: Domain) -> Iterator[Issue]:
    for el in d.devices("interface"):
        if el.get("type") != "direct":
            continue
        for child in ("bandwidth", "virtualport"):
            if el.find(child) is not None:
                yield Issue(
                    _interface_label(el, f"<{child}>"),
                    f"the LXC driver cannot apply <{child}> to a macvlan interface",
                    f"remove <{child}> or use a bridge",
                )


@_rule(
    "interface-source",
    ERROR,
    "define / start",
    "network has <source network>, bridge <source bridge>, direct <source dev>; never both network and bridge",
    "'No bridge name specified' at start, or a parse error",
)
def _interface_source(d: Domain) -> Iterator[Issue]:
    needs = {"network": "network", "bridge": "bridge", "direct": "dev"}
    for el in d.devices("interface"):
        source = el.find("source")
        attrs = source.attrib if source is not None else {}
        if "network" in attrs and "bridge" in attrs:
            yield Issue(
                _interface_label(el, "<source>"),
                "the source names both a bridge and a network",
                "keep the attribute that matches the interface type",
            )
        attr = needs.get(el.get("type", ""))
        if attr and not attrs.get(attr):
            yield Issue(
                _interface_label(el, "<source>"),
                f"a {el.get('type')} interface needs <source {attr}=...>",
                f"add <source {attr}='...'/>",
            )


@_rule(
    "interface-mac",
    ERROR,
    "define",
    "every <mac address> is a unicast MAC, used once",
    "the parser rejects malformed and multicast MACs; two equal MACs clash on the network",
)
def _interface_mac(d: Domain) -> Iterator[Issue]:
    seen: set[str] = set()
    for el in d.devices("interface"):
        mac_el = el.find("mac")
        mac = mac_el.get("address", "") if mac_el is not None else ""
        if mac_el is None:
            continue
        label = f"<devices><interface><mac address='{mac}'>"
        if not MAC_TEXT.fullmatch(mac):
            yield Issue(label, "not a MAC address (six hex pairs separated by ':')", "use e.g. 52:54:00:12:34:56")
        elif int(mac[:2], 16) & 1:
            yield Issue(
                label,
                "a multicast MAC (odd first byte) cannot be an interface's address",
                "use a unicast address, e.g. 52:54:00:...",
            )
        elif mac.lower() in seen:
            yield Issue(label, "two interfaces have the same MAC", "give each interface its own MAC or leave <mac> out")
        seen.add(mac.lower())


@_rule(
    "interface-guest-dev",
    ERROR,
    "container start",
    "guest interface names (<guest dev>, default eth0, eth1, ...) are unique",
    "two interfaces cannot have one name in the container",
)
def _interface_guest_dev(d: Domain) -> Iterator[Issue]:
    names: Counter[str] = Counter()
    unnamed = 0
    for el in d.devices("interface"):
        guest = el.find("guest")
        name = guest.get("dev") if guest is not None else None
        if not name:  # libvirt numbers the interfaces without a name: eth0, eth1, ...
            name, unnamed = f"eth{unnamed}", unnamed + 1
        names[name] += 1
        if names[name] == 2:
            yield Issue(
                f"<devices><interface><guest dev='{name}'>",
                f"two interfaces would be called {name} in the "
                "container (interfaces without <guest dev> are named eth0, eth1, ...)",
                "give each interface its own <guest dev=...>",
            )


@_rule(
    "lxc-namespace",
    ERROR,
    "define / start",
    "<lxc:namespace> has only sharenet/shareipc/shareuts with type name/pid/netns and a value; netns only for sharenet",
    "'unsupported Namespace feature' / 'Unknown LXC namespace source' / "
    "\"'netns' namespace source can only be used with sharenet\"",
)
def _lxc_namespace(d: Domain) -> Iterator[Issue]:
    for el in d.namespace_children():
        local = el.tag.replace(f"{{{LXC_NS}}}", "")
        label = f"<lxc:namespace><lxc:{local}>" if el.tag.startswith(f"{{{LXC_NS}}}") else f"<lxc:namespace><{el.tag}>"
        if not el.tag.startswith(f"{{{LXC_NS}}}") or local not in NAMESPACE_CHILDREN:
            yield Issue(label, "only sharenet, shareipc and shareuts can be shared", "remove it")
            continue
        kind, value = el.get("type"), el.get("value")
        if kind not in NAMESPACE_SOURCES or not value:
            yield Issue(label, "it needs type='name', 'pid' or 'netns' and a value", "e.g. type='name' value='other'")
        elif kind == "netns" and local != "sharenet":
            yield Issue(label, "a netns source can only be shared as the network namespace", "use type='name' or 'pid'")


@_rule(
    "lxc-sharenet",
    ERROR,
    "start",
    "<lxc:sharenet> is not combined with interfaces, privnet or net hostdevs",
    "'Config asks for inherit net namespace as well as private network interfaces'",
)
def _lxc_sharenet(d: Domain) -> Iterator[Issue]:
    if _sharenet(d) is None:
        return
    if d.devices("interface") or d.root.find("features/privnet") is not None or _has_net_hostdev(d):
        yield Issue(
            "<lxc:namespace><lxc:sharenet>",
            "a container cannot join another network namespace and have private interfaces too",
            "remove <lxc:sharenet>, or the interfaces and <privnet/>",
        )


RULES: tuple[Rule, ...] = tuple(_rule.rules)
