"""Shared fixtures for the unit tests: fast, no network, no root-only operations, no builds.

Paths on the real file system (the packaged templates) are computed at import time, before any
test activates pyfakefs, so that tests can map them into the fake file system. Plugins are
discovered once, on the real file system, because entry points are read from site-packages.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuilder_lxc import cli, log, settings
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.data import templates_dir
from vmbuilder_lxc.plugin import Plugin, discover

TEMPLATES_DIR = templates_dir()

# A fixed copy of distro-info-data's ubuntu.csv (trimmed), so that no test depends on the host's copy.
CSV = """\
version,codename,series,created,release,eol,eol-server,eol-esm,eol-legacy
4.10,Warty Warthog,warty,2004-03-05,2004-10-20,2006-04-30
5.04,Hoary Hedgehog,hoary,2004-10-20,2005-04-08,2006-10-31
5.10,Breezy Badger,breezy,2005-04-08,2005-10-12,2007-04-13
6.06 LTS,Dapper Drake,dapper,2005-10-12,2006-06-01,2009-07-14,2011-06-01
6.10,Edgy Eft,edgy,2006-06-01,2006-10-26,2008-04-25
7.04,Feisty Fawn,feisty,2006-10-26,2007-04-19,2008-10-19
7.10,Gutsy Gibbon,gutsy,2007-04-19,2007-10-18,2009-04-18
8.04 LTS,Hardy Heron,hardy,2007-10-18,2008-04-24,2011-05-12,2013-05-09
8.10,Intrepid Ibex,intrepid,2008-04-24,2008-10-30,2010-04-30
9.04,Jaunty Jackalope,jaunty,2008-10-30,2009-04-23,2010-10-23
9.10,Karmic Koala,karmic,2009-04-23,2009-10-29,2011-04-30
10.04 LTS,Lucid Lynx,lucid,2009-10-29,2010-04-29,2013-05-09,2015-04-30
10.10,Maverick Meerkat,maverick,2010-04-29,2010-10-10,2012-04-10
11.04,Natty Narwhal,natty,2010-10-10,2011-04-28,2012-10-28
11.10,Oneiric Ocelot,oneiric,2011-04-28,2011-10-13,2013-05-09
12.04 LTS,Precise Pangolin,precise,2011-10-13,2012-04-26,2017-04-28,2017-04-28,2019-04-26
12.10,Quantal Quetzal,quantal,2012-04-26,2012-10-18,2014-05-16
13.04,Raring Ringtail,raring,2012-10-18,2013-04-25,2014-01-27
13.10,Saucy Salamander,saucy,2013-04-25,2013-10-17,2014-07-17
14.04 LTS,Trusty Tahr,trusty,2013-10-17,2014-04-17,2019-04-25,2019-04-25,2024-04-25,2026-04-25
14.10,Utopic Unicorn,utopic,2014-04-17,2014-10-23,2015-07-23
15.04,Vivid Vervet,vivid,2014-10-23,2015-04-23,2016-02-04
15.10,Wily Werewolf,wily,2015-04-23,2015-10-22,2016-07-28
16.04 LTS,Xenial Xerus,xenial,2015-10-22,2016-04-21,2021-04-21,2021-04-30,2026-04-23,2028-04-25
18.04 LTS,Bionic Beaver,bionic,2017-10-19,2018-04-26,2023-05-31,2023-05-31,2028-04-26,2030-04-25
20.04 LTS,Focal Fossa,focal,2019-10-17,2020-04-23,2025-05-29,2025-05-29,2030-04-23,2032-04-23
22.04 LTS,Jammy Jellyfish,jammy,2021-10-14,2022-04-21,2027-06-01,2027-06-01,2032-04-21,2034-04-25
24.04 LTS,Noble Numbat,noble,2023-10-12,2024-04-25,2029-05-31,2029-05-31,2034-04-25,2036-04-29
24.10,Oracular Oriole,oracular,2024-04-25,2024-10-10,2025-07-10
25.04,Plucky Puffin,plucky,2024-10-10,2025-04-17,2026-01-15
25.10,Questing Quokka,questing,2025-04-17,2025-10-09,2026-07-09
26.04 LTS,Resolute Raccoon,resolute,2025-10-09,2026-04-23,2031-05-29,2031-05-29,2036-04-23,2038-04-27
26.10,Stonking Stingray,stonking,2026-04-24,2026-10-15,2027-07-15
"""

Plugins = dict[str, type[Plugin]]


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    """The installed plugins, discovered once on the real file system (entry points need it)."""
    return discover()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """cli.main() and configure() reconfigure the vmbuilder logger; undo that after each test."""
    handlers, level, propagate = list(log.LOG.handlers), log.LOG.level, log.LOG.propagate
    state = dict(log._state)
    yield
    log.LOG.handlers[:] = handlers
    log.LOG.setLevel(level)
    log.LOG.propagate = propagate
    log._state.update(state)
    log.STEPS.clear()


@pytest.fixture(autouse=True)
def _no_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Release file is ever fetched: the archive answers as an unreachable one does (the
    architecture tables then decide); a test that needs its fields patches them in."""
    monkeypatch.setattr("vmbuilder_lxc.suites.fetch_release_fields", lambda url, proxy=None: {})


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    """cli.main() installs handlers for SIGINT/SIGTERM/SIGHUP; pytest must get its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def no_host_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME is an empty directory and /etc/vmbuilder.cfg points nowhere: host files never matter."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    missing = tmp_path / "no-system-vmbuilder.cfg"
    monkeypatch.setattr(settings, "SYSTEM_CONFIG", missing)
    monkeypatch.setattr(cli, "SYSTEM_CONFIG", missing)
    monkeypatch.setenv("COLUMNS", "200")
    return home


@pytest.fixture
def fake_fs(fs: FakeFilesystem) -> FakeFilesystem:
    """pyfakefs with the packaged templates (read-only) mapped in, as configure() needs them."""
    fs.add_real_directory(str(TEMPLATES_DIR))
    return fs


ContextFactory = Callable[..., Context]


@pytest.fixture
def make_ctx(plugins: Plugins) -> ContextFactory:
    """Build an lxc/ubuntu context the way `vmbuilder lxc ubuntu ARGS` does (no build)."""

    def factory(*argv: str) -> Context:
        ctx = cli.make_context("lxc", "ubuntu", plugins)
        cli.configure(ctx, list(argv))
        return ctx

    return factory


ROOT = Path("/build/rootfs")


class RootView:
    """Reading the tweaked fake rootfs at ROOT by guest path (shared by the tweak tests)."""

    def read(self, path: str) -> str:
        return (ROOT / path.lstrip("/")).read_text()

    def lines(self, path: str) -> list[str]:
        """Non-comment, non-empty lines."""
        return [ln for ln in self.read(path).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    def link(self, path: str) -> str:
        return os.readlink(ROOT / path.lstrip("/"))

    def exists(self, path: str) -> bool:
        return os.path.lexists(ROOT / path.lstrip("/"))


class DictSettings:
    """The few settings calls the pipeline makes (get_*, table, as_dict), answered from a dict."""

    def __init__(self, **values: Any) -> None:
        self.values = values
        self.table = dict.fromkeys(values)

    def get_bool(self, name: str) -> bool:
        return bool(self.values.get(name))

    def get_str(self, name: str) -> str | None:
        value = self.values.get(name)
        return str(value) if value else None

    def get_list(self, name: str) -> list[str]:
        return list(self.values.get(name) or [])

    def check_resolved(self) -> None:
        pass

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)
