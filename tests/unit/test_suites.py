"""Suite resolution from distro-info-data: codenames, versions, aliases, and the ubuntu plugin's errors.

The CSV is a fixed copy in a fake file system, so the tests do not depend on the host's
distro-info-data version or on today's date.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import CSV, ContextFactory
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.log import UserError, setup_logging
from vmbuilder_lxc.suites import DISTRO_INFO_DIR, Release, ReleaseTable

CSV_PATH = DISTRO_INFO_DIR / "ubuntu.csv"


@pytest.fixture
def table(fs: FakeFilesystem) -> ReleaseTable:
    fs.create_file(CSV_PATH, contents=CSV)
    return ReleaseTable.load("ubuntu")


# -- ReleaseTable -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["noble", "Noble", " NOBLE ", "Noble Numbat", "24.04", "24.04.2", "24.04 LTS", "24.04 lts", "24.04.1 "],
)
def test_find_noble_by_any_name(table: ReleaseTable, text: str) -> None:
    release = table.find(text, dt.date(2025, 11, 21))
    assert release is not None
    assert release.series == "noble"


@pytest.mark.parametrize("text", ["nobel", "24", "24.05", "99.04", "", "sid", "24.04.x", "lts2"])
def test_unknown_names_give_none(table: ReleaseTable, text: str) -> None:
    assert table.find(text, dt.date(2025, 11, 21)) is None


def test_release_fields(table: ReleaseTable) -> None:
    noble = table.find("noble")
    assert noble is not None
    assert noble.version == "24.04"  # " LTS" is a flag, not part of the version
    assert noble.lts
    assert noble.codename == "Noble Numbat"
    assert noble.released == dt.date(2024, 4, 25)
    assert noble.eol == dt.date(2029, 5, 31)  # eol-server wins over eol
    assert noble.version_key == (24, 4)
    assert noble.describe() == "Ubuntu 24.04 (noble)"
    oracular = table.find("oracular")
    assert oracular is not None and not oracular.lts and oracular.eol == dt.date(2025, 7, 10)


def test_release_status(table: ReleaseTable) -> None:
    today = dt.date(2025, 11, 21)
    statuses = {r.series: r.status(today) for r in table.releases}
    assert statuses["noble"] == "supported"
    assert statuses["oracular"] == "eol"
    assert statuses["resolute"] == "devel"


@pytest.mark.parametrize(
    ("today", "lts", "stable"),
    [
        (dt.date(2025, 11, 21), "noble", "questing"),
        (dt.date(2026, 4, 22), "noble", "questing"),
        (dt.date(2026, 4, 23), "resolute", "resolute"),  # released on its release day
        (dt.date(2027, 1, 1), "resolute", "stonking"),
    ],
)
def test_lts_and_stable_aliases(table: ReleaseTable, today: dt.date, lts: str, stable: str) -> None:
    found_lts, found_stable = table.find("lts", today), table.find("stable", today)
    assert found_lts is not None and found_lts.series == lts
    assert found_stable is not None and found_stable.series == stable


def test_devel_alias_while_one_series_is_open(table: ReleaseTable) -> None:
    devel = table.find("devel", dt.date(2026, 5, 1))
    assert devel is not None and devel.series == "stonking"


def test_devel_alias_when_everything_is_released(table: ReleaseTable) -> None:
    assert table.find("devel", dt.date(2027, 1, 1)) is None


def test_devel_alias_ignores_series_not_created_yet(table: ReleaseTable) -> None:
    """On 2025-11-21 resolute is in development; stonking is only created on 2026-04-24.

    distro-info (ubuntu-distro-info --devel) only considers series with created <= today; the
    archive has no dists/stonking yet, so picking it makes the bootstrap fail.
    """
    devel = table.find("devel", dt.date(2025, 11, 21))
    assert devel is not None and devel.series == "resolute"


def test_a_new_csv_row_is_found_without_a_code_change(fs: FakeFilesystem) -> None:
    fs.create_file(CSV_PATH, contents=CSV + "27.04,Tuneful Tapir,tapir,2026-10-16,2027-04-22,2028-01-20\n")
    table = ReleaseTable.load("ubuntu")
    by_name, by_version = table.find("tapir"), table.find("27.04.1")
    assert by_name is not None and by_name == by_version
    assert by_name.codename == "Tuneful Tapir"
    devel = table.find("devel", dt.date(2027, 1, 1))
    assert devel is not None and devel.series == "tapir"
    assert table.names()[-1] == "tapir"


def test_names_respect_a_minimum_version(table: ReleaseTable) -> None:
    assert table.names((16, 4))[0] == "xenial"
    assert "trusty" in table.names()


def test_load_from_another_directory(fs: FakeFilesystem) -> None:
    fs.create_file(
        "/opt/info/debian.csv", contents="version,codename,series,created,release,eol\n,Sid,sid,1993-08-16,,\n"
    )
    table = ReleaseTable.load("debian", Path("/opt/info"))
    sid = table.find("sid")
    assert sid is not None
    assert sid.version_key == (9999,)  # unversioned sorts after everything
    assert sid.is_devel(dt.date.today())


def test_missing_csv_names_the_package(fs: FakeFilesystem) -> None:
    with pytest.raises(UserError) as err:
        ReleaseTable.load("ubuntu")
    assert str(CSV_PATH) in err.value.message
    assert err.value.hint == "install it with: apt-get install distro-info-data"


def test_newer_than_all(table: ReleaseTable) -> None:
    release = table.newer_than_all("tapir", "27.04")
    assert release.series == "tapir" and release.version == "27.04"
    assert not release.in_distro_info
    assert release.is_devel(dt.date(2030, 1, 1))
    assert table.newer_than_all("tapir").version_key > max(r.version_key for r in table.releases)


# -- the ubuntu plugin ------------------------------------------------------------------------------


@pytest.fixture
def ubuntu(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> DebianFamily:
    fake_fs.create_file(CSV_PATH, contents=CSV)
    ctx: Context = make_ctx("--arch", "amd64", "--mirror", "http://mirror.test/ubuntu")
    distro = ctx.distro
    assert isinstance(distro, DebianFamily)
    return distro


def test_unknown_suite_lists_the_known_ones(ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_fetch(url: str) -> dict[str, str]:
        asked.append(url)
        return {}

    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", fake_fetch)
    with pytest.raises(UserError) as err:
        ubuntu.resolve_suite("frobnicate", dt.date(2025, 11, 21))
    assert asked == ["http://mirror.test/ubuntu/dists/frobnicate/InRelease"]
    assert err.value.message == "unknown ubuntu suite 'frobnicate'"
    # Only what builds now: no eol release (trusty, xenial, oracular), nothing too old (hardy), and not
    # stonking, which distro-info-data lists but whose archive opens on 2026-04-24.
    assert err.value.hint == "use --suite with one of: jammy, noble, plucky, questing, resolute, devel, lts, stable"


@pytest.mark.parametrize(
    ("today", "offered"),
    [
        (dt.date(2026, 4, 23), "jammy, noble, questing, resolute"),  # plucky eol 2026-01-15; stonking not open yet
        (dt.date(2026, 5, 1), "jammy, noble, questing, resolute, stonking"),  # stonking opened 2026-04-24
    ],
)
def test_suggestions_follow_the_date(
    ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch, today: dt.date, offered: str
) -> None:
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", lambda url: {})
    with pytest.raises(UserError) as err:
        ubuntu.resolve_suite("frobnicate", today)
    assert err.value.hint == f"use --suite with one of: {offered}, devel, lts, stable"


def test_buildable_leaves_out_what_the_plugin_refuses(table: ReleaseTable) -> None:
    today = dt.date(2025, 11, 21)
    assert table.buildable(today, lambda r: None) == ["jammy", "noble", "plucky", "questing", "resolute"]
    assert table.buildable(today, lambda r: "no" if r.series == "noble" else None) == [
        "jammy", "plucky", "questing", "resolute",
    ]  # fmt: skip


def test_a_series_not_opened_yet_is_refused_when_the_archive_lacks_it(
    ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def fake_fetch(url: str) -> dict[str, str]:
        asked.append(url)
        return {}

    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", fake_fetch)
    with pytest.raises(UserError) as err:
        ubuntu.resolve_suite("stonking", dt.date(2025, 11, 21))
    assert asked == ["http://mirror.test/ubuntu/dists/stonking/InRelease"]
    assert err.value.message == (
        "Ubuntu 26.10 (stonking) has no archive yet (distro-info-data says it opens on 2026-04-24)"
    )
    assert err.value.hint == "choose a suite the archive has (noble, plucky, questing, resolute, ...)"


def test_a_series_not_opened_yet_builds_once_the_archive_serves_it(
    ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distro-info-data's creation date is a plan; an archive that already serves the series wins."""
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", lambda url: {"Codename": "stonking"})
    assert ubuntu.resolve_suite("stonking", dt.date(2025, 11, 21)).series == "stonking"


def test_opened_series_do_not_ask_the_archive(ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(url: str) -> dict[str, str]:
        raise AssertionError(f"network access to {url}")

    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", no_network)
    assert ubuntu.resolve_suite("stonking", dt.date(2026, 5, 1)).series == "stonking"
    assert ubuntu.resolve_suite("resolute", dt.date(2025, 11, 21)).series == "resolute"


def test_version_like_unknown_suite_is_not_probed(ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(url: str) -> dict[str, str]:
        raise AssertionError(f"network access to {url}")

    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", no_network)
    with pytest.raises(UserError, match="unknown ubuntu suite '30.04'"):
        ubuntu.resolve_suite("30.04", dt.date(2025, 11, 21))


def test_suite_the_archive_serves_is_accepted(
    ubuntu: DebianFamily, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A series newer than the host's distro-info-data is still buildable (with a warning)."""
    setup_logging(0)
    monkeypatch.setattr(
        "vmbuilder_lxc.suites.fetch_release_fields",
        lambda url: {"Origin": "Ubuntu", "Codename": "tapir", "Version": "27.04"},
    )
    release = ubuntu.resolve_suite("tapir", dt.date(2025, 11, 21))
    assert (release.series, release.version, release.in_distro_info) == ("tapir", "27.04", False)
    assert "not in distro-info-data yet" in capsys.readouterr().err


@pytest.mark.parametrize("suite", ["hardy", "8.04", "karmic", "dapper"])
def test_releases_before_lucid_are_refused(ubuntu: DebianFamily, suite: str) -> None:
    with pytest.raises(UserError) as err:
        ubuntu.resolve_suite(suite, dt.date(2025, 11, 21))
    assert "predates lucid 10.04" in err.value.message
    assert (err.value.hint or "").startswith("choose a newer --suite (")


@pytest.mark.parametrize(
    ("suite", "init"),
    [("lucid", "upstart"), ("10.04", "upstart"), ("precise", "upstart"), ("trusty", "upstart"),
     ("vivid", "systemd"), ("wily", "systemd"), ("xenial", "systemd")],
)  # fmt: skip
def test_old_releases_are_not_refused(ubuntu: DebianFamily, suite: str, init: str) -> None:
    release = ubuntu.resolve_suite(suite, dt.date(2025, 11, 21))
    assert ubuntu.release_traits(release).init == init


@pytest.mark.parametrize(("suite", "series"), [("xenial", "xenial"), ("16.04", "xenial"), ("lts", "noble")])
def test_supported_suites_resolve(ubuntu: DebianFamily, suite: str, series: str) -> None:
    assert ubuntu.resolve_suite(suite, dt.date(2025, 11, 21)).series == series


def test_release_is_a_frozen_value() -> None:
    r = Release("ubuntu", "noble", "24.04", "Noble Numbat", None, None, None)
    with pytest.raises(AttributeError):
        r.series = "jammy"  # type: ignore[misc]


# -- --list-suites ---------------------------------------------------------------------------------


@pytest.fixture
def no_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", lambda url: {})


TODAY = dt.date(2025, 11, 21)


def list_suites(fake_fs: FakeFilesystem, make_ctx: ContextFactory, *argv: str, today: dt.date = TODAY) -> str | None:
    ctx = make_ctx("--list-suites", "--arch", "amd64", "--mirror", "http://mirror.test/ubuntu", *argv)
    assert isinstance(ctx.distro, DebianFamily)
    return ctx.distro.report(today)


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The --list-suites table by series and column, cut at the header's column starts (cells hold spaces)."""
    header, *lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.lower().split()
    rows = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_list_suites_shows_every_release_with_init_and_support(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, no_archive: None
) -> None:
    fake_fs.create_file(CSV_PATH, contents=CSV)
    text = list_suites(fake_fs, make_ctx, today=dt.date(2026, 5, 1)) or ""
    assert text.splitlines()[0].split() == [
        "SERIES", "VERSION", "CODENAME", "RELEASED", "STATUS", "INIT", "NETWORK", "VERIFIED", "SUPPORTED",
    ]  # fmt: skip
    rows = table_rows(text)
    assert list(rows)[0] == "warty" and list(rows)[-1] == "stonking"
    upstart = ("lucid", "maverick", "natty", "oneiric", "precise", "trusty", "utopic")
    expect = {s: ("upstart", "ifupdown") for s in upstart} | {s: ("systemd", "ifupdown") for s in ("vivid", "xenial")}
    expect |= {s: ("systemd", "netplan") for s in ("bionic", "noble", "resolute", "stonking")}
    for series, (init, network) in expect.items():
        assert (rows[series]["init"], rows[series]["network"], rows[series]["supported"]) == (init, network, "yes")
    assert rows["hardy"]["supported"].startswith("no: Ubuntu 8.04 (hardy) predates lucid 10.04")
    assert rows["lucid"]["status"] == "eol"
    assert rows["stonking"]["status"] == "devel"


def test_a_series_not_opened_yet_is_not_supported(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, no_archive: None
) -> None:
    """On 2025-11-21 stonking is only a row in distro-info-data: its archive opens on 2026-04-24."""
    fake_fs.create_file(CSV_PATH, contents=CSV)
    stonking = table_rows(list_suites(fake_fs, make_ctx) or "")["stonking"]
    assert stonking["status"] == "future"
    assert stonking["supported"] == (
        "no: Ubuntu 26.10 (stonking) has no archive yet (distro-info-data says it opens on 2026-04-24)"
    )
    assert (stonking["init"], stonking["network"]) == ("-", "-")


def test_a_future_series_the_archive_already_serves_is_supported(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is in development by distro-info-data's dates, and the archive's devel is that future row."""
    fake_fs.create_file(CSV_PATH, contents=CSV)
    monkeypatch.setattr(
        "vmbuilder_lxc.suites.fetch_release_fields", lambda url: {"Codename": "stonking", "Version": "26.10"}
    )
    rows = table_rows(list_suites(fake_fs, make_ctx, today=dt.date(2026, 4, 23)) or "")
    assert len([r for r in rows if r == "stonking"]) == 1
    assert (rows["stonking"]["status"], rows["stonking"]["supported"]) == ("devel", "yes")
    assert rows["stonking"]["verified"] == "booted (lxc)"  # test_boot.py boots whatever devel is


def test_a_release_added_to_distro_info_is_listed_without_a_code_change(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, no_archive: None
) -> None:
    fake_fs.create_file(CSV_PATH, contents=CSV + "27.04,Tenacious Tapir,tenacious,2026-10-15,2027-04-22,2028-01-15\n")
    row = list(table_rows(list_suites(fake_fs, make_ctx, today=dt.date(2027, 1, 1)) or "").values())[-1]
    assert (row["series"], row["version"], row["codename"]) == ("tenacious", "27.04", "Tenacious Tapir")
    assert (row["init"], row["network"], row["supported"]) == ("systemd", "netplan", "yes")


def test_list_suites_as_json(fake_fs: FakeFilesystem, make_ctx: ContextFactory, no_archive: None) -> None:
    fake_fs.create_file(CSV_PATH, contents=CSV)
    rows = json.loads(list_suites(fake_fs, make_ctx, "--json") or "")
    lucid = next(r for r in rows if r["series"] == "lucid")
    assert (lucid["init"], lucid["supported"], lucid["version"]) == ("upstart", "yes", "10.04")
    assert lucid["verified"] == "fixture only"
    assert next(r for r in rows if r["series"] == "noble")["verified"] == "booted (lxc, libvirt)"


def test_no_report_without_list_suites(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> None:
    ctx = make_ctx("--arch", "amd64")
    assert ctx.distro.report() is None


def test_list_suites_adds_the_devel_series_the_archive_serves(
    fake_fs: FakeFilesystem, make_ctx: ContextFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fs.create_file(CSV_PATH, contents=CSV)
    asked: list[str] = []

    def fake_fetch(url: str) -> dict[str, str]:
        asked.append(url)
        return {"Codename": "tenacious", "Version": "27.04"}

    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", fake_fetch)
    last = list(table_rows(list_suites(fake_fs, make_ctx, today=dt.date(2027, 1, 1)) or "").values())[-1]
    assert asked == ["http://mirror.test/ubuntu/dists/devel/InRelease"]
    assert (last["series"], last["version"], last["status"]) == ("tenacious", "27.04", "devel")
    assert (last["init"], last["network"], last["verified"], last["supported"]) == (
        "systemd", "netplan", "booted (lxc)", "yes",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("suite", "unwanted"), [("xenial", ["systemd-shim", "cgmanager"]), ("bionic", []), ("noble", [])]
)
def test_packages_the_resolver_pulls_in_are_purged(ubuntu: DebianFamily, suite: str, unwanted: list[str]) -> None:
    """debootstrap takes the first alternative: xenial's libpam-systemd brings systemd-shim and cgmanager."""
    ubuntu.release = ubuntu.resolve_suite(suite, dt.date(2025, 11, 21))
    assert ubuntu.unwanted_packages() == unwanted
    assert "systemd-sysv" in ubuntu.base_packages()


def test_debian_lts_counts_as_supported_and_sid_has_no_version(fs: FakeFilesystem) -> None:
    fs.create_file(
        DISTRO_INFO_DIR / "debian.csv",
        contents="version,codename,series,created,release,eol,eol-lts,eol-elts\n"
        "12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-06-10,2028-06-30,2033-06-30\n"
        ",Sid,sid,1993-08-16\n",
    )
    table = ReleaseTable.load("debian")
    bookworm, sid = table.releases
    assert bookworm.status(dt.date(2026, 11, 21)) == "supported"
    assert bookworm.status(dt.date(2028, 7, 1)) == "eol"
    assert sid.describe() == "Debian (sid)" and bookworm.describe() == "Debian 12 (bookworm)"
