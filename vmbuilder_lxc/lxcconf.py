"""The guest's part of an LXC config (lxc/guest.conf.j2): shared by the lxc plugin's DEST/config
and the lxc image export's meta config, so a container made either way gets the same consoles."""

from __future__ import annotations

from collections.abc import Mapping

from .arches import foreign, kernel_arch

TTYS = 4  # lxc.tty.max; the console is pts/0, the ttys pts/1..TTYS


# LXC stops a systemd guest with SIGRTMIN+3, but only when it sees init block that signal in
# /proc/PID/status; under qemu-user the guest's signal mask is the emulator's own, so LXC sends
# SIGPWR, which systemd ignores. qemu-user (Debian 12's 7.2) hands the host's glibc SIGRTMIN+N (34+N)
# to the guest as signal 32+N, the guest glibc's SIGRTMIN+N-2: host +5 is systemd's +3.
EMULATED_SYSTEMD_HALT = "SIGRTMIN+5"


def guest_config_vars(arch: str, hook_env: Mapping[str, str], on_this_host: bool = False) -> dict[str, object]:
    """ON_THIS_HOST: the config is for this host (DEST/config), not an image that may run natively."""
    emulated = on_this_host and foreign(arch) and hook_env.get("INIT") == "systemd"
    return {
        "lxc_arch": kernel_arch(arch),
        "halt_signal": EMULATED_SYSTEMD_HALT if emulated else "",
        "ttys": TTYS,
        # upstart before precise has no container-detect and expects the ttys on /dev/ttyN itself
        "tty_dir_empty": hook_env.get("INIT") == "upstart" and hook_env.get("CONTAINER_DETECT") != "yes",
        "container_ttys": " ".join(f"pts/{n}" for n in range(1, TTYS + 1)),
    }
