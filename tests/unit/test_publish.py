"""The simplestreams/lxc-download tree: every field clients read, versions, aliases, prune, verify
and the commit's fault seams. The image files are small stand-ins (the metadata really xz), so
these run without root; tests/integration/test_publish.py serves real builds to LXD and LXC."""

from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc.exports import ExportJob
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.publish import admin, publisher, streams, tree
from vmbuilder_lxc.publish.images import Built, combined_sha256, file_info
from vmbuilder_lxc.publish.tree import Tree

SERIAL_A, SERIAL_B = "20261204_12:00", "20261205_08:30"


def image(serial: str = SERIAL_A, release: str = "noble", arch: str = "amd64", aliases: tuple[str, ...] = (),
          distro: str = "ubuntu") -> streams.Image:  # fmt: skip
    return streams.Image(distro, release, arch, "default", serial, distro.capitalize(), "24.04", aliases)


def put(t: Tree, img: streams.Image, *, tag: bytes = b"", root_tar: bool = False, unified: bool = False) -> Built:
    """Publish stand-in files for `img` through the real commit."""
    staged = t.new_staging()
    blobs = {
        streams.META: lzma.compress(b"metadata.yaml " + tag + img.serial.encode()),
        streams.SQUASHFS: b"hsqs" + tag + img.serial.encode() * 50,
        streams.LXC_META: lzma.compress(b"config " + tag),
        streams.LXC_ROOTFS: lzma.compress(b"rootfs " + tag + img.serial.encode()),
    }
    if unified:
        blobs["unified.tar.zst"] = b"\x28\xb5\x2f\xfd unified " + tag
    for name, data in blobs.items():
        (staged / name).write_bytes(data)
    combined = {"combined_squashfs_sha256": combined_sha256(staged / streams.META, staged / streams.SQUASHFS)}
    if root_tar:
        combined["combined_rootxz_sha256"] = combined_sha256(staged / streams.META, staged / streams.LXC_ROOTFS)
    built = Built({n: file_info(staged / n) for n in blobs}, combined, "unified.tar.zst" if unified else None)
    publisher.commit(t, staged, img, built, root_tar)
    return built


def doc(t: Tree) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(t.path(streams.PRODUCTS_PATH).read_text())
    return loaded


def ok(t: Tree) -> list[str]:
    summary, _lines, good = admin.verify(t)
    assert good == (not summary["problems"])
    problems: list[str] = summary["problems"]
    return problems


@pytest.fixture
def t(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "tree")


def test_every_field_clients_read(t: Tree) -> None:
    built = put(t, image(aliases=("web",)))
    index = json.loads(t.path(streams.INDEX_PATH).read_text())
    entry = index["index"]["images"]
    assert index["format"] == "index:1.0"
    assert entry == {"datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images.json",
                     "products": ["ubuntu:noble:amd64:default"]}  # fmt: skip
    products = doc(t)
    assert (products["datatype"], products["format"], products["content_id"]) == ("image-downloads", "products:1.0",
                                                                                  "images")  # fmt: skip
    product = products["products"]["ubuntu:noble:amd64:default"]
    assert product["aliases"] == "ubuntu/noble,ubuntu/noble/default,web"  # one comma-separated string
    assert (product["arch"], product["os"], product["release"], product["release_title"], product["variant"]) == (
        "amd64", "Ubuntu", "noble", "24.04", "default")  # fmt: skip
    assert product["lxd_requirements"] == product["requirements"] == {}
    items = product["versions"][SERIAL_A]["items"]
    d = f"images/ubuntu/noble/amd64/default/{SERIAL_A}"
    meta, incus = items["lxd.tar.xz"], items["incus.tar.xz"]
    assert meta["ftype"] == "lxd.tar.xz" and incus["ftype"] == "incus.tar.xz"
    assert meta["path"] == incus["path"] == f"{d}/lxd.tar.xz"  # one file for both clients
    assert meta["sha256"] == built.files[streams.META].sha256 and meta["size"] == built.files[streams.META].size
    combined = hashlib.sha256(t.path(meta["path"]).read_bytes() + t.path(f"{d}/rootfs.squashfs").read_bytes())
    assert meta["combined_squashfs_sha256"] == incus["combined_squashfs_sha256"] == combined.hexdigest()
    assert "combined_rootxz_sha256" not in meta and "root.tar.xz" not in items
    assert items["root.squashfs"] == {"ftype": "squashfs", "path": f"{d}/rootfs.squashfs",
                                      **_sized(t, f"{d}/rootfs.squashfs")}  # fmt: skip
    assert items["lxc.meta.tar.xz"]["path"] == f"{d}/meta.tar.xz"
    assert items["lxc.rootfs.tar.xz"]["path"] == f"{d}/rootfs.tar.xz"
    line = f"ubuntu;noble;amd64;default;{SERIAL_A};/{d}/\n"
    assert t.path("meta/1.0/index-system").read_text() == t.path("meta/1.0/index-system.7").read_text() == line
    assert ok(t) == []


def _sized(t: Tree, rel: str) -> dict[str, Any]:
    data = t.path(rel).read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_root_tar_and_unified_items(t: Tree) -> None:
    put(t, image(), root_tar=True, unified=True)
    products = doc(t)["products"]
    items = products["ubuntu:noble:amd64:default"]["versions"][SERIAL_A]["items"]
    d = f"images/ubuntu/noble/amd64/default/{SERIAL_A}"
    assert items["root.tar.xz"]["ftype"] == "root.tar.xz" and items["root.tar.xz"]["path"] == f"{d}/rootfs.tar.xz"
    combined = hashlib.sha256(t.path(f"{d}/lxd.tar.xz").read_bytes() + t.path(f"{d}/rootfs.tar.xz").read_bytes())
    assert items["lxd.tar.xz"]["combined_rootxz_sha256"] == combined.hexdigest()
    unified = products["ubuntu:noble:amd64:default:unified"]
    assert unified["aliases"] == "ubuntu/noble/unified,ubuntu/noble/default/unified"
    uitems = unified["versions"][SERIAL_A]["items"]
    assert {i["ftype"] for i in uitems.values()} == {"lxd_combined.tar.gz", "incus_combined.tar.gz"}
    assert {i["path"] for i in uitems.values()} == {f"{d}/unified.tar.zst"}
    # LXC's index names the split product only
    assert t.path("meta/1.0/index-system").read_text().count("\n") == 1
    assert ok(t) == []


def test_version_key_is_the_serial_of_the_epoch() -> None:
    job = ExportJob(root=Path("/x"), out_dir=Path("/x"), name="n", distro="ubuntu", suite="noble", version="24.04",
                    arch="amd64", variant="minbase", hostname="h", epoch=1733387400, compression="")  # fmt: skip
    img = publisher.image_for(job, publisher.Options(aliases=("a/b",)))
    assert img.serial == "20241205_08:30" and streams.SERIAL_RE.match(img.serial)
    assert (img.product, img.directory) == ("ubuntu:noble:amd64:default",
                                            "images/ubuntu/noble/amd64/default/20241205_08:30")  # fmt: skip
    assert (img.os_title, img.release_title, img.aliases) == ("Ubuntu", "24.04", ("a/b",))


def test_a_second_version_takes_the_aliases_and_the_lxc_index(t: Tree) -> None:
    put(t, image(SERIAL_A))
    put(t, image(SERIAL_B))
    product = doc(t)["products"]["ubuntu:noble:amd64:default"]
    assert sorted(product["versions"]) == [SERIAL_A, SERIAL_B]
    assert streams.newest(product) == SERIAL_B  # clients give the aliases to the newest key
    assert f";{SERIAL_B};" in t.path("meta/1.0/index-system").read_text()
    assert SERIAL_A not in t.path("meta/1.0/index-system").read_text()
    summary, lines = admin.list_tree(t)
    assert summary["products"]["ubuntu:noble:amd64:default"]["newest"] == SERIAL_B
    assert any("(aliases)" in line and SERIAL_B in line for line in lines)


def test_an_extra_alias_moves_between_products_of_one_arch(t: Tree) -> None:
    put(t, image(release="jammy", aliases=("lts",)))
    put(t, image(release="jammy", arch="arm64", aliases=("lts",)))
    put(t, image(release="noble", aliases=("lts",)))
    products = doc(t)["products"]
    assert products["ubuntu:jammy:amd64:default"]["aliases"] == "ubuntu/jammy,ubuntu/jammy/default"
    assert products["ubuntu:jammy:arm64:default"]["aliases"].endswith(",lts")  # another arch keeps it
    assert products["ubuntu:noble:amd64:default"]["aliases"].endswith(",lts")
    put(t, image(SERIAL_B, release="noble"))  # a later version without --alias keeps the product's aliases
    assert products["ubuntu:noble:amd64:default"]["aliases"] == doc(t)["products"]["ubuntu:noble:amd64:default"][
        "aliases"]  # fmt: skip


def test_debian_beside_ubuntu(t: Tree) -> None:
    put(t, image())
    put(t, streams.Image("debian", "bookworm", "amd64", "default", SERIAL_A, "Debian", "12"))
    index = json.loads(t.path(streams.INDEX_PATH).read_text())
    assert index["index"]["images"]["products"] == ["debian:bookworm:amd64:default", "ubuntu:noble:amd64:default"]
    lines = t.path("meta/1.0/index-system").read_text().splitlines()
    assert [ln.split(";")[0] for ln in lines] == ["debian", "ubuntu"]
    assert ok(t) == []


def test_a_taken_version_is_refused(t: Tree) -> None:
    put(t, image())
    with pytest.raises(UserError, match="already has version"):
        put(t, image())
    assert ok(t) == []


@pytest.mark.parametrize(("field", "value", "match"), [
    ("release", "No ble", "lower-case"), ("arch", "../x", "lower-case"), ("variant", "a;b", "lower-case"),
    ("aliases", ("a,b",), "alias"), ("aliases", ("x//y",), "alias"), ("serial", "2026-12-04", "YYYYMMDD"),
])  # fmt: skip
def test_names_that_reach_paths_or_indexes_are_checked(field: str, value: Any, match: str) -> None:
    import dataclasses

    with pytest.raises(UserError, match=match):
        publisher.check_image(dataclasses.replace(image(), **{field: value}))


def test_prune_keeps_the_newest_and_removes_what_nothing_names(t: Tree) -> None:
    put(t, image(SERIAL_A))
    put(t, image(SERIAL_B))
    put(t, image(SERIAL_A, release="jammy"))
    orphan = t.path("images/ubuntu/noble/amd64/default/20261201_00:00")
    orphan.mkdir(parents=True)
    (orphan / "rootfs.squashfs").write_bytes(b"left by a killed publish")
    dead = t.root / tree.STAGING / "999999999.dead"
    dead.mkdir()
    (t.path("streams/v1") / f".images.json.1{tree.TMP_SUFFIX}").write_text("{")
    summary, _lines = admin.prune(t, 1)
    assert summary["dropped"] == [{"product": "ubuntu:noble:amd64:default", "version": SERIAL_A}]
    assert not t.path(f"images/ubuntu/noble/amd64/default/{SERIAL_A}").exists()
    assert not orphan.exists() and not dead.exists()
    assert not list(t.path("streams/v1").glob(".*"))
    assert t.path(f"images/ubuntu/noble/amd64/default/{SERIAL_B}/rootfs.squashfs").is_file()
    assert t.path(f"images/ubuntu/jammy/amd64/default/{SERIAL_A}/rootfs.squashfs").is_file()  # its product's newest
    assert sorted(doc(t)["products"]["ubuntu:noble:amd64:default"]["versions"]) == [SERIAL_B]
    assert ok(t) == []


def test_prune_spares_a_live_publishers_staging(t: Tree) -> None:
    put(t, image())
    live = t.new_staging()  # named after this (living) process
    admin.prune(t, 1)
    assert live.is_dir()


def _corrupt_size(t: Tree, d: str) -> None:
    with t.path(f"{d}/rootfs.squashfs").open("ab") as fh:
        fh.write(b"x")


def _corrupt_bytes(t: Tree, d: str) -> None:
    path = t.path(f"{d}/rootfs.tar.xz")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_combined(t: Tree, d: str) -> None:
    products = doc(t)
    products["products"]["ubuntu:noble:amd64:default"]["versions"][SERIAL_A]["items"]["incus.tar.xz"][
        "combined_squashfs_sha256"] = "0" * 64  # fmt: skip
    t.path(streams.PRODUCTS_PATH).write_text(json.dumps(products))


def _not_xz(t: Tree, d: str) -> None:
    path = t.path(f"{d}/lxd.tar.xz")
    path.write_bytes(b"\x28\xb5\x2f\xfd" + path.read_bytes()[4:])


def _missing(t: Tree, d: str) -> None:
    t.path(f"{d}/meta.tar.xz").unlink()


def _bad_lxc_line(t: Tree, d: str) -> None:
    t.path("meta/1.0/index-system.7").write_text(f"ubuntu;noble;amd64;default;{SERIAL_A};/images/elsewhere/\n")


def _escaping_path(t: Tree, d: str) -> None:
    products = doc(t)
    products["products"]["ubuntu:noble:amd64:default"]["versions"][SERIAL_A]["items"]["root.squashfs"]["path"] = (
        "../../etc/passwd")  # fmt: skip
    t.path(streams.PRODUCTS_PATH).write_text(json.dumps(products))


def _bad_index(t: Tree, d: str) -> None:
    t.path(streams.INDEX_PATH).write_text('{"index": {}}')


@pytest.mark.parametrize(("corrupt", "named"), [
    (_corrupt_size, "rootfs.squashfs has size"), (_corrupt_bytes, "rootfs.tar.xz has sha256"),
    (_corrupt_combined, "combined_squashfs_sha256 does not match"), (_not_xz, "is not xz"),
    (_missing, "meta.tar.xz is missing"), (_bad_lxc_line, "index-system.7 line 1"),
    (_escaping_path, "is not a file under images/"), (_bad_index, "index.json does not name"),
])  # fmt: skip
def test_verify_names_each_corruption(t: Tree, corrupt: Any, named: str) -> None:
    put(t, image())
    assert ok(t) == []
    corrupt(t, f"images/ubuntu/noble/amd64/default/{SERIAL_A}")
    problems = ok(t)
    assert problems and any(named in p for p in problems), problems
    _summary, lines, good = admin.verify(t)
    assert not good and any(line.startswith("BAD: ") for line in lines)


class Killed(BaseException):
    """Stands for SIGKILL at a seam: nothing after it runs, not even cleanup (BaseException)."""


@pytest.mark.parametrize("seam", ["files", "products", "index"])
def test_a_commit_killed_at_any_seam_leaves_a_valid_tree(t: Tree, seam: str, monkeypatch: pytest.MonkeyPatch) -> None:
    put(t, image(SERIAL_A))
    before = t.path(streams.PRODUCTS_PATH).read_bytes()

    def kill(stage: str) -> None:
        if stage == seam:
            raise Killed(stage)

    monkeypatch.setattr(tree, "fault_point", kill)
    with pytest.raises(Killed):
        put(t, image(SERIAL_B, release="jammy"))
    assert ok(t) == []  # what clients read is whole: the old state or the new one
    after = doc(t)
    if seam == "files":
        assert t.path(streams.PRODUCTS_PATH).read_bytes() == before
    else:
        assert "ubuntu:jammy:amd64:default" in after["products"]
    assert not list(t.path("streams/v1").glob(f".*{tree.TMP_SUFFIX}"))
    monkeypatch.undo()
    put(t, image(SERIAL_B))  # the next publish works, and a prune tidies up
    admin.prune(t, 5)
    assert ok(t) == []
    _summary, lines, _good = admin.verify(t)
    assert not any(line.startswith("warning") for line in lines)


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.json"
    tree.write_atomic(target, b"one")
    tree.write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["f.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_an_unreadable_products_file_is_one_line(t: Tree) -> None:
    t.path("streams/v1").mkdir(parents=True)
    t.path(streams.PRODUCTS_PATH).write_text("{not json")
    with pytest.raises(UserError, match="cannot be read as JSON"):
        t.load()


def test_one_publisher_at_a_time_holds_the_trees_lock(t: Tree) -> None:
    """The commit and prune run under an exclusive flock on the tree's lock file: another publisher
    (another open file description, as another process has) cannot take it meanwhile."""
    import fcntl
    import os

    with t.locked():
        fd = os.open(t.root / tree.LOCK, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(t.root / tree.LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once the holder is done
    finally:
        os.close(fd)
