"""Template exports checked by their real consumers (issue #5).

One noble build (the session's cached base) is exported in every format; each consumer then takes
its own format as it would in production: LXD 5.0 imports and launches the unified and split images,
`lxc-create -t local` creates a container that `lxc-start` boots, and the plain tarball is unpacked
with CloudStack's own `tar -x -f` and booted by libvirt-lxc from the domain the libvirt plugin renders.
The archives themselves are read back for what must never be in them, for file capabilities and
for byte-identical output from a second export with the same SOURCE_DATE_EPOCH.

Before exporting, the test plants what a careless build host could leave in a rootfs (a proxy line,
SSH host keys, a machine-id, logs, backups): a clean build has none of them, and the strip rules
must be seen to work on every format. A separate build through a real proxy on loopback checks the
proxy end to end.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import http.server
import importlib
import json
import lzma
import os
import re
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from .conftest import Build, Builder, Container, Domain, boot_within, lxc_client, vmbuilder_command

NAME = "exp1"
FORMATS = ("tar", "lxc", "lxd", "incus", "squashfs")
EPOCH = 1700000000  # SOURCE_DATE_EPOCH of every export here (2023-11-14)
DEAD_PROXY = "http://127.0.0.1:9/"  # planted only: nothing listens there
USER_XATTR = ("user.vmbuilder-test", b"kept")
TIMINGS: dict[str, float] = {}
# xz -1 instead of each format's default level: the same formats, code and consumers at a quarter of
# the CPU time (each export compresses the rootfs three times with xz, and the module exports twice).
LEVEL = ("--compression-level", "1")
# Both LXD/Incus image forms (the default is the unified one alone): LXD imports and launches each.
BOTH_FORMS = ("--lxd-image", "both")


# -- running exports -----------------------------------------------------------------------------------


@dataclass
class Exported:
    """One `vmbuilder lxc export` run: its output directory and the files it reported per format."""

    out: Path
    files: dict[str, list[Path]]
    seconds: float
    dest: Path = Path()

    def one(self, fmt: str, suffix: str) -> Path:
        found = [p for p in self.files[fmt] if str(p).endswith(suffix)]
        assert len(found) == 1, f"{fmt}: expected one file ending in {suffix}, got {self.files[fmt]}"
        return found[0]

    def all_files(self) -> list[Path]:
        return sorted(p for paths in self.files.values() for p in paths)


def run_export(dest: Path, out: Path, formats: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [vmbuilder_command(), "lxc", "export", str(dest), "--export", formats, "--export-dir", str(out), *extra]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd="/", env=env)


@dataclass
class Pending:
    """A `vmbuilder lxc export --json` running in the background; result() waits for it."""

    proc: subprocess.Popen[bytes]
    dest: Path
    out: Path
    formats: str
    logs: Path
    started: float = field(default_factory=time.monotonic)

    def result(self, timeout: float = 1800) -> Exported:
        returncode = self.proc.wait(timeout=timeout)
        seconds = time.monotonic() - self.started
        stdout, stderr = (self.logs / "stdout").read_text(), (self.logs / "stderr").read_text()
        assert returncode == 0, f"export failed ({returncode}):\n{stderr[-4000:]}"
        summary = yaml.safe_load(stdout)  # JSON is YAML
        files = {fmt: [Path(p) for p in paths] for fmt, paths in summary["exports"].items()}
        assert sorted(files) == sorted(self.formats.split(",")), summary
        for path in (p for paths in files.values() for p in paths):
            assert path.is_absolute() and path.is_file(), path
        return Exported(self.out, files, seconds, self.dest)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


def start_export(dest: Path, out: Path, formats: str = ",".join(FORMATS), nice: bool = False) -> Pending:
    logs = out.parent / f".{out.name}.logs"
    logs.mkdir(parents=True)
    argv = [vmbuilder_command(), "lxc", "export", str(dest), "--export", formats, "--export-dir", str(out), *LEVEL,
            *BOTH_FORMS, "--json"]  # fmt: skip
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
    with (logs / "stdout").open("wb") as stdout, (logs / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(["nice", "-n", "19", *argv] if nice else argv, stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, cwd="/", env=env)  # fmt: skip
    return Pending(proc, dest, out, formats, logs)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digests(out: Path) -> dict[str, str]:
    """sha256 of every file below OUT, by relative path (so nothing unreported escapes the check)."""
    return {str(p.relative_to(out)): sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}


# -- reading archives back -----------------------------------------------------------------------------

# Files whose contents the leftover checks read, as rootfs-relative paths.
INTERESTING = re.compile(
    r"^etc/(machine-id|hostname|hosts|resolv\.conf|environment|apt/apt\.conf|apt/apt\.conf\.d/[^/]+|"
    r"profile\.d/[^/]+)$|^var/lib/dbus/machine-id$"
)


@dataclass
class Entry:
    name: str  # relative to the rootfs, no "./"
    raw: str  # the member's name in the archive
    kind: str  # "f" file, "d" dir, "l" symlink, "h" hardlink, "c"/"b" device, "p" fifo
    size: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    uname: str = ""
    gname: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Archive:
    """What one export holds: rootfs entries in archive order, a few contents, and any metadata files."""

    path: Path
    entries: list[Entry] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)  # metadata.yaml, templates/... (LXD) or meta files

    def names(self) -> set[str]:
        return {e.name for e in self.entries}

    def entry(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)


TAR_KINDS = {tarfile.REGTYPE: "f", tarfile.AREGTYPE: "f", tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l",
             tarfile.LNKTYPE: "h", tarfile.CHRTYPE: "c", tarfile.BLKTYPE: "b", tarfile.FIFOTYPE: "p"}  # fmt: skip


def _open_stream(path: Path) -> tuple[IO[bytes], subprocess.Popen[bytes] | None]:
    if path.name.endswith(".zst"):
        proc = subprocess.Popen(["zstd", "-q", "-d", "-c", str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc.stdout, proc
    return path.open("rb"), None


def read_tar(path: Path, rootfs_prefix: str = "") -> Archive:
    """Stream through a (compressed) tarball; members outside ROOTFS_PREFIX count as metadata."""
    archive = Archive(path)
    stream, proc = _open_stream(path)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if rootfs_prefix:
                    if not (name + "/").startswith(rootfs_prefix):
                        if member.isfile():
                            data = tar.extractfile(member)
                            archive.meta[name] = data.read() if data else b""
                        continue
                    name = name[len(rootfs_prefix) :]
                name = name.rstrip("/")
                if not name or name == ".":
                    continue
                xattrs = {k[len("SCHILY.xattr.") :]: v for k, v in member.pax_headers.items()
                          if k.startswith("SCHILY.xattr.")}  # fmt: skip
                kind = TAR_KINDS.get(member.type, "?")
                archive.entries.append(Entry(name, member.name, kind, member.size, member.mode, member.uid,
                                             member.gid, int(member.mtime), member.uname, member.gname,
                                             xattrs))  # fmt: skip
                if member.isfile() and INTERESTING.match(name):
                    data = tar.extractfile(member)
                    archive.contents[name] = data.read() if data else b""
    finally:
        stream.close()
        if proc is not None:
            proc.wait()
    return archive


SQUASHFS_LINE = re.compile(r"^(\S{10}) (\d+)/(\d+)\s+(\d+|\d+,\s*\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) squashfs-root/?(.*)$")


def read_squashfs(path: Path) -> Archive:
    archive = Archive(path)
    listing = subprocess.run(["unsquashfs", "-lln", str(path)], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        m = SQUASHFS_LINE.match(line)
        if not m:
            continue
        perms, uid, gid, size, _, name = m.groups()
        if perms[0] == "l":
            name = name.split(" -> ", 1)[0]
        if not name:
            continue
        kind = {"-": "f", "d": "d", "l": "l", "c": "c", "b": "b", "p": "p"}.get(perms[0], "?")
        archive.entries.append(Entry(name, name, kind, int(size) if size.isdigit() else 0, 0, int(uid), int(gid)))
    for e in archive.entries:
        if e.kind == "f" and INTERESTING.match(e.name):
            cat = subprocess.run(["unsquashfs", "-cat", str(path), e.name], capture_output=True, check=True)
            archive.contents[e.name] = cat.stdout
    return archive


def read_export(path: Path) -> Archive:
    name = path.name
    if name.endswith(".squashfs"):
        return read_squashfs(path)
    if re.search(r"\.(lxd|incus)\.tar(\.\w+)?$", name):  # unified LXD/Incus image
        return read_tar(path, rootfs_prefix="rootfs/")
    return read_tar(path)


def rootfs_archives(exported: Exported) -> dict[str, Path]:
    """Every archive that carries a root filesystem, by a label."""
    found = {}
    for fmt, paths in exported.files.items():
        for p in paths:
            if p.name.endswith((".properties",)) or p.name in ("meta.tar.xz", "lxd.tar.zst", "incus.tar.zst"):
                continue
            found[f"{fmt}:{p.relative_to(exported.out)}"] = p
    return found


# -- fixtures ------------------------------------------------------------------------------------------


def plant_leftovers(rootfs: Path) -> None:
    """What a build host or a customisation could leave behind, for the strip rules to find."""
    apt = rootfs / "etc/apt/apt.conf.d"
    (apt / "99test-proxy").write_text(f'Acquire::http::Proxy "{DEAD_PROXY}";\n')
    with (apt / "99mmdebstrap").open("a") as fh:  # a shared file: only the proxy line may go
        fh.write(f'Acquire::https::Proxy "{DEAD_PROXY}";\n')
    with (rootfs / "etc/environment").open("a") as fh:
        fh.write(f"http_proxy={DEAD_PROXY}\nHTTPS_PROXY={DEAD_PROXY}\n")
    (rootfs / "etc/ssh/ssh_host_ed25519_key").write_text("not a key\n")
    (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").write_text("not a key\n")
    machine_id = rootfs / "etc/machine-id"
    machine_id.unlink()
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    (rootfs / "etc/shadow-").write_bytes((rootfs / "etc/shadow").read_bytes())
    (rootfs / "etc/shadow-").chmod(0o640)
    (rootfs / "var/log/build.log").write_text("build output\n")
    (rootfs / "tmp/build-leftover").write_text("x\n")
    (rootfs / "var/lib/apt/lists/test_dists_noble_InRelease").write_text("stale\n")
    marker = rootfs / "etc/vmbuilder-xattr-test"
    marker.write_text("has a user xattr\n")
    os.setxattr(marker, USER_XATTR[0], USER_XATTR[1])


@pytest.fixture(scope="module")
def built(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """noble with the session's usual options (a cache hit when other tests built it), leftovers planted."""
    dest = tmp_path_factory.mktemp("exports") / "builds" / NAME
    build = builder.run("--suite", "noble", "--network", "none", "-d", str(dest)).check()
    TIMINGS["build"] = build.seconds
    plant_leftovers(build.rootfs)
    return build


@pytest.fixture(scope="module")
def second_export(exported: Exported) -> Iterator[Pending]:
    """The same export again, started as soon as the first is done and run at low priority while the
    consumers boot; test_two_exports_are_byte_identical compares the two. It must be done before
    another export of the same DEST starts (see the failure tests below them)."""
    pending = start_export(exported.dest, exported.out.parent / "out-b", nice=True)
    yield pending
    pending.stop()


@pytest.fixture(scope="module")
def exported(built: Build) -> Exported:
    """Every format, once, with each format's default compression (at LEVEL); the consumers all use these files."""
    result = start_export(built.dest, built.dest.parent.parent / "out-a").result()
    TIMINGS["export all formats"] = result.seconds
    return result


@pytest.fixture(scope="module")
def archives(exported: Exported, second_export: Pending) -> dict[str, Archive]:
    """The first export read back (asking for second_export here starts it before the slow tests)."""
    started = time.monotonic()
    found = {label: read_export(path) for label, path in rootfs_archives(exported).items()}
    TIMINGS["reading the archives back"] = time.monotonic() - started
    return found


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    print("\nexport test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


# -- what every archive holds: sorted, clamped, numeric ------------------------------------------------


def test_archive_entries_are_sorted_clamped_and_numeric(archives: dict[str, Archive]) -> None:
    """What makes the bytes reproducible: sorted entries, mtimes clamped to the epoch, numeric owners."""
    for label, archive in archives.items():
        assert archive.entries, f"{label} is empty"
        if label.endswith(".squashfs"):
            continue  # unsquashfs lists its own order; owners and times are checked through the tar stream
        assert all(e.mtime <= EPOCH for e in archive.entries), label
        assert all(not e.uname and not e.gname for e in archive.entries), f"{label} stores owner names"
        by_dir: dict[str, list[str]] = {}
        for e in archive.entries:
            parent, _, base = e.name.rpartition("/")
            by_dir.setdefault(parent, []).append(base)
        unsorted = [d for d, names in by_dir.items() if names != sorted(names, key=lambda n: n.encode())]
        assert not unsorted, f"{label}: entries not sorted by name in {unsorted[:5]}"


# -- nothing from the build or its host (acceptance 7) -------------------------------------------------


def proxy_lines(text: str) -> list[str]:
    pattern = re.compile(r"Acquire::\w+::Proxy|^\s*(export\s+)?\w*_proxy\s*=", re.I)
    return [ln for ln in text.splitlines() if pattern.search(ln)]


def leftovers(archive: Archive) -> list[str]:
    """Everything in ARCHIVE that the issue says must not be exported."""
    found = []
    names = archive.names()
    found += [n for n in names if re.fullmatch(r"etc/ssh/ssh_host_[^/]*", n)]
    for path in ("etc/machine-id", "var/lib/dbus/machine-id"):
        if path in names and archive.entry(path).kind == "f" and archive.contents.get(path, b"").strip():
            found.append(f"{path} is not empty")
    for path, data in archive.contents.items():
        if path.startswith(("etc/apt/", "etc/environment", "etc/profile.d/")):
            found += [f"{path}: {ln}" for ln in proxy_lines(data.decode(errors="replace"))]
    host_ns = [ln for ln in Path("/etc/resolv.conf").read_text().splitlines() if ln.startswith("nameserver")]
    resolv = archive.contents.get("etc/resolv.conf", b"").decode(errors="replace")
    found += [f"etc/resolv.conf: {ln}" for ln in host_ns if ln in resolv.splitlines()]
    found += [n for n in names if n == "etc/.resolv.conf.systemd-resolved.bak"]  # a copy of the build's
    files = [e for e in archive.entries if e.kind not in ("d",)]
    found += [e.name for e in files if e.name.startswith(("var/log/", "tmp/", "var/tmp/"))]
    found += [e.name for e in files if e.name.startswith("var/lib/apt/lists/") and e.kind == "f"]
    found += [e.name for e in files if re.fullmatch(r"etc/[^/]+-", e.name)]
    return found


def test_no_export_carries_build_leftovers(built: Build, archives: dict[str, Archive]) -> None:
    """Acceptance 7 on every format, against leftovers planted in the rootfs before the export."""
    assert (built.rootfs / "etc/apt/apt.conf.d/99test-proxy").exists()  # the plants are still in DEST
    for label, archive in archives.items():
        assert not leftovers(archive), f"{label} carries {leftovers(archive)}"
        # The strip removes lines, not a file's other settings.
        kept = archive.contents.get("etc/apt/apt.conf.d/99mmdebstrap", b"").decode()
        assert "Install-Recommends" in kept, f"{label}: 99mmdebstrap lost its other lines: {kept!r}"
        assert "etc/machine-id" in archive.names(), f"{label}: etc/machine-id must exist (empty)"


def test_metadata_of_lxd_and_lxc_images(exported: Exported, archives: dict[str, Archive]) -> None:
    """metadata.yaml (architecture, creation_date, properties, templates) and LXC's meta.tar.xz."""
    for flavour, var in (("lxd", "container"), ("incus", "instance")):
        unified = archives[f"{flavour}:{NAME}.{flavour}.tar.zst"].meta
        split = read_tar(exported.one(flavour, f"/{flavour}.tar.zst"), rootfs_prefix="rootfs/").meta
        assert unified == split, f"{flavour}: the unified and split metadata differ"
        data = yaml.safe_load(split["metadata.yaml"])
        assert data["architecture"] == "x86_64" and data["creation_date"] == EPOCH, data
        props = data["properties"]
        for key in ("os", "release", "version", "architecture", "variant", "serial", "description"):
            assert props.get(key), f"{flavour}: properties lack {key}: {props}"
        assert props["release"] == "noble" and str(props["version"]) == "24.04", props
        for target in ("/etc/hostname", "/etc/hosts"):
            rule = data["templates"][target]
            assert set(rule["when"]) >= {"create", "copy"}, rule
            assert "{{ " + var + ".name }}" in split["templates/" + rule["template"]].decode()
    meta = read_tar(exported.one("lxc", "/meta.tar.xz"), rootfs_prefix="rootfs/").meta
    for member in ("config", "config-user", "create-message", "expiry", "templates"):
        assert member in meta, f"meta.tar.xz lacks {member}: {sorted(meta)}"
    assert int(meta["expiry"]) > EPOCH
    assert set(meta["templates"].decode().split()) >= {"/etc/hostname", "/etc/hosts"}


# -- file capabilities and xattrs ----------------------------------------------------------------------


def getcap(path: Path) -> str:
    out = subprocess.run(["getcap", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split(maxsplit=1)[1].strip() if out.strip() else ""


def extract(archive: Archive, members: list[str], into: Path) -> dict[str, Path]:
    """MEMBERS (rootfs paths), extracted the way a consumer with xattr support does it."""
    into.mkdir(parents=True)
    if archive.path.name.endswith(".squashfs"):
        subprocess.run(["unsquashfs", "-q", "-n", "-f", "-d", str(into), str(archive.path), *members],
                       check=True, capture_output=True)  # fmt: skip
        return {m: into / m for m in members}
    raw = {m: archive.entry(m).raw for m in members}
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(archive.path), "-C", str(into),
                    *raw.values()], check=True, capture_output=True)  # fmt: skip
    return {m: into / r for m, r in raw.items()}


def test_file_capabilities_and_xattrs_survive_every_format(
    built: Build, archives: dict[str, Archive], tmp_path: Path
) -> None:
    """Issue: xattrs and file capabilities are kept (iputils-ping's cap_net_raw in noble)."""
    found = subprocess.run(["getcap", "-r", str(built.rootfs)], capture_output=True, text=True).stdout
    caps = {Path(line.split()[0]).relative_to(built.rootfs).as_posix(): line.split(maxsplit=1)[1]
            for line in found.splitlines() if line.strip()}  # fmt: skip
    assert "usr/bin/ping" in caps, f"noble's ping should carry a capability; getcap -r found {caps}"
    marker = "etc/vmbuilder-xattr-test"
    for n, (label, archive) in enumerate(sorted(archives.items())):
        if not archive.path.name.endswith(".squashfs"):
            for rel in caps:
                assert "security.capability" in archive.entry(rel).xattrs, f"{label}: {rel} has no capability"
        copies = extract(archive, [*caps, marker], tmp_path / f"x{n}")
        for rel, want in caps.items():
            got = getcap(copies[rel])
            assert got == want, f"{label}: {rel} has {got!r}, the rootfs {want!r}"
        assert os.getxattr(copies[marker], USER_XATTR[0]) == USER_XATTR[1], f"{label}: {marker} lost its xattr"


# -- LXD (acceptance 1) --------------------------------------------------------------------------------


def wait_lxd_running(instance: str, timeout: float = 90) -> str:
    """`lxc info` says RUNNING, then systemd inside settles; returns systemd's state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r"^Status: RUNNING", lxc_client("info", instance).stdout, re.M | re.I):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"LXD instance {instance} is not RUNNING after {timeout} s")
    state = "unknown"
    while time.monotonic() < deadline:
        out = lxc_client("exec", instance, "--", "systemctl", "is-system-running", check=False).stdout.strip()
        state = out or "unknown"
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    return state


def lxd_sh(instance: str, script: str) -> str:
    return lxc_client("exec", instance, "--", "/bin/sh", "-c", script).stdout.strip()


def test_lxd_imports_and_launches_both_image_forms(exported: Exported, lxd: None) -> None:
    """Acceptance 1: the unified and the split image import; instances reach running with their own names."""
    tag = str(os.getpid())
    unified = exported.one("lxd", f"{NAME}.lxd.tar.zst")  # zstd: the default LXD 5.0 imports
    split = (exported.one("lxd", "/lxd.tar.zst"), exported.one("lxd", "/rootfs.squashfs"))
    images = {f"vmbt-unified-{tag}": [str(unified)], f"vmbt-split-{tag}": [str(split[0]), str(split[1])]}
    instances = {f"vmbt-u{tag}": f"vmbt-unified-{tag}", f"vmbt-s{tag}": f"vmbt-split-{tag}"}
    try:
        started = time.monotonic()
        for alias, files in images.items():
            lxc_client("image", "import", *files, "--alias", alias, timeout=600)
        TIMINGS["lxd image import (both)"] = time.monotonic() - started
        fingerprint = json.loads(lxc_client("query", f"/1.0/images/aliases/vmbt-unified-{tag}").stdout)["target"]
        shown = json.loads(lxc_client("query", f"/1.0/images/{fingerprint}").stdout)
        assert shown["architecture"] == "x86_64", shown
        props = shown["properties"]
        assert (props["os"].lower(), props["release"], props["architecture"]) == ("ubuntu", "noble", "amd64"), props

        started = time.monotonic()
        for instance, alias in instances.items():
            lxc_client("launch", alias, instance, timeout=600)
        for instance in instances:
            state = wait_lxd_running(instance)
            failed = lxd_sh(instance, "systemctl list-units --failed --no-legend --plain || true")
            assert state == "running", f"{instance}: {state}, failed units: {failed}"
            # The metadata templates gave the instance its own name, in the kernel and in /etc/hosts.
            assert lxd_sh(instance, "hostname") == instance
            assert lxd_sh(instance, "cat /etc/hostname") == instance
            assert re.search(rf"^127\.0\.1\.1\s+{instance}$", lxd_sh(instance, "cat /etc/hosts"), re.M)
            assert lxd_sh(instance, "test -s /etc/machine-id && echo fresh") == "fresh"
        TIMINGS["lxd launch to running (both)"] = time.monotonic() - started
        started = time.monotonic()
        for instance in instances:
            lxc_client("stop", instance, timeout=120)
        TIMINGS["lxd stop (both)"] = time.monotonic() - started
    finally:
        for instance in instances:
            lxc_client("delete", "--force", instance, check=False)
        for alias in images:
            lxc_client("image", "delete", alias, check=False)
    left = lxc_client("list", "--format", "csv", "-c", "n").stdout.split()
    assert not set(left) & set(instances), left


# -- lxc-create -t local (acceptance 2) ----------------------------------------------------------------


def test_lxc_create_local_boots(exported: Exported, container: Callable[[Path], Container], lxcfs: Path,
                                tmp_path: Path) -> None:  # fmt: skip
    """Acceptance 2: lxc-create -t local from rootfs.tar.xz + meta.tar.xz, then lxc-start reaches running."""
    lxcpath = tmp_path / "lxcpath"
    lxcpath.mkdir()
    # The host's default.conf wants lxcbr0, which this host does not run; the image's own config follows.
    host_conf = tmp_path / "host.conf"
    host_conf.write_text("lxc.net.0.type = empty\n")
    meta, fstree = exported.one("lxc", "/meta.tar.xz"), exported.one("lxc", "/rootfs.tar.xz")
    started = time.monotonic()
    created = subprocess.run(
        ["lxc-create", "-P", str(lxcpath), "-n", "ct", "-f", str(host_conf), "-t", "local", "--",
         "--metadata", str(meta), "--fstree", str(fstree)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    TIMINGS["lxc-create -t local"] = time.monotonic() - started
    config = (lxcpath / "ct/config").read_text()
    assert "lxc.uts.name = ct" in config and "LXC_" not in config.replace("lxc.", ""), config
    started = time.monotonic()
    c = boot_within(container, lxcpath / "ct", "lxc-local noble", limit=30)
    TIMINGS["lxc-start to running"] = time.monotonic() - started
    assert c.failed_units() == []
    assert c.sh("hostname") == "ct" and c.sh("cat /etc/hostname") == "ct"
    assert re.search(r"^127\.0\.1\.1\s+ct$", c.sh("cat /etc/hosts"), re.M)
    c.stop()


# -- CloudStack: plain tar -x, then libvirt-lxc (acceptance 4) -----------------------------------------


def read_properties(path: Path) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in path.read_text().splitlines() if "=" in ln and not ln.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def uncompressed_size(path: Path) -> int:
    stream, proc = _open_stream(path)
    size = 0
    try:
        if path.suffix in (".gz", ".xz"):
            opener: Any = gzip.open if path.suffix == ".gz" else lzma.open
            with opener(stream) as fh:
                while chunk := fh.read(1 << 20):
                    size += len(chunk)
        else:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
    finally:
        stream.close()
        if proc is not None:
            proc.wait()
    return size


def test_template_properties_has_cloudstacks_fields(exported: Exported) -> None:
    """template.properties: what CloudStack's TemplateLocation.load() requires and createtmplt.sh writes."""
    tarball = next(p for p in exported.files["tar"] if ".tar" in p.name)
    props = read_properties(exported.one("tar", f"{NAME}.template.properties"))
    for key in ("filename", "size", "virtualsize", "uniquename", "tar", "tar.filename", "tar.size",
                "tar.virtualsize", "description", "hvm"):  # fmt: skip
        assert props.get(key), f"template.properties lacks {key}: {props}"
    assert props["hvm"] == "false" and props["tar"] == "true" and props["uniquename"] == NAME
    assert props["filename"] == props["tar.filename"] and props["filename"].endswith(".tar")
    size = uncompressed_size(tarball)
    assert int(props["size"]) == int(props["tar.size"]) == size, (props, size)
    assert int(props["virtualsize"]) >= size and int(props["tar.virtualsize"]) >= size
    assert "noble" in props["description"]
    if "checksum" in props:
        assert re.fullmatch(r"(\{SHA-256\})?[0-9a-f]{64}", props["checksum"]), props["checksum"]


def render_domain(dest: Path, uri: str) -> str:
    """The domain XML exactly as the libvirt plugin renders it for a build at DEST (no build runs)."""
    from vmbuilder_lxc import cli
    from vmbuilder_lxc.plugin import discover

    libvirt_cls = importlib.import_module("vmbuilder_lxc.plugins.libvirt").Libvirt
    ctx = cli.make_context("lxc", "ubuntu", discover())
    cli.configure(ctx, ["--suite", "noble", "--network", "none", "--libvirt", uri, "-d", str(dest)])
    for each in ctx.plugins:
        each.set_defaults()
    plugin: Any = next(p for p in ctx.plugins if isinstance(p, libvirt_cls))
    return str(plugin.render())


def test_cloudstack_tar_boots_under_libvirt(exported: Exported, domains: Callable[[str], Domain], libvirtd: str,
                                            tmp_path: Path) -> None:  # fmt: skip
    """Acceptance 4: unpacked with CloudStack's `tar -x -f` into a directory, defined, boots to running."""
    tarball = next(p for p in exported.files["tar"] if ".tar" in p.name)
    name = f"cs-{NAME}"
    dest = tmp_path / name
    volume = dest / "rootfs"
    # LibvirtStorageAdaptor.createDiskFromTemplate: mkdir -p, chmod 755, tar -x -f TEMPLATE -C DIR.
    volume.mkdir(parents=True)
    volume.chmod(0o755)
    started = time.monotonic()
    subprocess.run(["tar", "-x", "-f", str(tarball), "-C", str(volume)], check=True, cwd="/")
    TIMINGS["tar -x of the tar export"] = time.monotonic() - started

    # Owners come out as the archive's numbers, whatever users this host has under the same names.
    owned = [e for e in read_tar(tarball).entries if (e.uid or e.gid) and e.kind != "l"]
    assert owned, "expected some files not owned by root (e.g. /var/log/journal, /var/spool)"
    for e in owned:
        st = (volume / e.name).lstat()
        assert (st.st_uid, st.st_gid) == (e.uid, e.gid), f"{e.name}: {st.st_uid}:{st.st_gid} != {e.uid}:{e.gid}"

    xml = dest / "domain.xml"
    xml.write_text(render_domain(dest, libvirtd))
    valid = subprocess.run([vmbuilder_command(), "lxc", "validate", str(xml), "--libvirt", libvirtd],
                           capture_output=True, text=True, cwd="/")  # fmt: skip
    assert valid.returncode == 0, valid.stdout + valid.stderr
    domain = domains(name)
    domain.virsh("define", str(xml))
    started = time.monotonic()
    domain.virsh("start", name)
    state = domain.wait_running(timeout=60)
    assert state == "running", f"{state}, failed units: {domain.failed_units()}"
    TIMINGS["libvirt start to running"] = time.monotonic() - started
    assert domain.sh("test -s /etc/machine-id && echo fresh") == "fresh"
    domain.virsh("shutdown", name)
    domain.wait_state("shut off", timeout=30)


# -- a real build through a proxy ----------------------------------------------------------------------


def test_export_of_a_build_through_a_proxy(builder: Builder, tmp_path: Path) -> None:
    """Acceptance 7 end to end: a cold build whose downloads go through a real proxy on loopback.

    The guest must not keep the proxy (the --proxy help says so), and neither may the export made
    by the build itself (--export at build time, not `vmbuilder lxc export`).
    """
    proxy = ForwardProxy()
    dest, out = tmp_path / "px1", tmp_path / "px-out"
    try:
        started = time.monotonic()
        build = builder.run("--suite", "noble", "--network", "none", "--no-cache", "--proxy", proxy.url,
                            "--export", "tar", "--export-dir", str(out), "-d", str(dest)).check()  # fmt: skip
        TIMINGS["cold build through a proxy, with a tar export"] = time.monotonic() - started
    finally:
        proxy.close()
    assert proxy.requests, "the build did not use the proxy"
    tarball = Path(build.summary["exports"]["tar"][0])
    archive = read_tar(tarball)
    assert not leftovers(archive), leftovers(archive)
    in_guest = subprocess.run(["grep", "-rIl", proxy.url.rstrip("/"), str(dest / "rootfs/etc")],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
    assert not in_guest, f"the built guest keeps the build's proxy in {in_guest}"


def test_export_only_keeps_just_the_exports(builder: Builder, tmp_path: Path) -> None:
    """--export-only: the build's directory is removed and the summary points at the exports only."""
    dest, out = tmp_path / "only", tmp_path / "only-out"
    build = builder.run("--suite", "noble", "--network", "none", "-d", str(dest), "--export", "tar",
                        "--export-only", "--export-dir", str(out), "--keep-apt-lists").check()  # fmt: skip
    assert build.summary["dest"] is None and not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only-out"], list(tmp_path.iterdir())
    assert sorted(p.name for p in out.iterdir()) == ["only.tar", "only.template.properties"]
    assert build.summary["exports"]["tar"][0] == str(out / "only.tar")


# -- reproducibility (acceptance 5) --------------------------------------------------------------------


def test_two_exports_are_byte_identical(exported: Exported, second_export: Pending) -> None:
    """Acceptance 5: the same rootfs and SOURCE_DATE_EPOCH give the same sha256 for every file of every format."""
    second = second_export.result()
    TIMINGS["second export (niced, in the background)"] = second.seconds
    first_digests, second_digests = tree_digests(exported.out), tree_digests(second.out)
    assert sorted(first_digests) == sorted(second_digests)
    reported = sorted(str(p.relative_to(exported.out)) for p in exported.all_files())
    assert reported == sorted(first_digests), "files in --export-dir that the summary does not name"
    differ = [rel for rel in first_digests if first_digests[rel] != second_digests[rel]]
    assert not differ, f"not reproducible: {differ}"


# -- failures leave --export-dir as it was -------------------------------------------------------------


def test_existing_outputs_are_refused_without_overwrite(built: Build, exported: Exported) -> None:
    before = {p: sha256(p) for p in exported.files["tar"]}
    refused = run_export(built.dest, exported.out, "tar")
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--overwrite" in refused.stderr, refused.stderr
    assert {p: sha256(p) for p in exported.files["tar"]} == before
    again = run_export(built.dest, exported.out, "tar", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert {p: sha256(p) for p in exported.files["tar"]} == before  # and reproducible once more


def test_two_exports_of_one_build_at_once_both_succeed(built: Build, tmp_path: Path) -> None:
    """Exports stage hard-linked views; making one changes every inode's ctime, which made a tar
    reading another export's view fail ("file changed as we read it"). Now the second one waits."""
    first = start_export(built.dest, tmp_path / "first", "lxc")
    deadline = time.monotonic() + 120
    while "Exporting lxc" not in (first.logs / "stderr").read_text() and time.monotonic() < deadline:
        assert first.proc.poll() is None, (first.logs / "stderr").read_text()
        time.sleep(0.2)
    second = run_export(built.dest, tmp_path / "second", "tar")
    assert second.returncode == 0, second.stderr
    assert "waiting for another export" in second.stderr, second.stderr
    first.result()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_failing_export_leaves_nothing_behind(built: Build, small_tmpfs: Path) -> None:
    """An export that runs out of space fails and leaves neither partial files nor the staged view."""
    (small_tmpfs / "unrelated").write_text("kept\n")
    dest_before = {p.name for p in built.dest.iterdir()}  # the background export's view may be among them
    failed = run_export(built.dest, small_tmpfs, "tar,lxc")
    assert failed.returncode != 0, failed.stderr
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["unrelated"], list(small_tmpfs.iterdir())
    assert not {p.name for p in built.dest.iterdir()} - dest_before, "the failed export left its staged view"
    assert "Traceback" not in failed.stderr, failed.stderr


# -- a forward proxy on loopback -----------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host"}  # fmt: skip


class ForwardProxy:
    """A plain-HTTP forward proxy on 127.0.0.1 (what apt-cacher-ng would be), counting requests."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: dict[tuple[str, int], http.client.HTTPConnection]

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.relay()

            def do_HEAD(self) -> None:
                self.relay()

            def connection_to(self, host: str, port: int) -> http.client.HTTPConnection:
                if not hasattr(self, "upstream"):
                    self.upstream = {}
                if (host, port) not in self.upstream:
                    self.upstream[host, port] = http.client.HTTPConnection(host, port, timeout=60)
                return self.upstream[host, port]

            def relay(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.scheme != "http" or not url.hostname:
                    self.send_error(400, "absolute http:// URLs only")
                    return
                requests.append(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                target = url.path + (f"?{url.query}" if url.query else "")
                for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
                    conn = self.connection_to(url.hostname, url.port or 80)
                    try:
                        conn.request(self.command, target, headers=headers)
                        resp = conn.getresponse()
                        body = resp.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        del self.upstream[url.hostname, url.port or 80]
                        if attempt == 2:
                            raise
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(body))
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
