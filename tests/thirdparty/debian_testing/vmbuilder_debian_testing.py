"""`vmbuilder lxc deb-testing`: Debian's testing suite with one extra package, GNU hello.

A third-party distro plugin written from docs/design.md's "How to add a distro": it derives from the
built-in debian plugin (a DebianFamily) and changes only data and the two answers that depend on
its name, so the bootstrap, cache, package phase, tweaks, users and locale are all the shared code.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, ClassVar

from vmbuilder_lxc.distro import PackagesTable
from vmbuilder_lxc.suites import Release, ReleaseTable

if TYPE_CHECKING:  # only for this repository's mypy, which reads the built-in plugins from plugins/
    from plugins.debian import BASE_PACKAGES, Debian
else:  # installed, setup.py maps plugins/ to vmbuilder_lxc.plugins
    from vmbuilder_lxc.plugins.debian import BASE_PACKAGES, Debian

EXTRA_PACKAGE = "hello"


class DebianTesting(Debian):
    name: ClassVar[str] = "deb-testing"
    description: ClassVar[str] = "Debian testing with GNU hello (a third-party plugin)"
    # (first version, last version or None, packages): Debian's base, and ours for every release.
    packages_table: ClassVar[PackagesTable] = [*BASE_PACKAGES, ("12", None, (EXTRA_PACKAGE,))]

    def releases(self) -> ReleaseTable:
        """Debian's releases: distro-info-data has no file named after this plugin."""
        return ReleaseTable.load("debian")

    def resolve_suite(self, text: str, today: dt.date | None = None) -> Release:
        """`testing` is the suite in development (distro-info-data's newest opened, unreleased
        version: forky in 2026), so the guest's sources name its codename and follow it."""
        return super().resolve_suite("devel" if text.strip().lower() == "testing" else text, today)
