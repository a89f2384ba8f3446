"""Container tweaks as data: each tweak says why, when (release range, init system, network stack,
installed package) and what (actions), and the engine applies the ones that match.

Every action is upgrade-safe by construction: it writes files that no package owns (the engine
checks dpkg's file lists and refuses otherwise), systemd masks and drop-ins or upstart `.override`
files under /etc, moves a packaged file aside with `dpkg-divert --local --rename` (dpkg then
installs every later version at the diverted name), or runs a small packaged shell hook. Nothing
here edits a file that a package ships, so `apt-get upgrade` and `apt-get install --reinstall`
cannot undo a tweak.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dpkg import divert, installed_packages, owned_paths
from .formats import line
from .guestfs import GuestFS
from .shellhooks import run_builtin
from .suites import Release


@dataclass(frozen=True)
class ReleaseTraits:
    """What a release looks like inside, as far as tweaks care."""

    init: str = "systemd"  # systemd | upstart
    network: str = "netplan"  # netplan | ifupdown | networkd
    sources: str = "deb822"  # deb822 | one-line
    resolved: bool = True  # /etc/resolv.conf is systemd-resolved's stub
    systemd_version: int = 0
    upstart_version: str = ""
    overrides: bool = False  # upstart reads /etc/init/JOB.override (upstart 1.3, oneiric, on)
    container_detect: bool = False  # upstart ships container-detect.conf (precise on)
    initctl: bool = False  # something listens on /run/initctl (systemd-initctl up to systemd 257)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class When:
    since: str | None = None  # first release version it applies to
    until: str | None = None  # last release version it applies to (inclusive)
    init: str | None = None
    network: str | None = None
    sources: str | None = None
    resolved: bool | None = None
    overrides: bool | None = None
    container_detect: bool | None = None
    initctl: bool | None = None  # False: nothing in the release listens on /run/initctl
    installed: str | None = None  # a package that must be installed in the guest

    def matches(self, release: Release, traits: ReleaseTraits, guest: Guest) -> bool:
        if not release.in_range(self.since, self.until):
            return False
        if self.init and traits.init != self.init:
            return False
        if self.network and traits.network != self.network:
            return False
        if self.sources and traits.sources != self.sources:
            return False
        if self.resolved is not None and traits.resolved != self.resolved:
            return False
        if self.overrides is not None and traits.overrides != self.overrides:
            return False
        if self.container_detect is not None and traits.container_detect != self.container_detect:
            return False
        if self.initctl is not None and traits.initctl != self.initctl:
            return False
        return not (self.installed and not guest.is_installed(self.installed))


# -- actions ---------------------------------------------------------------------------------------
# Each action applies itself to a Guest (returning the guest paths it touched, for the build
# record) and describes itself for docs/tweaks.md.


@dataclass(frozen=True)
class File:
    """Render a template to a guest path that no package owns."""

    path: str
    template: str
    mode: int = 0o644

    def apply(self, guest: Guest) -> list[str]:
        path = self.path.format(**guest.vars)  # e.g. /etc/apt/sources.list.d/{distro}.sources
        guest.write(path, guest.render(self.template, guest.vars), self.mode)
        return [path]

    def describe(self) -> str:
        return f"write `{self.path}` (`{self.template}`)"


@dataclass(frozen=True)
class DropIn:
    """A systemd drop-in: /etc/systemd/system/UNIT.d/NAME."""

    unit: str
    template: str
    name: str = "50-vmbuilder-lxc.conf"

    def apply(self, guest: Guest) -> list[str]:
        path = f"/etc/systemd/system/{self.unit}.d/{self.name}"
        guest.write(path, guest.render(self.template, guest.vars), 0o644)
        return [path]

    def describe(self) -> str:
        return f"drop-in `{self.unit}.d/{self.name}` (`{self.template}`)"


@dataclass(frozen=True)
class Mask:
    """Link units to /dev/null in /etc/systemd/system; /etc wins over /lib and /usr/lib."""

    units: tuple[str, ...]

    def apply(self, guest: Guest) -> list[str]:
        paths = [f"/etc/systemd/system/{unit}" for unit in self.units]
        for path in paths:
            guest.symlink(path, "/dev/null")
        return paths

    def describe(self) -> str:
        return "mask " + ", ".join(f"`{u}`" for u in self.units)


UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")  # where packages ship units


@dataclass(frozen=True)
class Enable:
    """Enable a unit the way `systemctl enable` does: a symlink in TARGET.wants to the unit file.

    Our own units (written to /etc/systemd/system by an earlier action) are linked there. A packaged
    unit that its package leaves disabled (Debian's systemd-networkd) is linked to the path its
    package ships it at, /usr/lib/systemd/system or /lib/systemd/system (bookworm's systemd still
    uses /lib), as systemctl would. `aliases` are the unit's Alias= names, linked in
    /etc/systemd/system like `systemctl enable` does.
    """

    unit: str
    wanted_by: str = "multi-user.target"
    aliases: tuple[str, ...] = ()

    def unit_file(self, guest: Guest) -> str:
        """The guest path of the unit file to link to."""
        own = f"/etc/systemd/system/{self.unit}"
        if guest.fs.lexists(own):
            return own
        packaged = [f"{d}/{self.unit}" for d in UNIT_DIRS]
        owned = guest.owned_files()
        for path in packaged:  # the path dpkg lists is the one systemctl links to
            if path in owned:
                return path
        for path in packaged:
            if guest.fs.exists(path):
                return path
        return own  # a unit of ours that a later action writes

    def apply(self, guest: Guest) -> list[str]:
        target = self.unit_file(guest)
        paths = [f"/etc/systemd/system/{self.wanted_by}.wants/{self.unit}"]
        paths += [f"/etc/systemd/system/{alias}" for alias in self.aliases]
        for path in paths:
            guest.symlink(path, target)
        return paths

    def describe(self) -> str:
        text = f"enable `{self.unit}` in `{self.wanted_by}`"
        return text + "".join(f", alias `{a}`" for a in self.aliases)


@dataclass(frozen=True)
class Override:
    """Upstart `.override` files (upstart >= 1.3): `manual` keeps a job from starting on events.

    Written for every listed job, installed or not, so a job that arrives later stays off too.
    """

    jobs: tuple[str, ...]
    stanza: str = "manual"

    def apply(self, guest: Guest) -> list[str]:
        paths = []
        for job in self.jobs:
            path = f"/etc/init/{job}.override"
            guest.write(path, f"# Written by vmbuilder-lxc: {job} cannot work in a container.\n{self.stanza}\n", 0o644)
            paths.append(path)
        return paths

    def describe(self) -> str:
        return f"`{self.stanza}` in `/etc/init/JOB.override` for " + ", ".join(f"`{j}`" for j in self.jobs)


@dataclass(frozen=True)
class Divert:
    """`dpkg-divert --local --rename` packaged files aside (for upstart before 1.3: no overrides).

    The diverted name must not end in .conf, so upstart ignores it; dpkg installs every later
    version of the file at the diverted name, so an upgrade cannot bring the job back.
    """

    paths: tuple[str, ...]
    suffix: str = ".vmbuilder-disabled"

    def apply(self, guest: Guest) -> list[str]:
        for path in self.paths:
            guest.divert(path, path + self.suffix)
        return list(self.paths)

    def describe(self) -> str:
        return "divert " + ", ".join(f"`{p}`" for p in self.paths) + f" to `*{self.suffix}`"


@dataclass(frozen=True)
class Replace:
    """Replace a packaged file: divert it aside, then write ours in its place (only where present)."""

    paths: tuple[str, ...]  # candidates; the ones that exist in the guest are replaced
    template: str
    mode: int = 0o644
    suffix: str = ".vmbuilder-orig"

    def apply(self, guest: Guest) -> list[str]:
        done = []
        for path in self.paths:
            if not guest.fs.exists(path) and not guest.is_diverted(path):
                continue
            guest.divert(path, path + self.suffix)
            guest.write(path, guest.render(self.template, guest.vars), self.mode, diverted=True)
            done.append(path)
        return done

    def describe(self) -> str:
        return "replace " + " or ".join(f"`{p}`" for p in self.paths) + f" (diverted; `{self.template}`)"


@dataclass(frozen=True)
class Symlink:
    """A symlink; `target` may name template variables as {name}."""

    path: str
    target: str

    def apply(self, guest: Guest) -> list[str]:
        guest.symlink(self.path, self.target.format(**guest.vars))
        return [self.path]

    def describe(self) -> str:
        return f"symlink `{self.path}` -> `{self.target}`"


@dataclass(frozen=True)
class Remove:
    """Remove instance state (globs), e.g. SSH host keys or a random seed."""

    paths: tuple[str, ...]

    def apply(self, guest: Guest) -> list[str]:
        removed = []
        for pattern in self.paths:
            for path in guest.fs.glob(pattern):  # never through a symlinked directory
                mode = guest.fs.lstat(path).st_mode
                if stat.S_ISLNK(mode) or stat.S_ISREG(mode):
                    guest.fs.unlink(path)
                    removed.append(path)
        return removed

    def describe(self) -> str:
        return "remove " + ", ".join(f"`{p}`" for p in self.paths)


@dataclass(frozen=True)
class Truncate:
    """Leave a file present but empty (machine-id)."""

    path: str

    def apply(self, guest: Guest) -> list[str]:
        guest.fs.truncate(self.path, 0o444)  # a new empty file: a symlink there is replaced
        return [self.path]

    def describe(self) -> str:
        return f"empty `{self.path}`"


@dataclass(frozen=True)
class Hook:
    """Run hooks/NAME.sh with the hook environment and the tweak variables in its environment.

    `paths` names the guest files the hook writes, for the build record.
    """

    name: str
    paths: tuple[str, ...] = ()

    def apply(self, guest: Guest) -> list[str]:
        env = {**guest.hook_env, **{f"VM_{k.upper()}": _env_value(v) for k, v in guest.vars.items()}}
        run_builtin(self.name, guest.root, env)
        return list(self.paths)

    def describe(self) -> str:
        return f"hook `hooks/{self.name}.sh`"


Action = File | DropIn | Mask | Enable | Override | Divert | Replace | Symlink | Remove | Truncate | Hook


@dataclass(frozen=True)
class Tweak:
    name: str
    why: str
    actions: tuple[Action, ...]
    when: When = When()


class UnsafePathError(RuntimeError):
    """A tweak tried to write somewhere it must not."""


class OwnedFileError(UnsafePathError):
    """A tweak tried to write a file that a package ships (not upgrade-safe)."""


class Guest:
    """The rootfs being tweaked: confined file access (guestfs.py), dpkg state, template variables."""

    def __init__(
        self,
        root: Path,
        render: Callable[[str, dict[str, Any]], str],
        variables: dict[str, Any],
        hook_env: dict[str, str],
    ) -> None:
        self.root = root
        self.render = render
        self.vars = variables
        self.hook_env = hook_env
        self._owned: set[str] | None = None
        self._installed: set[str] | None = None
        self._fs: GuestFS | None = None

    @property
    def fs(self) -> GuestFS:
        """Every read and write of a tweak goes through here: resolved inside the rootfs, like a chroot."""
        if self._fs is None:
            self._fs = GuestFS(self.root)
        return self._fs

    def path(self, guest_path: str) -> Path:
        """The host path for a guest path, its directory resolved inside the rootfs (for naming and
        for tools that take a path; write through `fs`)."""
        return self.fs.host_path(guest_path)

    def check_plain(self, guest_path: str) -> None:
        """Refuse a path with a symlink in its directories, for tools that open paths on the host
        (dpkg-divert --root): the path they open must be the one resolved inside the rootfs."""
        if not self.fs.is_plain(guest_path):
            raise UnsafePathError(f"refusing {guest_path}: a symlink in its directories leads elsewhere")

    def owned_files(self) -> set[str]:
        """Every path that dpkg says a package ships (diverted paths included, as dpkg lists them)."""
        if self._owned is None:
            self._owned = owned_paths(self.root)
        return self._owned

    def is_installed(self, package: str) -> bool:
        if self._installed is None:
            self._installed = set(installed_packages(self.root))
        return package in self._installed

    def check_not_owned(self, guest_path: str) -> None:
        # merged /usr: /lib/x and /usr/lib/x are the same file, whichever name dpkg lists
        if guest_path.startswith("/usr/"):
            candidates = {guest_path, guest_path[len("/usr") :]}
        else:
            candidates = {guest_path, "/usr" + guest_path}
        if candidates & self.owned_files():
            raise OwnedFileError(f"refusing to write {guest_path}: a package owns it (not upgrade-safe)")

    def diversions(self) -> dict[str, str]:
        """dpkg's diversions in the guest: original path -> diverted-to path."""
        db = "/var/lib/dpkg/diversions"
        lines = self.fs.read_text(db, errors="replace").splitlines() if self.fs.is_file(db) else []
        return {lines[i]: lines[i + 1] for i in range(0, len(lines) - 2, 3)}

    def is_diverted(self, guest_path: str) -> bool:
        return guest_path in self.diversions()

    def divert(self, guest_path: str, to: str) -> None:
        """Move a packaged file aside for good (idempotent)."""
        current = self.diversions().get(guest_path)
        if current == to:
            return
        if current is not None:
            raise UnsafePathError(f"{guest_path} is already diverted to {current}")
        self.check_plain(guest_path)
        self.check_plain(to)
        divert(self.root, guest_path, to)

    def write(self, guest_path: str, text: str, mode: int, diverted: bool = False) -> None:
        if not (diverted and self.is_diverted(guest_path)):
            self.check_not_owned(guest_path)
        self.fs.write_text(guest_path, text, mode)  # replaces a symlink there; never follows one out

    def symlink(self, guest_path: str, target: str) -> None:
        self.check_not_owned(guest_path)
        self.fs.symlink(target, guest_path)


def apply_action(action: Action, guest: Guest) -> list[str]:
    """Apply one action; returns the guest paths it touched."""
    if not isinstance(action, Action):
        raise TypeError(f"unknown tweak action {action!r}")
    return action.apply(guest)


def _env_value(value: Any) -> str:
    """A hook's VM_* variable: one line (hooks write values into files such as /etc/timezone)."""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, list | tuple):
        text = " ".join(str(v) for v in value)
    else:
        text = "" if value is None or isinstance(value, dict) else str(value)
    return str(line(text, "a hook variable", "a hook's environment"))


def select(tweaks: Iterable[Tweak], release: Release, traits: ReleaseTraits, guest: Guest) -> list[Tweak]:
    return [t for t in tweaks if t.when.matches(release, traits, guest)]


def apply(tweaks: Sequence[Tweak], guest: Guest) -> list[dict[str, Any]]:
    """Apply the selected tweaks in order; returns a record per tweak for the build summary."""
    record = []
    for tweak in tweaks:
        touched: list[str] = []
        for action in tweak.actions:
            touched += apply_action(action, guest)
        record.append({"name": tweak.name, "why": tweak.why, "paths": touched})
    return record
