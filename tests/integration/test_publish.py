"""Issue 17: a published tree served over HTTPS, consumed by LXD 5.0 and by lxc-create -t download.

One module-scoped tree and server (tests/integration/httpsserve.py: a run-only CA, http.server +
ssl on 127.0.0.1). The tests run in file order and build on each other: the first version (from a
build's --publish), the LXD remote and a launch, lxc-create, a second version published at the same
time as a Debian build, the old fingerprint until --prune, a SIGKILLed publish, Debian in LXD.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import LXD_LOG, Build, Builder, Container, boot_within, lxc_client, vmbuilder_command
from .httpsserve import Served, https_tree

PRODUCT = "ubuntu:noble:amd64:default"
DEBIAN = "debian:bookworm:amd64:default"
REMOTE = f"vmbt-pub{os.getpid()}"
# The same server under another URL (https://localhost:PORT; the certificate names both). The LXD
# 5.0 daemon keeps a remote's index for an hour, by URL: a launch by alias on a host that already
# read the index gets the version it read (the client's `image list` reads afresh). A host that
# first asks after the second publish gets the new version: this remote stands for such a host.
LATER = f"vmbt-publ{os.getpid()}"
PUBLISH_TIMEOUT = 900
HOUR = 3600
TIMINGS: dict[str, float] = {}
LXD_CONF = Path(os.environ.get("LXD_CONF") or Path.home() / ".config/lxc")


def publish(tree: Path, *args: str, epoch: int | None = None, pause: str | None = None,
            wait: bool = True) -> subprocess.Popen[str]:  # fmt: skip
    """`vmbuilder lxc publish TREE ARGS...` (xz level 0: the tests need the format, not the ratio)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH", "VMBUILDER_TEST_PAUSE_AT")}
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    if pause:
        env["VMBUILDER_TEST_PAUSE_AT"] = pause
    argv = [vmbuilder_command(), "lxc", "publish", str(tree), *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/",
                            start_new_session=True)  # fmt: skip
    if wait:
        proc.wait(timeout=PUBLISH_TIMEOUT)
    return proc


def finished(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=PUBLISH_TIMEOUT)
    assert proc.returncode == 0, f"publish failed ({proc.returncode}): {err[-3000:]}"
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def tree_json(tree: Path, action: str) -> tuple[int, dict[str, Any]]:
    proc = publish(tree, f"--{action}", "--json")
    out, err = proc.communicate()
    return proc.returncode or 0, json.loads(out) if out.strip() else {"stderr": err}


def products(tree: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((tree / "streams/v1/images.json").read_text())["products"]
    return found


def fingerprint(tree: Path, product: str, version: str) -> str:
    items = products(tree)[product]["versions"][version]["items"]
    return str(items["lxd.tar.xz"]["combined_squashfs_sha256"])


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(published_tree: Path) -> Path:
    """The session's tree: test_publish_incus.py reads what this module leaves in it (noble, bookworm)."""
    return published_tree


@pytest.fixture(scope="module")
def first(builder: Builder, tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """noble built with --publish TREE --alias (the build's own time is the version; xz level 0: the
    tests need the format, not the ratio)."""
    dest = tmp_path_factory.mktemp("publish-builds") / "noble-a"
    started = time.monotonic()
    build = builder.run("--suite", "noble", "--network", "none", "-d", str(dest), "--publish", str(tree),
                        "--alias", "vmbt/web", "--publish-xz-level", "0").check()  # fmt: skip
    TIMINGS["build + publish"] = time.monotonic() - started
    return build


@pytest.fixture(scope="module")
def served(tree: Path, first: Build, lxd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The tree over HTTPS, trusted by the system store (the lxc client and lxc-create's wget read it
    each run) and added to LXD as a simplestreams remote. The LXD daemon read the store when it
    started, before the CA existed: the client's servercerts/REMOTE.crt (the server's certificate)
    is what it hands the daemon with each download, so no restart is needed (LXD 5.0.2)."""
    with https_tree(tree, tmp_path_factory.mktemp("publish-ca")) as found:
        assert found.cert is not None
        pinned = []
        for name, url in ((REMOTE, found.url), (LATER, f"https://localhost:{found.port}")):
            lxc_client("remote", "add", name, url, "--protocol=simplestreams")
            pinned.append(LXD_CONF / "servercerts" / f"{name}.crt")
            pinned[-1].parent.mkdir(parents=True, exist_ok=True)
            pinned[-1].write_bytes(found.cert.read_bytes())
        try:
            yield found
        finally:
            for name, path in zip((REMOTE, LATER), pinned, strict=True):
                lxc_client("remote", "remove", name, check=False)
                path.unlink(missing_ok=True)
            forget_local_images(found)


@pytest.fixture
def instances() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        lxc_client("delete", "--force", name, check=False)


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    print("\npublish test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def wait_running(instance: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        result = lxc_client("exec", instance, "--", "systemctl", "is-system-running", check=False)
        state = result.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    return state


def launch(image: str, name: str, instances: list[str], boot: bool = True) -> str:
    """Launch (or with boot False only create) NAME from IMAGE; returns the image fingerprint it used."""
    instances.append(name)
    result = lxc_client("launch" if boot else "init", image, name, check=False, timeout=900)
    if result.returncode != 0:
        log = LXD_LOG.read_text(errors="replace")[-2000:] if LXD_LOG.exists() else ""
        raise AssertionError(f"lxc {'launch' if boot else 'init'} {image} failed: {result.stderr}\n{log}")
    if boot:
        state = wait_running(name)
        failed = lxc_client("exec", name, "--", "sh", "-c", "systemctl list-units --failed --no-legend --plain || true")
        assert state == "running", f"{name}: {state}; failed units: {failed.stdout}"
        assert lxc_client("exec", name, "--", "hostname").stdout.strip() == name
    return lxc_client("config", "get", name, "volatile.base_image").stdout.strip()


def forget_local_images(served: Served) -> None:
    """Remove LXD's cached copies of the tree's images, so that the next launch downloads again."""
    for image in json.loads(lxc_client("image", "list", "--format", "json").stdout):
        if str(image.get("update_source", {}).get("server", "")).endswith(f":{served.port}"):
            lxc_client("image", "delete", image["fingerprint"], check=False)


# -- the tree and LXD --------------------------------------------------------------------------------


def test_the_build_published_a_valid_tree(first: Build, tree: Path) -> None:
    published = first.summary["published"]
    assert published["products"] == [PRODUCT]
    code, verified = tree_json(tree, "verify")
    assert code == 0 and verified["ok"], verified
    product = products(tree)[PRODUCT]
    assert product["aliases"] == "ubuntu/noble,ubuntu/noble/default,vmbt/web"
    (version,) = product["versions"]
    meta = tree / product["versions"][version]["items"]["lxd.tar.xz"]["path"]
    assert meta.read_bytes()[:6] == b"\xfd7zXZ\x00"  # its ftype says .tar.xz: it is xz
    index = (tree / "meta/1.0/index-system").read_text()
    assert index.startswith(f"ubuntu;noble;amd64;default;{version};/images/ubuntu/noble/amd64/default/")


def test_lxd_lists_the_aliases_and_launches(served: Served, instances: list[str], tree: Path) -> None:
    listed = json.loads(lxc_client("image", "list", f"{REMOTE}:", "--format", "json").stdout)
    aliases = {a["name"] for image in listed for a in image.get("aliases") or []}
    assert {"ubuntu/noble", "ubuntu/noble/default", "vmbt/web"} <= aliases, listed
    started = time.monotonic()
    used = launch(f"{REMOTE}:ubuntu/noble", "vmbt-pub-c1", instances)
    TIMINGS["lxd launch from the remote"] = time.monotonic() - started
    (version,) = products(tree)[PRODUCT]["versions"]
    assert used == fingerprint(tree, PRODUCT, version)


def test_lxc_create_download_boots(served: Served, container: Callable[[Path], Container], lxcfs: Path,
                                   tmp_path: Path) -> None:  # fmt: skip
    lxcpath = tmp_path / "lxcpath"
    lxcpath.mkdir()
    host_conf = tmp_path / "host.conf"  # the host's default.conf wants lxcbr0, which this host does not run
    host_conf.write_text("lxc.net.0.type = empty\n")
    env = {**os.environ, "LXC_CACHE_PATH": str(tmp_path / "lxc-cache")}
    started = time.monotonic()
    created = subprocess.run(
        ["lxc-create", "-P", str(lxcpath), "-n", "d1", "-f", str(host_conf), "-t", "download", "--",
         "--server", served.host, "-d", "ubuntu", "-r", "noble", "-a", "amd64"],
        capture_output=True, text=True, timeout=900, env=env, cwd="/",
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    TIMINGS["lxc-create -t download"] = time.monotonic() - started
    c = boot_within(container, lxcpath / "d1", "lxc-download noble", limit=60)
    assert c.sh("hostname") == "d1" and c.sh("cat /etc/hostname") == "d1"
    c.stop()


# -- a second version, at the same time as a Debian build -------------------------------------------


@pytest.fixture(scope="module")
def second(builder: Builder, first: Build, tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A second noble build (a customised one) and a Debian bookworm build, published at once."""
    base = tmp_path_factory.mktemp("publish-more")
    noble = builder.run("--suite", "noble", "--network", "none", "-d", str(base / "noble-b"),
                        "--hostname", "second").check()  # fmt: skip
    debian = builder.run("--suite", "bookworm", "--network", "none", "-d", str(base / "bookworm"),
                         distro="debian").check()  # fmt: skip
    later = int(time.time()) + HOUR  # newer than the first version, whatever minute the build took
    started = time.monotonic()
    fast = ("--json", "--compression-level", "0")
    procs = [publish(tree, str(b.dest), *fast, epoch=later, wait=False) for b in (noble, debian)]
    results = [finished(p) for p in procs]
    TIMINGS["two publishes at once"] = time.monotonic() - started
    return {"noble": results[0]["published"][0], "debian": results[1]["published"][0]}


def test_two_publishes_at_once_both_land(second: dict[str, Any], tree: Path) -> None:
    found = products(tree)
    assert second["noble"]["version"] in found[PRODUCT]["versions"]
    assert second["debian"]["version"] in found[DEBIAN]["versions"]
    assert len(found[PRODUCT]["versions"]) == 2
    code, verified = tree_json(tree, "verify")
    assert code == 0 and verified["ok"] and not verified["warnings"], verified
    lines = (tree / "meta/1.0/index-system.7").read_text().splitlines()
    assert [ln.split(";")[0] for ln in lines] == ["debian", "ubuntu"]
    assert f";{second['noble']['version']};" in lines[1]  # lxc-download takes the new version


def test_the_alias_moves_and_the_old_fingerprint_stays_until_prune(
    served: Served, second: dict[str, Any], tree: Path, instances: list[str]
) -> None:
    old_version, new_version = sorted(products(tree)[PRODUCT]["versions"])
    old, new = fingerprint(tree, PRODUCT, old_version), fingerprint(tree, PRODUCT, new_version)
    assert new == second["noble"]["fingerprint"] != old
    listed = json.loads(lxc_client("image", "list", f"{REMOTE}:", "--format", "json").stdout)
    by_alias = {a["name"]: i["fingerprint"] for i in listed for a in i.get("aliases") or []}
    assert by_alias["ubuntu/noble"] == new  # the client reads the index afresh
    forget_local_images(served)
    assert launch(f"{LATER}:ubuntu/noble", "vmbt-pub-c2", instances, boot=False) == new
    assert launch(f"{LATER}:{old}", "vmbt-pub-c3", instances, boot=False) == old
    old_dir = tree / f"images/ubuntu/noble/amd64/default/{old_version}"
    assert old_dir.is_dir()
    proc = publish(tree, "--prune", "--retention", "1", "--json")
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    assert not old_dir.exists()
    assert sorted(products(tree)[PRODUCT]["versions"]) == [new_version]
    code, verified = tree_json(tree, "verify")
    assert code == 0 and verified["ok"], verified
    gone = subprocess.run(["wget", "-q", "-O", "/dev/null", f"{served.url}//images/ubuntu/noble/amd64/default/"
                           f"{old_version}/lxd.tar.xz"], capture_output=True, timeout=60)  # fmt: skip
    assert gone.returncode == 8  # the server said 404: the old version is no longer served


# -- faults ----------------------------------------------------------------------------------------


def test_a_publish_killed_midway_leaves_a_tree_verify_and_lxd_accept(
    served: Served, first: Build, second: dict[str, Any], tree: Path
) -> None:
    """The first build published again under a later version, SIGKILLed in the commit, after the
    products file names the new version and before index.json and LXC's index do (the other seams
    are unit-tested: tests/unit/test_publish.py)."""
    stage = "publish-products"
    epoch = int(time.time()) + 2 * HOUR
    proc = publish(tree, str(first.dest), "--compression-level", "0", epoch=epoch, pause=stage, wait=False)
    assert proc.stderr is not None
    said: list[str] = []
    for line in proc.stderr:  # until the publish says it paused (or ends: then it did not get there)
        said.append(line)
        if f"paused at {stage}" in line:
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert said and f"paused at {stage}" in said[-1], "".join(said[-20:])
    code, verified = tree_json(tree, "verify")
    assert code == 0 and verified["ok"], verified
    listed = json.loads(lxc_client("image", "list", f"{REMOTE}:", "--format", "json").stdout)
    assert {a["name"] for i in listed for a in i.get("aliases") or []} >= {"ubuntu/noble", "debian/bookworm"}
    proc = publish(tree, "--prune", "--retention", "1", "--json")
    assert proc.wait() == 0
    assert not list((tree / ".vmbuilder-staging").iterdir())
    code, verified = tree_json(tree, "verify")
    assert code == 0 and verified["ok"] and not verified["warnings"], verified


def test_debian_launches_from_lxd(served: Served, second: dict[str, Any], instances: list[str], tree: Path) -> None:
    used = launch(f"{LATER}:debian/bookworm", "vmbt-pub-deb", instances)
    (version,) = products(tree)[DEBIAN]["versions"]
    assert used == fingerprint(tree, DEBIAN, version)


def test_bad_input_is_one_line(tree: Path) -> None:
    for args, needle in ((["--verify", "--list"], "two actions"), (["--alias", "a,b", "/nonexistent"], "alias"),
                         (["--retention", "2", "--list"], "--retention applies")):  # fmt: skip
        proc = publish(tree, *args)
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert re.match(r"^\d{8}_\d{2}:\d{2}$", sorted(products(tree)[PRODUCT]["versions"])[-1])
