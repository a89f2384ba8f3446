"""Where the guest's base system comes from: one `Source` per way of getting a root filesystem.

The distro plugin (distro.DebianFamily) holds exactly one source, chosen in its set_defaults, and
delegates every source-specific step to it:

- `ArchiveSource` (source/archive.py): mmdebstrap or debootstrap from the package archive, through
  the base cache, then the package phase; the guest gets the whole tweak table.
- `ImageSource` (source/image.py): the --from-template source, an image (a rootfs tarball) that is
  checked and unpacked; the guest keeps its own packages and configuration and gets only its
  identity and the initial user.

A third source (an OCI image, an existing container) is one new class beside these two that
implements `Source`, and one line in DebianFamily.set_defaults that chooses it (docs/design.md,
"How to add a source").

The sources see the distro only through the protocols below, never by importing distro.py: the
distro imports them, so importing it back would close an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..context import Context
    from ..run import CommandResult
    from ..settings import Settings
    from ..suites import Release
    from ..tweakguest import Guest
    from ..tweaks import Tweak


class Source(Protocol):
    """One way of getting the base system into context.rootfs, and what it means for configuring it."""

    def set_defaults(self) -> None:
        """Before the release is resolved: learn what the source decides (an image's suite and arch)."""

    def preflight(self) -> None:
        """Refuse what this source cannot build, before anything slow (nothing is written yet)."""

    def provide_rootfs(self) -> None:
        """Put the base system into context.rootfs (the distro's bootstrap hook)."""

    def configure(self) -> None:
        """Configure the guest (the distro's configure_os hook), as far as this source's base needs it."""

    def add_user(self, argv: Sequence[str], user: str) -> None:
        """Create the initial user with this useradd argv (the user name follows it)."""


class Host(Protocol):
    """What every source uses of the distro plugin that holds it."""

    @property
    def name(self) -> str: ...

    @property
    def context(self) -> Context: ...

    @property
    def settings(self) -> Settings: ...

    def run_in_target(self, *argv: str, input: str | None = None) -> CommandResult: ...

    def resolve_suite(self, text: str) -> Release: ...

    def guest_vars(self) -> dict[str, Any]: ...

    def select_tweaks(self, guest: Guest) -> list[Tweak]: ...

    def configure_users(self) -> None: ...
