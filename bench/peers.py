"""The peers the project is measured against: lxc-create -t ubuntu, lxc-copy -s, plain mmdebstrap.

No archive host name is written here: the mirror comes from debootstrap's own scripts through
vmbuilder_lxc.mirrors, as for the project's own builds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from vmbuilder_lxc.mirrors import default_mirror

from .proc import Run, have, remove, run

LXC_TEMPLATE = Path("/usr/share/lxc/templates/lxc-ubuntu")
LXC_CACHE = Path("/var/cache/lxc")
UBUNTU_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()


def mirror(suite: str) -> str:
    """The mirror debootstrap would use: the one the project also defaults to."""
    return default_mirror("gutsy", host_arch(), suite)


def ensure_lxc_templates() -> bool:
    """lxc-create -t ubuntu needs lxc-templates; install it on demand, saying so."""
    if LXC_TEMPLATE.exists():
        return True
    print("bench: lxc-create -t ubuntu needs the lxc-templates package; installing it (apt-get install -y)",
          file=sys.stderr)  # fmt: skip
    subprocess.run(["apt-get", "install", "-y", "lxc-templates"], capture_output=True, check=False)
    return LXC_TEMPLATE.exists()


def lxc_cache_present(suite: str) -> bool:
    """Whether lxc-create -t ubuntu would be warm: its finished cache (not a partial one) is there."""
    return (LXC_CACHE / suite / f"rootfs-{host_arch()}").is_dir()


def clear_lxc_cache(suite: str) -> None:
    """Make the next lxc-create -t ubuntu cold for this suite (its cache is /var/cache/lxc/SUITE)."""
    shutil.rmtree(LXC_CACHE / suite, ignore_errors=True)


def lxc_create(lxcpath: Path, name: str, suite: str) -> Run:
    """lxc-create -t ubuntu with the mirror from debootstrap's scripts (MIRROR, SECURITY_MIRROR)."""
    url = mirror(suite)
    argv = ["lxc-create", "-P", str(lxcpath), "-n", name, "-t", "ubuntu", "--", "-r", suite]
    return run(argv, env={"MIRROR": url, "SECURITY_MIRROR": url})


def lxc_destroy(lxcpath: Path, name: str) -> None:
    """A stopped directory-backed container is its directory: put aside as remove() does (deleting
    it would slow the next measurement; see there)."""
    remove(lxcpath / name)


def lxc_copy_snapshot(lxcpath: Path, base: str, name: str) -> Run:
    """lxc-copy -s: an overlay snapshot clone of an existing container, LXC's own cheap clone."""
    return run(["lxc-copy", "-P", str(lxcpath), "-n", base, "-N", name, "-s", "-B", "overlay"])


def installed_packages(rootfs: Path) -> list[str]:
    """The packages a rootfs holds, to give plain mmdebstrap the same package set."""
    out = subprocess.run(["dpkg-query", f"--admindir={rootfs / 'var/lib/dpkg'}", "-W", "-f",
                          "${Package}:${Architecture} ${db:Status-Status}\n"],  # fmt: skip
                         capture_output=True, text=True).stdout  # fmt: skip
    names = []
    for line in out.splitlines():
        pkg, _, status = line.partition(" ")
        if status == "installed":
            names.append(pkg.removesuffix(":all").removesuffix(f":{host_arch()}"))
    return sorted(names)


def mmdebstrap(target: Path, suite: str, packages: list[str], components: str) -> Run:
    """Plain mmdebstrap of the same packages from the same pockets, without any configuration."""
    if not have("mmdebstrap"):
        return Run(None, 0, tail="mmdebstrap not installed")
    url = mirror(suite)
    comps = components.replace(",", " ")
    sources = [f"deb {url} {suite}{pocket} {comps}" for pocket in ("", "-updates", "-security")]
    argv = ["mmdebstrap", "--variant=minbase", f"--components={components}", f"--keyring={UBUNTU_KEYRING}",
            "--include=" + ",".join(packages), suite, str(target), *sources]  # fmt: skip
    return run(argv)
