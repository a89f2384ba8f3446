"""The `publish` plugin: add builds to a static image tree that LXD, Incus and `lxc-create -t
download` fetch from (simplestreams and LXC's download index; docs/publish.md).

`--publish TREE` (with `--alias`) publishes a build at its end; `vmbuilder lxc publish TREE DEST...`
publishes finished builds, and `--list`, `--prune --retention N` and `--verify` look after a tree.
The tree itself is vmbuilder_lxc/publish/.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

from vmbuilder_lxc import backing
from vmbuilder_lxc import validators as v
from vmbuilder_lxc.cliparse import CommandParser
from vmbuilder_lxc.log import UserError, die, setup_logging
from vmbuilder_lxc.options import each
from vmbuilder_lxc.places import check_writable_dir
from vmbuilder_lxc.plugin import Plugin
from vmbuilder_lxc.publish import admin, images, publisher, streams
from vmbuilder_lxc.publish.images import ExportJob, zero_based
from vmbuilder_lxc.publish.tree import Tree
from vmbuilder_lxc.settings import Needs, Setting

from .export import Export, _marker, _refuse_running, job_from_marker, keep_set

GROUP = "Publish options"
PUBLISH_HELP = ("add the build to the image tree TREE (simplestreams for LXD/Incus, and lxc-create's download "
                "index); serve TREE over HTTPS (docs/publish.md)")  # fmt: skip
XZ_LEVEL_HELP = "publish: xz level (0-9) of LXC's rootfs.tar.xz and meta.tar.xz; unset, xz's own (6)"
ALIAS_HELP = "publish: an extra image alias (besides DISTRO/RELEASE and DISTRO/RELEASE/VARIANT); repeatable"
DESCRIPTION = (
    "Add finished builds (DEST directories) to a static image tree that LXD, Incus and lxc-create -t download "
    "fetch from over HTTPS; or, with --list, --prune or --verify, look after the tree."
)
PUBLISHING = Needs(lambda s: bool(s.get_str("publish")), "without --publish")
TREE_HINT = "give --publish a directory on a writable disk"


def _alias(value: str) -> str:
    problem = streams.check_alias(value)
    if problem:
        raise ValueError(problem)
    return value


def _tree(value: str) -> Path:
    path = Path(value).expanduser().absolute()
    check_writable_dir(path, "the image tree", "give a directory on a writable disk")
    return path


class Publish(Plugin):
    name: ClassVar[str] = "publish"
    description: ClassVar[str] = "image trees for LXD, Incus and lxc-create -t download (vmbuilder lxc publish)"
    priority: ClassVar[int] = 95  # after the export plugin, whose job description it reuses
    hypervisors: ClassVar[tuple[str, ...] | None] = ("lxc",)
    commands: ClassVar[dict[str, str]] = {"publish": "publish_command"}

    def register_options(self) -> Sequence[Setting]:
        return [
            Setting("publish", PUBLISH_HELP, metavar="TREE", validate=v.writable_dir("--publish", TREE_HINT),
                    group=GROUP),
            Setting("alias", ALIAS_HELP, "list", [], metavar="ALIAS", validate=each(_alias), needs=(PUBLISHING,),
                    group=GROUP),
            Setting("publish-xz-level", XZ_LEVEL_HELP, "int", metavar="N", validate=v.int_range(0, 9),
                    needs=(PUBLISHING,), group=GROUP),
        ]  # fmt: skip

    def preflight_check(self) -> None:
        tree = self.settings.get_str("publish")
        if not tree:
            return
        _tree(tree)
        if os.geteuid() != 0:
            die("publishing needs root (the rootfs holds root-only files)", "run it as root, e.g. with sudo")
        job = self._export().job(Path("/nonexistent"))
        image = publisher.image_for(job, self._options())
        publisher.check_image(image)
        images.check_tools(None)

    def _export(self) -> Export:
        for plugin in self.context.plugins:
            if plugin.name == "export":
                return cast(Export, plugin)
        raise UserError("--publish needs the export plugin, which is not loaded", "reinstall vmbuilder-lxc")

    def _options(self) -> publisher.Options:
        s = self.settings
        return publisher.Options(aliases=tuple(s.get_list("alias")), xz_level=s.get_int("publish-xz-level"),
                               keep=keep_set(s.get_bool("keep-apt-lists")))  # fmt: skip

    def finalize(self) -> None:
        tree = self.settings.get_str("publish")
        if not tree:
            return
        ctx = self.context
        job = self._export().job(ctx.rootfs)
        ctx.summary["published"] = publisher.publish(_tree(tree), ctx.rootfs, job, self._options())

    def next_steps(self) -> list[str]:
        found = self.context.summary.get("published")
        if not found:
            return []
        return [f"published {', '.join(found['products'])} {found['version']} in {found['tree']}",
                "  serve it over HTTPS and add it as a remote: docs/publish.md"]  # fmt: skip

    # -- `vmbuilder lxc publish TREE DEST...` ----------------------------------------------------

    @staticmethod
    def publish_parser() -> CommandParser:
        """The parser of `vmbuilder lxc publish` (built apart so that the man page can list it)."""
        parser = CommandParser("vmbuilder lxc publish", DESCRIPTION)
        parser.add_argument("tree", metavar="TREE", help="the image tree (the directory a web server serves)")
        parser.add_argument("dest", metavar="DEST", nargs="*", help="directories built by vmbuilder, to publish")
        parser.add_argument("--alias", action="append", default=[], metavar="ALIAS", help=ALIAS_HELP)
        parser.add_argument(
            "--image-variant",
            default="default",
            metavar="NAME",
            help="the product's variant name (default: %(default)s)",
        )
        parser.add_argument("--unified", action="store_true",
                            help="also publish the unified image (zstd) as its own product, DISTRO:RELEASE:ARCH:"
                                 "VARIANT:unified, aliases .../unified")  # fmt: skip
        parser.add_argument(
            "--root-tar", action="store_true", help="also offer LXC's rootfs.tar.xz to LXD/Incus as a root.tar.xz image"
        )
        parser.add_argument(
            "--compression-level",
            type=int,
            metavar="N",
            help="xz level (0-9) of LXC's rootfs.tar.xz and meta.tar.xz; unset, xz's own (6)",
        )
        parser.add_argument("--keep-apt-lists", action="store_true", help="keep the apt package lists in the images")
        parser.add_argument("--list", action="store_true", help="list the products and versions of TREE")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="keep the newest --retention versions of each product; remove files nothing names",
        )
        parser.add_argument("--retention", type=int, metavar="N", help="--prune: versions to keep per product")
        parser.add_argument(
            "--verify",
            action="store_true",
            help="check every size, sha256, combined hash and LXC's index (exit 1 on a mismatch)",
        )
        parser.add_output_options("print a JSON summary")
        return parser

    @staticmethod
    def publish_command(argv: list[str]) -> int:
        """Publish builds into TREE, or list, prune or verify TREE."""
        parser = Publish.publish_parser()
        # Options may come between TREE and the DESTs (parse_args would take TREE alone as the positionals).
        args = parser.parse_intermixed_args(argv)
        setup_logging(2 if args.debug else 1 if args.verbose else 0)
        summary, lines, ok = run_command(args)
        if args.json:
            print(json.dumps(summary, indent=2, sort_keys=True))
        elif lines:
            print("\n".join(lines))
        return 0 if ok else 1


def run_command(args: argparse.Namespace) -> tuple[dict[str, Any], list[str], bool]:
    modes = [m for m in ("list", "prune", "verify") if getattr(args, m)]
    if len(modes) > 1:
        die(f"--{modes[0]} and --{modes[1]} are two actions", "give one of --list, --prune, --verify")
    if args.retention is not None and not args.prune:
        die("--retention applies to --prune only", "add --prune, or drop --retention")
    tree = Path(args.tree).expanduser().absolute()
    if modes:
        if args.dest:
            die(f"--{modes[0]} takes no DEST", f"publish and --{modes[0]} in two runs")
        if not Tree(tree).exists():
            die(f"{tree} is not an image tree (no {streams.INDEX_PATH})", "give the TREE you publish into")
        return _admin(modes[0], Tree(tree), args)
    if not args.dest:
        die("nothing to publish", "give one or more DEST directories built by vmbuilder, or --list/--prune/--verify")
    return _publish_all(tree, args)


def _admin(mode: str, tree: Tree, args: argparse.Namespace) -> tuple[dict[str, Any], list[str], bool]:
    if mode == "list":
        summary, lines = admin.list_tree(tree)
        return summary, lines, True
    if mode == "verify":
        return admin.verify(tree)
    if args.retention is None:
        die("--prune needs --retention N", "give the number of versions to keep per product, e.g. --retention 3")
    if not 1 <= args.retention <= 10000:
        die(f"--retention {args.retention} is not a number of versions", "give 1 or more")
    summary, lines = admin.prune(tree, args.retention)
    return summary, lines, True


def _publish_all(tree: Path, args: argparse.Namespace) -> tuple[dict[str, Any], list[str], bool]:
    _tree(str(tree))
    for alias in args.alias:
        problem = streams.check_alias(alias)
        if problem:
            die(problem, "give --alias a name like ubuntu/noble/web")
    problem = streams.check_name("variant", args.image_variant)
    if problem:
        die(problem, "give --image-variant a lower-case name")
    if args.compression_level is not None and not 0 <= args.compression_level <= 9:
        die(f"--compression-level {args.compression_level} is not an xz level", "give 0 to 9")
    if os.geteuid() != 0:
        die("publishing needs root (the rootfs holds root-only files)", "run it as root, e.g. with sudo")
    options = publisher.Options(aliases=tuple(args.alias), variant=args.image_variant, root_tar=args.root_tar,
                              unified="zstd" if args.unified else None, xz_level=args.compression_level,
                              keep=keep_set(args.keep_apt_lists))  # fmt: skip
    dests = [Path(d).expanduser().absolute() for d in args.dest]
    jobs = [(dest, _marker(dest)) for dest in dests]  # every DEST checked before the first is published
    for dest, marker in jobs:
        publisher.check_image(publisher.image_for(existing_job(dest, marker, tree), options))
    results = []
    for dest, marker in jobs:
        _refuse_running(dest)
        # --backing overlay: DEST/rootfs is empty until the overlay is mounted; --idmap: images are 0-based
        with backing.merged_view(dest), zero_based(dest / "rootfs", marker.get("idmap")) as rootfs:
            results.append(publisher.publish(tree, rootfs, existing_job(dest, marker, tree), options))
    lines = [f"published {', '.join(r['products'])} {r['version']} ({r['fingerprint'][:12]})" for r in results]
    return {"status": "ok", "tree": str(tree), "published": results}, lines, True


def existing_job(dest: Path, marker: dict[str, Any], tree: Path) -> ExportJob:
    """A finished build as the export code takes it; a tree's LXC files and metadata are xz."""
    return job_from_marker(dest, marker, tree, compression="xz")
