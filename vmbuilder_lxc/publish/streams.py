"""The documents of a simplestreams image tree, as data: the products file, the index that names it,
and LXC's download index (meta/1.0/index-system).

What the clients read (checked against the LXD, Incus and LXC sources; docs/publish.md):
- LXD and Incus fetch streams/v1/index.json, take each entry of datatype image-downloads with a
  non-empty products list, and load the products file at its path;
- a product needs a known `arch`, `versions` and `items`; `aliases` is one comma-separated string
  and goes to the newest version by string order; a version key not starting with YYYYMMDD is
  dropped silently;
- LXD reads only the metadata ftypes lxd.tar.xz / lxd_combined.tar.gz, Incus only incus.tar.xz /
  incus_combined.tar.gz, so both are written, pointing at the same file;
- the fingerprint is the metadata item's combined_squashfs_sha256 / combined_rootxz_sha256 (the
  sha256 of the metadata bytes followed by the rootfs bytes), or a unified tarball's own sha256;
- LXD 5.0 reads lxd_requirements, Incus requirements: both carry the same map;
- lxc-create -t download takes the first `dist;release;arch;variant;serial;path` line that matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

INDEX_PATH = "streams/v1/index.json"
PRODUCTS_PATH = "streams/v1/images.json"
LXC_INDEXES = ("meta/1.0/index-system", "meta/1.0/index-system.7")
DATATYPE = "image-downloads"
UNIFIED_SUFFIX = ":unified"

# Names of the files of one version, in its directory images/DISTRO/RELEASE/ARCH/VARIANT/SERIAL/.
META = "lxd.tar.xz"  # LXD/Incus metadata (metadata.yaml + templates), really xz
SQUASHFS = "rootfs.squashfs"
LXC_META = "meta.tar.xz"  # lxc-download's names, fixed
LXC_ROOTFS = "rootfs.tar.xz"
UNIFIED = "unified.tar"  # + the compression's suffix

META_FTYPES = ("lxd.tar.xz", "incus.tar.xz")
UNIFIED_FTYPES = ("lxd_combined.tar.gz", "incus_combined.tar.gz")
LXC_FTYPES = {LXC_META: "lxc.meta.tar.xz", LXC_ROOTFS: "lxc.rootfs.tar.xz"}
SERIAL_RE = re.compile(r"^[0-9]{8}_[0-9]{2}:[0-9]{2}$")
# Names that go into paths, aliases and the lxc index (';'-separated, one line each).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,62}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}$")


@dataclass(frozen=True)
class FileInfo:
    size: int
    sha256: str


@dataclass(frozen=True)
class Image:
    """One published build: where it goes and what it is called."""

    distro: str
    release: str
    arch: str
    variant: str
    serial: str
    os_title: str = ""
    release_title: str = ""
    aliases: tuple[str, ...] = ()  # --alias, besides DISTRO/RELEASE and DISTRO/RELEASE/VARIANT
    requirements: dict[str, str] = field(default_factory=dict)

    @property
    def product(self) -> str:
        return f"{self.distro}:{self.release}:{self.arch}:{self.variant}"

    @property
    def directory(self) -> str:
        return f"images/{self.distro}/{self.release}/{self.arch}/{self.variant}/{self.serial}"

    def default_aliases(self) -> list[str]:
        return [f"{self.distro}/{self.release}", f"{self.distro}/{self.release}/{self.variant}"]


def check_name(kind: str, value: str) -> str | None:
    """Why `value` cannot be a path component / index field, or None."""
    return None if NAME_RE.match(value) else f"{kind} {value!r} is not a lower-case name ([a-z0-9.+_-])"


def check_alias(value: str) -> str | None:
    if not ALIAS_RE.match(value) or "//" in value or value.endswith("/"):
        return f"alias {value!r} is not a name made of letters, digits and . _ / + -"
    return None


def empty_products() -> dict[str, Any]:
    return {"content_id": "images", "datatype": DATATYPE, "format": "products:1.0", "products": {}}


def index_doc(products: dict[str, Any]) -> dict[str, Any]:
    keys = sorted(products.get("products", {}))
    entry = {"datatype": DATATYPE, "format": "products:1.0", "path": PRODUCTS_PATH, "products": keys}
    return {"format": "index:1.0", "index": {"images": entry}}


def split_aliases(text: object) -> list[str]:
    return [a for a in str(text or "").split(",") if a]


def _item(ftype: str, path: str, info: FileInfo, **extra: str) -> dict[str, Any]:
    return {"ftype": ftype, "path": path, "sha256": info.sha256, "size": info.size, **extra}


def version_items(image: Image, files: dict[str, FileInfo], combined: dict[str, str],
                  root_tar: bool) -> dict[str, Any]:  # fmt: skip
    """The items of the split image's version. `files` by name in the version's directory;
    `combined` holds combined_squashfs_sha256 (and combined_rootxz_sha256 with root_tar)."""
    d = image.directory
    meta_extra = {"combined_squashfs_sha256": combined["combined_squashfs_sha256"]}
    if root_tar:
        meta_extra["combined_rootxz_sha256"] = combined["combined_rootxz_sha256"]
        meta_extra["combined_sha256"] = combined["combined_rootxz_sha256"]  # older LXD's name for it
    items = {ftype: _item(ftype, f"{d}/{META}", files[META], **meta_extra) for ftype in META_FTYPES}
    items["root.squashfs"] = _item("squashfs", f"{d}/{SQUASHFS}", files[SQUASHFS])
    if root_tar:
        items["root.tar.xz"] = _item("root.tar.xz", f"{d}/{LXC_ROOTFS}", files[LXC_ROOTFS])
    for name, ftype in LXC_FTYPES.items():
        items[ftype] = _item(ftype, f"{d}/{name}", files[name])
    return items


def unified_items(image: Image, name: str, info: FileInfo) -> dict[str, Any]:
    return {ftype: _item(ftype, f"{image.directory}/{name}", info) for ftype in UNIFIED_FTYPES}


def _product(image: Image, aliases: list[str], old: dict[str, Any] | None) -> dict[str, Any]:
    product = dict(old or {})
    kept = split_aliases(product.get("aliases"))
    merged = list(dict.fromkeys([*aliases, *kept]))
    product.update({
        "aliases": ",".join(merged),
        "arch": image.arch,
        "os": image.os_title or image.distro.capitalize(),
        "release": image.release,
        "release_title": image.release_title or image.release,
        "variant": image.variant,
        "lxd_requirements": dict(image.requirements),
        "requirements": dict(image.requirements),
    })  # fmt: skip
    product.setdefault("versions", {})
    return product


def _take_aliases(doc: dict[str, Any], arch: str, aliases: list[str], keep: str) -> None:
    """An alias names one product per architecture: moving it here takes it from the others."""
    for key, product in doc["products"].items():
        if key == keep or product.get("arch") != arch:
            continue
        left = [a for a in split_aliases(product.get("aliases")) if a not in aliases]
        product["aliases"] = ",".join(left)


def add_version(doc: dict[str, Any], image: Image, items: dict[str, Any], *, unified: bool = False) -> str:
    """Put `items` into `doc` as version image.serial of the image's product (or its unified
    product); returns the product key. The product's aliases move to this version if it is the newest."""
    key = image.product + (UNIFIED_SUFFIX if unified else "")
    suffix = "/unified" if unified else ""
    aliases = [a + suffix for a in image.default_aliases()] + [a + suffix for a in image.aliases]
    doc.setdefault("products", {})
    _take_aliases(doc, image.arch, aliases, key)
    product = _product(image, aliases, doc["products"].get(key))
    product["versions"][image.serial] = {"items": items}
    doc["products"][key] = product
    return key


def newest(product: dict[str, Any]) -> str | None:
    versions = sorted(product.get("versions") or {})
    return versions[-1] if versions else None


def lxc_index(doc: dict[str, Any]) -> str:
    """index-system: one line per product, its newest version that has LXC files (lxc-download
    takes the first matching line)."""
    lines = []
    for key, product in sorted(doc.get("products", {}).items()):
        if key.endswith(UNIFIED_SUFFIX):
            continue
        for serial in sorted(product.get("versions") or {}, reverse=True):
            items = product["versions"][serial].get("items") or {}
            meta = items.get(LXC_FTYPES[LXC_META])
            if meta and LXC_FTYPES[LXC_ROOTFS] in items:
                distro, release, arch, variant = key.split(":")[:4]
                directory = meta["path"].rsplit("/", 1)[0]
                lines.append(f"{distro};{release};{arch};{variant};{serial};/{directory}/\n")
                break
    return "".join(lines)


def referenced(doc: dict[str, Any]) -> set[str]:
    """Every path the products file names."""
    return {
        str(item["path"])
        for product in doc.get("products", {}).values()
        for version in (product.get("versions") or {}).values()
        for item in (version.get("items") or {}).values()
        if isinstance(item, dict) and "path" in item
    }


def drop_old_versions(doc: dict[str, Any], retention: int) -> list[tuple[str, str]]:
    """Keep the newest `retention` versions of each product; returns the (product, version) removed."""
    removed = []
    for key, product in sorted(doc.get("products", {}).items()):
        versions = sorted(product.get("versions") or {})
        for serial in versions[: max(0, len(versions) - retention)]:
            del product["versions"][serial]
            removed.append((key, serial))
    return removed
