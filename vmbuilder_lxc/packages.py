"""The package phase: after the bootstrap, bring the base up to date, preseed debconf, apply
--addpkg/--removepkg and purge what breaks a container, then scrub what the bootstrap copied from
the host. Also the release-ranged package tables the distros declare and the checks of the package
inputs that preflight runs before anything slow.

Nothing here knows the distro class: the caller passes its settings, release and build context.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from . import aptargs, aptnet
from .bootstrap import INSECURE_APTOPTS, BootstrapRequest
from .chroot import Chroot
from .dpkg import installed_packages
from .guestedit import drop_proxy_lines
from .guestfs import GuestFS
from .log import die
from .settings import Settings
from .suites import Release

# (first version, last version or None, packages).
PackagesTable = Sequence[tuple[str, str | None, tuple[str, ...]]]

APT_GET = ["apt-get", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Install-Recommends=false",
           "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
           *aptnet.apt_get_options()]  # fmt: skip

SEEDFILE_MAX = 1 << 20  # debconf selections are text; a megabyte is far more than any preseed


class Rootfs(Protocol):
    """What the package phase needs of the build (the Context has it): the rootfs, confined."""

    @property
    def rootfs(self) -> Path: ...

    def guestfs(self) -> GuestFS: ...


def from_table(table: PackagesTable, release: Release) -> list[str]:
    """The packages (or other names) of every row whose version range holds the release."""
    out: list[str] = []
    for since, until, packages in table:
        if release.in_range(since, until):
            out += packages
    return out


def package_phase(build: Rootfs, settings: Settings, chroot: Chroot, req: BootstrapRequest,
                  unwanted: Sequence[str]) -> None:  # fmt: skip
    """apt-get update and dist-upgrade, --seedfile, --addpkg, then purge --removepkg and the
    installed ones of `unwanted`, in the chroot of the bootstrapped base."""
    s = settings
    with build.guestfs() as fs:
        fs.write_text("/etc/apt/sources.list", "\n".join(req.source_lines()) + "\n")
    # --insecure (no keyring) is the only way the apt options that skip signature checks get here.
    apt = [*APT_GET, *(insecure_apt_options() if req.keyring is None else [])]
    chroot.run(*apt, "update", progress="apt-get update")
    chroot.run(*apt, "dist-upgrade", progress="apt-get dist-upgrade")
    seed = s.get_str("seedfile")
    if seed:
        chroot.run("debconf-set-selections", input=read_seedfile(Path(seed)))
    # Package names are operands after `--` (apt-get's end of options), and checked once more.
    if s["addpkg"]:
        addpkg = aptargs.packages(s.get_list("addpkg"), "--addpkg")
        chroot.run(*apt, "install", "--", *addpkg, progress="apt-get install")
    purge = sorted(set(unwanted) & set(installed_packages(build.rootfs)))
    removepkg = aptargs.packages(s.get_list("removepkg"), "--removepkg") + purge
    if removepkg:
        chroot.run(*apt, "purge", "--autoremove", "--", *removepkg, progress="apt-get purge")
    chroot.run(*apt, "clean")


def scrub_base(build: Rootfs) -> None:
    """What the bootstrap copied from the host must not reach the cache or the guest."""
    with build.guestfs() as fs:  # confined: nothing here follows a symlink out of the rootfs
        for path in ("/etc/hostname", "/etc/resolv.conf"):
            if fs.is_file(path) and not fs.is_symlink(path):
                host = Path(path)
                if host.is_file() and fs.read_bytes(path) == host.read_bytes():
                    fs.unlink(path)
        for path in fs.glob("/var/lib/apt/lists/*") + fs.glob("/var/cache/apt/archives/*.deb"):
            if stat.S_ISREG(fs.lstat(path).st_mode) and not path.endswith("/lock"):
                fs.unlink(path)
        # mmdebstrap keeps its --aptopt lines, --proxy's among them; the cache key has no proxy.
        aptopts = "/etc/apt/apt.conf.d/99mmdebstrap"
        drop_proxy_lines(aptopts, fs)
        # --insecure applies to the build only: the guest's apt checks signatures again.
        if fs.is_file(aptopts) and not fs.is_symlink(aptopts):
            drop_insecure_lines(fs, aptopts)


def package_list(rootfs: Path) -> dict[str, str]:
    """The installed packages and their versions (kept with a cached base)."""
    return installed_packages(rootfs)


def check_inputs(settings: Settings) -> None:
    """--addpkg/--removepkg names, the --seedfile text and the guest's sources, checked before
    the bootstrap (the bootstrap request checks its own mirrors in choose_backend)."""
    s = settings
    aptargs.mirror(str(s["mirror"]))
    if s["security-mirror"]:
        aptargs.mirror(str(s["security-mirror"]), "--security-mirror")
    for comp in s.get_list("components"):
        aptargs.component(comp)
    aptargs.packages(s.get_list("addpkg"), "--addpkg")
    aptargs.packages(s.get_list("removepkg"), "--removepkg")
    seed = s.get_str("seedfile")
    if seed:
        read_seedfile(Path(seed))


def insecure_apt_options() -> list[str]:
    """apt-get options for an --insecure build's package phase (the same as mmdebstrap's --aptopt)."""
    out: list[str] = []
    for opt in INSECURE_APTOPTS:
        key, value = opt.split(" ", 1)
        out += ["-o", f"{key}={value.strip(chr(34))}"]
    return out


def drop_insecure_lines(fs: GuestFS, path: str) -> None:
    """Remove the --insecure apt options mmdebstrap kept in the base (unlink the file if it empties)."""
    lines = fs.read_text(path, errors="replace").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip().rstrip(";") not in INSECURE_APTOPTS]
    if len(kept) == len(lines):
        return
    if any(ln.strip() for ln in kept):
        fs.write_text(path, "".join(kept))
    else:
        fs.unlink(path)


def read_seedfile(path: Path) -> str:
    """The --seedfile text: a regular UTF-8 file of sane size, read without following into FIFOs."""
    hint = "give a debconf selections file (debconf-get-selections output)"
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            die(f"--seedfile {path} is not a regular file", hint)
        if st.st_size > SEEDFILE_MAX:
            die(f"--seedfile {path} is larger than {SEEDFILE_MAX // 1024} KiB", hint)
        with path.open("rb") as fh:
            data = fh.read(SEEDFILE_MAX + 1)
        if len(data) > SEEDFILE_MAX:
            die(f"--seedfile {path} is larger than {SEEDFILE_MAX // 1024} KiB", hint)
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        die(f"--seedfile {path} is not UTF-8 text", hint)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        die(f"cannot read --seedfile {str(path)!r}: {getattr(exc, 'strerror', None) or exc}", hint)
    if "\0" in text:
        die(f"--seedfile {path} is not text (it holds NUL bytes)", hint)
    return text
