"""Talk to libvirt: through the Python binding (python3-libvirt) when it is installed, else virsh.

Both backends offer the same few calls the libvirt plugin needs. Binding calls are logged like
commands (`-v` shows them); virsh calls go through run(). libvirt's own error text is kept in the
one-line errors, because it usually names the real problem (no daemon, no LXC driver, ...).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Protocol

from .log import LOG, UserError
from .run import CommandError, run

# The state names virsh prints, indexed by libvirt's virDomainState numbers.
STATES = ("no state", "running", "blocked", "paused", "in shutdown", "shut off", "crashed", "pmsuspended")


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: str  # as virsh prints it: "running", "shut off", ...
    persistent: bool
    autostart: bool

    @property
    def active(self) -> bool:
        return self.state != "shut off"


class Connection(Protocol):
    uri: str
    backend: str

    def domains(self) -> dict[str, str]:
        """Every domain, defined or running: name -> uuid."""
        ...

    def lookup(self, name: str) -> DomainInfo | None: ...

    def define(self, xml: str) -> None:
        """Define (or redefine) a persistent domain; libvirt checks it against its schema too."""
        ...

    def set_autostart(self, name: str, enabled: bool) -> None: ...

    def network_active(self, name: str) -> bool | None:
        """True/False for a defined network's state; None when no such network exists."""
        ...


def _fail(uri: str, what: str, detail: str) -> UserError:
    return UserError(
        f"libvirt at {uri}: {what} failed: {detail.strip().splitlines()[-1] if detail.strip() else 'no reason given'}",
        f"check that libvirtd runs with the LXC driver: virsh -c {uri} list --all",
    )


class BindingConnection:
    """libvirt through python3-libvirt."""

    backend = "python3-libvirt"

    def __init__(self, uri: str, module: Any) -> None:
        self.uri = uri
        self._lv = module
        # The binding prints every error to stderr by default; ours are reported as one line.
        module.registerErrorHandler(lambda _ctx, _err: None, None)
        LOG.debug("+ libvirt.open(%r)", uri)
        try:
            self._conn = module.open(uri)
        except module.libvirtError as exc:
            raise _fail(uri, "connecting", str(exc)) from None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        LOG.debug("+ libvirt %s", what)
        try:
            return fn(*args)
        except self._lv.libvirtError as exc:
            raise _fail(self.uri, what, str(exc)) from None

    def domains(self) -> dict[str, str]:
        doms = self._call("listAllDomains", self._conn.listAllDomains, 0)
        return {d.name(): d.UUIDString() for d in doms}

    def lookup(self, name: str) -> DomainInfo | None:
        LOG.debug("+ libvirt lookupByName(%r)", name)
        try:
            dom = self._conn.lookupByName(name)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN:
                return None
            raise _fail(self.uri, f"looking up domain {name}", str(exc)) from None
        state = self._call("state", dom.state)[0]
        return DomainInfo(
            name=name,
            uuid=dom.UUIDString(),
            state=STATES[state] if 0 <= state < len(STATES) else "unknown",
            persistent=bool(dom.isPersistent()),
            autostart=bool(dom.autostart()),
        )

    def define(self, xml: str) -> None:
        flags = getattr(self._lv, "VIR_DOMAIN_DEFINE_VALIDATE", 0)
        self._call("defineXMLFlags", self._conn.defineXMLFlags, xml, flags)

    def set_autostart(self, name: str, enabled: bool) -> None:
        dom = self._call(f"lookupByName({name!r})", self._conn.lookupByName, name)
        self._call(f"setAutostart({int(enabled)})", dom.setAutostart, int(enabled))

    def network_active(self, name: str) -> bool | None:
        LOG.debug("+ libvirt networkLookupByName(%r)", name)
        try:
            net = self._conn.networkLookupByName(name)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() in (self._lv.VIR_ERR_NO_NETWORK, self._lv.VIR_ERR_NO_SUPPORT):
                return None
            raise _fail(self.uri, f"looking up network {name}", str(exc)) from None
        return bool(net.isActive())


class VirshConnection:
    """libvirt through the virsh command (libvirt-clients)."""

    backend = "virsh"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._virsh("uri", what="connecting")

    def _virsh(self, *args: str, what: str, ok_codes: tuple[int, ...] = (0,)) -> tuple[int, str]:
        try:
            result = run(["virsh", "-q", "-c", self.uri, *args], check=True, ok_codes=ok_codes)
        except CommandError as exc:
            raise _fail(self.uri, what, "\n".join(exc.tail)) from None
        return result.returncode, result.output

    def domains(self) -> dict[str, str]:
        _, names = self._virsh("list", "--all", "--name", what="listing domains")
        out: dict[str, str] = {}
        for name in filter(None, (n.strip() for n in names.splitlines())):
            _, uuid = self._virsh("domuuid", name, what=f"reading the UUID of {name}")
            out[name] = uuid.strip()
        return out

    def lookup(self, name: str) -> DomainInfo | None:
        code, text = self._virsh("dominfo", name, what=f"reading domain {name}", ok_codes=(0, 1))
        if code != 0:
            if "failed to get domain" in text:
                return None
            raise _fail(self.uri, f"reading domain {name}", text)
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        return DomainInfo(
            name=name,
            uuid=fields.get("uuid", ""),
            state=fields.get("state", "unknown"),
            persistent=fields.get("persistent") == "yes",
            autostart=fields.get("autostart") == "enable",
        )

    def define(self, xml: str) -> None:
        fd, path = tempfile.mkstemp(prefix="vmbuilder-domain.", suffix=".xml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(xml)
            self._virsh("define", "--validate", path, what="defining the domain")
        finally:
            os.unlink(path)

    def set_autostart(self, name: str, enabled: bool) -> None:
        args = ["autostart", name] if enabled else ["autostart", "--disable", name]
        self._virsh(*args, what=f"setting autostart of {name}")

    def network_active(self, name: str) -> bool | None:
        code, text = self._virsh("net-info", name, what=f"reading network {name}", ok_codes=(0, 1))
        if code != 0:
            return None
        return any(line.split(":")[0].strip() == "Active" and line.endswith("yes") for line in text.splitlines())


def have_virsh() -> bool:
    return shutil.which("virsh") is not None


def connect(uri: str) -> Connection:
    """A connection through the binding if it imports, else through virsh (or a clear error)."""
    if os.environ.get("VMBUILDER_LIBVIRT_BACKEND") != "virsh":
        try:
            import libvirt  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            pass
        else:
            return BindingConnection(uri, libvirt)
    if not have_virsh():
        raise UserError(
            "--libvirt needs the libvirt Python binding or virsh, and neither is installed",
            "apt-get install python3-libvirt (or libvirt-clients for virsh)",
        )
    return VirshConnection(uri)
