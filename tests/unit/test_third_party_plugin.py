"""The third-party distro plugin in tests/thirdparty: found through its entry point, and its data used.

It is installed into a scratch directory put on sys.path for this module only (the shared virtualenv
never sees it); tests/integration/test_third_party_plugin.py builds and boots it.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.thirdparty.install import DEBIAN_TESTING, install
from tests.unit.conftest import Plugins
from tests.unit.test_debian import DEBIAN_CSV, MIRROR, TODAY
from vmbuilder_lxc import cli
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.plugin import discover
from vmbuilder_lxc.suites import DISTRO_INFO_DIR

PLUGIN = "deb-testing"
MODULE = "vmbuilder_debian_testing"


@pytest.fixture(scope="module")
def with_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugins]:
    """Every plugin discovered with the third-party package installed (on real files, before pyfakefs)."""
    site = install(DEBIAN_TESTING, tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        yield discover()
    sys.modules.pop(MODULE, None)


@pytest.fixture
def distro(fake_fs: FakeFilesystem, with_plugin: Plugins) -> Callable[..., DebianFamily]:
    """The plugin configured like `vmbuilder lxc deb-testing ARGS`, on a fixed debian.csv."""
    fake_fs.create_file(DISTRO_INFO_DIR / "debian.csv", contents=DEBIAN_CSV)

    def make(*argv: str, name: str = PLUGIN) -> DebianFamily:
        ctx = cli.make_context("lxc", name, with_plugin)
        cli.configure(ctx, ["--arch", "amd64", "--mirror", MIRROR, *argv])
        assert isinstance(ctx.distro, DebianFamily)
        return ctx.distro

    return make


def test_the_entry_point_finds_a_debian_family_distro(with_plugin: Plugins) -> None:
    cls = with_plugin[PLUGIN]
    assert cls.kind == "distro"
    assert issubclass(cls, DebianFamily) and issubclass(cls, with_plugin["debian"])
    assert cls.__module__ == MODULE


@pytest.mark.parametrize(("text", "series"), [("testing", "forky"), ("Testing", "forky"), ("trixie", "trixie")])
def test_testing_is_the_debian_suite_in_development(
    distro: Callable[..., DebianFamily], text: str, series: str
) -> None:
    release = distro().resolve_suite(text, TODAY)
    assert (release.distro, release.series) == ("debian", series)


def test_debian_refusals_still_apply(distro: Callable[..., DebianFamily]) -> None:
    with pytest.raises(UserError, match="predates bookworm"):
        distro().resolve_suite("bullseye", TODAY)


def test_one_extra_package_on_top_of_debians(distro: Callable[..., DebianFamily]) -> None:
    ours, debian = distro(), distro(name="debian")
    ours.release = debian.release = ours.resolve_suite("testing", TODAY)
    assert set(ours.base_packages()) - set(debian.base_packages()) == {"hello"}
    assert set(debian.base_packages()) <= set(ours.base_packages())


def test_the_build_uses_debians_data(distro: Callable[..., DebianFamily]) -> None:
    ours = distro("--suite", "testing")
    ours.set_defaults()
    assert ours.context.summary["release"] == {
        "distro": PLUGIN, "series": "forky", "version": "14", "codename": "Forky", "init": "systemd",
        "network": "networkd",
    }  # fmt: skip
    assert ours.pockets_for(ours.release) == ("updates", "security")
    assert ours.security_mirror_for(MIRROR) == MIRROR + "-security"


def test_today_does_not_matter_while_testing_is_open(distro: Callable[..., DebianFamily]) -> None:
    """Before forky's release, any day resolves testing to it (distro-info-data's dates decide)."""
    assert distro().resolve_suite("testing", dt.date(2026, 1, 1)).series == "forky"
