"""The virtualization checks of `vmbuilder lxc doctor`: libvirtd's LXC driver, LXD and Incus.

All of them are optional for a build (`--libvirt`, the lxd/incus exports' import), so problems are
warnings. The daemons are asked with a timeout: `virsh -c lxc:/// uri`, and `GET /1.0` on the LXD
and Incus sockets directly, so no client writes its configuration into root's home.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from . import doctor_probes as p

Result = p.Result
LXD_SOCKETS = (Path("/var/lib/lxd/unix.socket"), Path("/var/snap/lxd/common/lxd/unix.socket"))
INCUS_SOCKETS = (Path("/var/lib/incus/unix.socket"),)
LIBVIRT_PACKAGES = "libvirt-daemon-system libvirt-daemon-driver-lxc libvirt-clients"
# Debian 12 has Incus only in bookworm-backports; incus-base is the container-only daemon and client
# (the incus package adds VM support and would pull backports' qemu). Debian's incusd is off PATH.
INCUS_INSTALL = (
    "apt-get install incus (Debian 12: add bookworm-backports, then apt-get install -t bookworm-backports incus-base)"
)
INCUS_START = "systemctl start incus (without systemd: /usr/libexec/incus/incusd --group incus-admin &)"


def check_libvirt(opts: p.Options) -> list[Result]:
    if p.which("virsh") is None:
        return [Result("libvirt", "warn", "libvirt is not installed: --libvirt cannot define domains",
                       f"apt-get install {LIBVIRT_PACKAGES}")]  # fmt: skip
    out = p.probe(["virsh", "-c", "lxc:///", "uri"], opts.timeout)
    if out.timed_out:
        return [Result("libvirt", "warn", f"libvirtd did not answer within {opts.timeout:g} s",
                       "restart libvirtd: systemctl restart libvirtd")]  # fmt: skip
    if out.ok:
        return [Result("libvirt", "ok", f"libvirtd answers at {out.first_line or 'lxc:///'} (LXC driver loaded)")]
    text = out.output
    if "no connection driver" in text:
        return [Result("libvirt", "warn", "libvirtd runs without its LXC driver",
                       "apt-get install libvirt-daemon-driver-lxc, then systemctl restart libvirtd")]  # fmt: skip
    if "Failed to connect socket" in text or "No such file" in text:
        return [Result("libvirt", "warn", "libvirtd is not running: --libvirt cannot define domains",
                       "systemctl start libvirtd (without systemd: libvirtd -d)")]  # fmt: skip
    return [Result("libvirt", "warn", f"virsh -c lxc:/// uri failed: {out.last_line}",
                   "systemctl restart libvirtd and read journalctl -u libvirtd")]  # fmt: skip


def _daemon_version(socket_path: Path, timeout: float) -> str | None:
    """GET /1.0 on an LXD/Incus socket: the server version, or None when nothing answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(socket_path))
            s.sendall(b"GET /1.0 HTTP/1.0\r\nHost: doctor\r\n\r\n")
            data = b""
            while len(data) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    body = data.partition(b"\r\n\r\n")[2]
    try:
        meta = json.loads(body)["metadata"]
        return str(meta.get("environment", {}).get("server_version") or meta.get("api_version") or "?")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def check_lxd_incus(opts: p.Options) -> list[Result]:
    found: dict[str, tuple[bool, str | None]] = {}
    for name, client, daemon, sockets in (
        ("lxd", "lxc", "lxd", LXD_SOCKETS),
        ("incus", "incus", "incusd", INCUS_SOCKETS),
    ):
        version = next((v for s in sockets if s.exists() and (v := _daemon_version(s, opts.timeout))), None)
        installed = p.which(client) is not None or p.which(daemon) is not None or any(s.exists() for s in sockets)
        found[name] = (installed, version)
    other_present = {n: any(i or v for m, (i, v) in found.items() if m != n) for n in found}
    results = []
    for name, (installed, version) in found.items():
        label = "LXD" if name == "lxd" else "Incus"
        if version:
            results.append(Result(name, "ok", f"{label} {version} answers on its socket"))
        elif installed:
            start = "lxd init --auto, or systemctl start lxd" if name == "lxd" else INCUS_START
            results.append(Result(name, "warn", f"{label} is installed but its daemon does not answer: the "
                                  f"{name} export cannot be imported here", start))  # fmt: skip
        elif other_present[name]:
            results.append(Result(name, "ok", f"{label} is not installed (the other one is)"))
        else:
            fix = "apt-get install lxd lxd-client" if name == "lxd" else INCUS_INSTALL
            results.append(Result(name, "warn", f"{label} is not installed: its exports can be written but "
                                  "not imported here", fix))  # fmt: skip
    return results
