"""A fault-injecting HTTP proxy on 127.0.0.1 for the mirror-fault tests.

apt (inside mmdebstrap) talks to it as to any HTTP proxy (`--proxy http://127.0.0.1:PORT`). It
forwards GET requests to the one mirror host it was made for (taken from debootstrap's scripts
through vmbuilder_lxc.mirrors, never written here) and refuses every other host. A rule can replace
the answer for the paths it matches: an HTTP error, a truncated or corrupted body, a stalled
transfer, a reset connection, or a rewritten InRelease (its body changed under the original
signature, or re-signed with a test key).
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Rule:
    """What to do with requests whose path matches: `action` for the first `times` of them (0: all)."""

    matches: Callable[[str], bool]
    action: str  # "status", "truncate", "corrupt", "stall", "reset", "rewrite"
    times: int = 0
    status: int = 500
    rewrite: Callable[[str, bytes], bytes] | None = None
    hits: list[str] = field(default_factory=list)

    def applies(self, path: str) -> bool:
        if not self.matches(path):
            return False
        if self.times and len(self.hits) >= self.times:
            return False
        self.hits.append(path)
        return True


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        """apt hangs up on a truncated or stalled answer: that is the point, not an error."""


class FaultProxy:
    """Start with `with FaultProxy(host) as proxy:`; proxy.url is what --proxy takes."""

    def __init__(self, upstream_host: str) -> None:
        self.upstream_host = upstream_host
        self.rules: list[Rule] = []
        self.requests: list[str] = []
        self.stop = threading.Event()
        self.debug = bool(os.environ.get("FAULTPROXY_DEBUG"))
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def requested(self, predicate: Callable[[str], bool]) -> list[str]:
        with self._lock:
            return [p for p in self.requests if predicate(p)]

    def _rule_for(self, path: str) -> Rule | None:
        with self._lock:
            self.requests.append(path)
            return next((r for r in self.rules if r.applies(path)), None)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: object) -> None:
                if proxy.debug:
                    print("faultproxy:", format % args, file=sys.stderr, flush=True)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                if url.scheme != "http" or url.hostname != proxy.upstream_host:
                    self._send(403, b"this test proxy only forwards to the mirror\n")
                    return
                path = url.path
                rule = proxy._rule_for(path)
                if rule is not None and rule.action == "status":
                    # As servers do after an error; apt would otherwise wait for the close.
                    self._send(rule.status, b"injected fault\n", {"Connection": "close"})
                    self.close_connection = True
                    return
                status, headers, body = self._fetch(path)
                if rule is None or status != 200:
                    self._send(status, body, headers)
                elif rule.action == "truncate":
                    self._send(200, body[: len(body) // 2], headers)
                elif rule.action == "corrupt":
                    middle = len(body) // 2
                    self._send(200, body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :], headers)
                elif rule.action == "rewrite":
                    assert rule.rewrite is not None
                    self._send(200, rule.rewrite(path, body), headers)
                elif rule.action in ("stall", "reset"):
                    self._begin(200, len(body), headers)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if rule.action == "stall":  # keep the connection open, send nothing more
                        proxy.stop.wait(600)
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                else:
                    raise AssertionError(rule.action)

            def _fetch(self, path: str) -> tuple[int, dict[str, str], bytes]:
                for attempt in range(3):
                    try:
                        if self.upstream is None:
                            self.upstream = http.client.HTTPConnection(proxy.upstream_host, 80, timeout=60)
                        self.upstream.request("GET", path, headers={"User-Agent": "vmbuilder-lxc-test-proxy"})
                        resp = self.upstream.getresponse()
                        body = resp.read()
                        keep = {k: v for k, v in resp.getheaders() if k.lower() in ("content-type", "last-modified")}
                        return resp.status, keep, body
                    except (OSError, http.client.HTTPException):
                        self.upstream = None
                        time.sleep(1 + attempt)
                return 502, {}, b"the mirror did not answer the test proxy\n"

            def _begin(self, status: int, length: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self._begin(status, len(body), headers)
                self.wfile.write(body)

        return Handler
