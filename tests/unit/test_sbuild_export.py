"""The `sbuild` export: the names sbuild's unshare mode finds, and the schroot chroot.d entry."""

from __future__ import annotations

import configparser
import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from vmbuilder_lxc.exports import sbuild
from vmbuilder_lxc.exports.base import ExportJob
from vmbuilder_lxc.render import Templates

# sbuild 0.85, Sbuild/ChrootInfoUnshare.pm: the files it lists as chroots in ~/.cache/sbuild.
UNSHARE_LISTING = re.compile(r"^[^-]+-[^-]+(-[^-]+)?(-sbuild)?\.t.+$")

JOB = ExportJob(
    root=Path("/nonexistent/stage"),
    out_dir=Path("/srv/exports"),
    name="bd",
    distro="ubuntu",
    suite="noble",
    version="24.04",
    arch="amd64",
    variant="buildd",
    hostname="bd",
    epoch=1_700_000_000,
    compression="zstd",
    render=Templates().render,
)


def conf(job: ExportJob) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(sbuild.schroot_conf(job))
    assert parser.sections() == ["noble-amd64-sbuild"]
    return parser["noble-amd64-sbuild"]


@pytest.mark.parametrize(("compression", "tarball"), [
    ("zstd", "noble-amd64.tar.zst"), ("xz", "noble-amd64.tar.xz"), ("gzip", "noble-amd64.tar.gz"),
    ("none", "noble-amd64.tar"),
])  # fmt: skip
def test_names_are_what_sbuild_unshare_looks_for(compression: str, tarball: str) -> None:
    job = dataclasses.replace(JOB, compression=compression)
    assert sbuild.SBUILD.outputs(job) == [tarball, "noble-amd64-sbuild.conf"]
    assert UNSHARE_LISTING.match(tarball)
    assert re.match(r"^noble-amd64\.t.+$", tarball)  # `sbuild -d noble` on amd64 tries noble-amd64 first


def test_the_format_declares_a_buildd_chroot_in_zstd() -> None:
    fmt = sbuild.SBUILD
    assert (fmt.name, fmt.profile, fmt.default_compression) == ("sbuild", "buildd", "zstd")
    assert set(fmt.compressions) == {"zstd", "xz", "gzip", "none"}


def test_schroot_entry_for_a_kept_rootfs_is_an_overlay_directory() -> None:
    section = conf(dataclasses.replace(JOB, dest_rootfs=Path("/srv/chroots/bd/rootfs")))
    assert dict(section) == {
        "description": "Ubuntu 24.04 noble/amd64 autobuilder (vmbuilder-lxc)",
        "groups": "root,sbuild",
        "root-groups": "root,sbuild",
        "profile": "sbuild",
        "type": "directory",
        "directory": "/srv/chroots/bd/rootfs",
        "union-type": "overlay",
    }
    assert "cannot unpack" not in sbuild.schroot_conf(dataclasses.replace(JOB, dest_rootfs=Path("/x")))


@pytest.mark.parametrize("compression", ["xz", "gzip", "none"])
def test_schroot_entry_without_a_rootfs_names_the_final_tarball(compression: str) -> None:
    job = dataclasses.replace(JOB, compression=compression)
    section = conf(job)
    assert section["type"] == "file"
    assert section["file"] == f"/srv/exports/{sbuild.tarball_name(job)}"
    assert "directory" not in section and "union-type" not in section
    assert "cannot unpack" not in sbuild.schroot_conf(job)


def test_a_zstd_tarball_comes_with_a_warning_for_schroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    text = sbuild.schroot_conf(JOB)
    assert "schroot cannot unpack .tar.zst files: export again with --compression xz" in text
    assert conf(JOB)["file"] == "/srv/exports/noble-amd64.tar.zst"

    def fake_write_tar(root: Path, out: Path, **kwargs: object) -> Path:
        out.write_bytes(b"")
        return out

    monkeypatch.setattr(sbuild, "write_tar", fake_write_tar)
    sbuild.SBUILD.write(JOB, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noble-amd64-sbuild.conf", "noble-amd64.tar.zst"]
    assert "--compression xz" in caplog.text
    caplog.clear()
    sbuild.SBUILD.write(dataclasses.replace(JOB, compression="xz"), tmp_path)
    assert "--compression xz" not in caplog.text


def test_debian_sid_has_no_version_in_its_description() -> None:
    job = dataclasses.replace(JOB, distro="debian", suite="sid", version="", arch="arm64", compression="xz")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(sbuild.schroot_conf(job))
    assert parser["sid-arm64-sbuild"]["description"] == "Debian sid/arm64 autobuilder (vmbuilder-lxc)"


def test_the_tarball_has_the_filesystem_at_its_root(tmp_path: Path) -> None:
    """sbuild unpacks it as the chroot itself: ./etc, ./usr, no top directory."""
    root = tmp_path / "stage"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/apt-get").write_text("#!/bin/sh\n")
    (root / "etc").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    job = dataclasses.replace(JOB, root=root, out_dir=out, compression="none")
    sbuild.SBUILD.write(job, out)
    names = subprocess.run(["tar", "-tf", str(out / "noble-amd64.tar")], capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    assert names == ["./", "./etc/", "./usr/", "./usr/bin/", "./usr/bin/apt-get"]
