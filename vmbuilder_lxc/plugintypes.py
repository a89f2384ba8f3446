"""What a build needs of its plugins, as Protocols.

context.py types the plugins it holds with these instead of importing plugin.py: plugin.py's
classes take a `Context`, so importing them back would close an import cycle (even one only under
TYPE_CHECKING). The classes in plugin.py match these Protocols structurally; cli.make_context hands
the distro and the hypervisor to the Context explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .settings import Setting


class BuildPlugin(Protocol):
    """A plugin instance as the build calls it: its name and kind, and the hooks in build order."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def description(self) -> str: ...

    def register_options(self) -> Sequence[Setting]: ...

    def set_defaults(self) -> None: ...

    def preflight_check(self) -> None: ...

    def report(self) -> str | None: ...

    def configure_os(self) -> None: ...

    def post_install(self) -> None: ...

    def finalize(self) -> None: ...

    def deploy(self) -> None: ...

    def next_steps(self) -> list[str]: ...


class DistroPlugin(BuildPlugin, Protocol):
    """The build's distro: a plugin that also puts the base system into the rootfs."""

    def bootstrap(self) -> None: ...
