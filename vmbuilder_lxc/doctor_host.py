"""The host checks of `vmbuilder lxc doctor`: signatures, bootstrappers, what containers need.

Severity follows one rule: FAIL only for what stops a default build (`vmbuilder lxc ubuntu`),
WARN for what stops other builds or starting the result, OK otherwise. Each function returns its
report lines; none of them changes the host.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import tempfile
from pathlib import Path

from . import binfmt
from . import doctor_probes as p
from .arches import QEMU_NAMES, foreign
from .distro import DebianFamily
from .keyring import fingerprints
from .log import UserError
from .mirrors import DEBOOTSTRAP_SCRIPTS
from .plugin import by_kind, discover
from .suites import Release, ReleaseTable

Result = p.Result
DEFAULT_DISTRO = "ubuntu"  # what the quick start builds; its problems are failures
KEYRING_PACKAGES = {
    "ubuntu-archive-keyring.gpg": "ubuntu-keyring",
    "debian-archive-keyring.gpg": "debian-archive-keyring",
}
MMDEBSTRAP_UBUNTU_SINCE = "18.04"
LXCFS_MOUNT = Path("/var/lib/lxcfs")
CGROUP_ROOT = Path("/sys/fs/cgroup")
BINFMT_DIR = binfmt.BINFMT_DIR
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_MIN = 65536


def distros() -> dict[str, type[DebianFamily]]:
    """The installed distro plugins built on DebianFamily (they carry a keyring and a script)."""
    return {n: c for n, c in by_kind(discover(), "distro").items() if issubclass(c, DebianFamily)}


def _severity(distro: str) -> p.Status:
    return "fail" if distro == DEFAULT_DISTRO else "warn"


# -- keyrings --------------------------------------------------------------------------------------


def keyring_fix(path: Path) -> str:
    package = KEYRING_PACKAGES.get(path.name)
    if package == "ubuntu-keyring":
        host = p.host_os()
        if host == "ubuntu":
            return "apt-get install ubuntu-keyring"
        if host == "debian":
            return "vmbuilder-fetch-keyring (Debian has no ubuntu-keyring package)"
        return "vmbuilder-fetch-keyring, or on Ubuntu: apt-get install ubuntu-keyring"
    if package:
        return f"apt-get install --reinstall {package}"
    return f"reinstall the package that ships {path} (dpkg -S {path})"


def _gpg_keys(path: Path, timeout: float) -> tuple[int, int] | None:
    """(keys, expired keys) as gpg reads the keyring; None when gpg is not installed."""
    if p.which("gpg") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="vmbuilder-doctor-gpg-") as home:
        out = p.probe(["gpg", "--homedir", home, "--batch", "--show-keys", "--with-colons", str(path)], timeout)
    pubs = [line.split(":") for line in out.output.splitlines() if line.startswith("pub:")]
    return len(pubs), sum(1 for f in pubs if len(f) > 1 and f[1] in ("e", "r"))


def check_keyring(distro: str, path: Path, opts: p.Options) -> Result:
    name, bad = f"keyring-{distro}", _severity(distro)
    fix = keyring_fix(path)
    if not path.exists():
        return Result(name, bad, f"{path} is missing, so {distro} signatures cannot be checked", fix)
    if not path.is_file():
        return Result(name, bad, f"{path} is not a regular file", fix)
    try:
        size = path.stat().st_size
        fprs = fingerprints(path) if size else []
    except PermissionError:
        return Result(name, bad, f"{path} is not readable", f"chmod 644 {path}")
    except (OSError, ValueError, IndexError) as exc:
        return Result(name, bad, f"{path} is not an OpenPGP keyring ({exc})", fix)
    if not size:
        return Result(name, bad, f"{path} is empty", fix)
    if not fprs:
        return Result(name, bad, f"{path} holds no public keys", fix)
    gpg = _gpg_keys(path, opts.timeout)
    if gpg is None:
        return Result(name, "ok", f"{path}: {len(fprs)} keys (gpg not installed: parsed only)")
    keys, expired = gpg
    if keys == 0:
        return Result(name, bad, f"{path}: gpg reads no keys from it", fix)
    if keys == expired:
        return Result(name, bad, f"{path}: every key is expired or revoked", fix)
    return Result(name, "ok", f"{path}: {keys} keys, gpg reads them" + (f" ({expired} expired)" if expired else ""))


def check_verifier(opts: p.Options) -> list[Result]:
    """debootstrap and apt verify Release signatures with gpgv (sqv on newer hosts)."""
    for tool in ("gpgv", "sqv"):
        out = p.probe([tool, "--version"], opts.timeout)
        if out.found:
            return [Result("signature-verifier", "ok", f"{out.first_line or tool} verifies the archive signatures")]
    return [Result("signature-verifier", "fail", "neither gpgv nor sqv is installed: no signature can be checked",
                   "apt-get install gpgv")]  # fmt: skip


def check_keyrings(opts: p.Options) -> list[Result]:
    return [check_keyring(n, c.keyring_path, opts) for n, c in distros().items()] + check_verifier(opts)


# -- bootstrappers and scripts -------------------------------------------------------------------------


def _version(tool: str, opts: p.Options) -> str | None:
    out = p.probe([tool, "--version"], opts.timeout)
    if not out.found:
        return None
    return out.first_line.removeprefix(tool).strip() or "(version unknown)"


def check_bootstrappers(opts: p.Options) -> list[Result]:
    mm, deb = _version("mmdebstrap", opts), _version("debootstrap", opts)
    if mm is None and deb is None:
        return [Result("bootstrappers", "fail", "neither mmdebstrap nor debootstrap is installed",
                       "apt-get install mmdebstrap debootstrap")]  # fmt: skip
    if deb is None:
        return [Result("bootstrappers", "warn",
                       f"mmdebstrap {mm}; debootstrap is missing, so Ubuntu before {MMDEBSTRAP_UBUNTU_SINCE} and "
                       "--bootstrapper debootstrap cannot be built", "apt-get install debootstrap")]  # fmt: skip
    if mm is None:
        return [Result("bootstrappers", "ok",
                       f"debootstrap {deb} (mmdebstrap, about twice as fast, is not installed: "
                       "apt-get install mmdebstrap)")]  # fmt: skip
    return [Result("bootstrappers", "ok", f"mmdebstrap {mm} (used by default), debootstrap {deb}")]


def served(cls: type[DebianFamily], today: dt.date | None = None) -> list[Release]:
    """Releases a build of this distro accepts that are still supported or in development."""
    today = today or dt.date.today()
    bare = cls.__new__(cls)  # unsupported() reads class data only; no build context is needed
    return [r for r in ReleaseTable.load(cls.name).releases
            if r.status(today) in ("supported", "devel") and bare.unsupported(r) is None]  # fmt: skip


def check_scripts(opts: p.Options) -> list[Result]:
    results = []
    have_mm = p.which("mmdebstrap") is not None
    for name, cls in distros().items():
        check = f"debootstrap-scripts-{name}"
        try:
            suites = served(cls)
        except UserError as exc:
            results.append(Result(check, _severity(name), exc.message, exc.hint or ""))
            continue
        script = DEBOOTSTRAP_SCRIPTS / cls.debootstrap_script
        if not script.exists():
            status: p.Status = "warn" if have_mm or name != DEFAULT_DISTRO else "fail"
            results.append(Result(check, status,
                                  f"{script} is missing: every {name} build with debootstrap fails"
                                  + (" (mmdebstrap builds do not need it)" if have_mm else ""),
                                  "apt-get install --reinstall debootstrap"))  # fmt: skip
            continue
        own = [r.series for r in suites if (DEBOOTSTRAP_SCRIPTS / r.series).exists()]
        lacking = [r.series for r in suites if r.series not in own]
        text = f"supported suites {', '.join(r.series for r in suites) or '(none)'}"
        if lacking:
            text += (f"; no script of their own for {', '.join(lacking)}: fine, debootstrap is given "
                     f"{script.name} for every {name} suite (mmdebstrap needs no script)")  # fmt: skip
        results.append(Result(check, "ok", text))
    return results


# -- lxcfs and cgroups ---------------------------------------------------------------------------------


def check_lxcfs(opts: p.Options) -> list[Result]:
    mount = p.mount_at(LXCFS_MOUNT)
    start = "start lxcfs: systemctl start lxcfs (without systemd: lxcfs /var/lib/lxcfs &)"
    if mount is None or "lxcfs" not in mount.fstype + mount.source:
        if p.which("lxcfs") is None:
            return [Result("lxcfs", "warn", "lxcfs is not installed: containers see the host's /proc/meminfo, "
                           "uptime and CPU count", "apt-get install lxcfs")]  # fmt: skip
        return [Result("lxcfs", "warn", f"lxcfs is installed but not mounted at {LXCFS_MOUNT}", start)]
    out = p.probe(["stat", "-c", "%F", str(LXCFS_MOUNT / "proc" / "meminfo")], opts.timeout)
    if out.timed_out:
        return [Result("lxcfs", "warn", f"{LXCFS_MOUNT} did not answer within {opts.timeout:g} s",
                       f"restart lxcfs; if it hangs: umount -l {LXCFS_MOUNT}, then {start}")]  # fmt: skip
    if out.ok:
        return [Result("lxcfs", "ok", f"running: the mount at {LXCFS_MOUNT} answers")]
    if "not connected" in out.output:
        return [Result("lxcfs", "warn", f"stale mount at {LXCFS_MOUNT} (ENOTCONN: the daemon died); "
                       "containers that use lxcfs will not start",
                       f"umount -l {LXCFS_MOUNT}, then {start}")]  # fmt: skip
    return [Result("lxcfs", "warn", f"{LXCFS_MOUNT} is mounted but {out.last_line or 'does not answer'}",
                   f"umount -l {LXCFS_MOUNT}, then {start}")]  # fmt: skip


def newest_systemd_258(today: dt.date | None = None) -> list[str]:
    """Served suites whose guests run systemd 258 or newer (they need cgroup2 controllers)."""
    found = []
    for name, cls in distros().items():
        bare = cls.__new__(cls)
        try:
            for release in served(cls, today):
                version = bare.release_traits(release).systemd_version
                if int(version or 0) >= 258:
                    found.append(f"{name} {release.series}")
        except (UserError, TypeError, ValueError):
            continue
    return found


def cgroup_layout(root: Path = CGROUP_ROOT) -> str:
    if (root / "cgroup.controllers").exists():
        return "unified"
    if (root / "unified").is_dir():
        return "hybrid"
    if root.is_dir() and any(root.iterdir()):
        return "legacy"
    return "none"


def check_cgroups(opts: p.Options) -> list[Result]:
    layout = cgroup_layout(CGROUP_ROOT)
    if layout == "unified":
        return [Result("cgroups", "ok", "unified (cgroup2): guests of every systemd version get their controllers")]
    if layout == "none":
        return [Result("cgroups", "warn", f"no cgroup hierarchy at {CGROUP_ROOT}: containers cannot start",
                       f"mount -t cgroup2 none {CGROUP_ROOT}")]  # fmt: skip
    newer = newest_systemd_258()
    which = f" ({', '.join(newer)})" if newer else ""
    kind = "hybrid (cgroup v1 + v2)" if layout == "hybrid" else "legacy (cgroup v1)"
    return [Result("cgroups", "warn",
                   f"{kind}: guests with systemd 258 or newer{which} need cgroup2 controllers; under libvirt-lxc "
                   "they exit at once (lxc-start still boots them), and builds work either way",
                   "boot the host with systemd.unified_cgroup_hierarchy=1 on the kernel command line")]  # fmt: skip


# -- unprivileged containers and foreign architectures ----------------------------------------------


def _root_ranges(path: Path) -> int:
    """How many subordinate ids root has in /etc/subuid or /etc/subgid."""
    total = 0
    for line in path.read_text().splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in ("root", "0") and fields[2].isdigit():
            total += int(fields[2])
    return total


def check_subids(opts: p.Options) -> list[Result]:
    fix = "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root"
    results = []
    for path in SUBID_FILES:
        check = path.name
        try:
            count = _root_ranges(path)
        except FileNotFoundError:
            results.append(Result(check, "warn", f"{path} is missing: unprivileged containers and LXD/Incus "
                                  "need subordinate ids for root", fix))  # fmt: skip
            continue
        except OSError as exc:
            results.append(Result(check, "warn", f"cannot read {path}: {exc.strerror}", f"chmod 644 {path}"))
            continue
        if count < SUBID_MIN:
            results.append(Result(check, "warn", f"root has {count} subordinate ids in {path}, fewer than "
                                  f"{SUBID_MIN}: an unprivileged container cannot map a whole guest", fix))  # fmt: skip
        else:
            results.append(Result(check, "ok", f"root has {count} subordinate ids"))
    if p.which("newuidmap") is None or p.which("newgidmap") is None:
        results.append(Result("uidmap", "warn", "newuidmap/newgidmap are missing: unprivileged containers "
                              "cannot map their ids", "apt-get install uidmap"))  # fmt: skip
    else:
        results.append(Result("uidmap", "ok", f"{p.which('newuidmap')} and newgidmap are installed"))
    return results


def host_machine() -> str:
    return platform.machine()


def check_binfmt(opts: p.Options) -> list[Result]:
    """Which foreign architectures this host can build (binfmt.problem: registered, enabled, F flag);
    a FAIL for one asked for with --arch, a WARN when none can be built."""
    machine = host_machine()
    wanted = [a for a in opts.arches if foreign(a, machine)]
    bad: p.Status = "fail" if wanted else "warn"
    if not binfmt.mounted(BINFMT_DIR):
        trouble = binfmt.problem(QEMU_NAMES.get(wanted[0] if wanted else "arm64", "aarch64"), BINFMT_DIR)
        return [Result("binfmt", bad, f"binfmt_misc is not mounted at {BINFMT_DIR}: only architectures this "
                       f"{machine} host runs natively can be built", trouble.fix if trouble else "")]  # fmt: skip
    problems, fixes = [], []
    for arch in wanted:
        trouble = binfmt.problem(QEMU_NAMES.get(arch, arch), BINFMT_DIR)
        if trouble is not None:
            problems.append(f"{arch}: {trouble.what}")
            fixes.append(trouble.fix)
    if problems:
        return [Result("binfmt", "fail", "; ".join(problems), "; ".join(dict.fromkeys(fixes)))]
    usable = [a for a, q in sorted(QEMU_NAMES.items()) if foreign(a, machine) and binfmt.problem(q, BINFMT_DIR) is None]
    if not usable:
        return [Result("binfmt", bad, "no qemu-user interpreter is registered with the F flag: foreign "
                       "architectures cannot be built (not needed for native builds)",
                       f"{binfmt.INSTALL}; update-binfmts --enable")]  # fmt: skip
    return [Result("binfmt", "ok", f"foreign architectures that can be built (qemu-user, F flag): {', '.join(usable)}")]


def check_root(opts: p.Options) -> list[Result]:
    if os.geteuid() == 0:
        return [Result("root", "ok", "running as root, as builds must")]
    return [Result("root", "warn", "not running as root: builds need root, and some checks see less",
                   "run builds (and doctor) as root, e.g. with sudo")]  # fmt: skip


def parse_arches(values: list[str]) -> tuple[str, ...]:
    arches = [a.strip() for v in values for a in v.split(",") if a.strip()]
    for arch in arches:
        if not re.fullmatch(r"[a-z0-9]+", arch):
            raise UserError(f"--arch '{arch}' is not a Debian architecture name", "e.g. --arch arm64")
    return tuple(arches)
