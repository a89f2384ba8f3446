"""The `export` plugin: image archives for other consumers, from a build or from a finished one.

`--export tar,lxc,lxd,incus,squashfs,sbuild` writes them into --export-dir at the end of a build,
beside the rootfs directory or, with --export-only, instead of it. `vmbuilder lxc export DEST`
exports a finished build again (after you changed it, or in another format). The formats and
what is stripped from every export are in vmbuilder_lxc/exports/.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from vmbuilder_lxc import backing, exports
from vmbuilder_lxc import validators as v
from vmbuilder_lxc.cliparse import CommandParser
from vmbuilder_lxc.exports import unshift
from vmbuilder_lxc.log import LOG, UserError, die
from vmbuilder_lxc.lxcstate import container_running
from vmbuilder_lxc.options import each
from vmbuilder_lxc.pipeline import MARKER
from vmbuilder_lxc.places import check_writable_dir
from vmbuilder_lxc.plugin import Plugin
from vmbuilder_lxc.render import Templates
from vmbuilder_lxc.reproducible import source_date_epoch
from vmbuilder_lxc.settings import Needs, Setting, Settings

GROUP = "Export options"
KEPT_HOOK_ENV = ("INIT", "CONTAINER_DETECT", "SYSTEMD_VERSION", "UPSTART_VERSION")


def export_dir_for(dest: str | Path) -> Path:
    """the directory that holds DEST"""
    return Path(dest).expanduser().absolute().parent


def _default_export_dir(s: Settings) -> str:
    return str(export_dir_for(str(s["dest"] or ".")))


def _default_compression(s: Settings) -> None:
    return None  # each format's own compression (exports.runner.compression_for)


# What --help and the docs say the defaults are, generated from what the code reads: the export
# directory from export_dir_for, the compressions from the formats' table (exports.FORMATS).
_default_export_dir.__doc__ = export_dir_for.__doc__
_default_compression.__doc__ = "each format's own: " + exports.default_compressions()
EXPORT_DIR_HELP = "where --export writes"
COMPRESSION_HELP = "compression of the exports"
LEVEL_HELP = "compression level passed to zstd (1-22), xz (0-9) or gzip (1-9)"
KEEP_LISTS_HELP = "keep the apt package lists in the exports (they are stripped by default)"
LXD_IMAGE_HELP = ("which forms of the lxd and incus images to write: unified (one tarball, all `lxc image import` "
                  "needs), split (metadata tarball + rootfs.squashfs, as image servers publish) or both; each form "
                  "compresses the rootfs once")  # fmt: skip
EXPORT_DESCRIPTION = "Write template archives of a finished build (its DEST directory)."
DEST_HELP = "a directory built by vmbuilder (holds rootfs/)"


def default_help(text: str, default: object) -> str:
    """`text (default: ...)` for the export command's plain argparse options, from the docstring
    the build's Setting shows, so that both say the same."""
    return f"{text} (default: {(getattr(default, '__doc__', None) or '').strip()})"


EXPORT_DIR_HINT = "give --export-dir a directory on a writable disk"
EXPORTS = Needs(lambda s: bool(s.get_list("export")), "without --export")
LXD_EXPORTS = Needs(lambda s: bool({f.lower() for f in s.get_list("export")} & {"lxd", "incus"}),
                    "without --export lxd or incus")  # fmt: skip


def _check_level(s: Settings, level: int) -> None:
    """--compression-level must suit every compressor that will run: --compression's, or each
    --export format's own."""
    chosen = s.get_str("compression")
    formats = exports.parse_formats(s.get_list("export"))
    v.compression_level(level, [chosen] if chosen else [f.default_compression for f in formats])


def keep_set(keep_apt_lists: bool) -> frozenset[str]:
    return frozenset({"keep_apt_lists"} if keep_apt_lists else set())


class Export(Plugin):
    name: ClassVar[str] = "export"
    description: ClassVar[str] = "template archives: tar (CloudStack), lxc, lxd, incus, squashfs, sbuild"
    priority: ClassVar[int] = 90  # after the plugins that customise the guest
    commands: ClassVar[dict[str, str]] = {"export": "export_command"}

    def register_options(self) -> Sequence[Setting]:
        return [
            Setting("export", "also write these template archives: " + ", ".join(exports.FORMATS) + " "
                    "(comma separated; docs/exports.md)", "list", [], metavar="FORMAT",
                    validate=each(v.one_of(exports.FORMATS, "export format", fold=True)), group=GROUP),
            Setting("export-dir", EXPORT_DIR_HELP, metavar="DIR", default=_default_export_dir,
                    validate=v.writable_dir("--export-dir", EXPORT_DIR_HINT), needs=(EXPORTS,), group=GROUP),
            Setting("compression", COMPRESSION_HELP, default=_default_compression, choices=exports.COMPRESSIONS,
                    needs=(EXPORTS,), group=GROUP),
            Setting("compression-level", LEVEL_HELP, "int", metavar="N", validate=v.int_range(0, 22),
                    relate=_check_level,
                    needs=(EXPORTS, Needs(lambda s: s["compression"] != "none", "with --compression none")),
                    group=GROUP),
            Setting("keep-apt-lists", KEEP_LISTS_HELP, "bool", False, needs=(EXPORTS,), group=GROUP),
            Setting("lxd-image", LXD_IMAGE_HELP, default=exports.DEFAULT_LXD_IMAGE, choices=exports.LXD_IMAGE_FORMS,
                    needs=(LXD_EXPORTS,), group=GROUP),
            Setting("export-only", "keep only the exports: no DEST directory is left behind", "bool", False,
                    group=GROUP),
        ]  # fmt: skip

    def formats(self) -> list[exports.ExportFormat]:
        return exports.parse_formats(self.settings.get_list("export"))

    def set_defaults(self) -> None:
        if self.settings.get_bool("export-only"):
            self.context.keep_dest = False

    def preflight_check(self) -> None:
        s = self.settings
        formats = self.formats()
        if not formats:
            if s.get_bool("export-only"):
                die("--export-only without --export would build nothing", "add --export FORMAT[,FORMAT...]")
            return
        if s.get_bool("export-only") and "libvirt" in s.table and s.get_str("libvirt"):
            die("--export-only keeps no rootfs for --libvirt to register", "drop --export-only or --libvirt")
        out_dir = Path(str(s["export-dir"])).expanduser().absolute()
        check_writable_dir(out_dir, "--export-dir", "give --export-dir a writable directory")
        exports.runner.check_outputs(formats, self.job(Path("/nonexistent")), s.get_bool("overwrite"))

    def job(self, root: Path) -> exports.ExportJob:
        s = self.settings
        ctx = self.context
        hook_env = ctx.hook_env
        return exports.ExportJob(
            root=root,
            out_dir=Path(str(s["export-dir"])).expanduser().absolute(),
            name=ctx.name,
            distro=hook_env.get("DISTRO", ctx.distro_name),
            suite=hook_env.get("SUITE", ""),
            version=hook_env.get("RELEASE_VERSION", ""),
            arch=str(s["arch"]) if "arch" in s.table else hook_env.get("ARCH", ""),
            variant=str(s["variant"]) if "variant" in s.table else "minbase",
            hostname=str(s["hostname"]) if "hostname" in s.table else ctx.name,
            epoch=source_date_epoch(self.build_time),
            compression=s.get_str("compression") or "",
            compression_level=s.get_int("compression-level"),
            lxd_image=s.get_str("lxd-image") or exports.DEFAULT_LXD_IMAGE,
            dest_rootfs=ctx.dest / "rootfs" if ctx.keep_dest else None,
            hook_env=dict(hook_env),
            render=ctx.render,
        )

    @property
    def build_time(self) -> int:
        if "built_at" not in self.context.summary:
            self.context.summary["built_at"] = int(time.time())
        return int(self.context.summary["built_at"])

    def finalize(self) -> None:
        ctx = self.context
        # What a later `vmbuilder lxc export DEST` needs to know about the guest.
        ctx.summary["guest_facts"] = {k: ctx.hook_env.get(k, "") for k in KEPT_HOOK_ENV}
        formats = self.formats()
        if not formats:
            return
        s = self.settings
        result = exports.export(ctx.rootfs, formats, self.job(ctx.rootfs), keep=keep_set(s.get_bool("keep-apt-lists")),
                                overwrite=s.get_bool("overwrite"))  # fmt: skip
        ctx.summary["exports"] = result.pop("formats")
        ctx.summary["export"] = result

    def next_steps(self) -> list[str]:
        found = self.context.summary.get("exports") or {}
        lines = []
        for fmt, paths in found.items():
            lines.append(f"{fmt} export: {paths[0]}" + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else ""))
        if found:
            lines.append("  how to use them: docs/exports.md")
        return lines

    # -- `vmbuilder lxc export DEST` ------------------------------------------------------------

    @staticmethod
    def export_parser() -> CommandParser:
        """The parser of `vmbuilder lxc export` (built apart so that the man page can list it)."""
        parser = CommandParser("vmbuilder lxc export", EXPORT_DESCRIPTION, operand=("DEST", DEST_HELP))
        parser.add_argument(
            "--export",
            action="append",
            required=True,
            metavar="FORMAT",
            help="formats, comma separated: " + ", ".join(exports.FORMATS),
        )
        parser.add_argument("--export-dir", metavar="DIR", help=default_help("where to write", export_dir_for))
        parser.add_argument("--compression", choices=exports.COMPRESSIONS,
                            help=default_help(COMPRESSION_HELP, _default_compression))  # fmt: skip
        parser.add_argument("--compression-level", type=int, metavar="N", help=LEVEL_HELP)
        parser.add_argument("--keep-apt-lists", action="store_true", help=KEEP_LISTS_HELP)
        parser.add_argument("--lxd-image", choices=exports.LXD_IMAGE_FORMS, default=exports.DEFAULT_LXD_IMAGE,
                            help=LXD_IMAGE_HELP + " (default: %(default)s)")  # fmt: skip
        parser.add_argument("-o", "--overwrite", action="store_true", help="replace existing exports")
        parser.add_output_options("print a JSON summary")
        return parser

    @staticmethod
    def export_command(argv: list[str]) -> int:
        """Export a finished build (DEST holds rootfs/ and vmbuilder-lxc.json) again."""
        args = Export.export_parser().parse_command(argv)
        summary = export_existing(args)
        if args.json:
            print(json.dumps(summary, indent=2, sort_keys=True))
        return 0


MARKER_MAX = 4 << 20  # the summary of a build is a few KiB


def _marker(dest: Path) -> dict[str, Any]:
    """DEST's vmbuilder-lxc.json, read only if it is a regular file of sane size (never a FIFO)."""
    hint = "give the -d directory of a build"
    if not dest.is_dir():
        raise UserError(f"{dest} is not a directory", hint)
    path = dest / MARKER
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MARKER_MAX:
            raise UserError(f"{dest} is not a vmbuilder build ({MARKER} is not a regular file of sane size)", hint)
        with path.open("rb") as fh:
            data = json.loads(fh.read(MARKER_MAX + 1).decode("utf-8"))
    except OSError:
        raise UserError(f"{dest} is not a vmbuilder build (no {MARKER})", hint) from None
    except ValueError:  # JSON and UTF-8 decoding errors alike
        raise UserError(f"{path} is not valid JSON", "rebuild it, or restore the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings", {}), dict):
        raise UserError(f"{path} is not a vmbuilder build summary", hint)
    rootfs = dest / "rootfs"
    if rootfs.is_symlink() or not rootfs.is_dir():
        raise UserError(f"{dest} holds no rootfs/", hint)
    return data


def _table(marker: dict[str, Any], key: str) -> dict[str, Any]:
    value = marker.get(key) or {}
    return value if isinstance(value, dict) else {}


def _built_at(marker: dict[str, Any]) -> int:
    value = marker.get("built_at")
    return value if isinstance(value, int) and value >= 0 else int(time.time())


def _refuse_running(dest: Path) -> None:
    if container_running(dest):
        die(f"container {dest.name} is running; its files may change while they are read",
            f"stop it first: lxc-stop -P {dest.parent} -n {dest.name}")  # fmt: skip


def export_existing(args: argparse.Namespace) -> dict[str, Any]:
    dest = Path(args.dest).expanduser().absolute()
    marker = _marker(dest)
    out_dir = Path(args.export_dir).expanduser().absolute() if args.export_dir else export_dir_for(dest)
    check_writable_dir(out_dir, "--export-dir", "give --export-dir a writable directory")
    formats = exports.parse_formats([f for item in args.export for f in item.split(",") if f.strip()])
    if not formats:
        die("--export names no format", f"give one or more of: {', '.join(exports.FORMATS)}")
    if args.compression_level is not None:
        chosen = [args.compression] if args.compression else [f.default_compression for f in formats]
        try:
            v.compression_level(args.compression_level, chosen)
        except v.Invalid as exc:
            raise UserError(f"--compression-level {args.compression_level}: {exc}", exc.hint) from None
    if os.geteuid() != 0:
        die("exporting needs root (the rootfs holds root-only files)", "run it as root, e.g. with sudo")
    _refuse_running(dest)
    job = job_from_marker(
        dest,
        marker,
        out_dir,
        compression=args.compression or "",
        compression_level=args.compression_level,
        lxd_image=args.lxd_image,
    )
    with backing.merged_view(dest), unshift.zero_based(dest / "rootfs", marker.get("idmap")) as rootfs:
        # --backing overlay: DEST/rootfs is empty until the overlay is mounted; --idmap: exports are 0-based
        keep = keep_set(args.keep_apt_lists)
        result = exports.export(rootfs, formats, job, keep=keep, overwrite=args.overwrite)
    LOG.debug("exported %s", dest)
    return {"status": "ok", "dest": str(dest), "exports": result.pop("formats"), "export": result}


def job_from_marker(dest: Path, marker: dict[str, Any], out_dir: Path, **choices: Any) -> exports.ExportJob:
    """What a finished build's vmbuilder-lxc.json (`marker`) says about it, as the export code takes it;
    `choices` are the caller's own (compression, its level, the LXD image forms)."""
    release = _table(marker, "release")
    settings = _table(marker, "settings")
    hook_env = {k: str(v) for k, v in (_table(marker, "guest_facts") or {"INIT": release.get("init", "")}).items()}
    return exports.ExportJob(
        root=dest / "rootfs",
        out_dir=out_dir,
        name=dest.name,
        distro=str(release.get("distro") or marker.get("distro", "")),
        suite=str(release.get("series", "")),
        version=str(release.get("version", "")),
        arch=str(settings.get("arch", "")),
        variant=str(settings.get("variant", "minbase")),
        hostname=str(settings.get("hostname", dest.name)),
        epoch=source_date_epoch(_built_at(marker)),
        dest_rootfs=dest / "rootfs",
        hook_env=hook_env,
        render=Templates([Path(p) for p in settings.get("templates") or []]).render,
        **choices,
    )
