"""Building without root (userns.py): the id maps, the subordinate ranges, the refusals in preflight."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import DictSettings
from vmbuilder_lxc import userns
from vmbuilder_lxc.idmap import IdMap
from vmbuilder_lxc.log import UserError


class Settings(DictSettings):
    """DictSettings plus what userns reads and sets: item access, explicit(), set()."""

    def __init__(self, explicit: Any = (), **values: Any) -> None:
        super().__init__(**values)
        self.given = set(explicit)

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name)

    def explicit(self, name: str) -> bool:
        return name in self.given

    def set(self, name: str, value: Any, source: str = "plugin") -> None:
        self.values[name] = value
        self.given.add(name)


def subids(tmp_path: Path, uid_lines: str, gid_lines: str | None = None) -> tuple[Path, Path]:
    u, g = tmp_path / "subuid", tmp_path / "subgid"
    u.write_text(uid_lines)
    g.write_text(uid_lines if gid_lines is None else gid_lines)
    return u, g


def test_plan_maps_guest_root_to_the_first_big_enough_range_and_the_user_at_count(tmp_path: Path) -> None:
    u, g = subids(tmp_path, "other:100000:65536\n1234:200000:1000\n1234:400000:65536\n1234:900000:65536\n")
    p = userns.plan(uid=1234, gid=1234, subuid=u, subgid=g)  # uid 1234 has no passwd entry here: the number counts
    assert p.idmap == IdMap(400000, 400000, 65536)
    assert p.uid_args() == ["0", str(p.idmap.uid_start), "65536", "65536", "1234", "1"]


def test_plan_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns, "owner_names", lambda uid: ["alice", str(uid)])
    u, g = subids(tmp_path, "alice:200000:1000\nalice:300000:65536\n", "alice:500000:70000\n")
    p = userns.plan(uid=1000, gid=1001, subuid=u, subgid=g)
    assert p.idmap == IdMap(300000, 500000, 65536)
    assert p.gid_args() == ["0", "500000", "65536", "65536", "1001", "1"]


@pytest.mark.parametrize(
    "uid_lines,gid_lines,where",
    [
        ("", "alice:100000:65536\n", "subuid"),
        ("alice:100000:65536\n", "bob:100000:65536\n", "subgid"),
        ("alice:100000:65535\n", "alice:100000:65536\n", "subuid"),  # too small: nobody (65534) needs 65536
    ],
)
def test_plan_refuses_missing_or_small_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid_lines: str, gid_lines: str, where: str
) -> None:
    monkeypatch.setattr(userns, "owner_names", lambda uid: ["alice", str(uid)])
    u, g = subids(tmp_path, uid_lines, gid_lines)
    with pytest.raises(UserError) as err:
        userns.plan(uid=1000, gid=1000, subuid=u, subgid=g)
    assert where in str(err.value) and "usermod --add-subuids" in str(err.value) and "\n" not in str(err.value)
    # A user without ranges gets the message a non-root build always got, then the way out.
    assert str(err.value).startswith("building needs root (or, to build without it, a range of 65536 ids")


def test_preflight_without_ranges_comes_before_the_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_range() -> userns.Plan:
        raise UserError("building needs root (or ...)")

    monkeypatch.setattr(userns, "plan", no_range)
    with pytest.raises(UserError, match="^building needs root"):
        userns.preflight(Settings(libvirt="lxc:///"), Path("/var/lib/lxc/c1"))


def test_plan_refuses_a_range_holding_the_users_own_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns, "owner_names", lambda uid: ["alice", str(uid)])
    u, g = subids(tmp_path, "alice:1000:65536\n")
    with pytest.raises(UserError, match="own uid 1000 lies inside"):
        userns.plan(uid=1000, gid=5000000, subuid=u, subgid=g)


@pytest.mark.parametrize(
    "values,dest,problem",
    [
        ({"libvirt": "lxc:///"}, "/tmp/x/c1", "--libvirt"),
        ({"idmap": "auto"}, "/tmp/x/c1", "--idmap"),
        ({"backing": "overlay"}, "/tmp/x/c1", "--backing overlay"),
        ({"backing": "btrfs"}, "/tmp/x/c1", "--backing btrfs"),
        ({}, "/var/lib/lxc/c1", "/var/lib/lxc"),
    ],
)
def test_refusals(values: dict[str, Any], dest: str, problem: str) -> None:
    found = userns.refusals(Settings(**values), Path(dest))
    assert len(found) == 1 and problem in found[0][0], found
    assert not userns.refusals(Settings(backing="dir", libvirt="", idmap=""), Path("/tmp/x/c1"))


def plan_for(uid: int, gid: int) -> userns.Plan:
    return userns.Plan(IdMap(200000, 300000, 65536), uid, gid)


def test_ns_writable(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    st = d.stat()
    assert userns.ns_writable(d, plan_for(st.st_uid, st.st_gid))  # owner and group mapped: CAP_DAC_OVERRIDE
    assert not userns.ns_writable(d, plan_for(st.st_uid, st.st_gid + 1))  # group not mapped, o-w
    d.chmod(0o1777)
    assert userns.ns_writable(d, plan_for(st.st_uid + 1, st.st_gid + 1))  # like /tmp
    assert not userns.ns_writable(tmp_path / "missing", plan_for(st.st_uid, st.st_gid))


def test_preflight_refuses_without_uidmap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns, "plan", lambda: plan_for(1000, 1000))
    monkeypatch.setattr(userns.shutil, "which", lambda tool, path=None: None)
    with pytest.raises(UserError, match="newuidmap, which is not installed; install the uidmap package"):
        userns.preflight(Settings(), Path("/tmp/x/c1"))


def test_preflight_refuses_when_the_kernel_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns, "plan", lambda: plan_for(1000, 1000))
    monkeypatch.setattr(userns.shutil, "which", lambda tool, path=None: f"/usr/bin/{tool}")
    monkeypatch.setattr(userns, "_kernel_refusal", lambda: "/proc/sys/user/max_user_namespaces is 0")
    with pytest.raises(UserError, match="does not let users create user namespaces"):
        userns.preflight(Settings(), Path("/tmp/x/c1"))


def test_preflight_sets_the_users_cache_and_checks_the_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns.shutil, "which", lambda tool, path=None: f"/usr/bin/{tool}")
    monkeypatch.setattr(userns, "_kernel_refusal", lambda: None)
    st = tmp_path.stat()
    monkeypatch.setattr(userns, "plan", lambda: plan_for(st.st_uid, st.st_gid))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    s = Settings(cache=True, **{"cache-dir": "/var/cache/vmbuilder-lxc"})
    p = userns.preflight(s, tmp_path / "b" / "c1")
    assert p.uid == st.st_uid
    assert s.values["cache-dir"] == str(tmp_path / "xdg" / "vmbuilder-lxc")
    assert (tmp_path / "xdg" / "vmbuilder-lxc").is_dir()
    # An explicit --cache-dir stays; one the namespace's root could not write is refused.
    locked, shared = tmp_path / "locked", tmp_path / "shared"
    locked.mkdir(mode=0o755)
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(userns, "plan", lambda: plan_for(st.st_uid + 1, st.st_gid + 1))
    s = Settings(explicit=("cache-dir",), cache=True, **{"cache-dir": str(locked / "c")})
    with pytest.raises(UserError, match="--cache-dir .* is not writable inside the build's user namespace"):
        userns.preflight(s, shared / "c1")
    with pytest.raises(UserError, match=f"-d {locked}/c1: {locked} is not writable"):
        userns.preflight(Settings(cache=False), locked / "c1")


def test_user_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/srv/cache")
    assert userns.user_cache_dir() == Path("/srv/cache/vmbuilder-lxc")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # the spec says: ignore a relative one
    monkeypatch.setenv("HOME", "/home/alice")
    assert userns.user_cache_dir() == Path("/home/alice/.cache/vmbuilder-lxc")


def test_exit_code_as_a_shell_reports_it() -> None:
    assert userns.exit_code(2 << 8) == 2
    assert userns.exit_code(0) == 0
    assert userns.exit_code(signal.SIGTERM) == 143
    assert userns.exit_code(signal.SIGKILL) == 137


def test_inactive_outside_a_namespace() -> None:
    assert not userns.active() and userns.current_map() is None
    assert userns.host_pid() == os.getpid()
    assert userns.pid_exists(os.getpid())
    userns.give_back(Path("/nonexistent"))  # a no-op in a root build


def test_give_back_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exports, the directories made for them, DEST, its config and marker: to the user (guest id 65536)."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    monkeypatch.setitem(userns._state, "map", IdMap(200000, 200000, 65536))
    mine = tmp_path / "home"
    (mine / "ex" / "c1.lxc").mkdir(parents=True)
    os.chown(mine, 4242, 4242)  # the user's home: not made by the build, left alone
    (mine / "ex" / "c1.lxc" / "rootfs.tar.xz").write_bytes(b"x")
    (mine / "ex" / "c1.tar").write_bytes(b"x")
    dest = mine / "c1"
    (dest / "rootfs").mkdir(parents=True)
    for name in ("config", "vmbuilder-lxc.json"):
        (dest / name).write_text("x")
    exports = {"lxc": [str(mine / "ex/c1.lxc/rootfs.tar.xz")], "tar": [str(mine / "ex/c1.tar")]}
    userns.give_back_outputs({"exports": exports}, dest)
    for path in ("ex", "ex/c1.lxc", "ex/c1.lxc/rootfs.tar.xz", "ex/c1.tar", "c1", "c1/config", "c1/vmbuilder-lxc.json"):
        assert (mine / path).stat().st_uid == 65536, path
    assert (dest / "rootfs").stat().st_uid == 0 and mine.stat().st_uid == 4242


def test_refuse_early_only_for_users_who_could_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns, "plan", lambda: plan_for(1000, 1000))
    with pytest.raises(UserError, match="--libvirt defines a domain"):
        userns.refuse_early(Settings(libvirt="lxc:///"), Path("/tmp/x/c1"))

    def no_range() -> userns.Plan:
        raise UserError("building needs root (or ...)")

    monkeypatch.setattr(userns, "plan", no_range)
    userns.refuse_early(Settings(libvirt="lxc:///"), Path("/tmp/x/c1"))  # preflight says it, after the rest
