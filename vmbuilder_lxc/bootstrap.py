"""Bootstrap backends: debootstrap and mmdebstrap, behind one request type.

Argument vectors are built deterministically, every option before the positional arguments (an
option after the suite is taken as the script name by debootstrap). Every value a user can set is
checked again here (aptargs): the operands of mmdebstrap follow `--`, those of debootstrap (whose
option loop knows no `--`) can never start with '-', option values are single `--opt=VALUE`
arguments, and only --insecure (keyring None) adds the options that skip signature checks.

Ubuntu suites get debootstrap's `gutsy` script passed explicitly, so that a host whose debootstrap
predates the suite (Debian 12 and noble, for example) still works. mmdebstrap needs no script and
is about twice as fast, so `auto` prefers it when it is installed and the distro allows it.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import aptargs, aptnet, userns
from .arches import foreign
from .log import UserError
from .mirrors import DEBOOTSTRAP_SCRIPTS
from .run import clean_env, run
from .shellhooks import run_script

BACKENDS = ("auto", "mmdebstrap", "debootstrap")
VARIANTS = ("minbase", "buildd")
# What mmdebstrap gets with --insecure, and only then: apt accepts unsigned archives and packages.
INSECURE_APTOPTS = ('Acquire::AllowInsecureRepositories "true"', 'APT::Get::AllowUnauthenticated "true"')


@dataclass(frozen=True)
class BootstrapRequest:
    suite: str
    arch: str
    mirror: str
    components: tuple[str, ...]
    include: tuple[str, ...]
    variant: str | None = "minbase"
    keyring: Path | None = None
    script: str | None = None
    pockets: tuple[str, ...] = ()
    security_mirror: str | None = None
    proxy: str | None = None
    mmdebstrap_ok: bool = True

    def source_lines(self) -> list[str]:
        """One-line apt sources for the release pocket and any extra pockets (checked: no apt options)."""
        lines = [aptargs.source_line(self.mirror, self.suite, self.components)]
        for pocket in self.pockets:
            secure = pocket == "security" and self.security_mirror
            mirror, what = (self.security_mirror, "--security-mirror") if secure else (self.mirror, "--mirror")
            lines.append(aptargs.source_line(str(mirror), f"{self.suite}-{pocket}", self.components, what))
        return lines

    def check(self) -> None:
        """Refuse any value that could reach a bootstrapper or apt as an option (UserError)."""
        aptargs.suite(self.suite)
        aptargs.arch(self.arch)
        aptargs.mirror(self.mirror)
        if self.security_mirror:
            aptargs.mirror(self.security_mirror, "--security-mirror")
        for comp in self.components:
            aptargs.component(comp)
        aptargs.packages(self.include, "base package")
        if self.variant is not None and self.variant not in VARIANTS:
            raise UserError(f"unknown variant {self.variant!r}", f"use --variant with one of: {', '.join(VARIANTS)}")
        if self.proxy:
            aptargs.proxy(self.proxy)


def _env(req: BootstrapRequest) -> dict[str, str]:
    extra = {"http_proxy": req.proxy, "https_proxy": req.proxy} if req.proxy else {}
    return clean_env(extra)


def _target(target: Path) -> str:
    """The target directory as an operand: absolute, so it can never be read as an option."""
    return str(target.absolute())


def _shared_options(req: BootstrapRequest) -> list[str]:
    """The options both tools spell alike (`--opt=VALUE`, one argument each), in the order both use."""
    options = [f"--arch={req.arch}", f"--components={','.join(req.components)}"]
    if req.variant:
        options.append(f"--variant={req.variant}")
    if req.include:
        options.append(f"--include={','.join(req.include)}")
    if req.keyring:
        options.append(f"--keyring={req.keyring}")
    return options


def debootstrap_argv(req: BootstrapRequest, target: Path) -> list[str]:
    """debootstrap OPTIONS SUITE TARGET MIRROR [SCRIPT]; its option loop ends at the suite."""
    req.check()
    argv = ["debootstrap", *_shared_options(req)]
    if not req.keyring:
        argv.append("--no-check-gpg")  # only reached with --insecure
    argv += [aptargs.operand(req.suite, "suite"), _target(target), aptargs.mirror(req.mirror)]
    if req.script:
        argv.append(str(DEBOOTSTRAP_SCRIPTS / req.script))
    return argv


def mmdebstrap_argv(req: BootstrapRequest, target: Path) -> list[str]:
    """mmdebstrap OPTIONS -- SUITE TARGET SOURCES...; Getopt::Long ends option parsing at `--`."""
    req.check()
    argv = ["mmdebstrap", "--mode=root", *_shared_options(req)]
    if not req.keyring:  # only reached with --insecure
        argv += [f"--aptopt={opt}" for opt in INSECURE_APTOPTS]
    if req.proxy:
        argv.append("--aptopt=" + aptargs.apt_conf("Acquire::http::Proxy", aptargs.proxy(req.proxy)))
    argv += aptnet.aptopts()  # bounded retries and timeouts (never anything about signatures)
    argv += ['--aptopt=APT::Install-Recommends "false"', "--", req.suite, _target(target), *req.source_lines()]
    return argv


def choose_backend(requested: str, req: BootstrapRequest) -> str:
    """Resolve `auto` and check that the chosen tool is installed (and, in preflight, the request)."""
    req.check()
    if requested == "auto":
        if req.mmdebstrap_ok and shutil.which("mmdebstrap"):
            return "mmdebstrap"
        requested = "debootstrap"
    if requested == "mmdebstrap" and not req.mmdebstrap_ok:
        raise UserError(
            f"mmdebstrap cannot bootstrap {req.suite} with this package set",
            "use --bootstrapper debootstrap (or auto)",
        )
    if not shutil.which(requested, path=clean_env()["PATH"]):
        raise UserError(f"{requested} is not installed", f"install it with: apt-get install {requested}")
    if requested == "mmdebstrap" and foreign(req.arch) and not shutil.which("arch-test", path=clean_env()["PATH"]):
        raise UserError(f"mmdebstrap needs arch-test to bootstrap {req.arch} on this host",
                        "install it with: apt-get install arch-test")  # fmt: skip
    if requested == "debootstrap" and req.script and not (DEBOOTSTRAP_SCRIPTS / req.script).exists():
        raise UserError(f"debootstrap script {DEBOOTSTRAP_SCRIPTS / req.script} is missing", "reinstall debootstrap")
    return requested


def bootstrap(
    backend: str,
    req: BootstrapRequest,
    target: Path,
    *,
    env_extra: Mapping[str, str] | None = None,
    setup_hooks: Sequence[Path] = (),
) -> list[str]:
    """Run the backend into an empty `target`; returns the argv that was run.

    Setup hooks run on the empty target before anything is installed: mmdebstrap runs them
    itself (it insists on an empty directory), for debootstrap they run first.
    """
    env = {**_env(req), **(env_extra or {}), "ROOTFS": str(target)}
    target.mkdir(parents=True, exist_ok=True)
    if backend == "mmdebstrap":
        argv = mmdebstrap_argv(req, target)
        hook_args = [f'--setup-hook={shlex.quote(str(h))} "$1"' for h in setup_hooks]
        argv[1:1] = hook_args
    else:
        argv = debootstrap_argv(req, target)
        if userns.active():  # no mknod in a user namespace: debootstrap then bind-mounts the device nodes
            env["container"] = "lxc"
        for hook in setup_hooks:
            run_script(hook, target, env, STAGE="setup")
    run(argv, env={**env, "STAGE": "setup"}, progress=backend)
    return argv
