"""Shared fixtures for the unit tests: fast, no network, no root-only operations, no builds.

Paths on the real file system (the packaged templates) are computed at import time, before any
test activates pyfakefs, so that tests can map them into the fake file system. Plugins are
discovered once, on the real file system, because entry points are read from site-packages.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

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
14.04 LTS,Trusty Tahr,trusty,2013-10-17,2014-04-17,2019-04-25,2019-04-25,2024-04-25,2026-04-25
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
