"""Every kind of guest write, against a template whose symlinks point at host files (issue 12, item 3).

A default noble build (the session's cached base) is turned into a tar template, and in it each
path the build writes, reads or removes is replaced by an absolute symlink (to a file or to a
directory) aimed at a victim under tmp_path. One --from-template build then does every write:
hostname, hosts, machine-id, users' .ssh/authorized_keys (root and the initial user), the sudoers
rule, the build's resolv.conf and policy-rc.d, --copy (a file, a file below a directory link, a
directory), --firstboot (script, unit and its wants link), the shadow backups, the export's
stripped view, and the account tools run in the chroot (/etc/.pwd.lock through /proc/1/root).
Afterwards every victim must be byte-for-byte what it was, and nothing new may exist beside them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Build, Builder

USER = "ubuntu"  # the default --user, which the template already has: its home exists, so links are planted there


def _snapshot(top: Path) -> dict[str, tuple[str, bytes]]:
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p).encode())
            elif p.is_dir():
                out[str(p)] = ("dir", oct(p.stat().st_mode).encode())
            else:
                out[str(p)] = ("file", p.read_bytes() + oct(p.stat().st_mode).encode())
    return out


def _plant(rootfs: Path, rel: str, target: str) -> None:
    """Replace rootfs/rel (file, link or whole directory) by a symlink to `target`."""
    path = rootfs / rel
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


class Attack:
    """The victims on the host side and the hostile template aimed at them."""

    def __init__(self, tmp: Path, base_rootfs: Path) -> None:
        self.victims = tmp / "victims"
        self.victims.mkdir()
        files = ("hostname", "hosts", "machine-id", "resolv.conf", "policy-rc.d", "escape", "sudoers",
                 "shadow-", "dbus-machine-id")  # fmt: skip
        for name in files:
            (self.victims / name).write_text(f"victim {name}\n")
        self.dirs = {}
        for name in ("root-ssh", "user-ssh", "escdir", "wants", "firstboot", "profile.d", "home-evil"):
            d = self.victims / name
            d.mkdir()
            (d / "keep").write_text(f"victim {name}\n")
            self.dirs[name] = d
        (self.dirs["profile.d"] / "proxy.sh").write_text("export http_proxy=http://victim:3128\nexport KEEP=1\n")
        (self.dirs["home-evil"] / ".bash_history").write_text("victim history\n")

        rootfs = tmp / "hostile-rootfs"
        subprocess.run(["cp", "-a", "--", str(base_rootfs), str(rootfs)], check=True)
        v = self.victims
        # Absolute links only: the archive check refuses relative ones that climb out of the root (the
        # unit tests cover those against guestfs itself), while absolute ones are normal in a rootfs.
        plants = {
            "etc/hostname": str(v / "hostname"),
            "etc/hosts": str(v / "hosts"),
            "etc/machine-id": str(v / "machine-id"),
            "var/lib/dbus/machine-id": str(v / "dbus-machine-id"),
            "etc/resolv.conf": str(v / "resolv.conf"),
            "usr/sbin/policy-rc.d": str(v / "policy-rc.d"),
            "opt/escape": str(v / "escape"),
            "opt/escdir": str(v / "escdir"),
            f"etc/sudoers.d/90-vmbuilder-{USER}": str(v / "sudoers"),
            "etc/shadow-": str(v / "shadow-"),
            "root/.ssh": str(v / "root-ssh"),
            f"home/{USER}/.ssh": str(v / "user-ssh"),
            "etc/systemd/system/multi-user.target.wants": str(v / "wants"),
            "var/lib/vmbuilder-lxc": str(v / "firstboot"),
            "etc/profile.d": str(v / "profile.d"),
            "home/evil": str(v / "home-evil"),
        }
        for rel, target in plants.items():
            _plant(rootfs, rel, target)
        # A link through /proc/1/root for the account tools run in the chroot (usermod --lock takes
        # glibc's lckpwdf() lock, which opens /etc/.pwd.lock with O_CREAT): in the build's own /proc
        # that is the host's root. (shadow opens /etc/shadow itself with O_NOFOLLOW.)
        (rootfs / str(v).lstrip("/")).mkdir(parents=True)
        _plant(rootfs, "etc/.pwd.lock", f"/proc/1/root{v}/pwd.lock")
        self.template = tmp / "hostile.tar.gz"
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-czf", str(self.template), "."], check=True
        )
        shutil.rmtree(rootfs)

        self.copy_src = tmp / "copy-src"
        (self.copy_src / "tree/sub").mkdir(parents=True)
        (self.copy_src / "file").write_text("copied file\n")
        (self.copy_src / "tree/sub/file").write_text("copied tree\n")
        (self.copy_src / "tree/link").symlink_to(v / "hostname")  # copied as a link, never followed
        self.copy_list = tmp / "copy.list"
        self.copy_list.write_text(
            f"{self.copy_src / 'file'} /opt/escape\n"
            f"{self.copy_src / 'file'} /opt/escdir/file\n"
            f"{self.copy_src / 'tree'} /opt/escdir/tree\n"
        )
        self.firstboot = tmp / "firstboot.sh"
        self.firstboot.write_text("#!/bin/sh\necho first boot\n")
        self.key = tmp / "key.pub"
        self.key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileTemplateTestKeyxxxxxxxxxxxxxxxxxxxxxx test\n")
        self.before = _snapshot(self.victims)


@pytest.fixture(scope="module")
def attack(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Attack:
    tmp = tmp_path_factory.mktemp("confined")
    base = tmp / "base"
    builder.run("--suite", "noble", "-d", str(base), "--network", "none").check()
    a = Attack(tmp, base / "rootfs")
    shutil.rmtree(base)
    return a


@pytest.fixture(scope="module")
def build(builder: Builder, attack: Attack, tmp_path_factory: pytest.TempPathFactory) -> Build:
    tmp = tmp_path_factory.mktemp("confined-build")
    exports = tmp / "exports"
    return builder.run(
        "--from-template", str(attack.template), "-d", str(tmp / "dest"), "--network", "none",
        "--hostname", "confined", "--ssh-key", str(attack.key), "--ssh-user-key", str(attack.key),
        "--copy", str(attack.copy_list), "--firstboot", str(attack.firstboot),
        "--export", "tar", "--export-dir", str(exports),
    )  # fmt: skip


def test_no_host_file_was_written_through_a_template_symlink(attack: Attack, build: Build) -> None:
    after = _snapshot(attack.victims)
    changed = sorted(k for k in attack.before if after.get(k) != attack.before[k])
    created = sorted(set(after) - set(attack.before))
    assert (changed, created) == ([], []), build.stderr[-3000:]
    build.check()  # and not because the build stopped early


def test_the_build_succeeded_with_the_writes_inside_the_rootfs(attack: Attack, build: Build) -> None:
    build.check()
    rootfs = build.rootfs
    inside = rootfs / str(attack.victims).lstrip("/")  # where the absolute links resolve in a chroot
    assert (rootfs / "etc/hostname").read_text() == "confined\n" and not (rootfs / "etc/hostname").is_symlink()
    assert "127.0.1.1\tconfined" in (rootfs / "etc/hosts").read_text()
    assert (rootfs / "etc/machine-id").read_bytes() == b""
    assert (inside / "escape").read_text() == "copied file\n"  # --copy followed /opt/escape inside the rootfs
    assert (inside / "escdir/file").read_text() == "copied file\n"
    assert (inside / "escdir/tree/sub/file").read_text() == "copied tree\n"
    assert os.readlink(inside / "escdir/tree/link") == str(attack.victims / "hostname")
    assert "ssh-ed25519" in (inside / "root-ssh/authorized_keys").read_text()
    assert "ssh-ed25519" in (inside / "user-ssh/authorized_keys").read_text()
    assert (inside / "wants/vmbuilder-firstboot.service").is_symlink()
    assert (inside / "firstboot/firstboot").read_text() == attack.firstboot.read_text()
    assert os.readlink(rootfs / "etc/resolv.conf") == str(attack.victims / "resolv.conf")  # restored as it was


def test_the_export_view_did_not_touch_the_host(attack: Attack, build: Build) -> None:
    build.check()
    assert (attack.dirs["profile.d"] / "proxy.sh").read_text().startswith("export http_proxy=")
    assert (attack.dirs["home-evil"] / ".bash_history").read_text() == "victim history\n"


def test_chroot_commands_of_an_import_have_their_own_proc(build: Build) -> None:
    """What image_import turns on. In the build's shared /proc, /proc/PID/root of the build
    process itself leads a chroot'd command to the host's root (the gap); in the command's own PID
    namespace that PID is not there, and /proc/1/root is the chroot."""
    build.check()
    script = (
        "import os, sys; from pathlib import Path; from vmbuilder_lxc.chroot import Chroot\n"
        "from vmbuilder_lxc.run import CommandError\n"
        "for isolated in (True, False):\n"
        "    c = Chroot(Path(sys.argv[1])); c.pid_namespace = isolated\n"
        "    with c:\n"
        "        for pid in (os.getpid(), 1):\n"
        "            try:\n"
        "                a, b = c.run('stat', '-L', '-c', '%d:%i', f'/proc/{pid}/root', '/').lines\n"
        "                print('inside' if a == b else 'host', end=' ')\n"
        "            except CommandError:\n"
        "                print('none', end=' ')\n"
        "    print()\n"
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script, str(build.rootfs)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    isolated, shared = proc.stdout.splitlines()
    assert isolated == "none inside ", proc.stdout
    assert shared.startswith("host "), proc.stdout  # the gap is real where /proc is shared
