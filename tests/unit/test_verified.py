"""The VERIFIED column of --list-suites says what the tests really do, and nothing more.

vmbuilder_lxc/verified.py is the one table: the integration tests take their suite lists from it, and
these tests check that they still do, that the fixture-only releases are the upstart fixtures, and
that --list-suites shows each release's row (ubuntu and debian, text and --json).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit import upstart_fixture
from tests.unit.conftest import CSV, ContextFactory, Plugins
from vmbuilder_lxc import cli
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.suites import DISTRO_INFO_DIR
from vmbuilder_lxc.verified import DEVEL, LIBVIRT, LXC, VERIFIED, Verified, booted, fixture_only, verified

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
TODAY = dt.date(2025, 11, 21)

DEBIAN_CSV = """\
version,codename,series,created,release,eol,eol-lts,eol-elts
11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2031-06-30
12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30
13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30
14,Forky,forky,2025-08-09
15,Duke,duke,2027-08-01
,Sid,sid,1993-08-16
,Experimental,experimental,1993-08-16
"""


# -- the table and the tests that read it --------------------------------------------------------------


def suites_assignment(module: str, name: str = "SUITES") -> str:
    """The source of `NAME = ...` in an integration test module (read, not imported: no fixtures run)."""
    tree = ast.parse((INTEGRATION / module).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.unparse(node.value)
    raise AssertionError(f"{module} has no {name}")


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("test_boot.py", "booted('ubuntu', LXC)"),
        ("test_boot_debian.py", "booted('debian', LXC)"),
        ("test_libvirt.py", "booted('ubuntu', LIBVIRT)"),
    ],
)
def test_integration_suite_lists_come_from_the_table(module: str, source: str) -> None:
    assert suites_assignment(module) == source


def test_libvirt_boot_test_is_parametrized_over_the_table() -> None:
    text = (INTEGRATION / "test_libvirt.py").read_text(encoding="utf-8")
    assert "for suite in SUITES" in text


def test_the_booted_lists() -> None:
    assert booted("ubuntu", LXC) == ["xenial", "bionic", "focal", "jammy", "noble", "plucky", "questing", "resolute"]
    assert booted("ubuntu", LIBVIRT) == ["jammy", "noble"]
    assert booted("debian", LXC) == ["bookworm", "trixie"]
    assert booted("debian", LIBVIRT) == []


def test_fixture_only_releases_are_the_upstart_fixtures() -> None:
    assert fixture_only("ubuntu") == list(upstart_fixture.RELEASES)
    for release in upstart_fixture.RELEASES:
        assert (upstart_fixture.FIXTURE_DIR / release).is_dir()


def test_every_libvirt_booted_suite_is_also_booted_with_lxc() -> None:
    for distro, table in VERIFIED.items():
        for series, v in table.items():
            assert set(v.booted) <= {LXC, LIBVIRT}, (distro, series)
            assert not v.booted or LXC in v.booted, (distro, series)


@pytest.mark.parametrize(
    ("evidence", "label"),
    [
        (Verified(booted=(LXC, LIBVIRT)), "booted (lxc, libvirt)"),
        (Verified(booted=(LXC,)), "booted (lxc)"),
        (Verified(built=True), "built"),
        (Verified(fixture=True), "fixture only"),
        (Verified(), "none"),
    ],
)
def test_labels(evidence: Verified, label: str) -> None:
    assert evidence.label == label


def test_lookup() -> None:
    assert verified("ubuntu", "noble").label == "booted (lxc, libvirt)"
    assert verified("ubuntu", "lucid").label == "fixture only"
    assert verified("ubuntu", "wily").label == "none"
    assert verified("ubuntu", "tapir").label == "none"
    assert verified("ubuntu", "tapir", devel=True) == VERIFIED["ubuntu"][DEVEL]
    assert verified("debian", "forky", devel=True).label == "none"  # no test builds Debian's devel suite
    assert verified("nodistro", "x").label == "none"


# -- the column in --list-suites ------------------------------------------------------------------------


def column(text: str, name: str) -> dict[str, str]:
    """One column of the --list-suites table by series, cut at the header's column starts."""
    header, *lines = text.splitlines()
    heads = header.split()
    start = header.index(name.upper())
    end = header.index(heads[heads.index(name.upper()) + 1])
    return {line.split()[0]: line[start:end].strip() for line in lines}


@pytest.fixture
def no_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", lambda url: {})


def test_ubuntu_list_suites_column(fake_fs: FakeFilesystem, make_ctx: ContextFactory, no_archive: None) -> None:
    fake_fs.create_file(DISTRO_INFO_DIR / "ubuntu.csv", contents=CSV)
    ctx = make_ctx("--list-suites", "--arch", "amd64", "--mirror", "http://mirror.test/ubuntu")
    assert isinstance(ctx.distro, DebianFamily)
    col = column(ctx.distro.report(TODAY) or "", "verified")
    assert col["lucid"] == col["utopic"] == "fixture only"
    assert col["xenial"] == col["resolute"] == "booted (lxc)"
    assert col["jammy"] == col["noble"] == "booted (lxc, libvirt)"
    assert col["wily"] == col["oracular"] == col["hardy"] == col["stonking"] == "none"
    expected = {s: verified("ubuntu", s).label for s in col}
    assert col == expected


@pytest.fixture
def debian_ctx(fake_fs: FakeFilesystem, plugins: Plugins) -> Callable[..., Context]:
    fake_fs.create_file(DISTRO_INFO_DIR / "debian.csv", contents=DEBIAN_CSV)

    def factory(*argv: str) -> Context:
        ctx = cli.make_context("lxc", "debian", plugins)
        cli.configure(ctx, list(argv))
        return ctx

    return factory


def test_debian_list_suites_column_and_future_suite(debian_ctx: Callable[..., Context], no_archive: None) -> None:
    ctx = debian_ctx("--list-suites", "--arch", "amd64", "--mirror", "http://mirror.test/debian")
    assert isinstance(ctx.distro, DebianFamily)
    text = ctx.distro.report(dt.date(2026, 11, 21)) or ""
    col = column(text, "verified")
    assert (col["bookworm"], col["trixie"]) == ("booted (lxc)", "booted (lxc)")
    assert col["forky"] == col["sid"] == col["duke"] == col["bullseye"] == "none"
    duke = next(line for line in text.splitlines() if line.startswith("duke "))
    assert " future " in duke
    assert duke.endswith("no: Debian 15 (duke) has no archive yet (distro-info-data says it opens on 2027-08-01)")


def test_debian_list_suites_json(debian_ctx: Callable[..., Context], no_archive: None) -> None:
    ctx = debian_ctx("--list-suites", "--json", "--arch", "amd64", "--mirror", "http://mirror.test/debian")
    assert isinstance(ctx.distro, DebianFamily)
    rows = {r["series"]: r for r in json.loads(ctx.distro.report(dt.date(2026, 11, 21)) or "")}
    assert rows["trixie"]["verified"] == "booted (lxc)"
    assert rows["experimental"]["verified"] == "none"
    assert rows["experimental"]["supported"].startswith("no: ")
    assert rows["duke"]["supported"].startswith("no: Debian 15 (duke) has no archive yet")
    assert list(rows["trixie"])[-2:] == ["verified", "supported"]


# -- the docs say what the table says ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_readme_names_exactly_the_booted_releases() -> None:
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    lxc, debian = ", ".join(booted("ubuntu", LXC)), " and ".join(booted("debian", LXC))
    assert f"boot with `lxc-start`: {lxc}, the Ubuntu development series, {debian};" in text
    assert f"under libvirt-lxc too: {' and '.join(booted('ubuntu', LIBVIRT))}." in text
    assert f"run `virsh shutdown` under a real libvirtd on {' and '.join(booted('ubuntu', LIBVIRT))};" in text
    assert "works on every release" not in text


def test_releases_doc_table_matches() -> None:
    rows = {}
    for line in (ROOT / "docs/releases.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    by_label: dict[str, list[str]] = {}
    for series, evidence in VERIFIED["ubuntu"].items():
        if series != DEVEL:
            by_label.setdefault(evidence.label, []).append(series)
    for label, series_list in by_label.items():
        assert rows[label].startswith(", ".join(series_list)), (label, rows[label])
