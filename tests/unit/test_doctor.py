"""`vmbuilder lxc doctor`: each check's logic against fake host state (probes and paths replaced)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from vmbuilder_lxc import cli, doctor
from vmbuilder_lxc import doctor_disk as disk
from vmbuilder_lxc import doctor_host as host
from vmbuilder_lxc import doctor_probes as p
from vmbuilder_lxc import doctor_virt as virt
from vmbuilder_lxc.cache import BaseCache
from vmbuilder_lxc.doctor_probes import Options, Probe, Result
from vmbuilder_lxc.plugin import command_parsers, commands_for, discover
from vmbuilder_lxc.suites import Release

HOST_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def opts(tmp_path: Path, **kw: object) -> Options:
    base: dict[str, object] = {"cache_dir": tmp_path / "cache", "dest": tmp_path / "builds" / "demo", "timeout": 5.0}
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


def fake_probe(answers: dict[str, Probe]) -> Callable[[Sequence[str], float], Probe]:
    """A probe() that answers by the command's name; unknown commands are 'not installed'."""

    def probe(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Probe:
        return answers.get(argv[0], Probe(False, None, ""))

    return probe


def fake_which(present: set[str]) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in present else None


def only(results: list[Result], check: str | None = None) -> Result:
    found = [r for r in results if check is None or r.check == check]
    assert len(found) == 1, results
    return found[0]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- keyrings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_id", "fix"),
    [("debian", "vmbuilder-fetch-keyring"), ("ubuntu", "apt-get install ubuntu-keyring"), ("fedora", "on Ubuntu")],
)
def test_missing_ubuntu_keyring_fails_with_the_hosts_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_id: str, fix: str
) -> None:
    monkeypatch.setattr(p, "host_os", lambda path=None: os_id)
    r = host.check_keyring("ubuntu", tmp_path / "ubuntu-archive-keyring.gpg", opts(tmp_path))
    assert (r.status, r.check) == ("fail", "keyring-ubuntu")
    assert "missing" in r.finding and fix in r.fix


def test_other_distros_keyring_problems_are_warnings(tmp_path: Path) -> None:
    r = host.check_keyring("debian", tmp_path / "debian-archive-keyring.gpg", opts(tmp_path))
    assert r.status == "warn" and r.fix == "apt-get install --reinstall debian-archive-keyring"


@pytest.mark.parametrize(("content", "finding"), [(b"", "is empty"), (b"\x01garbage", "not an OpenPGP keyring")])
def test_broken_keyring_contents(tmp_path: Path, content: bytes, finding: str) -> None:
    path = tmp_path / "ubuntu-archive-keyring.gpg"
    path.write_bytes(content)
    r = host.check_keyring("ubuntu", path, opts(tmp_path))
    assert r.status == "fail" and finding in r.finding, r


def test_keyring_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "k.gpg").mkdir()
    assert "not a regular file" in host.check_keyring("ubuntu", tmp_path / "k.gpg", opts(tmp_path)).finding


@pytest.mark.skipif(not HOST_KEYRING.exists(), reason="needs the host's debian-archive-keyring")
def test_real_keyring_is_ok_parsed_only_without_gpg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "which", fake_which(set()))
    r = host.check_keyring("debian", HOST_KEYRING, opts(tmp_path))
    assert r.status == "ok" and "parsed only" in r.finding


@pytest.mark.skipif(not HOST_KEYRING.exists(), reason="needs the host's debian-archive-keyring")
def test_keyring_whose_keys_all_expired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "which", fake_which({"gpg"}))
    colons = "pub:e:4096:1:AAAA:1::::\nfpr:::::::::AAAA:\npub:r:4096:1:BBBB:1::::\n"
    monkeypatch.setattr(p, "probe", fake_probe({"gpg": Probe(True, 0, colons)}))
    r = host.check_keyring("ubuntu", HOST_KEYRING, opts(tmp_path))
    assert r.status == "fail" and "expired or revoked" in r.finding


def test_no_signature_verifier_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "probe", fake_probe({}))
    r = only(host.check_verifier(opts(tmp_path)))
    assert r.status == "fail" and r.fix == "apt-get install gpgv"
    monkeypatch.setattr(p, "probe", fake_probe({"gpgv": Probe(True, 0, "gpgv (GnuPG) 2.2.40\n")}))
    assert only(host.check_verifier(opts(tmp_path))).status == "ok"


# -- bootstrappers and scripts ------------------------------------------------------------------------

MM = Probe(True, 0, "mmdebstrap 1.3.5\n")
DEB = Probe(True, 0, "debootstrap 1.0.128\n")


@pytest.mark.parametrize(
    ("answers", "status", "text"),
    [
        ({"mmdebstrap": MM, "debootstrap": DEB}, "ok", "mmdebstrap 1.3.5 (used by default), debootstrap 1.0.128"),
        ({"debootstrap": DEB}, "ok", "apt-get install mmdebstrap"),
        ({"mmdebstrap": MM}, "warn", "debootstrap is missing"),
        ({}, "fail", "neither mmdebstrap nor debootstrap"),
    ],
)
def test_bootstrappers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: dict[str, Probe], status: str, text: str
) -> None:
    monkeypatch.setattr(p, "probe", fake_probe(answers))
    r = only(host.check_bootstrappers(opts(tmp_path)))
    assert r.status == status and text in r.finding


def release(series: str, version: str) -> Release:
    return Release("ubuntu", series, version, series.capitalize(), None, dt.date(2020, 1, 1), None)


@pytest.fixture
def ubuntu_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Only the ubuntu plugin, serving jammy and noble; debootstrap's scripts in a tmp dir."""
    ubuntu = discover()["ubuntu"]
    monkeypatch.setattr(host, "distros", lambda: {"ubuntu": ubuntu})
    monkeypatch.setattr(host, "served", lambda cls, today=None: [release("jammy", "22.04"), release("noble", "24.04")])
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    monkeypatch.setattr(host, "DEBOOTSTRAP_SCRIPTS", scripts)
    return scripts


def test_suites_without_a_script_are_fine_with_gutsy(ubuntu_only: Path, tmp_path: Path) -> None:
    (ubuntu_only / "gutsy").touch()
    (ubuntu_only / "jammy").touch()
    r = only(host.check_scripts(opts(tmp_path)))
    assert r.status == "ok" and r.check == "debootstrap-scripts-ubuntu"
    assert "supported suites jammy, noble" in r.finding and "for noble: fine" in r.finding and "gutsy" in r.finding


@pytest.mark.parametrize(("mmdebstrap", "status"), [(False, "fail"), (True, "warn")])
def test_missing_gutsy_script(
    ubuntu_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mmdebstrap: bool, status: str
) -> None:
    monkeypatch.setattr(p, "which", fake_which({"mmdebstrap"} if mmdebstrap else set()))
    r = only(host.check_scripts(opts(tmp_path)))
    assert r.status == status and "gutsy is missing" in r.finding and "reinstall debootstrap" in r.fix


def test_served_suites_of_the_real_plugins() -> None:
    """Supported and development releases only, never ones the plugin refuses."""
    ubuntu = discover()["ubuntu"]
    assert issubclass(ubuntu, host.DebianFamily)
    suites = [r.series for r in host.served(ubuntu, dt.date(2024, 6, 1))]
    assert "noble" in suites and "lucid" not in suites and "warty" not in suites


# -- lxcfs and cgroups --------------------------------------------------------------------------------


@pytest.fixture
def mountinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    path = tmp_path / "mountinfo"
    monkeypatch.setattr(p, "MOUNTINFO", path)

    def write(extra: str) -> None:
        path.write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n" + extra)

    return write


LXCFS_LINE = "46 27 0:42 / /var/lib/lxcfs rw,nosuid - fuse.lxcfs lxcfs rw,allow_other\n"


@pytest.mark.parametrize(
    ("answer", "status", "text", "fix"),
    [
        (Probe(True, 0, "regular file\n"), "ok", "running", ""),
        (Probe(True, 1, "stat: cannot stat: Transport endpoint is not connected\n"), "warn", "stale mount",
         "umount -l /var/lib/lxcfs"),
        (Probe(True, None, "", timed_out=True), "warn", "did not answer", "umount -l /var/lib/lxcfs"),
    ],
)  # fmt: skip
def test_lxcfs_mounted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mountinfo: Callable[[str], None],
    answer: Probe,
    status: str,
    text: str,
    fix: str,
) -> None:
    mountinfo(LXCFS_LINE)
    monkeypatch.setattr(p, "probe", fake_probe({"stat": answer}))
    r = only(host.check_lxcfs(opts(tmp_path)))
    assert r.status == status and text in r.finding and fix in r.fix


@pytest.mark.parametrize(("installed", "text", "fix"), [(True, "not mounted", "start lxcfs"),
                                                        (False, "not installed", "apt-get install lxcfs")])  # fmt: skip
def test_lxcfs_not_mounted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mountinfo: Callable[[str], None],
    installed: bool,
    text: str,
    fix: str,
) -> None:
    mountinfo("")
    monkeypatch.setattr(p, "which", fake_which({"lxcfs"} if installed else set()))
    r = only(host.check_lxcfs(opts(tmp_path)))
    assert r.status == "warn" and text in r.finding and fix in r.fix


def test_mountinfo_unescapes_targets(tmp_path: Path) -> None:
    path = tmp_path / "mountinfo"
    path.write_text("30 22 0:50 / /mnt/a\\040b rw shared:1 - tmpfs none rw\n")
    assert p.mounts(path) == [p.Mount("/mnt/a b", "tmpfs", "none")]


@pytest.mark.parametrize(
    ("layout", "status", "text"),
    [("unified", "ok", "unified"), ("hybrid", "warn", "hybrid"), ("legacy", "warn", "legacy"), ("none", "warn", "no")],
)
def test_cgroup_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, status: str, text: str) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    if layout == "unified":
        (root / "cgroup.controllers").write_text("cpu memory\n")
    elif layout == "hybrid":
        (root / "memory").mkdir()
        (root / "unified").mkdir()
    elif layout == "legacy":
        (root / "memory").mkdir()
    monkeypatch.setattr(host, "CGROUP_ROOT", root)
    monkeypatch.setattr(host, "newest_systemd_258", lambda today=None: ["ubuntu resolute"])
    r = only(host.check_cgroups(opts(tmp_path)))
    assert r.status == status and r.finding.startswith(text), r
    if layout in ("hybrid", "legacy"):
        assert "ubuntu resolute" in r.finding and "libvirt-lxc" in r.finding
        assert "systemd.unified_cgroup_hierarchy=1" in r.fix


def test_systemd_258_suites_come_from_the_traits_table(monkeypatch: pytest.MonkeyPatch) -> None:
    ubuntu = discover()["ubuntu"]
    monkeypatch.setattr(host, "distros", lambda: {"ubuntu": ubuntu})
    monkeypatch.setattr(
        host, "served", lambda cls, today=None: [release("noble", "24.04"), release("resolute", "26.04")]
    )
    assert host.newest_systemd_258() == ["ubuntu resolute"]


# -- subids and binfmt ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "status", "text"),
    [
        ("root:100000:65536\n", "ok", "65536 subordinate ids"),
        ("root:100000:1000\nroot:200000:1000\n", "warn", "2000 subordinate ids"),
        ("lxd:100000:65536\n", "warn", "0 subordinate ids"),
        (None, "warn", "is missing"),
    ],
)
def test_subids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, status: str, text: str) -> None:
    files = (tmp_path / "subuid", tmp_path / "subgid")
    for f in files:
        if content is not None:
            f.write_text(content)
    monkeypatch.setattr(host, "SUBID_FILES", files)
    monkeypatch.setattr(p, "which", fake_which({"newuidmap", "newgidmap"}))
    results = host.check_subids(opts(tmp_path))
    for name in ("subuid", "subgid"):
        r = only(results, name)
        assert r.status == status and text in r.finding
        if status != "ok":
            assert "usermod --add-subuids" in r.fix
    assert only(results, "uidmap").status == "ok"


def test_missing_newuidmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "SUBID_FILES", ())
    monkeypatch.setattr(p, "which", fake_which(set()))
    r = only(host.check_subids(opts(tmp_path)), "uidmap")
    assert r.status == "warn" and r.fix == "apt-get install uidmap"


@pytest.fixture
def binfmt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "binfmt_misc"
    directory.mkdir()
    monkeypatch.setattr(host, "BINFMT_DIR", directory)
    monkeypatch.setattr(host, "host_machine", lambda: "x86_64")
    monkeypatch.setattr(p, "MOUNTINFO", tmp_path / "no-mountinfo")
    return directory


def register(directory: Path, tmp_path: Path, name: str, flags: str, enabled: bool = True) -> None:
    interpreter = tmp_path / f"qemu-{name}"
    interpreter.touch()
    (directory / "status").write_text("enabled\n")
    state = "enabled" if enabled else "disabled"
    (directory / f"qemu-{name}").write_text(f"{state}\ninterpreter {interpreter}\nflags: {flags}\noffset 0\n")


def test_binfmt_not_mounted_is_a_warning_unless_asked(binfmt: Path, tmp_path: Path) -> None:
    r = only(host.check_binfmt(opts(tmp_path)))
    assert r.status == "warn" and "not mounted" in r.finding
    assert "mount -t binfmt_misc" in r.fix and "qemu-user-static" in r.fix and "update-binfmts --enable" in r.fix
    assert only(host.check_binfmt(opts(tmp_path, arches=("arm64",)))).status == "fail"
    assert only(host.check_binfmt(opts(tmp_path, arches=("amd64", "i386")))).status == "warn"  # native only


def test_binfmt_registered_with_f_flag(binfmt: Path, tmp_path: Path) -> None:
    register(binfmt, tmp_path, "aarch64", "POCF")
    r = only(host.check_binfmt(opts(tmp_path, arches=("arm64",))))
    assert r.status == "ok" and "arm64" in r.finding


@pytest.mark.parametrize(
    ("flags", "enabled", "text"),
    [("POC", True, "without the F flag"), ("POCF", False, "disabled")],
)
def test_binfmt_registration_problems(binfmt: Path, tmp_path: Path, flags: str, enabled: bool, text: str) -> None:
    register(binfmt, tmp_path, "aarch64", flags, enabled)
    r = only(host.check_binfmt(opts(tmp_path, arches=("arm64",))))
    assert r.status == "fail" and text in r.finding
    assert only(host.check_binfmt(opts(tmp_path))).status == "warn"  # nobody asked for arm64


def test_binfmt_asked_arch_missing(binfmt: Path, tmp_path: Path) -> None:
    register(binfmt, tmp_path, "aarch64", "F")
    r = only(host.check_binfmt(opts(tmp_path, arches=("arm64", "riscv64"))))
    assert r.status == "fail" and "riscv64: no qemu-riscv64 registration" in r.finding


def test_bad_arch_is_a_user_error() -> None:
    assert host.parse_arches(["arm64,armhf", "riscv64"]) == ("arm64", "armhf", "riscv64")
    with pytest.raises(cli.UserError):
        host.parse_arches(["arm64;rm"])


# -- libvirt, LXD, Incus --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "text", "fix"),
    [
        (Probe(True, 0, "lxc:///\n"), "ok", "answers at lxc:///", ""),
        (Probe(True, 1, "error: failed to connect to the hypervisor\nerror: Failed to connect socket to "
                        "'/var/run/libvirt/libvirt-sock': No such file or directory\n"),
         "warn", "not running", "libvirtd"),
        (Probe(True, 1, "error: no connection driver available for lxc:///\n"), "warn", "without its LXC driver",
         "libvirt-daemon-driver-lxc"),
        (Probe(True, None, "", timed_out=True), "warn", "did not answer", "restart libvirtd"),
        (Probe(False, None, ""), "warn", "not installed", "apt-get install libvirt-daemon-system"),
    ],
)  # fmt: skip
def test_libvirt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: Probe, status: str, text: str, fix: str
) -> None:
    monkeypatch.setattr(p, "which", fake_which({"virsh"} if answer.found else set()))
    monkeypatch.setattr(p, "probe", fake_probe({"virsh": answer}))
    r = only(virt.check_libvirt(opts(tmp_path)))
    assert r.status == status and text in r.finding and fix in r.fix


@pytest.fixture
def lxd_socket(tmp_path: Path) -> Iterator[Path]:
    """A fake LXD API socket that answers GET /1.0 once."""
    path = tmp_path / "lxd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            body = json.dumps({"metadata": {"environment": {"server_version": "5.0.2"}}}).encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    server.close()


def test_lxd_answers_and_incus_absent_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lxd_socket: Path
) -> None:
    monkeypatch.setattr(virt, "LXD_SOCKETS", (lxd_socket,))
    monkeypatch.setattr(virt, "INCUS_SOCKETS", (tmp_path / "none.sock",))
    monkeypatch.setattr(p, "which", fake_which({"lxc", "lxd"}))
    results = virt.check_lxd_incus(opts(tmp_path))
    assert only(results, "lxd") == Result("lxd", "ok", "LXD 5.0.2 answers on its socket")
    assert only(results, "incus").status == "ok"


def test_lxd_installed_but_down_and_nothing_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(virt, "LXD_SOCKETS", (tmp_path / "lxd.sock",))
    monkeypatch.setattr(virt, "INCUS_SOCKETS", (tmp_path / "incus.sock",))
    monkeypatch.setattr(p, "which", fake_which({"lxd"}))
    results = virt.check_lxd_incus(opts(tmp_path))
    assert only(results, "lxd").status == "warn" and "does not answer" in only(results, "lxd").finding
    assert only(results, "incus").status == "ok"  # LXD is there; Incus is not needed too
    monkeypatch.setattr(p, "which", fake_which(set()))
    results = virt.check_lxd_incus(opts(tmp_path))
    assert [r.status for r in results] == ["warn", "warn"] and "apt-get install incus" in results[1].fix


# -- space, interrupted builds, the cache ------------------------------------------------------------


def test_space(tmp_path: Path) -> None:
    ok = disk.check_space(opts(tmp_path, min_free=0))
    assert [r.status for r in ok] == ["ok", "ok"] and "would be created in" in ok[0].finding
    low = disk.check_space(opts(tmp_path, min_free=1 << 62))
    assert [r.status for r in low] == ["fail", "fail"] and "less than" in low[1].finding
    (tmp_path / "file").touch()
    r = disk.check_space_at("space-cache", "--cache-dir", tmp_path / "file", opts(tmp_path, min_free=0), "--cache-dir")
    assert r.status == "fail" and "not a directory" in r.finding


def test_space_uses_the_builds_own_preflight(tmp_path: Path) -> None:
    """A place the build's preflight refuses is a failure with the build's own words."""
    results = disk.check_space(opts(tmp_path, cache_dir=Path("/proc/vmbuilder"), dest=Path("/sys/x/demo"), min_free=0))
    assert [r.status for r in results] == ["fail", "fail"]
    assert "kernel filesystem" in results[0].finding and "--cache-dir" in results[0].fix
    assert results[1].finding.startswith("-d /sys/x/demo") and "choose -d" in results[1].fix


def test_stale_partial_builds(tmp_path: Path) -> None:
    parent = tmp_path / "builds"
    stale = parent / ".demo.ab12cd.vmbuilder-partial"
    running = parent / ".other.x9y8.vmbuilder-partial"
    old = parent / f".web.old-{dead_pid()}.vmbuilder-partial"
    for d in (stale, running, old):
        d.mkdir(parents=True)
    (stale / ".pid").write_text(str(dead_pid()))
    (running / ".pid").write_text(str(os.getpid()))
    r = only(disk.check_partials(opts(tmp_path)))
    assert r.status == "warn" and "2 left by interrupted builds" in r.finding
    assert stale.name in r.finding and old.name in r.finding and running.name not in r.finding
    assert r.fix.startswith("the next build of demo, web there removes them, or: rm -rf --one-file-system ")
    assert str(stale) in r.fix and str(running) not in r.fix
    assert only(disk.check_partials(opts(tmp_path, dest=tmp_path / "elsewhere" / "x"))).status == "ok"


def store(bases: Path, key: str, meta: dict[str, object] | None = None) -> bool:
    """A real cache entry of a tiny base (BaseCache.store), its marker optionally replaced."""
    root = bases.parent.parent / f"root-{key}"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text("base\n")
    cache = BaseCache(bases.parent)
    with cache.locked(key):
        cache.store(key, root, {"suite": "noble"}, {})
    if meta is not None:
        (bases / f"{key}.json").write_text(json.dumps(meta))
    return True


def test_cache_valid_and_absent(tmp_path: Path) -> None:
    assert "does not exist yet" in only(disk.check_cache(opts(tmp_path))).finding
    store(tmp_path / "cache" / "bases", "a" * 32)
    r = only(disk.check_cache(opts(tmp_path, verify_cache=True)))
    assert r == Result("cache", "ok", f"{tmp_path / 'cache' / 'bases'}: 1 valid entries (digests checked)")


def _edit_in_place(bases: Path, key: str) -> None:
    """Same size and mtime, other bytes: only a full check sees it."""
    path = bases / f"{key}.tree/rootfs/etc/hostname"
    st = path.stat()
    path.write_text("evil\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda b: (b / "k.tree.partial").mkdir(), "leftover .partial"),
        (lambda b: (store(b, "k"), (b / "k.json").unlink()), "a base without its metadata"),
        (lambda b: (b / "k.json").write_text("{}"), "an older cache format"),
        (lambda b: (store(b, "k"), (b / "k.json").write_text("{not json")), "no readable marker"),
        (lambda b: (store(b, "k"), (b / "k.tree/rootfs/etc/hostname").write_text("longer")), "changed since"),
        (lambda b: (b / "k.tar.zst").write_bytes(b"x"), "a base without its metadata"),
    ],
)
def test_broken_cache_entries(tmp_path: Path, make: Callable[[Path], object], text: str) -> None:
    bases = tmp_path / "cache" / "bases"
    bases.mkdir(parents=True)
    make(bases)
    store(bases, "good")
    r = only(disk.check_cache(opts(tmp_path)))
    assert r.status == "warn" and text in r.finding, r
    assert "the next build of the same inputs removes and rebuilds them" in r.fix
    assert f"rm -rf {bases}/k." in r.fix and "good" not in r.fix and ".lock" not in r.fix


def test_cache_digest_mismatch_only_with_verify(tmp_path: Path) -> None:
    bases = tmp_path / "cache" / "bases"
    store(bases, "k")
    _edit_in_place(bases, "k")
    assert only(disk.check_cache(opts(tmp_path))).status == "ok"
    r = only(disk.check_cache(opts(tmp_path, verify_cache=True)))
    assert r.status == "warn" and "does not match its SHA-256" in r.finding


def test_cache_entry_being_stored_is_left_alone(tmp_path: Path) -> None:
    import fcntl

    bases = tmp_path / "cache" / "bases"
    bases.mkdir(parents=True)
    (bases / "k.tree.partial").mkdir()
    with open(bases / "k.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        # flock locks belong to the open file description, so another open() in this process conflicts.
        assert only(disk.check_cache(opts(tmp_path))).status == "ok"
    assert only(disk.check_cache(opts(tmp_path))).status == "warn"


# -- the runner and the command ---------------------------------------------------------------------------


@pytest.fixture
def config_home(no_host_config: Path) -> Iterator[Path]:
    """An empty HOME and no /etc/vmbuilder.cfg; doctor's once-per-run config cache is cleared."""
    doctor.build_config.cache_clear()
    yield no_host_config
    doctor.build_config.cache_clear()


def test_config_none(config_home: Path) -> None:
    defaults, result = doctor.build_config()
    assert result == Result("config", "ok", "config files a build reads: none")
    assert dict(defaults) == {"cache-dir": str(p.DEFAULT_CACHE_DIR), "dest": "ubuntu-lxc"}


@pytest.mark.parametrize(
    ("content", "status", "text"),
    [
        ("[DEFAULT]\nunknown-key = 1\n", "warn", "unknown key 'unknown-key'"),
        ("[DEFAULT]\ncache-dir = /proc/x\n", "fail", "kernel filesystem"),
        ("no sections\n", "fail", "cannot read config file"),
    ],
)
def test_config_problems(config_home: Path, content: str, status: str, text: str) -> None:
    (config_home / ".vmbuilder.cfg").write_text(content)
    result = only(doctor.check_config(Options()))
    assert result.status == status and text in result.finding and result.fix, result


def test_defaults_come_from_the_config(
    config_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (config_home / ".vmbuilder.cfg").write_text(f"[DEFAULT]\ncache-dir = {tmp_path / 'cfgcache'}\n")
    seen: list[Options] = []

    def fake(o: Options) -> list[Result]:
        seen.append(o)
        return []

    monkeypatch.setattr(doctor, "CHECKS", (doctor.Check("x", "a fake", fake),))
    assert cli.main(["lxc", "doctor", "-d", str(tmp_path / "d")]) == 0
    assert seen[0].cache_dir == tmp_path / "cfgcache" and seen[0].dest == tmp_path / "d"
    assert capsys.readouterr().err == ""


def test_a_crashing_check_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    def boom(o: Options) -> list[Result]:
        raise RuntimeError("probe exploded")

    checks = [doctor.Check("boom", "", boom), doctor.Check("fine", "", lambda o: [Result("fine", "ok", "yes")])]
    results = doctor.run_checks(opts(tmp_path), checks)
    assert results[0].status == "warn" and "RuntimeError: probe exploded" in results[0].finding
    assert results[1] == Result("fine", "ok", "yes")


def test_table_and_exit_code() -> None:
    results = [Result("a", "ok", "fine"), Result("bb", "fail", "broken", "do this")]
    assert (
        doctor.format_table(results) == "OK   a:  fine\nFAIL bb: broken; fix: do this\n1 ok, 0 warnings, 1 failures\n"
    )
    assert doctor.exit_code(results) == 1 and doctor.exit_code(results[:1]) == 0
    assert doctor.exit_code([Result("w", "warn", "meh", "x")]) == 0


def test_every_check_has_a_unique_name() -> None:
    names = [c.name for c in doctor.CHECKS]
    assert len(names) == len(set(names)) and all(c.about for c in doctor.CHECKS)


def test_command_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vmbuilder lxc doctor --json ...` reaches doctor.main with its options; FAIL means exit 1."""
    seen: list[Options] = []

    def fake(o: Options) -> list[Result]:
        seen.append(o)
        return [Result("x", "fail", "broken", "fix it")]

    monkeypatch.setattr(doctor, "CHECKS", (doctor.Check("x", "a fake", fake),))
    argv = ["lxc", "doctor", "--json", "-d", str(tmp_path / "d"), "--cache-dir", str(tmp_path / "c"),
            "--arch", "arm64,riscv64", "--min-free", "0.5", "--timeout", "3"]  # fmt: skip
    assert cli.main(argv) == 1
    assert json.loads(capsys.readouterr().out) == [
        {"check": "x", "status": "fail", "finding": "broken", "fix": "fix it"}
    ]
    assert seen == [Options(tmp_path / "c", tmp_path / "d", ("arm64", "riscv64"), 1 << 29, 3.0, False)]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--min-free", "x"], "--min-free: 'x' is not a number of GiB"),
        (["--timeout", "0"], "--timeout: '0' must be between"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["-d", "a\nb"], "control characters"),
        (["--cache-dir", ""], "empty"),
        (["--arch", "arm64;x"], "not a Debian architecture name"),
    ],
)
def test_bad_options_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], text: str) -> None:
    assert cli.main(["lxc", "doctor", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and text in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("vmbuilder: error: ")


def test_command_is_registered_with_its_parser() -> None:
    plugins = discover()
    assert "doctor" in commands_for(plugins, "lxc")
    parser = command_parsers(plugins, "lxc")["doctor"]
    assert parser.prog == "vmbuilder lxc doctor"
    assert {"--json", "--cache-dir", "--dest", "--arch"} <= set(parser._option_string_actions)
