"""The `lxc` hypervisor plugin: a container directory that lxc-start boots.

DEST/rootfs holds the guest and DEST/config its LXC 3+ configuration, so that
`lxc-start -P $(dirname DEST) -n $(basename DEST)` starts it (or plain `lxc-start -n NAME` when
DEST is in the default LXC path, see --lxc-path).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vmbuilder_lxc import __version__, backing, idmap
from vmbuilder_lxc import validators as v
from vmbuilder_lxc.log import LOG, die
from vmbuilder_lxc.lxcconf import guest_config_vars
from vmbuilder_lxc.lxcstate import container_running
from vmbuilder_lxc.plugin import Hypervisor
from vmbuilder_lxc.settings import Needs, Setting, Settings

GROUP = "LXC options"
DEFAULT_LXC_PATH = Path("/var/lib/lxc")
DEFAULT_BRIDGE = "lxcbr0"
LIBVIRT_NETWORK = "default"  # --network with --libvirt and no --bridge: libvirt's usual NAT network
CGROUP_ROOT = Path("/sys/fs/cgroup")
LXCFS_MOUNT = Path("/var/lib/lxcfs")
USERNS_CONF = "/usr/share/lxc/config/userns.conf"  # shipped by the lxc package, like common.conf
LXC_PATH_HINT = "give --lxc-path a directory on a writable disk"
# When the container settings have an effect: with a network card, and for a guest that boots.
HAS_NIC = Needs(lambda s: s["network"] != "none", "with --network none (the container has no network card)")
BOOTS = Needs(lambda s: "variant" not in s.table or s["variant"] != "buildd",
              "with --variant buildd (a chroot that never boots has no LXC config)")  # fmt: skip


def cgroup_layout(root: Path = CGROUP_ROOT) -> dict[str, object]:
    """Which cgroup keys this host takes: v1 controllers (legacy/hybrid) or cgroup2 (unified)."""
    unified = (root / "cgroup.controllers").exists()
    v1_memory = (root / "memory").is_dir() and not unified
    v1_cpu = ((root / "cpu").is_dir() or (root / "cpu,cpuacct").is_dir()) and not unified
    layout = (
        "unified (cgroup2)"
        if unified
        else "hybrid (cgroup v1 + v2)"
        if (root / "unified").is_dir()
        else "legacy (cgroup v1)"
    )
    return {"cgroup_layout": layout, "cgroup_v1_memory": v1_memory, "cgroup_v1_cpu": v1_cpu}


def lxcfs_state(mount: Path = LXCFS_MOUNT) -> str:
    """running, absent, or stale: a dead lxcfs leaves its FUSE mount answering ENOTCONN."""
    try:
        return "running" if (mount / "proc").is_dir() else "absent"
    except OSError:
        return "stale"


DEFAULT_MEM_MB = 1024  # a libvirt domain needs a size; --mem overrides it


def default_mem_text() -> str:
    """The libvirt default limit as --help and the summary show it: "1024 MB (1 GiB)"."""
    gib = f" ({DEFAULT_MEM_MB // 1024} GiB)" if DEFAULT_MEM_MB % 1024 == 0 else ""
    return f"{DEFAULT_MEM_MB} MB{gib}"


def libvirt_uri(s: Settings) -> str | None:
    """The --libvirt URI when the libvirt plugin is loaded and asked to define a domain."""
    return s.get_str("libvirt") if "libvirt" in s.table else None


def network_mode(s: Settings) -> tuple[str, str]:
    """What eth0 is attached to: ("none", ""), ("bridge", BR) or ("network", libvirt network NAME)."""
    network = str(s["network"])
    if network == "none":
        return "none", ""
    if network == "bridge":
        return "bridge", str(s["bridge"])
    return "network", network


def is_buildd(hook_env: dict[str, str]) -> bool:
    """A buildd chroot (--variant buildd) has no init: it gets no LXC config, and nothing boots it."""
    return hook_env.get("PROFILE") == "buildd"


def random_mac() -> str:
    """A locally unique MAC in the 00:16:3e (Xen/LXC) range, as lxc-create would pick."""
    rng = random.SystemRandom()
    return "00:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def _default_mac(s: Settings) -> str:
    """random 00:16:3e:xx:xx:xx"""
    return random_mac()  # computed once: the LXC config and the libvirt domain share it


class LXC(Hypervisor):
    name: ClassVar[str] = "lxc"
    description: ClassVar[str] = "LXC containers: DEST/rootfs plus DEST/config for lxc-start"

    def register_options(self) -> Sequence[Setting]:
        return [
            Setting("network", "what eth0 is attached to: bridge (a veth on --bridge), none (no network, "
                    "loopback only), or a libvirt network NAME (needs --libvirt; with --libvirt and no --bridge "
                    f"the default is '{LIBVIRT_NETWORK}')", default="bridge", metavar="NAME",
                    validate=v.network_name, group=GROUP),
            Setting("bridge", "host bridge for the container's veth", default=DEFAULT_BRIDGE, metavar="BR",
                    validate=v.bridge, group=GROUP),
            Setting("mac", "MAC address of eth0", default=_default_mac, validate=v.mac, needs=(HAS_NIC, BOOTS),
                    group=GROUP),
            Setting("mem", "memory limit in MB (also accepts 2G); without it: no limit, but with --libvirt "
                    f"{default_mem_text()}, as a domain needs one", validate=v.memory_mb, metavar="MB",
                    needs=(BOOTS,), group=GROUP),
            Setting("cpus", "CPU limit: a CFS quota of this many CPUs (nproc shows it only if lxcfs "
                    "runs with --enable-cfs)", "int", validate=v.int_range(1, 8192), needs=(BOOTS,),
                    group=GROUP),
            Setting("lxc-path", f"write the container into this LXC path (e.g. {DEFAULT_LXC_PATH}); "
                    "the name is --hostname", metavar="DIR", validate=v.writable_dir("--lxc-path", LXC_PATH_HINT),
                    group=GROUP),
            Setting("autostart", "start the container when the host boots (lxc.start.auto; with --libvirt, "
                    "the domain's autostart instead)", "bool", False, needs=(BOOTS,), group=GROUP),
            Setting("backing", backing.BACKING_HELP, default="dir", choices=backing.BACKINGS, metavar="KIND",
                    group=GROUP),
            Setting("idmap", "an unprivileged container: shift the rootfs and map guest ids 0..COUNT-1 to host "
                    "ids HOSTUID.. (auto: the first free range of the builder's /etc/subuid and /etc/subgid, "
                    f"COUNT {idmap.DEFAULT_COUNT}; see docs/unprivileged.md)", metavar="auto|HOSTUID:COUNT",
                    validate=idmap.validate_setting, group=GROUP),
        ]  # fmt: skip

    def set_defaults(self) -> None:
        s = self.settings
        lxc_path = s.get_str("lxc-path")
        if lxc_path:
            base = Path(lxc_path).expanduser().absolute()
            if not s.explicit("dest"):
                s.set("dest", str(base / str(s["hostname"])), "--lxc-path")
            elif self.context.dest.parent != base:
                die(f"-d {s['dest']} is not inside --lxc-path {lxc_path}", "give only one of -d and --lxc-path")
        kind, net = network_mode(s)
        self.context.hook_env["NETWORK"] = "none" if kind == "none" else f"{kind}:{net}"

    def preflight_check(self) -> None:
        s = self.settings
        ctx = self.context
        backing.preflight(ctx)
        try:
            v.container_name(ctx.name)
        except ValueError as exc:
            die(f"invalid container name '{ctx.name}' (from -d): {exc}", "choose another -d")
        kind = "" if is_buildd(ctx.hook_env) else network_mode(s)[0]  # a chroot has no network to check
        if kind == "network" and not libvirt_uri(s):
            die(
                f"--network {s['network']}: named networks need libvirt; lxc-start only knows bridges",
                "use --bridge BR or --network none, or add --libvirt lxc:///",
            )
        if kind == "none" and s.explicit("bridge"):
            die("--bridge and --network none contradict each other", "drop one of them")
        if kind == "bridge" and not Path(f"/sys/class/net/{s['bridge']}").exists():
            LOG.warning(
                "bridge %s does not exist on this host yet; create it (e.g. start lxc-net) before "
                "lxc-start, or build with --network none",
                s["bridge"],
            )
        if not shutil.which("lxc-start"):
            LOG.warning("lxc-start is not installed (apt-get install lxc); the container cannot be started here")
        if lxcfs_state() == "stale":
            LOG.warning(
                "lxcfs's mount at %s is stale (the daemon died); containers will not start until you run "
                "'umount -l %s' and start lxcfs again",
                LXCFS_MOUNT,
                LXCFS_MOUNT,
            )
        elif s["mem"] and lxcfs_state() != "running":
            LOG.info("note: lxcfs is not running, so the container's /proc/meminfo will show the host's memory")
        self._resolve_idmap()
        if ctx.dest.exists() and self.is_running():
            die(
                f"container {ctx.name} in {ctx.dest.parent} is running",
                f"stop it first: lxc-stop -P {ctx.dest.parent} -n {ctx.name}",
            )

    def _resolve_idmap(self) -> None:
        """--idmap: pick or check the range now (it reads /etc/subuid, /etc/subgid and our other
        containers' markers) and record it as summary["idmap"], where the shift step, the config,
        the libvirt domain, DEST/vmbuilder-lxc.json and --json all read it (idmap.of_summary)."""
        text = self.settings.get_str("idmap")
        if not text:
            return
        try:
            m = idmap.resolve(idmap.parse_spec(text), self.context.dest)
        except idmap.IdMapError as exc:
            problem, _, fix = str(exc).partition("; ")
            die(problem, fix or "see docs/unprivileged.md")
        self.context.summary[idmap.SUMMARY_KEY] = m.to_json()
        closed = idmap.unreachable_dir(self.context.dest, m)
        if closed is not None:
            LOG.warning(
                "%s cannot be searched by the container's root (host uid %d), so lxc-start will fail with "
                "'Could not access %s'; chmod o+x %s (or setfacl -m u:%d:x %s), or build elsewhere",
                closed, m.uid_start, closed, closed, m.uid_start, closed,
            )  # fmt: skip

    def is_running(self) -> bool:
        return container_running(self.context.dest)

    def finalize(self) -> None:
        s = self.settings
        ctx = self.context
        assert ctx.workdir is not None
        if is_buildd(ctx.hook_env):
            ctx.summary["lxc"] = {"config": None, "why": "a buildd chroot does not boot (--variant buildd)"}
            return
        lxcpath = ctx.dest.parent
        ids = idmap.of_summary(ctx.summary)
        variables = {
            "version": __version__,
            "name": ctx.name,
            "lxcpath": str(lxcpath),
            "lxcpath_arg": lxcpath != DEFAULT_LXC_PATH,
            # userns.conf: LXC's settings for a container in a user namespace (its own /sys, no
            # cgroup mounts it cannot own); it must come after common.conf
            "includes": [USERNS_CONF] if ids else [],
            "idmap": ids.lxc_lines() if ids else [],
            "rootfs": str(ctx.dest / "rootfs"),
            **self._rootfs_vars(),
            "hostname": s["hostname"],
            **guest_config_vars(str(s["arch"]), ctx.hook_env, on_this_host=True),
            "network": "none" if s["network"] == "none" else "veth",
            "bridge": s["bridge"],
            "mac": s["mac"] or random_mac(),
            "mem": s["mem"],
            "cpus": s["cpus"],
            # libvirt starts a --libvirt domain; lxc-autostart must not boot the same rootfs again
            "autostart": s.get_bool("autostart") and not libvirt_uri(s),
            **cgroup_layout(),
        }
        config = ctx.workdir / "config"
        config.write_text(ctx.render("lxc/config.j2", variables))
        os.chmod(config, 0o644)
        ctx.summary["lxc"] = {
            "config": str(ctx.dest / "config"),
            "lxcpath": str(lxcpath),
            "start": self.start_command(),
            "network": variables["network"],
            "mac": variables["mac"] if variables["network"] != "none" else None,
            "idmap": variables["idmap"],
        }

    def _rootfs_vars(self) -> dict[str, str]:
        """lxc.rootfs.path's parts for --backing: dir:, overlay:LOWER:UPPER or btrfs: (backing.py)."""
        ctx = self.context
        info = ctx.summary.get("backing") or {}
        kind = str(info.get("kind", "dir"))
        if kind != "overlay":
            return {"backing": kind, "overlay_lower": "", "overlay_upper": ""}
        try:
            spec = backing.rootfs_spec(kind, ctx.dest, Path(info["base"]))  # refuses what liblxc would split
        except ValueError as exc:
            die(str(exc), "use --backing dir")
        lower, upper = spec.removeprefix("overlay:").split(":")
        return {"backing": kind, "overlay_lower": lower, "overlay_upper": upper}

    def start_command(self) -> str:
        lxcpath = self.context.dest.parent
        path_arg = "" if lxcpath == DEFAULT_LXC_PATH else f" -P {lxcpath}"
        return f"lxc-start{path_arg} -n {self.context.name}"

    def next_steps(self) -> list[str]:
        if not self.context.keep_dest:  # --export-only
            return []
        if is_buildd(self.context.hook_env):
            return [f"Buildd chroot {self.context.name} is ready in {self.context.dest / 'rootfs'} (it does not "
                    "boot, so there is no LXC config); docs/sbuild.md shows how sbuild and schroot use it"]  # fmt: skip
        if libvirt_uri(self.settings):  # libvirt runs it; lxc-start on the same rootfs would boot it twice
            return [f"Container {self.context.name} is ready in {self.context.dest}", *self._idmap_lines()]
        start = self.start_command()
        attach = start.replace("lxc-start", "lxc-attach")
        return [
            f"Container {self.context.name} is ready in {self.context.dest}",
            f"  start it:      {start}",
            f"  get a shell:   {attach}",
            f"  login prompt:  {start.replace('lxc-start', 'lxc-console')}",
            *self._idmap_lines(),
        ]

    def _idmap_lines(self) -> list[str]:
        ids = idmap.of_summary(self.context.summary)
        return [f"  unprivileged:  {ids.describe()} (--idmap)"] if ids else []
