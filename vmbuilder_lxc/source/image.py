"""ImageSource: the --from-template source, an image (a rootfs tarball, ours or another tool's) deployed
instead of bootstrapping.

An imported rootfs goes through the same pipeline as a bootstrapped one (the LXC config, --libvirt,
--copy, hooks and the summary all work unchanged); the image itself is read and checked by
image_import.py. The steps:

- set_defaults: image_import.inspect() reads the whole archive once (an unsafe archive is refused
  with one line before anything is written); the image's release and architecture become --suite
  and --arch unless those were given.
- preflight: what the import can refuse or warn about, instead of the keyring and bootstrapper checks.
- provide_rootfs: safe_extract() unpacks the rootfs (and checks it once more).
- configure: the container's own identity (hostname, 127.0.1.1, an empty machine-id, no shared
  secrets) and the initial user; packages, network, locale and the other tweaks are the image's.
  docs/import.md explains the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import shellhooks
from ..archive_safety import free_space, safe_extract
from ..formats import word
from ..guestfs import GuestFS
from ..hostsfile import hosts_text
from ..image_import import GROUP, PASSWD, ImportedImage, inspect, passwd_accounts
from ..keyring import sha256_file
from ..log import LOG, die, note
from ..tweakguest import Guest
from ..tweaks import apply
from . import Host

# The identity tweaks every container needs even from a ready-made rootfs (plugins/common_tweaks.py).
IDENTITY_TWEAKS = ("machine-id", "dbus-machine-id", "instance-secrets")

# Settings that shape a bootstrap or the guest's configuration: an imported rootfs has its own.
NOT_FOR_IMPORT = (
    "addpkg", "removepkg", "seedfile", "variant", "mirror", "install-mirror", "security-mirror",
    "install-security-mirror", "components", "proxy", "keyring", "bootstrapper", "ip", "mask", "gw", "dns",
    "lang", "timezone", "initctl-listener",
)  # fmt: skip


class ImageSource:
    """--from-template: the image's rootfs, given only its own identity and the initial user."""

    image: ImportedImage  # known after set_defaults

    def __init__(self, host: Host) -> None:
        self.host = host

    def _refuse_inapplicable(self) -> None:
        s = self.host.settings
        # explicit() first: source() would compute a default (the mirror's) before the release is known.
        given = [
            name for name in NOT_FOR_IMPORT if name in s.table and s.explicit(name) and s.source(name) == "command line"
        ]
        if given:
            flags = ", ".join(f"--{name}" for name in given)
            die(
                f"{flags} {'does' if len(given) == 1 else 'do'} not apply to --from-template: the template is "
                "deployed with its own packages, network, locale and time zone",
                "drop it, or build from the archive without --from-template",
            )
        for name in NOT_FOR_IMPORT:
            if name in s.table and s.explicit(name):
                LOG.debug("--from-template: %s from %s is not used", name, s.source(name))

    def set_defaults(self) -> None:
        """Check and inspect the image, then adopt its release and architecture."""
        host, s = self.host, self.host.settings
        self._refuse_inapplicable()
        path = Path(str(s["from-template"]))
        image = inspect(path, allow_setuid=s.get_bool("template-setuid"), limits=free_space(host.context.dest))
        image.sha256 = sha256_file(path)
        if not image.os_release:
            if not s.explicit("suite"):
                die(
                    f"template {path} has no etc/os-release, so its release is unknown", "pass --suite with its release"
                )
            LOG.warning("template %s has no etc/os-release; trusting --suite %s", path, s["suite"])
        elif image.distro_id != host.name:
            die(
                f"template {path} is {image.description} (ID={image.distro_id or '?'}), not {host.name}",
                f"import it with its own distro: vmbuilder {host.context.hypervisor_name} "
                f"{image.distro_id or 'DISTRO'} --from-template {path}",
            )
        elif not s.explicit("suite"):
            if not image.series:
                die(f"template {path}: its os-release names no VERSION_CODENAME or VERSION_ID", "pass --suite")
            s.set("suite", image.series, "--from-template")
        else:
            chosen = host.resolve_suite(str(s["suite"]))
            if image.series and image.series not in (chosen.series, chosen.version):
                LOG.warning(
                    "--suite %s, but the template is %s; the container is configured as %s",
                    s["suite"],
                    image.description,
                    chosen.describe(),
                )
        if image.arch:
            if not s.explicit("arch"):
                s.set("arch", image.arch, "--from-template")
            elif s["arch"] != image.arch:
                die(f"--arch {s['arch']}, but template {path} is {image.arch}", "drop --arch")
        host.context.summary["template"] = image.summary()
        host.context.hook_env["TEMPLATE"] = str(path)
        self.image = image

    def preflight(self) -> None:
        """What the import itself can refuse or warn about (no keyring or bootstrapper is needed)."""
        s, image = self.host.settings, self.image
        user = str(s["user"])
        uid = s.get_int("uid")
        if user in image.accounts and uid is not None and image.accounts[user] != uid:
            die(
                f"--uid {uid}: user {user} already exists in the template with uid {image.accounts[user]}",
                "drop --uid, or choose another --user",
            )
        if not image.has_init:
            LOG.warning(
                "template %s has no /sbin/init (a build chroot?): lxc-start cannot boot it; install an init "
                "system (e.g. systemd-sysv) in the template first",
                image.path,
            )
        if image.host_keys and not image.ours:
            LOG.warning(
                "template %s ships SSH host keys (%s), and nothing of ours regenerates them: every container "
                "made from it shares them; remove them and run ssh-keygen -A in the container (e.g. with "
                "--firstboot)",
                image.path,
                ", ".join(Path(k).name for k in image.host_keys[:3]) + (", ..." if len(image.host_keys) > 3 else ""),
            )
        dirs = [Path(p) for p in s.get_list("hook-dir")]
        early = [p for stage in ("setup", "essential") for p in shellhooks.stage_scripts(dirs, stage)]
        if early:
            LOG.warning(
                "--from-template: nothing is bootstrapped, so the setup and essential hooks (%s) do not run",
                ", ".join(p.name for p in early),
            )

    def provide_rootfs(self) -> None:
        """Unpack the rootfs (safe_extract checks the archive once more, then runs GNU tar)."""
        ctx, image = self.host.context, self.image
        note("unpacking %s (%s layout, %s) from %s", image.description, image.layout, image.compression,
             image.path)  # fmt: skip
        allow_setuid = self.host.settings.get_bool("template-setuid")
        safe_extract(image.path, ctx.rootfs, strip=image.strip, allow_setuid=allow_setuid,
                     label=f"template {image.path}")  # fmt: skip

    def configure(self) -> None:
        """The container's own identity and the initial user; the rest is the image's."""
        host, ctx = self.host, self.host.context
        if ctx.chroot is not None:  # commands in the image's rootfs get their own /proc (see Chroot)
            ctx.chroot.pid_namespace = True
        variables = host.guest_vars()
        guest = Guest(ctx.rootfs, lambda name, values: ctx.render(name, values), variables, ctx.hook_env)
        names: Sequence[str] = IDENTITY_TWEAKS + (("ssh-host-keys",) if self.image.ours else ())
        chosen = [t for t in host.select_tweaks(guest) if t.name in names]
        record: list[dict[str, Any]] = [
            {
                "name": "hostname",
                "why": "The container's own name in /etc/hostname and on the template's 127.0.1.1 line.",
                "paths": identity(guest, variables),
            }
        ]
        record += apply(chosen, guest)
        ctx.summary["tweaks"] = record
        note("gave the imported %s its own identity (%s)", self.image.description, ", ".join(r["name"] for r in record))
        host.configure_users()

    def add_user(self, argv: Sequence[str], user: str) -> None:
        """useradd on an imported rootfs: an account the image has is kept as it is.

        (Our own exports have the initial user already; useradd would fail on it.) The password, sudo
        and SSH key settings that follow apply either way. An image without a sudo group gets the user
        without that group.
        """
        host = self.host
        with GuestFS(host.context.rootfs) as fs:  # read inside the rootfs, never through a symlink out
            passwd = fs.read_text(PASSWD, errors="replace") if fs.is_file(PASSWD) else ""
            group_text = fs.read_text(GROUP, errors="replace") if fs.is_file(GROUP) else ""
        accounts = passwd_accounts(passwd) if passwd else {}
        s = host.settings
        if user in accounts:
            note("user %s exists in the template; keeping it", user)
            if s["name"]:
                host.run_in_target("usermod", "--comment", str(s["name"]), user)
            return
        args = list(argv)
        groups = {line.split(":", 1)[0] for line in group_text.splitlines()}
        if "sudo" not in groups and "--groups" in args:
            LOG.warning("the template has no sudo group; user %s is created without it", user)
            i = args.index("--groups")
            del args[i : i + 2]
        host.run_in_target(*args, user)


def identity(guest: Guest, variables: dict[str, Any]) -> list[str]:
    """/etc/hostname, and the 127.0.1.1 line of /etc/hosts (the image's other lines stay)."""
    hostname = word(variables["hostname"], "--hostname", "/etc/hostname")  # one field: no spaces, no line breaks
    names = f"{word(variables['fqdn'], 'the FQDN', '/etc/hosts')} {hostname}" if variables.get("domain") else hostname
    guest.write("/etc/hostname", hostname + "\n", 0o644)
    if guest.fs.is_file("/etc/hosts") and not guest.fs.is_symlink("/etc/hosts"):  # read inside the rootfs
        text = hosts_text(guest.fs.read_text("/etc/hosts", errors="replace"), names)
    else:
        text = guest.render("common/hosts.j2", variables)
    guest.write("/etc/hosts", text, 0o644)
    return ["/etc/hostname", "/etc/hosts"]
