"""Container tweaks for Ubuntu's upstart era (lucid 10.04 to utopic 14.10), as data by release.

The research behind each entry is in ../shared/research/tweaks.md (sections A, C, D, F) and is
summarised in docs/upstart.md. Upgrade safety: jobs are switched off with `.override` files
(upstart >= 1.3, oneiric on), which no package owns, or, before that, moved aside with
`dpkg-divert --local --rename`, so dpkg installs later versions at the diverted name. Our own jobs
are named vmbuilder-*.conf, a name no package will ship. /lib/init/fstab (mountall's data, not a
conffile) is never touched: /etc/fstab overrides its entries by mount point.
"""

from __future__ import annotations

from vmbuilder_lxc.tweakactions import Divert, File, Override, Remove, Replace
from vmbuilder_lxc.tweaks import Tweak, When

from .common_tweaks import INITCTL_LISTENER_SCRIPT

# Jobs that cannot work in a container and hang or fail the boot there.
CONTAINER_UNSAFE_JOBS: tuple[str, ...] = (
    # udev: /sys is read-only and there are no devices to manage; the manager populates /dev.
    "udev", "udevtrigger", "udev-finish", "udevmonitor", "udev-fallback-graphics", "upstart-udev-bridge",
    # boot-time readahead needs the block device and fanotify rights a container lacks.
    "ureadahead", "ureadahead-other",
    # boot splash: no framebuffer, no VT.
    "plymouth", "plymouth-log", "plymouth-splash", "plymouth-stop", "plymouth-ready", "plymouth-shutdown",
    "plymouth-upstart-bridge",
    # the hardware clock belongs to the host.
    "hwclock", "hwclock-save",
    # kernel modules cannot be loaded from a container.
    "module-init-tools", "kmod",
    # VT keyboard, font and colour setup: the ttys are ptys.
    "console-setup", "setvtrgb",
    # ttys the manager does not provide: lxc-start gives tty1-tty4 (lxc.tty.max = 4).
    "tty5", "tty6",
)  # fmt: skip

JOB_FILES = tuple(f"/etc/init/{job}.conf" for job in CONTAINER_UNSAFE_JOBS)

# Kernel file systems in mountall's built-in table (/lib/init/fstab) that the manager provides or
# that a container must not mount; /etc/fstab lists them as noauto, which overrides the built-in
# entry for the same mount point, so mountall never mounts proc or sysfs itself.
MANAGER_MOUNTS: tuple[tuple[str, str], ...] = (
    ("/proc", "proc"),
    ("/proc/sys/fs/binfmt_misc", "binfmt_misc"),
    ("/sys", "sysfs"),
    ("/sys/fs/cgroup", "tmpfs"),
    ("/sys/fs/fuse/connections", "fusectl"),
    ("/sys/kernel/debug", "debugfs"),
    ("/sys/kernel/security", "securityfs"),
    ("/sys/firmware/efi/efivars", "efivarfs"),
    ("/sys/fs/pstore", "pstore"),
    ("/spu", "spufs"),
    ("/dev", "devtmpfs"),
    ("/dev/pts", "devpts"),
)

UPSTART_TWEAKS: tuple[Tweak, ...] = (
    Tweak(
        "mountall-fstab",
        "mountall mounts its built-in table (/lib/init/fstab) plus /etc/fstab. Kernel file systems "
        "are the manager's: it mounts /proc and /sys (container-safe views, lxcfs) and /dev, and a "
        "container may not mount debugfs, securityfs and the like, on which mountall would hang. "
        "/etc/fstab overrides them by mount point with noauto; /lib/init/fstab, package data that "
        "every mountall update rewrites, is left alone.",
        (File("/etc/fstab", "upstart/fstab.j2"),),
        When(init="upstart"),
    ),
    Tweak(
        "disable-jobs-override",
        "udev, readahead, plymouth, hwclock, module loading, VT setup and the ttys beyond tty4 "
        "cannot work in a container; `manual` in a .override file keeps them from starting.",
        (Override(CONTAINER_UNSAFE_JOBS),),
        When(init="upstart", overrides=True),
    ),
    Tweak(
        "disable-jobs-divert",
        "The same jobs, on an upstart without .override support (before 1.3): each job file is "
        "diverted aside to a name upstart does not read, and dpkg puts every update there too.",
        (Divert(JOB_FILES),),
        When(init="upstart", overrides=False),
    ),
    Tweak(
        "fake-udev-events",
        "Before precise, jobs such as networking start on 'stopped udevtrigger' and others on "
        "'started udev'; with udev off, a job of ours emits both events at startup.",
        (File("/etc/init/vmbuilder-container-events.conf", "upstart/container-events.conf.j2"),),
        When(init="upstart", container_detect=False),
    ),
    Tweak(
        "console-getty",
        "Before precise, upstart has no console.conf; one getty on /dev/console (not under libvirt, "
        "where /dev/console is tty1 and tty1.conf serves it). From precise on, upstart's own "
        "console.conf does this.",
        (File("/etc/init/vmbuilder-console.conf", "upstart/console.conf.j2"),),
        When(init="upstart", container_detect=False),
    ),
    Tweak(
        "dev-shm",
        "From precise on, /dev/shm is a symlink to /run/shm made by mounted-dev.conf, which does "
        "not run when the manager mounts /dev; a job of ours makes the link.",
        (File("/etc/init/vmbuilder-dev-shm.conf", "upstart/dev-shm.conf.j2"),),
        When(init="upstart", container_detect=True),
    ),
    Tweak(
        "dhclient-hostname",
        "Before precise, dhclient.conf carries a '<hostname>' placeholder that the LXC templates of "
        "the time edited in place; instead the packaged file is diverted aside and ours sends the "
        "container's name.",
        (Replace(("/etc/dhcp3/dhclient.conf", "/etc/dhcp/dhclient.conf"), "upstart/dhclient.conf.j2"),),
        When(init="upstart", container_detect=False),
    ),
    Tweak(
        "ssh-host-keys-upstart",
        "Keys are removed so every container gets its own; a task of ours creates the missing ones "
        "before the ssh job starts (ssh-keygen -A where it exists, per key type before).",
        (
            Remove(("/etc/ssh/ssh_host_*",)),
            File("/etc/init/vmbuilder-ssh-hostkeys.conf", "upstart/ssh-hostkeys.conf.j2"),
        ),
        When(init="upstart", installed="openssh-server"),
    ),
    Tweak(
        "initctl-listener-upstart",
        "libvirt-lxc's `virsh shutdown` and `reboot` write a SysV request to /run/initctl or "
        "/dev/initctl and report success even when no FIFO exists; upstart has none. A job of ours "
        "makes the FIFO (/run/initctl from oneiric on, /dev/initctl before) and keeps a small sh "
        "listener reading it, which runs `shutdown -h now` or `shutdown -r now` (not with "
        "--initctl-listener never).",
        (INITCTL_LISTENER_SCRIPT, File("/etc/init/vmbuilder-initctl.conf", "upstart/initctl.conf.j2")),
        When(init="upstart", initctl=False),
    ),
)
