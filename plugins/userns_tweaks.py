"""Tweaks for a guest that boots in a user namespace (`--idmap`, docs/unprivileged.md), as data.

Each row is selected by When(userns=True) and is also guarded at run time by
ConditionVirtualization=!private-users, so the same files are harmless when the rootfs boots
privileged, in a VM or on a host (an export of a shifted build is 0-based and may be booted anywhere).
Nothing package-owned is edited: only drop-ins in /etc/systemd/system.
"""

from __future__ import annotations

from vmbuilder_lxc.tweakactions import DropIn
from vmbuilder_lxc.tweaks import Tweak, When

SKIP = "systemd/userns-skip.conf.j2"
NAME = "10-vmbuilder-userns.conf"

USERNS_DEBUGFS = Tweak(
    "userns-debugfs",
    "LXC's userns.conf clears common.conf's capability drop, so CAP_SYS_RAWIO passes "
    "sys-kernel-debug.mount's condition, but debugfs cannot be mounted from a user namespace "
    "(permission denied) and the unit fails, leaving the system degraded. Skip it in a user namespace.",
    (DropIn("sys-kernel-debug.mount", SKIP, NAME),),
    When(init="systemd", userns=True),
)

USERNS_MODULES_LOAD = Tweak(
    "userns-modules-load",
    "The same for systemd-modules-load.service (trixie, whose packages ship a modules-load.d entry): "
    "CAP_SYS_MODULE is no longer dropped, so its condition passes, but a user namespace can never load a "
    "kernel module and the unit fails. Skip it in a user namespace; the host loads modules.",
    (DropIn("systemd-modules-load.service", SKIP, NAME),),
    When(init="systemd", userns=True),
)

USERNS_TWEAKS: tuple[Tweak, ...] = (USERNS_DEBUGFS, USERNS_MODULES_LOAD)
