"""Add one finished build to a tree: check everything first, write the files in staging (slow,
outside the lock, so publishers of different builds work at once), then commit under the lock."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..log import LOG, UserError, die, note
from . import streams
from .images import Built, ExportJob, build_files, check_tools
from .tree import Tree


@dataclass(frozen=True)
class Options:
    aliases: tuple[str, ...] = ()
    variant: str = "default"
    unified: str | None = None  # the unified image's compression, or None for none
    root_tar: bool = False
    xz_level: int | None = None
    keep: frozenset[str] = field(default_factory=frozenset)


def image_for(job: ExportJob, options: Options) -> streams.Image:
    return streams.Image(
        distro=job.distro.lower(),
        release=job.suite,
        arch=job.arch,
        variant=options.variant,
        serial=job.serial,
        os_title=job.distro.capitalize(),
        release_title=job.version or job.suite,
        aliases=options.aliases,
    )


def check_image(image: streams.Image) -> None:
    """Every name that becomes a path component, an alias or an lxc index field, refused before work."""
    hint = "give the build's --suite/--arch as lower-case names"
    for kind, value in (("distro", image.distro), ("release", image.release), ("architecture", image.arch),
                        ("variant", image.variant)):  # fmt: skip
        problem = streams.check_name(kind, value)
        if problem:
            raise UserError(problem, hint if kind != "variant" else "give --image-variant a lower-case name")
    for alias in image.aliases:
        problem = streams.check_alias(alias)
        if problem:
            raise UserError(problem, "give --alias a name like ubuntu/noble/web")
    if not streams.SERIAL_RE.match(image.serial):
        raise UserError(f"version {image.serial!r} is not YYYYMMDD_HH:MM", "set SOURCE_DATE_EPOCH to a Unix time")


def check_free(doc: dict[str, Any], image: streams.Image) -> None:
    product = doc.get("products", {}).get(image.product) or {}
    if image.serial in (product.get("versions") or {}):
        die(f"{image.product} already has version {image.serial} in the tree",
            "publish another build, or set SOURCE_DATE_EPOCH to give this one another minute")  # fmt: skip


def commit(tree: Tree, staged_dir: Path, image: streams.Image, built: Built, root_tar: bool) -> list[str]:
    """Under the lock: the version directory, then the documents naming it. Returns the products changed."""
    with tree.locked():
        doc = tree.load()
        check_free(doc, image)
        tree.place(staged_dir, image.directory)
        keys = [streams.add_version(doc, image, streams.version_items(image, built.files, built.combined, root_tar))]
        if built.unified:
            items = streams.unified_items(image, built.unified, built.files[built.unified])
            keys.append(streams.add_version(doc, image, items, unified=True))
        tree.write_documents(doc)
    return keys


def publish(tree_dir: Path, rootfs: Path, job: ExportJob, options: Options) -> dict[str, Any]:
    """Publish the build whose (unstripped) rootfs is `rootfs`; returns the summary."""
    image = image_for(job, options)
    check_image(image)
    check_tools(options.unified)
    tree = Tree(tree_dir)
    check_free(tree.load(), image)
    for stale in tree.stale_staging():  # an interrupted publisher's
        shutil.rmtree(stale, ignore_errors=True)
    staged_dir = tree.new_staging()
    try:
        built = build_files(rootfs, job, staged_dir, keep=options.keep, xz_level=options.xz_level,
                            unified_compression=options.unified, root_tar=options.root_tar)  # fmt: skip
        keys = commit(tree, staged_dir, image, built, options.root_tar)
    finally:
        if staged_dir.exists():
            shutil.rmtree(staged_dir, ignore_errors=True)
    note("published %s version %s in %s", ", ".join(keys), image.serial, tree_dir)
    LOG.debug("published files: %s", ", ".join(sorted(built.files)))
    return {
        "tree": str(tree_dir),
        "products": keys,
        "version": image.serial,
        "directory": image.directory,
        "aliases": image.default_aliases() + list(image.aliases),
        "fingerprint": built.combined["combined_squashfs_sha256"],
        "files": {name: {"size": f.size, "sha256": f.sha256} for name, f in sorted(built.files.items())},
    }
