"""The `doctor` plugin: `vmbuilder lxc doctor` checks this host and names the fix for each problem.

It adds no settings and takes no part in builds; the checks live in vmbuilder_lxc/doctor.py.
"""

from __future__ import annotations

import argparse
from typing import ClassVar

from vmbuilder_lxc.plugin import Plugin


class Doctor(Plugin):
    name: ClassVar[str] = "doctor"
    description: ClassVar[str] = "host checks (vmbuilder lxc doctor): what stops a build here, and the fix"
    hypervisors: ClassVar[tuple[str, ...] | None] = ("lxc",)
    commands: ClassVar[dict[str, str]] = {"doctor": "doctor_command"}

    @staticmethod
    def doctor_parser() -> argparse.ArgumentParser:
        """The parser of `vmbuilder lxc doctor` (built apart so that the man page can list it)."""
        from vmbuilder_lxc import doctor  # here, not at load: every build discovers this plugin

        return doctor.parser()

    @staticmethod
    def doctor_command(argv: list[str]) -> int:
        """Check this host for what builds and containers need; exit 1 if a default build would fail."""
        from vmbuilder_lxc import doctor

        return doctor.main(argv)
