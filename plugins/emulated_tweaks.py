"""Tweaks for a guest whose --arch is foreign to the build host (When(emulated=True)): it was built
through qemu-user (binfmt_misc with the F flag) and boots under lxc-start on such a host through
it too. Each row names what fails under qemu-user and why; docs/architectures.md has the evidence.

An image built this way usually ends up on a host of its own architecture, so the rows cost
nothing there: networkd is skipped only while init itself is the emulator, and the units that
lose their (unused) credentials run as before.
"""

from __future__ import annotations

from vmbuilder_lxc.tweakactions import DropIn
from vmbuilder_lxc.tweaks import Tweak, When

# The units of systemd 252 (bookworm) that load credentials and run at every boot; procps.service is
# bookworm's alias of systemd-sysctl.service and gets the drop-in through it.
CREDENTIAL_UNITS = (
    "systemd-sysctl.service",
    "systemd-sysusers.service",
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.service",
)

EMULATED_NO_CREDENTIALS = Tweak(
    "emulated-no-credentials",
    "Under qemu-user, systemd fails a unit at the CREDENTIALS step (EINVAL while it sets up the unit's "
    "credentials directory): systemd-sysctl, systemd-sysusers and systemd-tmpfiles-setup(-dev) fail at "
    "boot and the guest is degraded. None of them is given a credential in a container; a drop-in "
    "empties their LoadCredential= list.",
    tuple(
        DropIn(unit, "systemd/emulated-no-credentials.conf.j2", "50-vmbuilder-emulated.conf")
        for unit in CREDENTIAL_UNITS
    ),  # fmt: skip
    When(init="systemd", emulated=True),
)

EMULATED_SKIP_NETWORKD = Tweak(
    "emulated-skip-networkd",
    "systemd-networkd cannot start under qemu-user: it opens a generic netlink socket, which qemu-user "
    "does not translate ('Could not setup manager: Protocol not supported'); after five restarts the "
    "service and its socket are failed units. An ExecCondition skips it while init runs through qemu "
    "(/proc/1/exe is the emulator), so the same image still gets its network on a native host. Under "
    "emulation give the container its address from the host side (lxc.net.0.ipv4.address).",
    (DropIn("systemd-networkd.service", "systemd/emulated-skip-networkd.conf.j2", "50-vmbuilder-emulated.conf"),),
    When(init="systemd", network="networkd", emulated=True),
)

EMULATED_TWEAKS: tuple[Tweak, ...] = (EMULATED_NO_CREDENTIALS, EMULATED_SKIP_NETWORKD)
