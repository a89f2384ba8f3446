"""Issue 18: foreign architectures built on this amd64 host through qemu-user (binfmt_misc, F flag).

Four emulated builds, started together at module start so that the two cores both work (a build
under qemu is CPU-bound): bookworm arm64 (a container, with the LXD and tar exports), trixie armhf,
trixie riscv64, and a bookworm arm64 buildd chroot (the sbuild export). Every check runs
against those four: the guest's own dpkg and apt, no emulator left anywhere, the architecture in
each output, a boot under lxc-start, LXD's refusal, and an sbuild build.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmbuilder_lxc import binfmt
from vmbuilder_lxc.arches import QEMU_NAMES

from .conftest import BUILD_TIMEOUT, REQUIRED, Build, Builder, Container, lxc_client
from .test_sbuild import as_user, chroot_for, sbuild_user, source_package, user_dir  # noqa: F401

# arch -> (suite, extra arguments): one build each. armhf is built from trixie: the archive this
# suite reaches serves a bookworm-security armhf Packages.xz whose size differs from its InRelease
# (since 2026-12-05), which apt rightly refuses; which Debian release armhf comes from does not
# matter to these checks.
BUILDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "arm64": ("bookworm", ("--export", "lxd,tar", "--network", "none")),
    "armhf": ("trixie", ("--network", "none")),
    "riscv64": ("trixie", ("--network", "none")),
    "arm64-buildd": ("bookworm", ("--export", "sbuild")),
}
QEMU_NAME = re.compile(r"^qemu-.*|.*-binfmt-P$")
# A hang guard only: every program in the guest runs through qemu-user, which starts each process
# slowly (ca-certificates' postinst alone runs grep once per certificate), and four builds share the cores.
EMULATED_TIMEOUT = 3 * BUILD_TIMEOUT


def _prerequisites() -> list[str]:
    missing = [] if shutil.which("arch-test") else ["arch-test (apt-get install arch-test)"]
    for arch in ("arm64", "armhf", "riscv64"):
        trouble = binfmt.problem(QEMU_NAMES[arch])
        if trouble is not None:
            missing.append(f"{arch}: {trouble.what} ({trouble.fix})")
    return missing


@pytest.fixture(scope="module")
def builds(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    """The four emulated builds, run at the same time; each result is checked by the tests."""
    missing = _prerequisites()
    if missing:
        message = "foreign builds need: " + "; ".join(missing)
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("foreign")
    procs: dict[str, tuple[subprocess.Popen[str], float]] = {}
    for name, (suite, extra) in BUILDS.items():
        arch = name.split("-")[0]
        argv = builder.argv("--suite", suite, "--arch", arch, "-d", str(base / name), "--export-dir",
                            str(base / f"{name}.out"), *extra, distro="debian")  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        procs[name] = (proc, time.monotonic())
    results = {}
    deadline = time.monotonic() + EMULATED_TIMEOUT
    for name, (proc, started) in procs.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        build = Build(proc.returncode, out, err, time.monotonic() - started)
        build.summary = json.loads(out) if out.strip().startswith("{") else {}
        results[name] = build
    return results


def in_chroot(rootfs: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(rootfs), *argv], capture_output=True, text=True, timeout=300)


def qemu_files(names: list[str]) -> list[str]:
    return [n for n in names if QEMU_NAME.match(n.rsplit("/", 1)[-1])]


def tree_names(root: Path) -> list[str]:
    return [str(Path(d) / f) for d, _, files in os.walk(root) for f in files]


def tar_names(path: Path) -> list[str]:
    out = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, check=True)  # tar detects zstd
    return out.stdout.splitlines()


@pytest.mark.parametrize("name", ["arm64", "armhf", "riscv64"])
def test_the_guest_runs_its_own_dpkg_and_apt(builds: dict[str, Build], name: str) -> None:
    build = builds[name].check()
    rootfs = build.rootfs
    arch = in_chroot(rootfs, "dpkg", "--print-architecture")
    assert arch.returncode == 0 and arch.stdout.strip() == name, arch.stdout + arch.stderr
    check = in_chroot(rootfs, "apt-get", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    audit = in_chroot(rootfs, "dpkg", "--audit")
    assert audit.returncode == 0 and not audit.stdout.strip(), audit.stdout + audit.stderr
    assert qemu_files(tree_names(rootfs)) == [], "an emulator was left in the rootfs"
    config = (build.dest / "config").read_text()
    assert re.search(rf"^lxc\.arch = {re.escape({'arm64': 'aarch64', 'armhf': 'armv7l'}.get(name, name))}$",
                     config, re.M), config  # fmt: skip


def test_arm64_exports_carry_the_architecture(builds: dict[str, Build]) -> None:
    build = builds["arm64"].check()
    out = build.dest.parent / "arm64.out"
    files = sorted(p.name for p in out.iterdir())
    lxd = next(out / f for f in files if re.search(r"\.lxd\.tar\.\w+$", f))
    tar = out / "arm64.tar"  # the tar export is uncompressed by default
    props = next(out / f for f in files if f.endswith(".template.properties"))
    for archive in (lxd, tar):
        assert qemu_files(tar_names(archive)) == [], f"an emulator in {archive.name}"
    with tarfile.open(fileobj=subprocess.Popen(["zstd", "-dc", str(lxd)], stdout=subprocess.PIPE).stdout,
                      mode="r|") as t:  # fmt: skip
        for member in t:
            if member.name.lstrip("./") == "metadata.yaml":
                f = t.extractfile(member)
                assert f is not None
                metadata = f.read().decode()
                break
        else:
            raise AssertionError("no metadata.yaml in the LXD image")
    assert re.search(r'^architecture: "?aarch64"?$', metadata, re.M), metadata
    assert "arm64" in props.read_text()


def test_lxd_refuses_the_arm64_image_for_its_architecture(builds: dict[str, Build], lxd: None) -> None:
    build = builds["arm64"].check()
    out = build.dest.parent / "arm64.out"
    image = next(p for p in out.iterdir() if re.search(r"\.lxd\.tar\.\w+$", p.name))
    alias, instance = f"vmbt-arm64-{os.getpid()}", f"vmbt-a{os.getpid()}"
    try:
        lxc_client("image", "import", str(image), "--alias", alias, timeout=600)  # the format is accepted
        shown = json.loads(lxc_client("query", f"/1.0/images/aliases/{alias}").stdout)
        meta = json.loads(lxc_client("query", f"/1.0/images/{shown['target']}").stdout)
        assert meta["architecture"] == "aarch64", meta
        launch = lxc_client("launch", alias, instance, check=False, timeout=600)
        assert launch.returncode != 0, "LXD launched an aarch64 image on an x86_64 host"
        error = (launch.stdout + launch.stderr).lower()
        assert "architecture" in error, error
        assert not re.search(r"unsupported compression|metadata\.yaml|unknown image format", error), error
    finally:
        lxc_client("delete", "--force", instance, check=False)
        lxc_client("image", "delete", alias, check=False)


def test_arm64_boots_under_lxc_start(builds: dict[str, Build], container: Callable[[Path], Container],
                                     lxcfs: Path) -> None:  # fmt: skip
    build = builds["arm64"].check()
    c = container(build.dest)
    state = c.wait_running(timeout=240)
    failed = c.failed_units()
    assert state == "running", f"{state}; failed units: {failed}"
    assert c.sh("dpkg --print-architecture") == "arm64"
    assert c.sh("uname -m") == "aarch64"  # qemu-user answers with the guest's machine
    # lxc-stop's halt signal in qemu-user's numbering: systemd shuts down instead of being killed
    assert "lxc.signal.halt = SIGRTMIN+5" in (build.dest / "config").read_text()
    stop = c._lxc("lxc-stop", "--nokill", "-t", "150", timeout=200, check=False)  # a hang guard, not a timing
    assert stop.returncode == 0 and c.state() == "STOPPED", f"systemd ignored lxc-stop: {stop.stdout}{stop.stderr}"


def test_sbuild_builds_in_the_arm64_chroot(builds: dict[str, Build], sbuild_user: pwd.struct_passwd,  # noqa: F811
                                           user_dir: Path) -> None:  # noqa: F811  # fmt: skip
    build = builds["arm64-buildd"].check()
    out = build.dest.parent / "arm64-buildd.out"
    tarball = out / "bookworm-arm64.tar.zst"
    assert tarball.is_file(), sorted(p.name for p in out.iterdir())
    assert qemu_files(tar_names(tarball)) == []
    chroot = chroot_for(sbuild_user, tarball)
    try:
        source_package(sbuild_user, user_dir, "bookworm", "any", "built by sbuild in an arm64 vmbuilder-lxc chroot")
        result = as_user(
            sbuild_user,
            "sbuild --chroot-mode=unshare --arch arm64 -d bookworm --no-run-lintian --no-run-autopkgtest "
            "--no-apt-upgrade --no-apt-distupgrade --nolog vmbhello_1.0.dsc",
            user_dir,
        )
        assert result.returncode == 0, f"sbuild failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
        deb = user_dir / "vmbhello_1.0_arm64.deb"
        assert deb.is_file(), sorted(p.name for p in user_dir.iterdir())
        info = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture"], capture_output=True, text=True)
        assert info.stdout.strip() == "arm64"
    finally:
        chroot.unlink(missing_ok=True)
