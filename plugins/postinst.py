"""The `postinst` plugin: VMBuilder's --copy, --execscript and --firstboot.

--copy FILE      each line of FILE is "SOURCE DESTINATION"; SOURCE (a host path) is copied to
                 DESTINATION inside the guest ('#' starts a comment)
--execscript S   run S on the host with the rootfs as $1 (and the build facts in its environment),
                 after the guest is configured and while the chroot mounts are active
--firstboot S    copy S into the guest and run it once, at the first boot
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vmbuilder_lxc import validators as v
from vmbuilder_lxc.guestfs import GuestFS
from vmbuilder_lxc.log import LOG, die
from vmbuilder_lxc.plugin import Plugin
from vmbuilder_lxc.settings import Needs, Setting
from vmbuilder_lxc.shellhooks import run_script

GROUP = "Customisation"
FIRSTBOOT_DIR = "/var/lib/vmbuilder-lxc"
BOOTS = Needs(lambda s: "variant" not in s.table or s["variant"] != "buildd",
              "with --variant buildd (a chroot that never boots)")  # fmt: skip


def parse_copy_file(path: Path) -> list[tuple[Path, str]]:
    """Read a --copy file; every error names the file and line."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = shlex.split(text)
        if len(parts) != 2:
            die(f"{path}:{number}: expected 'SOURCE DESTINATION', got {line.strip()!r}", "fix the --copy file")
        source, dest = Path(parts[0]).expanduser(), parts[1]
        if not source.exists():
            die(f"{path}:{number}: {source} does not exist", "fix the --copy file")
        if not dest.startswith("/"):
            die(f"{path}:{number}: destination {dest} is not an absolute guest path", "fix the --copy file")
        pairs.append((source, dest))
    return pairs


def copy_into(fs: GuestFS, source: Path, dest: str) -> None:
    """One --copy line, through the confined write path: DEST (or DEST/NAME for a DEST ending in /)
    is resolved inside the rootfs like `cp` in a chroot would (a symlink there is followed, but
    never out of the rootfs); symlinks in a copied directory are copied as symlinks."""
    target = dest.rstrip("/") + ("/" + source.name if dest.endswith("/") else "")
    if target == "" or target == "/":
        die(f"--copy {source}: the destination {dest} is the root directory", "name a directory or a file in it")
    if source.is_dir():
        for skipped in fs.copy_tree_from_host(source, target):
            LOG.warning("--copy: %s is not a file, directory or symlink; not copied", skipped)
    else:
        if fs.is_dir(target):
            target = target + "/" + source.name  # cp SOURCE DIR puts the file into DIR
        fs.copy_file_from_host(source, target)
    LOG.info("copied %s to %s", source, dest)


class PostInst(Plugin):
    name: ClassVar[str] = "postinst"
    description: ClassVar[str] = "--copy, --execscript and --firstboot (VMBuilder's post-install options)"
    priority: ClassVar[int] = 50

    def register_options(self) -> Sequence[Setting]:
        return [
            Setting("copy", "copy host files into the guest, as listed in FILE ('SOURCE DEST' per line)",
                    metavar="FILE", validate=v.copy_list, group=GROUP),
            Setting("execscript", "run SCRIPT on the host with the rootfs as $1 after configuration",
                    aliases=("--exec",), metavar="SCRIPT", validate=v.existing_file, group=GROUP),
            Setting("firstboot", "run SCRIPT inside the guest once, at its first boot", metavar="SCRIPT",
                    validate=v.existing_file, needs=(BOOTS,), group=GROUP),
        ]  # fmt: skip

    def preflight_check(self) -> None:
        copy = self.settings.get_str("copy")
        if copy:
            parse_copy_file(Path(copy))
        for key in ("execscript",):
            script = self.settings.get_str(key)
            if script and not os.access(script, os.X_OK):
                die(f"--{key} {script} is not executable", f"chmod +x {script}")

    def configure_os(self) -> None:
        s = self.settings
        ctx = self.context
        copy = s.get_str("copy")
        if copy:
            with ctx.guestfs() as fs:
                for source, dest in parse_copy_file(Path(copy)):
                    copy_into(fs, source, dest)
        firstboot = s.get_str("firstboot")
        if firstboot:
            self.install_file(f"{FIRSTBOOT_DIR}/firstboot", Path(firstboot).read_text(), 0o755)
            self.install_firstboot_job(f"{FIRSTBOOT_DIR}/firstboot")
        script = s.get_str("execscript")
        if script:
            LOG.info("running --execscript %s", script)
            run_script(Path(script), ctx.rootfs, ctx.hook_env)

    def install_firstboot_job(self, script: str) -> None:
        """A job of the guest's own init: an upstart job up to utopic, a systemd unit after."""
        if self.context.hook_env.get("INIT") == "upstart":
            self.install_from_template("/etc/init/vmbuilder-firstboot.conf", "upstart/firstboot.conf.j2",
                                       {"script": script})  # fmt: skip
            return
        unit = "/etc/systemd/system/vmbuilder-firstboot.service"
        self.install_from_template(unit, "systemd/firstboot.service.j2", {"script": script})
        with self.context.guestfs() as fs:
            fs.symlink(unit, "/etc/systemd/system/multi-user.target.wants/vmbuilder-firstboot.service")
