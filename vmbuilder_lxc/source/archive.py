"""ArchiveSource: the base system from the package archive (mmdebstrap or debootstrap), through the cache.

The request that shapes a bootstrap (mirrors, pockets, keyring, packages) is built here, and so is
the cache manifest: every input that shapes the cached base, so that any change gives a new key.
On a miss the base is bootstrapped, brought up to date by the distro's package phase, scrubbed of
what the bootstrap copied from the host, and stored.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__, backing, shellhooks
from ..bootstrap import BootstrapRequest, bootstrap, choose_backend
from ..cache import REFRESH_ENV, BaseCache, cache_key, check_cache_dir, request_record
from ..chroot import Chroot
from ..keyring import require_keyring, sha256_file
from ..log import LOG, note, step
from . import Host

if TYPE_CHECKING:
    from ..suites import Release


class ArchiveHost(Host, Protocol):
    """What the archive source uses of the distro: its archive data and its package phase."""

    release: Release

    @property
    def debootstrap_script(self) -> str: ...

    def security_mirror_for(self, mirror: str) -> str: ...

    def pockets(self) -> tuple[str, ...]: ...

    def base_packages(self) -> list[str]: ...

    def unwanted_packages(self) -> list[str]: ...

    def mmdebstrap_ok(self) -> bool: ...

    def check_suite_arch(self, arch: str) -> None: ...

    def check_package_inputs(self) -> None: ...

    def package_phase(self, chroot: Chroot, req: BootstrapRequest) -> None: ...

    def scrub_base(self) -> None: ...

    def package_list(self) -> dict[str, str]: ...

    def configure_guest(self) -> None: ...


class ArchiveSource:
    """mmdebstrap/debootstrap plus the base cache; the guest is configured with the whole tweak table."""

    def __init__(self, host: ArchiveHost) -> None:
        self.host = host

    def set_defaults(self) -> None:
        """Nothing to learn before the release is resolved: --suite and --arch decide."""

    def preflight(self) -> None:
        """The keyring, the release's architectures, the package inputs, the cache and the bootstrapper."""
        host, s = self.host, self.host.settings
        if not s.get_bool("insecure"):
            fprs = require_keyring(self.keyring(), host.name)
            LOG.debug("archive keys: %s", ", ".join(fprs))
        else:
            LOG.warning("--insecure: archive signatures will NOT be verified while building")
        host.check_package_inputs()
        if s.get_bool("cache"):
            check_cache_dir(Path(str(s["cache-dir"])))
        req = self.bootstrap_request()
        backend = choose_backend(str(s["bootstrapper"]), req)
        if self.cached(req, backend):
            LOG.debug("the cache holds a base for this request: the archive is not asked for its architectures")
        else:
            host.check_suite_arch(str(s["arch"]))

    def cached(self, req: BootstrapRequest, backend: str) -> bool:
        """Whether the cache has an entry for exactly this request. The archive served this suite and
        architecture when it was stored, and a hit downloads nothing, so a warm build need not ask
        the archive again (a network round trip, a third of a warm build's own time)."""
        s = self.host.settings
        if not s.get_bool("cache") or os.environ.get(REFRESH_ENV):
            return False
        cache = BaseCache(Path(str(s["cache-dir"])))
        if not cache.dir.is_dir():  # a first build: nothing to hash the inputs for
            return False
        return cache.entry(cache_key(self.cache_manifest(req, backend))).meta.is_file()

    # -- the request ----------------------------------------------------------------------------

    def mirrors(self) -> tuple[str, str]:
        """(mirror, security mirror) used while building.

        An --install-mirror (a local mirror or cache) serves the security pocket too unless
        --install-security-mirror says otherwise; without one, the guest's own mirrors are used.
        """
        s, host = self.host.settings, self.host
        if s["install-mirror"]:
            mirror = str(s["install-mirror"])
            return mirror, str(s["install-security-mirror"] or host.security_mirror_for(mirror))
        mirror = str(s["mirror"])
        return mirror, str(s["install-security-mirror"] or s["security-mirror"] or host.security_mirror_for(mirror))

    def keyring(self) -> Path:
        return Path(str(self.host.settings["keyring"]))

    def bootstrap_request(self) -> BootstrapRequest:
        host, s = self.host, self.host.settings
        mirror, security = self.mirrors()
        variant = str(s["variant"])
        return BootstrapRequest(
            suite=host.release.series,
            arch=str(s["arch"]),
            mirror=mirror,
            security_mirror=security,
            components=tuple(s.get_list("components")),
            include=tuple(sorted(set(host.base_packages()))),
            variant=None if variant == "default" else variant,
            keyring=None if s.get_bool("insecure") else self.keyring(),
            script=host.debootstrap_script,
            pockets=host.pockets(),
            proxy=s.get_str("proxy"),
            mmdebstrap_ok=host.mmdebstrap_ok(),
        )

    def cache_manifest(self, req: BootstrapRequest, backend: str) -> dict[str, Any]:
        """Every input that shapes the cached base; any change gives a new cache key."""
        s = self.host.settings
        seed = s.get_str("seedfile")
        return {
            "tool": __version__,
            "distro": self.host.name,
            "suite": req.suite,
            "arch": req.arch,
            "variant": req.variant,
            "components": list(req.components),
            "packages": list(req.include),
            "unwanted": sorted(self.host.unwanted_packages()),
            "addpkg": sorted(s.get_list("addpkg")),
            "removepkg": sorted(s.get_list("removepkg")),
            "mirror": req.mirror,
            "security_mirror": req.security_mirror,
            "pockets": list(req.pockets),
            "keyring": sha256_file(req.keyring) if req.keyring else "insecure",
            "backend": backend,
            "seedfile": sha256_file(Path(seed)) if seed else None,
            "hooks": shellhooks.digest([Path(p) for p in s.get_list("hook-dir")]),
        }

    # -- the base system ------------------------------------------------------------------------

    def provide_rootfs(self) -> None:
        """The base from the cache when it has one for this manifest, else bootstrapped (and stored)."""
        s = self.host.settings
        ctx = self.host.context
        req = self.bootstrap_request()
        backend = choose_backend(str(s["bootstrapper"]), req)
        manifest = self.cache_manifest(req, backend)
        key = cache_key(manifest)
        ctx.summary["cache"] = {"key": key, "hit": False, "enabled": s.get_bool("cache"), "backend": backend}
        if not s.get_bool("cache"):
            note("cache disabled (--no-cache)")
            self.build_base(req, backend)
            return
        cache = BaseCache(Path(str(s["cache-dir"])), s.get_int("cache-max-age") or 0, str(s["cache-verify"]))
        copied = backing.backing_of(s) == "dir"  # restore() checks the tree while it copies it
        with cache.locked(key):
            entry = None if cache.refreshing(key, manifest) else cache.lookup(key, content=not copied)
            if entry is not None:
                meta = entry.load_meta() or {}
                built = dt.datetime.fromtimestamp(float(meta.get("created", 0))).strftime("%Y-%m-%d %H:%M")
                note("cache hit: reusing base %s built %s (%s)", key, built, entry.root)
                if backing.attach(ctx, entry) or cache.restore(entry, ctx.rootfs):
                    ctx.summary["cache"].update({"hit": True, "path": str(entry.root), "built": built})
                    return
            note("cache miss: no base %s yet in %s", key, cache.dir)
            self.build_base(req, backend)
            with step("Saving the base system to the cache"):
                request = request_record(req.keyring, s.get_str("seedfile"), s.get_list("hook-dir"))  # cache refresh
                extra = {"packages": self.host.package_list(), "request": request}
                stored = cache.store(key, ctx.rootfs, manifest, extra)
                if stored is not None:
                    ctx.summary["cache"]["path"] = str(stored.root)
            if stored is None:
                backing.not_stored(ctx)
            else:
                backing.attach(ctx, stored, fresh=True)

    def build_base(self, req: BootstrapRequest, backend: str) -> None:
        """Bootstrap, then bring the packages up to date and apply --addpkg/--removepkg."""
        host, ctx, s = self.host, self.host.context, self.host.settings
        dirs = [Path(p) for p in s.get_list("hook-dir")]
        note("running %s for %s/%s from %s", backend, req.suite, req.arch, req.mirror)
        bootstrap(backend, req, ctx.rootfs, env_extra=ctx.hook_env, setup_hooks=shellhooks.stage_scripts(dirs, "setup"))
        shellhooks.run_stage(dirs, "essential", ctx.rootfs, ctx.hook_env)
        needs_apt = (
            backend == "debootstrap" or s["addpkg"] or s["removepkg"] or s["seedfile"] or host.unwanted_packages()
        )
        if needs_apt:
            with Chroot(ctx.rootfs, apt_proxy=s.get_str("proxy")) as chroot, step("Installing packages"):
                host.package_phase(chroot, req)
        host.scrub_base()

    # -- configuration --------------------------------------------------------------------------

    def configure(self) -> None:
        """A bootstrapped base gets the distro's whole configuration: tweaks, locale, users."""
        self.host.configure_guest()

    def add_user(self, argv: Sequence[str], user: str) -> None:
        self.host.run_in_target(*argv, user)
