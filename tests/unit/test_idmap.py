"""--idmap: parsing, the subordinate ranges, `auto`'s choice of a free range, and the marker round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import idmap as I  # noqa: N812
from vmbuilder_lxc.textchecks import Invalid

ROOT = [(100000, 10000001)]


def test_parse_auto_and_fixed() -> None:
    assert I.parse_spec("auto") == I.IdSpec(None, 65536)
    assert I.parse_spec("auto:131072") == I.IdSpec(None, 131072)
    assert I.parse_spec("200000:65536") == I.IdSpec(200000, 65536)
    assert I.parse_spec("auto").auto


@pytest.mark.parametrize("bad", ["", "yes", "100000", "100000:", ":65536", "-1:65536", "0:65536", "1:1",
                                 "100000:65535", "4294967290:65536", "a:b", "100000:65536:1"])  # fmt: skip
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(I.IdMapError):
        I.parse_spec(bad)


def test_setting_validator_is_one_line_with_a_fix() -> None:
    assert I.validate_setting(" auto ") == "auto"
    with pytest.raises(Invalid) as exc:
        I.validate_setting("100000:10")
    assert "below 65536" in str(exc.value) and exc.value.hint and "\n" not in str(exc.value)


def test_json_round_trip_and_refusals() -> None:
    m = I.IdMap(100000, 200000, 65536)
    assert I.IdMap.from_json(json.loads(json.dumps(m.to_json()))) == m
    bads: list[object] = [None, [], {"uid_start": 1}, {"uid_start": True, "gid_start": 1, "count": 1}]
    bads += [{"uid_start": 0, "gid_start": 1, "count": 1}, {"uid_start": 1, "gid_start": 1, "count": 0}]
    for bad in bads:
        with pytest.raises(I.IdMapError):
            I.IdMap.from_json(bad)


def test_of_summary() -> None:
    assert I.of_summary({}) is None
    assert I.of_summary({"idmap": None}) is None
    assert I.of_summary({"idmap": I.IdMap(5, 5, 65536).to_json()}) == I.IdMap(5, 5, 65536)


def test_lines_and_description() -> None:
    m = I.IdMap(100000, 100000, 65536)
    assert m.lxc_lines() == ["u 0 100000 65536", "g 0 100000 65536"]
    assert m.describe() == "guest ids 0-65535 = host ids 100000-165535"
    assert "gids 300000-365535" in I.IdMap(100000, 300000, 65536).describe()


def test_parse_subid_names_and_junk() -> None:
    text = "# comment\nroot:100000:65536\n0:500000:65536\nbob:200000:65536\nroot:bad:1\nroot:1\n\nroot:9:0\n"
    assert I.parse_subid(text, ["root", "0"]) == [(100000, 65536), (500000, 65536)]
    assert I.parse_subid(text, ["bob"]) == [(200000, 65536)]


def test_pick_auto_first_free_skips_used() -> None:
    assert I.pick_auto(65536, ROOT, ROOT, []) == I.IdMap(100000, 100000, 65536)
    used = [I.IdMap(100000, 100000, 65536), I.IdMap(165536, 165536, 65536)]
    assert I.pick_auto(65536, ROOT, ROOT, used) == I.IdMap(231072, 231072, 65536)
    # a gap too small for the count is skipped
    used = [I.IdMap(100000, 100000, 65536), I.IdMap(200000, 200000, 65536)]
    assert I.pick_auto(65536, ROOT, ROOT, used) == I.IdMap(265536, 265536, 65536)


def test_pick_auto_different_files() -> None:
    assert I.pick_auto(65536, [(100000, 65536)], [(300000, 65536)], []) == I.IdMap(100000, 300000, 65536)


def test_pick_auto_refusals() -> None:
    with pytest.raises(I.IdMapError, match="no range in /etc/subuid"):
        I.pick_auto(65536, [], ROOT, [])
    with pytest.raises(I.IdMapError, match="no free range"):
        I.pick_auto(65536, [(100000, 65536)], [(100000, 65536)], [I.IdMap(100000, 100000, 65536)])


def test_check_inside() -> None:
    I.check_inside(I.IdMap(100000, 100000, 65536), ROOT, ROOT)
    with pytest.raises(I.IdMapError, match="uids 5:65536 are not inside root's ranges"):
        I.check_inside(I.IdMap(5, 100000, 65536), ROOT, ROOT)
    with pytest.raises(I.IdMapError, match="gids"):
        I.check_inside(I.IdMap(100000, 10100000, 65536), ROOT, ROOT)


def _container(parent: Path, name: str, m: I.IdMap | None, raw: str | None = None) -> Path:
    d = parent / name
    d.mkdir(parents=True)
    data = {"status": "ok", "idmap": m.to_json() if m else None}
    (d / I.MARKER).write_text(raw if raw is not None else json.dumps(data))
    return d


def test_resolve_auto_reads_sibling_markers(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("root:100000:1000000\n")
    parent = tmp_path / "lxc"
    _container(parent, "a", I.IdMap(100000, 100000, 65536))
    _container(parent, "b", None)  # unshifted: uses no range
    _container(parent, "c", None, raw="{not json")  # unreadable: ignored
    (parent / "d").mkdir()  # not ours
    (parent / "e").mkdir()
    (parent / "e" / I.MARKER).mkdir()  # a directory, not a marker
    dest = parent / "new"
    got = I.resolve(I.parse_spec("auto"), dest, uid=0, subuid=subuid, subgid=subuid, dirs=[parent])
    assert got == I.IdMap(165536, 165536, 65536)


def test_resolve_auto_reuses_the_range_of_the_dest_it_replaces(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("root:100000:1000000\n")
    dest = _container(tmp_path, "again", I.IdMap(100000, 100000, 65536))
    got = I.resolve(I.parse_spec("auto"), dest, uid=0, subuid=subuid, subgid=subuid, dirs=[tmp_path])
    assert got == I.IdMap(100000, 100000, 65536)


def test_resolve_fixed_checked_against_the_files(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("root:100000:65536\n")
    missing = tmp_path / "nothing"
    ok = I.resolve(I.parse_spec("100000:65536"), tmp_path / "x", uid=0, subuid=subuid, subgid=subuid, dirs=[])
    assert ok == I.IdMap(100000, 100000, 65536)
    with pytest.raises(I.IdMapError, match="not inside"):
        I.resolve(I.parse_spec("100001:65536"), tmp_path / "x", uid=0, subuid=subuid, subgid=subuid, dirs=[])
    with pytest.raises(I.IdMapError, match="no range in /etc/subgid"):
        I.resolve(I.parse_spec("auto"), tmp_path / "x", uid=0, subuid=subuid, subgid=missing, dirs=[])


def test_search_dirs_include_the_lxc_path() -> None:
    assert I.search_dirs(Path("/srv/ct/one")) == [Path("/srv/ct"), I.DEFAULT_LXC_PATH]
    assert I.search_dirs(Path("/var/lib/lxc/one")) == [I.DEFAULT_LXC_PATH]


def test_unreachable_dir(fs: Any) -> None:
    m = I.IdMap(100000, 100000, 65536)
    fs.create_dir("/srv/top/sub")
    for d in ("/", "/srv", "/srv/top", "/srv/top/sub"):
        Path(d).chmod(0o755)
    assert I.unreachable_dir(Path("/srv/top/sub/ct/new"), m) is None
    Path("/srv/top").chmod(0o700)
    assert I.unreachable_dir(Path("/srv/top/sub/ct"), m) == Path("/srv/top")
    os.chown("/srv/top", 100000, 0)  # the container's root owns it: its user bits count
    assert I.unreachable_dir(Path("/srv/top/sub/ct"), m) is None
