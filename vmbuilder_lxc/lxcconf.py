"""The guest's part of an LXC config (lxc/guest.conf.j2): shared by the lxc plugin's DEST/config
and the lxc image export's meta config, so a container made either way gets the same consoles."""

from __future__ import annotations

from collections.abc import Mapping

from .arches import kernel_arch

TTYS = 4  # lxc.tty.max; the console is pts/0, the ttys pts/1..TTYS


def guest_config_vars(arch: str, hook_env: Mapping[str, str]) -> dict[str, object]:
    return {
        "lxc_arch": kernel_arch(arch),
        "ttys": TTYS,
        # upstart before precise has no container-detect and expects the ttys on /dev/ttyN itself
        "tty_dir_empty": hook_env.get("INIT") == "upstart" and hook_env.get("CONTAINER_DETECT") != "yes",
        "container_ttys": " ".join(f"pts/{n}" for n in range(1, TTYS + 1)),
    }
