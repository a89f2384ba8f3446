"""Per-build state shared by the pipeline and the plugins (mkosi's Context, VMBuilder's Context).

`Settings` is what the user asked for; `Context` is what the build has: the plugin instances, the
staging paths, the active chroot, the template search path and the summary being collected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .guestfs import GuestFS
from .log import UserError
from .plugintypes import BuildPlugin, DistroPlugin
from .render import Templates
from .settings import Settings

if TYPE_CHECKING:
    from .chroot import Chroot
    from .run import CommandResult


@dataclass
class Context:
    settings: Settings
    hypervisor_name: str
    distro_name: str
    plugins: list[BuildPlugin] = field(default_factory=list)
    workdir: Path | None = None
    chroot: Chroot | None = None
    templates: Templates | None = None
    hook_env: dict[str, str] = field(default_factory=dict)  # hook scripts' environment (SUITE, ARCH, ...)
    summary: dict[str, Any] = field(default_factory=dict)
    keep_dest: bool = True  # False with --export-only: the build exists only for its exports
    # Two of `plugins`, set by cli.make_context once they exist (a plugin is made with its Context,
    # so they cannot be constructor arguments). Typed by Protocol: this module never imports plugin.py.
    distro: DistroPlugin = field(init=False, repr=False, compare=False)
    hypervisor: BuildPlugin = field(init=False, repr=False, compare=False)

    @property
    def dest(self) -> Path:
        """The destination directory, from -d (or what a plugin's set_defaults made of it)."""
        return Path(self.settings.get_str("dest") or ".").expanduser().absolute()

    @property
    def rootfs(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("the build directory does not exist yet")
        return self.workdir / "rootfs"

    @property
    def name(self) -> str:
        """The container's name: the destination directory's base name."""
        return self.dest.name

    def guestfs(self) -> GuestFS:
        """The rootfs opened for confined reads and writes (guestfs.py); close it, or use `with`."""
        return GuestFS(self.rootfs)

    def guest_path(self, path: str) -> Path:
        """The host path of an absolute guest path, its directory resolved inside the rootfs (as a
        chroot would). For naming and reading only: write with install_file() or guestfs()."""
        path = GuestFS.absolute(path)
        with self.guestfs() as fs:
            return fs.host_path(path)

    def install_file(self, path: str, contents: str, mode: int = 0o644) -> Path:
        """Write a guest file through the confined path: a symlink at `path` is replaced, and no
        symlink in its directories can lead out of the rootfs."""
        path = GuestFS.absolute(path)
        with self.guestfs() as fs:
            fs.write_text(path, contents, mode)
            return fs.host_path(path)

    def template_context(self) -> dict[str, Any]:
        # `facts` is the name that --templates overrides know the hook environment by: kept.
        return {"settings": self.settings.as_dict(), "facts": dict(self.hook_env), "name": self.name}

    def render(self, template: str, extra: dict[str, Any] | None = None) -> str:
        if self.templates is None:
            raise RuntimeError("templates are not set up yet")
        return self.templates.render(template, {**self.template_context(), **(extra or {})})

    def run_in_target(self, *argv: str, input: str | None = None) -> CommandResult:
        if self.chroot is None:
            raise UserError("run_in_target() was called outside the chroot stage", "call it from configure_os()")
        return self.chroot.run(*argv, input=input)
