"""Setting up the guest after the tweaks: its locale, the initial user, the root account and the
authorized SSH keys. (The tweaks' view of the rootfs is tweakguest.Guest; this is the step after it.)

Nothing here knows the distro class: DebianFamily hands over its settings and the ways it runs a
command in the guest, writes a file into it and adds an account (an imported image keeps its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .formats import chpasswd_line, sudoers_user
from .guestfs import GuestFS
from .localegen import enable_locale, locale_a_name, supported_entry
from .log import die
from .run import CommandResult
from .settings import Settings


class RunInTarget(Protocol):
    """Plugin.run_in_target: a command in the guest's chroot."""

    def __call__(self, *argv: str, input: str | None = None) -> CommandResult: ...


@dataclass
class GuestSetup:
    """One build's guest setup, bound to the distro's ways into the guest (so that tests can swap them)."""

    settings: Settings
    release: Callable[[], str]  # the release, described for messages ("Ubuntu 24.04 (noble)")
    guestfs: Callable[[], GuestFS]  # the rootfs, opened for confined reads and writes
    run_in_target: RunInTarget
    install_file: Callable[[str, str, int], Path]
    add_user: Callable[[list[str], str], None]  # useradd ARGV USER, the source's way

    def configure_locale(self) -> None:
        """Generate --lang the way the guest's locales package keeps it through its upgrades.

        LANG itself is written by the locale tweaks (the file each release reads). The locales
        package of Debian (and of Ubuntu from noble on) rebuilds what /etc/locale.gen enables at every
        upgrade, and Debian's locale-gen ignores its arguments: so the locale is enabled there first
        (a file the postinst made, which no package owns), then locale-gen runs (Ubuntu's takes the
        name as well). `locale -a` tells whether the guest has it now; a name it cannot build is refused.
        """
        lang = str(self.settings["lang"])
        if lang in ("C.UTF-8", "C", "POSIX"):
            return
        gen, listed = "/etc/locale.gen", "/usr/share/i18n/SUPPORTED"
        with self.guestfs() as fs:
            supported = fs.read_text(listed, errors="replace") if fs.is_file(listed) else ""
            entry = supported_entry(supported, lang)
            if entry and fs.is_file(gen) and not fs.is_symlink(gen):  # a link to SUPPORTED builds them all
                fs.write_text(gen, enable_locale(fs.read_text(gen, errors="replace"), entry), 0o644)
        self.run_in_target("locale-gen", lang)
        if locale_a_name(lang) not in self.run_in_target("locale", "-a").lines:
            die(f"--lang {lang} is not a locale that {self.release()} can generate",
                f"use a name listed in the guest's {listed}, e.g. en_US.UTF-8")  # fmt: skip

    def configure_users(self) -> None:
        """The initial user (in the sudo group), passwords or locks, and the authorized SSH keys."""
        s = self.settings
        user = str(s["user"])
        argv = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "--groups", "sudo"]
        if s["name"]:
            argv += ["--comment", str(s["name"])]
        if s["uid"] is not None:
            argv += ["--uid", str(s["uid"])]
        self.add_user(argv, user)
        passwords = []
        if s["pass"]:
            passwords.append(chpasswd_line(user, str(s["pass"])))  # one line whatever the password holds
        else:
            self.run_in_target("usermod", "--lock", user)
            self.install_file(
                f"/etc/sudoers.d/90-vmbuilder-{user}",
                f"# {user} has no password (--pass was not given): sudo without one.\n"
                f"{sudoers_user(user)} ALL=(ALL) NOPASSWD:ALL\n",
                0o440,
            )
        if s["rootpass"]:
            passwords.append(chpasswd_line("root", str(s["rootpass"])))
        if passwords:
            self.run_in_target("chpasswd", input="\n".join(passwords) + "\n")
        if not s["rootpass"]:
            self.run_in_target("usermod", "--lock", "root")
        for key_setting, account in (("ssh-key", "root"), ("ssh-user-key", user)):
            key_file = s.get_str(key_setting)
            if key_file:
                self.authorize_key(account, Path(key_file))

    def authorize_key(self, account: str, key_file: Path) -> None:
        """~account/.ssh/authorized_keys, owned by the account, all through guestfs: a chown or chmod
        run in the chroot would follow an imported image's .ssh link through /proc/1/root to the host."""
        keys = key_file.read_text()
        keys += "" if keys.endswith("\n") else "\n"
        with self.guestfs() as fs:
            passwd = fs.read_text("/etc/passwd", errors="replace") if fs.is_file("/etc/passwd") else ""
            entry = next((f for f in (ln.split(":") for ln in passwd.splitlines()) if len(f) >= 7 and f[0] == account),
                         None)  # fmt: skip
            if entry is None or not (entry[2].isdigit() and entry[3].isdigit()):
                raise RuntimeError(f"user {account} is not in the guest's /etc/passwd")
            uid, gid, ssh = int(entry[2]), int(entry[3]), entry[5].rstrip("/") + "/.ssh"
            fs.mkdir(ssh, 0o700, parents=True, exist_ok=True)
            fs.chmod_dir(ssh, 0o700, uid=uid, gid=gid)
            fs.write_text(f"{ssh}/authorized_keys", keys, 0o600, uid=uid, gid=gid)
