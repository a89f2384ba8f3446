"""Issue 17's Incus acceptance: a published tree served over HTTPS is an Incus simplestreams remote.

The tree is the session's `published_tree`: test_publish.py (LXD, lxc-create) fills it first, with
noble and Debian bookworm; run alone, this module builds and publishes what is missing (cache hits
when the session built them). The CA is made for the run and put in the system store
(httpsserve.py). The `incus` client reads the store at every run; incusd reads it once, at its first
TLS check, so the daemon is restarted after the CA is trusted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import INCUS_LOG, Builder, IncusDaemon, incus_client, vmbuilder_command
from .httpsserve import Served, https_tree

REMOTE = f"vmbi-pub{os.getpid()}"
IMAGES = {  # product: (what `launch` names, distro plugin, suite)
    "ubuntu:noble:amd64:default": ("ubuntu/noble", "ubuntu", "noble"),
    "debian:bookworm:amd64:default": ("debian/bookworm", "debian", "bookworm"),
}
TIMINGS: dict[str, float] = {}


def products(tree: Path) -> dict[str, Any]:
    path = tree / "streams/v1/images.json"
    found: dict[str, Any] = json.loads(path.read_text())["products"] if path.exists() else {}
    return found


@pytest.fixture(scope="module")
def tree(published_tree: Path, builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tree with noble and bookworm in it: published here only when no earlier module did."""
    for product, (_, distro, suite) in IMAGES.items():
        if product in products(published_tree):
            continue
        dest = tmp_path_factory.mktemp("publish-incus") / suite
        started = time.monotonic()
        build = builder.run("--suite", suite, "--network", "none", "-d", str(dest), distro=distro).check()
        argv = [vmbuilder_command(), "lxc", "publish", str(published_tree), str(build.dest), "--compression-level", "0"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd="/")
        assert proc.returncode == 0, f"publish failed ({proc.returncode}): {proc.stderr[-3000:]}"
        TIMINGS[f"build + publish {suite}"] = time.monotonic() - started
    return published_tree


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private client configuration: the remote is never added to root's own."""
    return {**os.environ, "INCUS_CONF": str(tmp_path_factory.mktemp("incus-conf"))}


@pytest.fixture(scope="module")
def served(tree: Path, incus: IncusDaemon, client_env: dict[str, str]) -> Iterator[Served]:
    """The tree over HTTPS with a CA the system trusts, added to Incus as a simplestreams remote."""
    with tempfile.TemporaryDirectory(prefix="vmbi-ca-") as workdir, https_tree(tree, Path(workdir)) as found:
        incus.restart()  # so that incusd reads the store with the new CA in it
        try:
            incus_client("remote", "add", REMOTE, found.url, "--protocol=simplestreams", env=client_env)
            yield found
        finally:
            incus_client("remote", "remove", REMOTE, check=False, env=client_env)
            for image in json.loads(incus_client("image", "list", "--format", "json").stdout):
                if (image.get("update_source") or {}).get("server") == found.url:
                    incus_client("image", "delete", image["fingerprint"], check=False)


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    print("\nincus publish test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def combined_fingerprint(tree: Path, product: str) -> str:
    versions = products(tree)[product]["versions"]
    newest = versions[max(versions)]["items"]
    return str(newest["incus.tar.xz"]["combined_squashfs_sha256"])


def test_incus_lists_the_aliases(served: Served, tree: Path, client_env: dict[str, str]) -> None:
    listed = json.loads(incus_client("image", "list", f"{REMOTE}:", "--format", "json", env=client_env).stdout)
    by_alias = {a["name"]: image["fingerprint"] for image in listed for a in image.get("aliases") or []}
    for product, (alias, _, _) in IMAGES.items():
        # The newest version has the aliases; Incus adds ALIAS/amd64 forms of its own.
        assert by_alias.get(alias) == combined_fingerprint(tree, product), (alias, sorted(by_alias))
        assert by_alias.get(f"{alias}/default") == by_alias[alias]


def wait_running(instance: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        result = incus_client("exec", instance, "--", "systemctl", "is-system-running", check=False)
        state = result.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    return state


def test_incus_launches_from_the_remote(served: Served, tree: Path, incus: IncusDaemon,
                                        client_env: dict[str, str]) -> None:  # fmt: skip
    """noble and bookworm from REMOTE: each reaches running with its own hostname."""
    instances = {f"vmbi-pub-{suite}": (product, alias) for product, (alias, _, suite) in IMAGES.items()}
    try:
        for name, (product, alias) in instances.items():
            started = time.monotonic()
            result = incus_client("launch", f"{REMOTE}:{alias}", name, "--quiet", check=False, timeout=900,
                                  env=client_env)  # fmt: skip
            if result.returncode != 0:
                log = INCUS_LOG.read_text(errors="replace")[-2000:] if INCUS_LOG.exists() else ""
                raise AssertionError(f"incus launch {REMOTE}:{alias} failed: {result.stderr}\n{log}")
            state = wait_running(name)
            failed = incus_client("exec", name, "--", "sh", "-c", "systemctl list-units --failed --no-legend || true")
            assert state == "running", f"{name}: {state}; failed units: {failed.stdout}"
            TIMINGS[f"launch {alias} to running"] = time.monotonic() - started
            assert incus_client("exec", name, "--", "hostname").stdout.strip() == name
            hosts = incus_client("exec", name, "--", "cat", "/etc/hosts").stdout
            assert re.search(rf"^127\.0\.1\.1\s+{name}$", hosts, re.M), hosts
            used = incus_client("config", "get", name, "volatile.base_image").stdout.strip()
            assert used == combined_fingerprint(tree, product)
    finally:
        for name in instances:
            incus_client("delete", "--force", name, check=False)
