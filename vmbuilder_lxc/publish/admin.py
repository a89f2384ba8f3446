"""`publish --list`, `--prune --retention N` and `--verify` of a tree."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from . import streams
from .images import combined_sha256, file_info, is_xz
from .tree import TMP_SUFFIX, Tree, fsync_dir

META_ITEM = "lxd.tar.xz"


def _items(doc: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for key, product in sorted(doc.get("products", {}).items()):
        for serial, version in sorted((product.get("versions") or {}).items()):
            for name, item in sorted((version.get("items") or {}).items()):
                found.append((key, serial, name, item))
    return found


def list_tree(tree: Tree) -> tuple[dict[str, Any], list[str]]:
    doc = tree.load()
    products: dict[str, Any] = {}
    lines: list[str] = []
    for key, product in sorted(doc.get("products", {}).items()):
        versions = sorted(product.get("versions") or {})
        aliases = streams.split_aliases(product.get("aliases"))
        newest = streams.newest(product)
        listed: dict[str, Any] = {}
        lines.append(f"{key}  aliases: {', '.join(aliases) or '-'}")
        for serial in versions:
            items = product["versions"][serial].get("items") or {}
            size = sum(int(i.get("size", 0)) for i in items.values() if isinstance(i, dict))
            meta = items.get(META_ITEM) or items.get("lxd_combined.tar.gz") or {}
            fingerprint = meta.get("combined_squashfs_sha256") or meta.get("sha256") or ""
            listed[serial] = {"fingerprint": fingerprint, "size": size}
            lines.append(f"  {serial}  {fingerprint[:12]}  {size / 1048576:.1f} MiB"
                         + ("  (aliases)" if serial == newest else ""))  # fmt: skip
        products[key] = {"aliases": aliases, "newest": newest, "versions": listed}
    if not products:
        lines.append(f"{tree.root}: no images")
    return {"tree": str(tree.root), "products": products}, lines


def _safe(tree: Tree, rel: str) -> Path | None:
    """The file an item's path names, if it stays inside the tree's images/ without symlinks."""
    parts = PurePosixPath(rel).parts
    if not parts or parts[0] != "images" or ".." in parts or rel.startswith("/"):
        return None
    path = tree.root.joinpath(*parts)
    for parent in (path, *path.relative_to(tree.root).parents):
        if (tree.root / parent).is_symlink():
            return None
    return path


def verify(tree: Tree) -> tuple[dict[str, Any], list[str], bool]:
    """Every item's size and sha256, every combined hash, the metadata's xz, the index and LXC's
    index against the files. A lagging document an interrupted publish left (index.json or LXC's
    index naming an older, still intact state) is a warning: clients still get a consistent tree."""
    doc = tree.load()
    problems: list[str] = []
    warnings: list[str] = []
    infos: dict[str, streams.FileInfo | None] = {}
    for key, serial, name, item in _items(doc):
        where = f"{key} {serial} {name}"
        if not serial[:8].isdigit():
            problems.append(f"{where}: version key does not start with YYYYMMDD (clients drop it)")
        path = _safe(tree, str(item.get("path", "")))
        if path is None:
            problems.append(f"{where}: path {item.get('path')!r} is not a file under images/")
            continue
        rel = str(item["path"])
        if rel not in infos:
            infos[rel] = file_info(path) if path.is_file() else None
        info = infos[rel]
        if info is None:
            problems.append(f"{where}: {rel} is missing")
            continue
        if info.size != item.get("size"):
            problems.append(f"{where}: {rel} has size {info.size}, the products file says {item.get('size')}")
        if info.sha256 != item.get("sha256"):
            problems.append(f"{where}: {rel} has sha256 {info.sha256}, the products file says {item.get('sha256')}")
        if str(item.get("ftype", "")).endswith(".tar.xz") and not is_xz(path):
            problems.append(f"{where}: {rel} is not xz, as its ftype {item.get('ftype')} says")
    for key, serial, name, item in _items(doc):
        if name not in streams.META_FTYPES:
            continue
        items = doc["products"][key]["versions"][serial]["items"]
        for field, root_item in (("combined_squashfs_sha256", "root.squashfs"),
                                 ("combined_rootxz_sha256", "root.tar.xz")):  # fmt: skip
            if field not in item:
                continue
            meta, root = _safe(tree, str(item.get("path", ""))), _safe(tree, str(items.get(root_item, {}).get("path")))
            if meta is None or root is None or not meta.is_file() or not root.is_file():
                problems.append(f"{key} {serial} {name}: {field} names a missing file")
            elif combined_sha256(meta, root) != item[field]:
                problems.append(f"{key} {serial} {name}: {field} does not match {item['path']} + {root_item}")
    _check_documents(tree, doc, problems, warnings)
    summary = {"tree": str(tree.root), "ok": not problems, "problems": problems, "warnings": warnings,
               "files": len(infos)}  # fmt: skip
    lines = [f"BAD: {p}" for p in problems] + [f"warning: {w}" for w in warnings]
    lines.append(f"{tree.root}: {len(infos)} files checked, " + (f"{len(problems)} problems" if problems else "ok"))
    return summary, lines, not problems


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _check_documents(tree: Tree, doc: dict[str, Any], problems: list[str], warnings: list[str]) -> None:
    index_text = _read(tree.path(streams.INDEX_PATH))
    try:
        index = json.loads(index_text) if index_text is not None else None
    except ValueError:
        index = None
    entry = (index or {}).get("index", {}).get("images") if isinstance(index, dict) else None
    if (
        not isinstance(entry, dict)
        or entry.get("datatype") != streams.DATATYPE
        or entry.get("path") != streams.PRODUCTS_PATH
    ):
        problems.append(f"{streams.INDEX_PATH} does not name {streams.PRODUCTS_PATH} as image-downloads")
    elif set(entry.get("products") or []) != set(doc.get("products", {})):
        warnings.append(f"{streams.INDEX_PATH} lists other products than {streams.PRODUCTS_PATH} "
                        "(an interrupted publish; --prune rewrites it)")  # fmt: skip
    wanted = streams.lxc_index(doc)
    for rel in streams.LXC_INDEXES:
        text = _read(tree.path(rel))
        if text is None:
            problems.append(f"{rel} is missing")
            continue
        if text != wanted:
            warnings.append(f"{rel} differs from what the products file gives (an interrupted publish; "
                            "--prune rewrites it)")  # fmt: skip
        for number, line in enumerate(text.splitlines(), 1):
            _check_lxc_line(tree, doc, rel, number, line, problems)


def _check_lxc_line(tree: Tree, doc: dict[str, Any], rel: str, number: int, line: str, problems: list[str]) -> None:
    fields = line.split(";")
    if len(fields) != 6:
        problems.append(f"{rel} line {number}: not dist;release;arch;variant;serial;path")
        return
    key = ":".join(fields[:4])
    items = (doc.get("products", {}).get(key, {}).get("versions", {}).get(fields[4]) or {}).get("items") or {}
    for name, ftype in streams.LXC_FTYPES.items():
        item = items.get(ftype)
        path = f"{fields[5].strip('/')}/{name}"
        if not item or item.get("path") != path:
            problems.append(f"{rel} line {number}: {path} is not a published file of {key} {fields[4]}")
        elif not (tree.root / path).is_file():
            problems.append(f"{rel} line {number}: {path} is missing")


def prune(tree: Tree, retention: int) -> tuple[dict[str, Any], list[str]]:
    """Keep the newest `retention` versions of each product; then remove every file under images/
    that no version names, staging leftovers of dead publishers and temp files."""
    with tree.locked():
        doc = tree.load()
        dropped = streams.drop_old_versions(doc, retention)
        tree.write_documents(doc)  # also repairs documents an interrupted publish left behind
        keep = streams.referenced(doc)
        removed = _remove_unreferenced(tree, keep)
        for stale in tree.stale_staging():
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(str(stale.relative_to(tree.root)))
        for folder in (tree.path("streams/v1"), tree.path("meta/1.0")):
            for tmp in folder.glob(f".*{TMP_SUFFIX}") if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)
                removed.append(str(tmp.relative_to(tree.root)))
    lines = [f"dropped {key} {serial}" for key, serial in dropped] + [f"removed {rel}" for rel in removed]
    lines.append(f"{tree.root}: kept the newest {retention} version(s) of each product")
    summary = {"tree": str(tree.root), "retention": retention,
               "dropped": [{"product": k, "version": s} for k, s in dropped], "removed": removed}  # fmt: skip
    return summary, lines


def _remove_unreferenced(tree: Tree, keep: set[str]) -> list[str]:
    images = tree.path("images")
    removed: list[str] = []
    if not images.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(images, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            rel = str((here / name).relative_to(tree.root))
            if rel not in keep:
                (here / name).unlink()
                removed.append(rel)
        for name in dirnames:
            sub = here / name
            if sub.is_symlink():
                sub.unlink()
            elif not any(sub.iterdir()):
                sub.rmdir()
        fsync_dir(here)
    return removed
