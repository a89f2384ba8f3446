"""Serve a directory over HTTPS on 127.0.0.1 with a CA made for the test run and trusted only for it.

LXD, Incus (`remote add --protocol=simplestreams`) and `lxc-create -t download` accept https only
and check the certificate against the system's CA store, so a test that serves an image tree:

    with https_tree(tree_dir, workdir) as served:   # served.host == "127.0.0.1:PORT"
        ... served.url, served.ca_cert ...

`https_tree` = `make_ca` + `server_cert` + `trusted_ca` + `serve`; each is usable on its own:

- `make_ca(workdir)` -> CA: a throw-away CA (openssl, EC P-256, valid 2 days);
- `server_cert(ca, workdir)` -> (cert, key) for 127.0.0.1 (subjectAltName IP:127.0.0.1, DNS:localhost);
- `trusted_ca(ca.cert)`: copies it to /usr/local/share/ca-certificates/ and runs update-ca-certificates;
  removes it again (and updates) on exit. Clients (lxc, incus, wget) read the store each run; the
  LXD/Incus daemons read it once, so a daemon started earlier does not trust the new CA. Instead of
  restarting it, give the client the server's certificate for that remote (LXD 5.0.2, checked):
  `~/.config/lxc/servercerts/REMOTE.crt` (Incus: `~/.config/incus/servercerts/REMOTE.crt`) = `served.cert`;
  the client hands it to the daemon with each download (test_publish.py's `served` fixture);
- `serve(root, cert, key)` -> Served: Python's http.server + ssl in a thread on a free port, stopped on exit.
  Paths with double slashes (lxc-download asks for //images/...) are served like single ones.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CA_DIR = Path("/usr/local/share/ca-certificates")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class CA:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Served:
    root: Path
    port: int
    ca_cert: Path
    cert: Path | None = None  # the server's own certificate (LXD's per-remote servercerts/NAME.crt takes it)

    @property
    def host(self) -> str:
        """HOST:PORT, what lxc-create's --server takes."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"openssl {args[0]} failed: {result.stderr}")


EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(workdir: Path, name: str = "vmbuilder test CA") -> CA:
    workdir.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=workdir)  # fmt: skip
    return CA(workdir / "ca.crt", workdir / "ca.key")


def server_cert(ca: CA, workdir: Path, host: str = HOST) -> tuple[Path, Path]:
    ext = workdir / "server.ext"
    ext.write_text(f"subjectAltName=IP:{host},DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")  # fmt: skip
    _openssl("req", *EC, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}", cwd=workdir)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", str(ext), cwd=workdir)  # fmt: skip
    return workdir / "server.crt", workdir / "server.key"


def _update_store(*args: str) -> None:
    result = subprocess.run(["update-ca-certificates", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"update-ca-certificates failed: {result.stdout}{result.stderr}")


@contextlib.contextmanager
def trusted_ca(cert: Path, name: str | None = None) -> Iterator[Path]:
    """The CA in the system store for the `with` block only; yields where it was put."""
    target = CA_DIR / f"{name or f'vmbuilder-test-{os.getpid()}'}.crt"
    CA_DIR.mkdir(parents=True, exist_ok=True)
    for stale in CA_DIR.glob("vmbuilder-test-*.crt"):  # left by a run that was killed (its PID is gone)
        pid = stale.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.unlink(missing_ok=True)
    target.write_bytes(cert.read_bytes())
    try:
        _update_store()
        yield target
    finally:
        target.unlink(missing_ok=True)
        _update_store("--fresh")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(root: Path, cert: Path, key: Path) -> Iterator[int]:
    """Serve `root` over HTTPS on 127.0.0.1 (a free port, yielded) until the block ends."""
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="https-tree", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@contextlib.contextmanager
def https_tree(root: Path, workdir: Path) -> Iterator[Served]:
    """`root` served at https://127.0.0.1:PORT with a fresh CA the system trusts until the block ends."""
    ca = make_ca(workdir)
    cert, key = server_cert(ca, workdir)
    with trusted_ca(ca.cert), serve(root, cert, key) as port:
        yield Served(root, port, ca.cert, cert)
