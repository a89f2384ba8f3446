"""What a tweak does: the actions (write a file, a drop-in, a mask, a diversion, a hook...).

Each action applies itself to a tweakguest.Guest, returning the guest paths it touched (for the
build record), and describes itself for docs/tweaks.md. Every action is upgrade-safe: it writes only
what no package owns (Guest checks), or moves a packaged file aside with dpkg-divert.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import Any

from .formats import line
from .shellhooks import run_builtin
from .tweakguest import Guest


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


def _env_value(value: Any) -> str:
    """A hook's VM_* variable: one line (hooks write values into files such as /etc/timezone)."""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, list | tuple):
        text = " ".join(str(v) for v in value)
    else:
        text = "" if value is None or isinstance(value, dict) else str(value)
    return str(line(text, "a hook variable", "a hook's environment"))
