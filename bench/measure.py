"""One function per measurement of issue 15's targets, each returning table rows.

Pairs are run in turn (A B A B) in the same run so that the load of a shared machine falls on both
sides alike; the table gives medians. Every container, clone and image is made under the bench's
own work directory and removed with it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import peers
from .proc import Run, bytecode_env, disk_bytes, have, remove, run, settle, shell, vmbuilder
from .stats import Row, median, megabytes, not_available, ratio, runs, seconds

RSS_LIMIT_BYTES = 100e6
WARM_LIMIT_S = 1.0


@dataclass
class Bench:
    """The state one bench run shares between its measurements."""

    work: Path
    suite: str
    repeats: int
    scale: int
    quick: bool
    components: str = "main,restricted,universe"
    self_rss: list[int] = field(default_factory=list)
    lxc_warm: list[float] = field(default_factory=list)
    lxc_warm_rss: int = 0
    notes: list[str] = field(default_factory=list)
    backings: set[str] = field(default_factory=set)
    lxc_samples: int = 3
    btrfs_empty: int = 0

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    @property
    def lxcpath(self) -> Path:
        return self.work / "lxc"

    @property
    def base(self) -> Path:
        """The first (cold) build: its rootfs is the one every peer copies, archives or matches."""
        return self.work / "cold"

    def build(
        self, dest: Path, backing: str | None = None, extra: list[str] | None = None, cache: Path | None = None
    ) -> Run:
        args = ["lxc", "ubuntu", "--suite", self.suite, "--network", "none", "--cache-dir", str(cache or self.cache),
                "-d", str(dest), *(["--backing", backing] if backing else []), *(extra or [])]  # fmt: skip
        return self.project(args)

    def project(self, args: list[str]) -> Run:
        result = vmbuilder(args, bytecode_env(self.work / "pycache"))
        if result.self_rss_kb:
            self.self_rss.append(result.self_rss_kb)
        if result.seconds is None:
            self.notes.append(f"vmbuilder {' '.join(args[:3])} failed: {result.tail}")
        return result

    def lxc_warm_once(self, index: int) -> None:
        """One lxc-create -t ubuntu with its cache warm, interleaved with the project's warm builds."""
        if len(self.lxc_warm) >= self.lxc_samples or not peers.lxc_cache_present(self.suite):
            return
        name = f"lw{index}"
        result = peers.lxc_create(self.lxcpath, name, self.suite)
        peers.lxc_destroy(self.lxcpath, name)
        if result.seconds is not None:
            self.lxc_warm.append(result.seconds)
            self.lxc_warm_rss = max(self.lxc_warm_rss, result.rss_kb)


def detect_backings() -> set[str]:
    """The --backing choices this vmbuilder offers (the option is new; a bench may predate it)."""
    try:
        from vmbuilder_lxc.backing import BACKINGS
    except ImportError:
        return set()
    return set(BACKINGS)


def cold_build(b: Bench) -> list[Row]:
    """Cold build (empty cache) vs plain mmdebstrap of the same packages, in turn A B B A (twice in
    a full run), after one unmeasured cold build. That one gives the base every later row uses and
    the package list, and takes the run's first download, which is slow whichever tool makes it
    (mmdebstrap first took 33.9 s, then this tool cold 21.7 s and mmdebstrap 18.5 s, minutes
    apart): the pairs measure the tools, not the network's state. Each side downloads every
    package; the medians, the order balanced, are compared. Then vs lxc-create."""
    first = b.build(b.base)
    if first.seconds is None:
        raise SystemExit(f"bench: the cold build failed, nothing else can be measured: {first.tail}")
    b.notes.append(f"the first cold build (the run's first download, not in the table): {first.seconds:.2f} s")
    settle()
    packages = peers.installed_packages(b.base / "rootfs")

    def ours(i: int) -> Run:
        """A cold build with its own empty cache and DEST, both removed after."""
        result = b.build(b.work / f"cold{i}", cache=b.work / f"cache-cold{i}")
        remove(b.work / f"cold{i}")
        remove(b.work / f"cache-cold{i}")
        return result

    def theirs() -> Run:
        result = peers.mmdebstrap(b.work / "mmdebstrap", b.suite, packages, b.components)
        remove(b.work / "mmdebstrap")
        return result

    order = "ABBA" * (1 if b.quick else 2)  # the network drifts: balanced, and four of each in a full run
    builds = [ours(i) if side == "A" else theirs() for i, side in enumerate(order)]
    mine = [r for r, side in zip(builds, order, strict=True) if side == "A"]
    mms = [r for r, side in zip(builds, order, strict=True) if side == "B"]
    colds = [s for r in mine for s in _ok(r)]
    mm_ok = [m.seconds for m in mms if m.seconds is not None]
    work = f"cold build ({b.suite}), {runs(len(colds))}, {' '.join(order)}"
    rows = [Row(work, seconds(colds, max(r.rss_kb for r in mine)),
                f"plain mmdebstrap, same {len(packages)} packages: " + seconds(mm_ok, max(m.rss_kb for m in mms)),
                ratio(median(colds), median(mm_ok)), 1.15, "≤ 1.15×")]  # fmt: skip
    for m in mms:
        if m.seconds is None:
            b.notes.append(f"mmdebstrap failed: {m.tail}")
    if b.quick or not peers.ensure_lxc_templates():
        why = "skipped (--quick)" if b.quick else "lxc-templates not available"
        rows.append(Row("cold build vs lxc-create -t ubuntu cold", seconds(colds), why, None,
                        None if b.quick else 0.2, "≤ 0.20× (≥ 5× faster)"))  # fmt: skip
        return rows
    peers.clear_lxc_cache(b.suite)
    lc = peers.lxc_create(b.lxcpath, "lc-cold", b.suite)
    peers.lxc_destroy(b.lxcpath, "lc-cold")
    if lc.seconds is None:
        b.notes.append(f"lxc-create cold failed: {lc.tail}")
    rows.append(Row("cold build vs lxc-create -t ubuntu cold", seconds(colds),
                    "lxc-create -t ubuntu cold: " + seconds(_ok(lc), lc.rss_kb), ratio(median(colds), lc.seconds),
                    0.2, "≤ 0.20× (≥ 5× faster)"))  # fmt: skip
    return rows


def emulated_build(b: Bench, arch: str = "arm64", suite: str = "bookworm") -> list[Row]:
    """A cold foreign build through qemu-user next to the same cold build native (issue 18). Debian,
    whose archive serves every architecture; each without the cache, so both bootstrap."""
    from vmbuilder_lxc import binfmt
    from vmbuilder_lxc.arches import QEMU_NAMES

    work = f"emulated build (debian {suite} {arch}, cold), 1 run"
    trouble = binfmt.problem(QEMU_NAMES[arch])
    if trouble is not None:
        return [not_available(work, f"not measured: {trouble.what}")]
    times: dict[str, Run] = {}
    for which in (arch, "native"):
        dest = b.work / f"emulated-{which}"
        args = ["lxc", "debian", "--suite", suite, "--network", "none", "--no-cache", "-d", str(dest),
                *(["--arch", arch] if which == arch else [])]  # fmt: skip
        times[which] = b.project(args)
        remove(dest)  # untimed
    ours, native = times[arch], times["native"]
    return [Row(work, seconds(_ok(ours), ours.rss_kb), "the same build native: " + seconds(_ok(native)),
                ratio(ours.seconds, native.seconds))]  # fmt: skip


def warm_dir(b: Bench) -> list[Row]:
    """Warm default build (cache hit, --backing dir) vs `cp -a` of the same rootfs, A B A B."""
    ours: list[float] = []
    copies: list[float] = []
    rss = cp_rss = 0
    if peers.ensure_lxc_templates() and not peers.lxc_cache_present(b.suite) and not b.quick:
        # Fill lxc-create's own cache once (unmeasured) so that its warm runs are warm.
        peers.lxc_create(b.lxcpath, "lc-fill", b.suite)
        peers.lxc_destroy(b.lxcpath, "lc-fill")
    for i in range(b.repeats):
        dest = b.work / f"warm{i}"
        result = b.build(dest, "dir" if "dir" in b.backings else None)
        remove(dest)
        if result.seconds is not None:
            ours.append(result.seconds)
            rss = max(rss, result.rss_kb)
        copy = run(["cp", "-a", str(b.base / "rootfs"), str(b.work / f"cp{i}")])
        remove(b.work / f"cp{i}")
        if copy.seconds is not None:
            copies.append(copy.seconds)
            cp_rss = max(cp_rss, copy.rss_kb)
        b.lxc_warm_once(i)
    size = megabytes(disk_bytes(b.base / "rootfs"))
    rows = [Row(f"warm build, --backing dir, {runs(b.repeats)}", seconds(ours, rss),
                f"`cp -a` of the same {size} rootfs: " + seconds(copies, cp_rss),
                ratio(median(ours), median(copies)), 1.3, "≤ 1.3×")]  # fmt: skip
    rows.append(_vs_lxc_warm(b, "warm build, --backing dir", ours, None))
    return rows


def warm_idmap(b: Bench) -> list[Row]:
    """Warm build with --idmap auto (the rootfs shifted once, idshift.py) vs the same warm build
    unshifted, A B A B: ≤ 1.5× (issue 16)."""
    shifted: list[float] = []
    plain: list[float] = []
    for i in range(b.repeats):
        for extra, out in ((["--idmap", "auto"], shifted), ([], plain)):
            dest = b.work / f"idmap{i}-{len(extra)}"
            result = b.build(dest, "dir" if "dir" in b.backings else None, extra)
            remove(dest)  # untimed: the writeback of a deleted tree is no part of either build
            if result.seconds is not None:
                out.append(result.seconds)
    work = f"warm build with --idmap auto, {runs(b.repeats)}"
    if not shifted or not plain:
        return [not_available(work, "failed (see the notes)", "≤ 1.5×", True)]
    return [Row(work, seconds(shifted), "the same warm build unshifted: " + seconds(plain),
                ratio(median(shifted), median(plain)), 1.5, "≤ 1.5×")]  # fmt: skip


def _vs_lxc_warm(b: Bench, work: str, ours: list[float], limit: float | None) -> Row:
    peer = "lxc-create -t ubuntu warm: " + (seconds(b.lxc_warm, b.lxc_warm_rss) if b.lxc_warm else "not measured")
    target = "≤ 0.17× (≥ 6× faster)" if limit else "—"
    return Row(f"{work} vs lxc-create warm", seconds(ours), peer, ratio(median(ours), median(b.lxc_warm)),
               limit, target)  # fmt: skip


def warm_backing(b: Bench, backing: str, parent: Path | None) -> list[Row]:
    """Warm build with --backing overlay or btrfs: ≤ 1.0 s wall and ≥ 6× faster than lxc-create warm."""
    work = f"warm build, --backing {backing}"
    target = f"≤ {WARM_LIMIT_S:.1f} s"
    if backing not in b.backings:
        return [not_available(work, "not available (this vmbuilder has no such --backing)", target, True)]
    if parent is None:
        return [not_available(work, "not available (no btrfs: mkfs.btrfs or loop mount failed)", target, True)]
    prime = b.build(parent / f"{backing}-prime", backing)  # the first may set up the pinned base
    if prime.seconds is None:
        return [not_available(work, f"failed: {prime.tail[-160:]}", target, True)]
    ours: list[float] = []
    rss = 0
    for i in range(b.repeats):
        dest = parent / f"{backing}{i}"
        result = b.build(dest, backing)
        if result.seconds is not None:
            ours.append(result.seconds)
            rss = max(rss, result.rss_kb)
        _remove_container(b, dest)
        b.lxc_warm_once(100 + i)
    mid = median(ours)
    return [
        Row(
            f"{work}, {runs(b.repeats)}",
            seconds(ours, rss),
            f"limit {WARM_LIMIT_S:.1f} s",
            ratio(mid, WARM_LIMIT_S),
            1.0,
            target,
        ),  # fmt: skip
        _vs_lxc_warm(b, work, ours, 1 / 6),
    ]


def _remove_container(b: Bench, dest: Path) -> None:
    """Remove a container DEST; a btrfs subvolume is deleted as such."""
    rootfs = dest / "rootfs"
    if have("btrfs") and rootfs.exists():
        subprocess.run(["btrfs", "subvolume", "delete", str(rootfs)], capture_output=True, check=False)
    remove(dest)


def overlay_paths(dest: Path) -> tuple[Path, Path] | None:
    """BASE and DELTA of an LXC config's `lxc.rootfs.path = overlay:BASE:DELTA` (overlayfs: too)."""
    config = dest / "config"
    if not config.exists():
        return None
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "lxc.rootfs.path":
            parts = value.strip().split(":")
            if len(parts) == 3 and parts[0] in ("overlay", "overlayfs"):
                return Path(parts[1]), Path(parts[2])
    return None


def scale(b: Bench, backing: str, parent: Path | None, df_of: Path | None = None) -> tuple[list[Row], list[Path]]:
    """N containers from one base: total time and disk used. Returns the rows and the DESTs made."""
    work = f"scale: {b.scale} containers, --backing {backing}"
    if backing != "dir" and backing not in b.backings:
        return [not_available(work, "not available (this vmbuilder has no such --backing)")], []
    if parent is None:
        return [not_available(work, "not available (no btrfs)")], []
    dests = [parent / f"scale-{backing}-{i}" for i in range(b.scale)]
    total = 0.0
    failed = 0
    for dest in dests:
        result = b.build(dest, backing if backing in b.backings else None)
        if result.seconds is None:
            failed += 1
        else:
            total += result.seconds
    if df_of:
        used = _fs_used(df_of) - b.btrfs_empty  # the base subvolume(s) count too
    else:
        bases = {p[0] for d in dests if (p := overlay_paths(d))}
        used = disk_bytes(*bases, *dests)
    project = f"{total:.1f} s total, {megabytes(used)}" + (f", {failed} failed" if failed else "")
    one = disk_bytes(b.base / "rootfs")
    row = Row(work, project, f"{b.scale} × one rootfs ({megabytes(one)}): {megabytes(b.scale * one)}",
              ratio(used, b.scale * one))  # fmt: skip
    return [row], dests


def _fs_used(path: Path) -> int:
    """Bytes used on the filesystem that holds path (the bench's own loop-mounted btrfs)."""
    subprocess.run(["sync", "-f", str(path)], check=False)
    out = subprocess.run(["df", "-B1", "--output=used", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[-1])


def overlay_disk(b: Bench, dests: list[Path]) -> list[Row]:
    """N overlay clones: disk used vs one rootfs plus the deltas (the base must be shared, not copied)."""
    work = f"{b.scale} clones with overlay: disk"
    pairs = [p for d in dests if (p := overlay_paths(d))]
    if not pairs:
        return [not_available(work, "not available (no overlay containers)", "≤ 1.2×", True)]
    bases = {base for base, _ in pairs}
    used = disk_bytes(*bases, *dests, *(delta for _, delta in pairs))
    one = disk_bytes(b.base / "rootfs")
    deltas = sum(disk_bytes(delta) for _, delta in pairs)
    return [Row(work, f"{megabytes(used)} ({len(bases)} base(s))",
                f"one rootfs {megabytes(one)} + deltas {megabytes(deltas)}", ratio(used, one + deltas), 1.2,
                "≤ 1.2×")]  # fmt: skip


def lxc_copy_clones(b: Bench) -> list[Row]:
    """lxc-copy -s (overlay snapshot clones) of one container, N times: LXC's own cheap clone."""
    work = f"lxc-copy -s -B overlay, {b.scale} clones (peer)"
    if not have("lxc-copy"):
        return [not_available(work, "lxc-copy not installed")]
    base = b.lxcpath / "snapbase"
    made = b.build(base)
    if made.seconds is None:
        return [not_available(work, f"the base build failed: {made.tail[-160:]}")]
    total = 0.0
    names = [f"snap{i}" for i in range(b.scale)]
    for name in names:
        result = peers.lxc_copy_snapshot(b.lxcpath, "snapbase", name)
        if result.seconds is None:
            return [not_available(work, f"lxc-copy failed: {result.tail[-160:]}")]
        total += result.seconds
    used = disk_bytes(base, *(b.lxcpath / n for n in names))
    return [Row(work, "—", f"{total:.1f} s total ({total / b.scale:.2f} s each), {megabytes(used)} with its base")]


def exports(b: Bench) -> list[Row]:
    """--export lxd vs one `tar | COMPRESSOR -T0` with the same compressor; --export tar vs `tar -cf`."""
    from vmbuilder_lxc.exports.tarball import DEFAULT_LEVEL

    rows: list[Row] = []
    out = b.work / "exports"
    rootfs = b.base / "rootfs"
    lxd_runs: list[float] = []
    peer_runs: list[float] = []
    rss = peer_rss = 0
    compressor = forms = ""
    n = 1 if b.quick else 2
    for _ in range(n):
        # The default of `--export lxd` (the unified image alone since --lxd-image; before, both forms).
        result = b.project(["lxc", "export", "--export", "lxd", "--export-dir", str(out), "-o", str(b.base)])
        files = sorted(p.name for p in out.glob("*")) if out.exists() else []
        compressor = "zstd" if any(f.endswith(".zst") for f in files) else "xz"
        forms = "unified + split" if any((out / f).is_dir() for f in files) else "unified"
        remove(out)
        if result.seconds is not None:
            lxd_runs.append(result.seconds)
            rss = max(rss, result.rss_kb)
        level = DEFAULT_LEVEL[compressor]
        target = b.work / f"peer.tar.{compressor}"
        peer = shell(
            f"tar -C {rootfs} --numeric-owner --xattrs --acls -cf - . | {compressor} -q -T0 -{level} -c > {target}"
        )
        remove(target)
        if peer.seconds is not None:
            peer_runs.append(peer.seconds)
            peer_rss = max(peer_rss, peer.rss_kb)
    rows.append(Row(f"`--export lxd` ({forms}, {compressor}), {runs(n)}", seconds(lxd_runs, rss),
                    f"`tar | {compressor} -T0 -{DEFAULT_LEVEL.get(compressor, '')}`: " + seconds(peer_runs, peer_rss),
                    ratio(median(lxd_runs), median(peer_runs)), 1.1, "≤ 1.1×"))  # fmt: skip
    other = "xz" if compressor == "zstd" else "zstd"
    if not (b.quick and other == "xz"):
        level = DEFAULT_LEVEL[other]
        target = b.work / f"peer.tar.{other}"
        peer = tar_compress(rootfs, other, level, target)
        size = megabytes(target.stat().st_size) if target.exists() else "?"
        remove(target)
        rows.append(Row(f"`tar | {other} -T0 -{level}` (peer, for reference)", "—",
                        seconds(_ok(peer), peer.rss_kb) + f", {size}"))  # fmt: skip
    ours: list[float] = []
    tars: list[float] = []
    rss = tar_rss = 0
    for _ in range(b.repeats):
        result = b.project(["lxc", "export", "--export", "tar", "--export-dir", str(out), "-o", str(b.base)])
        remove(out)
        if result.seconds is not None:
            ours.append(result.seconds)
            rss = max(rss, result.rss_kb)
        tar = run(["tar", "-C", str(rootfs), "--numeric-owner", "--xattrs", "--acls", "-cf",
                   str(b.work / "peer.tar"), "."])  # fmt: skip
        remove(b.work / "peer.tar")
        if tar.seconds is not None:
            tars.append(tar.seconds)
            tar_rss = max(tar_rss, tar.rss_kb)
    rows.append(Row(f"`--export tar`, {runs(b.repeats)}", seconds(ours, rss), "`tar -cf`: " + seconds(tars, tar_rss),
                    ratio(median(ours), median(tars)), 1.5, "≤ 1.5×"))  # fmt: skip
    return rows


def tar_compress(rootfs: Path, compressor: str, level: int, target: Path) -> Run:
    """The limit of an image export: one tar of the rootfs through the compressor on every core."""
    tar = f"tar -C {rootfs} --numeric-owner --xattrs --acls -cf - ."
    return shell(f"{tar} | {compressor} -q -T0 -{level} -c > {target}")


def python_rss(b: Bench) -> list[Row]:
    """The peak RSS of vmbuilder's own Python process over every run of this bench."""
    if not b.self_rss:
        return [not_available("peak RSS of vmbuilder (the Python process)", "not measured", "≤ 100 MB", True)]
    peak = max(b.self_rss) * 1024
    return [Row(f"peak RSS of vmbuilder (the Python process), {runs(len(b.self_rss))}", megabytes(peak),
                "limit 100 MB", peak / RSS_LIMIT_BYTES, 1.0, "≤ 100 MB")]  # fmt: skip


def _ok(result: Run) -> list[float]:
    return [] if result.seconds is None else [result.seconds]
