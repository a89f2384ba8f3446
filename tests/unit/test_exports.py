"""Exports on small trees in a temp directory: stripping, reproducibility, each format's files.

These run the real tar, xz and zstd (no root needed); booting the results in LXD, lxc-start and
libvirt is tests/integration/test_exports.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmbuilder_lxc import exports
from vmbuilder_lxc.exports import lxcimage, lxdimage, stage
from vmbuilder_lxc.exports.identity import hosts_with
from vmbuilder_lxc.guestedit import drop_proxy_lines
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.render import Templates

EPOCH = 1_700_000_000
HOSTS = "127.0.0.1\tlocalhost\n127.0.1.1\tweb1.example.org web1\n::1\tip6-localhost ip6-loopback\n"


def write(root: Path, rel: str, text: str = "x\n", mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def rootfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small rootfs with every kind of leftover an export must not carry."""
    host_resolv = write(tmp_path, "host-resolv.conf", "nameserver 10.9.8.7\n")
    monkeypatch.setattr(stage, "HOST_RESOLV", host_resolv)
    root = tmp_path / "ct" / "rootfs"
    write(root, "etc/hostname", "web1\n")
    write(root, "etc/hosts", HOSTS)
    write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    write(root, "etc/ssh/ssh_host_ed25519_key", "secret\n", 0o600)
    write(root, "etc/ssh/ssh_host_ed25519_key.pub", "public\n")
    write(root, "etc/ssh/sshd_config", "PermitRootLogin no\n")
    write(root, "etc/resolv.conf", "nameserver 10.9.8.7\n")
    write(root, "etc/.resolv.conf.systemd-resolved.bak", "nameserver 10.9.8.7\n")
    write(root, "etc/apt/apt.conf.d/99vmbuilder-proxy", 'Acquire::http::Proxy "http://10.1.1.1:3142";\n')
    write(root, "etc/apt/apt.conf.d/70debconf", 'DPkg::Pre-Install-Pkgs {"x";};\nAcquire::https::Proxy "http://p";\n')
    write(root, "etc/environment", 'PATH="/usr/bin"\nhttp_proxy=http://10.1.1.1:3128\n')
    write(root, "etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    write(root, "etc/passwd-", "root:x:0:0::/root:/bin/bash\n")
    write(root, "var/log/apt/history.log", "Start-Date: ...\n")
    write(root, "var/log/dpkg.log", "...\n")
    write(root, "var/lib/apt/lists/some_Packages", "Package: x\n")
    write(root, "var/lib/dpkg/status-old", "...\n")
    write(root, "tmp/build-junk", "...\n")
    write(root, "usr/bin/tool", "#!/bin/sh\n", 0o755)
    (root / "usr/bin/tool-link").symlink_to("tool")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-hardlink")
    (root / "run").mkdir()
    return root


def job_for(root: Path, out: Path, **kw: Any) -> exports.ExportJob:
    fields: dict[str, Any] = dict(
        root=root, out_dir=out, name="web1", distro="ubuntu", suite="noble", version="24.04", arch="amd64",
        variant="minbase", hostname="web1", epoch=EPOCH, compression="", compression_level=1,
        hook_env={"INIT": "systemd"}, render=Templates().render,
    )  # fmt: skip
    fields.update(kw)
    return exports.ExportJob(**fields)


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(path: Path, name: str) -> str:
    with tarfile.open(path) as tar:
        fh = tar.extractfile(name)
        assert fh is not None
        return fh.read().decode()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_staged_view_strips_leftovers_and_leaves_the_rootfs_alone(rootfs: Path) -> None:
    with stage.staged(rootfs) as staged:
        view, report = staged.root, staged.stripped
        assert not list((view / "etc/ssh").glob("ssh_host_*"))
        assert (view / "etc/ssh/sshd_config").exists()
        assert (view / "etc/machine-id").read_text() == ""
        assert (view / "etc/machine-id").stat().st_mode & 0o777 == 0o444
        assert (view / "etc/resolv.conf").read_text() == ""
        assert not (view / "etc/.resolv.conf.systemd-resolved.bak").exists()
        assert not (view / "etc/apt/apt.conf.d/99vmbuilder-proxy").exists()
        assert (view / "etc/apt/apt.conf.d/70debconf").read_text() == 'DPkg::Pre-Install-Pkgs {"x";};\n'
        assert "proxy" not in (view / "etc/environment").read_text()
        assert not (view / "etc/passwd-").exists() and (view / "etc/passwd").exists()
        assert (view / "var/log/apt").is_dir() and not any((view / "var/log").rglob("*.log"))
        assert not (view / "var/lib/apt/lists/some_Packages").exists()
        assert not (view / "tmp/build-junk").exists() and (view / "tmp").is_dir()
        assert {"ssh-host-keys", "machine-id", "resolv-conf", "proxy", "logs", "apt-lists"} <= set(report)
    # The rootfs itself (hard-linked into the view) is untouched, and the view is gone.
    assert (rootfs / "etc/machine-id").read_text().startswith("0123")
    assert (rootfs / "etc/ssh/ssh_host_ed25519_key").exists()
    assert "Proxy" in (rootfs / "etc/apt/apt.conf.d/70debconf").read_text()
    assert (rootfs / "etc/resolv.conf").read_text() == "nameserver 10.9.8.7\n"
    assert not list(rootfs.parent.glob(f".*{stage.STAGE_SUFFIX}"))


def test_keep_apt_lists_keeps_them(rootfs: Path) -> None:
    with stage.staged(rootfs, frozenset({"keep_apt_lists"})) as staged:
        view = staged.root
        assert (view / "var/lib/apt/lists/some_Packages").exists()


def test_a_resolv_conf_that_is_not_the_hosts_stays(rootfs: Path) -> None:
    (rootfs / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    with stage.staged(rootfs) as staged:
        view = staged.root
        assert (view / "etc/resolv.conf").read_text() == "nameserver 192.0.2.53\n"


def test_tar_export_is_reproducible_sorted_numeric_and_clamped(rootfs: Path, tmp_path: Path) -> None:
    digests = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        summary = exports.export(rootfs, [exports.FORMATS["tar"]], job_for(rootfs, out), keep=frozenset(),
                                 overwrite=False)  # fmt: skip
        tarball = out / "web1.tar"
        assert summary["formats"] == {"tar": [str(tarball), str(out / "web1.template.properties")]}
        digests.append(sha256(tarball))
        os.utime(rootfs / "usr/bin", None)  # a newer directory mtime is clamped away too
    assert digests[0] == digests[1]
    found = members(tmp_path / "out1/web1.tar")
    names = list(found)
    assert names[0] == "." and all(n.startswith("./") for n in names[1:])  # tarfile drops the "/" of "./"
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert all(m.mtime <= EPOCH for m in found.values())
    assert all(m.uname == "" and m.gname == "" for m in found.values())
    assert found["./usr/bin/tool-link"].issym() and found["./usr/bin/tool-link"].linkname == "tool"
    hard = [m for m in found.values() if m.islnk()]
    assert len(hard) == 1 and hard[0].linkname in ("./usr/bin/tool", "./usr/bin/tool-hardlink")
    assert "./etc/ssh/ssh_host_ed25519_key" not in found
    assert found["./etc/machine-id"].size == 0
    assert not any(".PaxHeaders." in n for n in names)


def test_template_properties_describe_the_uncompressed_tar(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    exports.export(rootfs, [exports.FORMATS["tar"]], job_for(rootfs, out, compression="zstd"), keep=frozenset(),
                   overwrite=False)  # fmt: skip
    props = dict(
        line.split("=", 1) for line in (out / "web1.template.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    raw = io.BytesIO()
    import subprocess

    raw.write(subprocess.run(["zstd", "-dc", out / "web1.tar.zst"], capture_output=True, check=True).stdout)
    data = raw.getvalue()
    assert props["filename"] == props["tar.filename"] == "web1.tar"
    assert props["uniquename"] == "web1" and props["hvm"] == "false" and props["tar"] == "true"
    assert int(props["size"]) == int(props["virtualsize"]) == int(props["tar.size"]) == len(data)
    assert props["checksum"] == "{SHA-256}" + hashlib.sha256(data).hexdigest()


def test_lxd_unified_and_split_images(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = job_for(rootfs, out, arch="arm64", compression="xz", lxd_image="both")
    exports.export(rootfs, [exports.FORMATS["lxd"]], job, keep=frozenset(), overwrite=False)
    unified = members(out / "web1.lxd.tar.xz")
    assert list(unified)[:5] == ["metadata.yaml", "templates", "templates/hostname.tpl", "templates/hosts.tpl",
                                 "rootfs"]  # fmt: skip
    assert "rootfs/etc/passwd" in unified
    assert unified["rootfs/usr/bin/tool-link"].linkname == "tool"  # symlink targets are not rewritten
    meta = yaml.safe_load(read_member(out / "web1.lxd.tar.xz", "metadata.yaml"))
    assert meta["architecture"] == "aarch64"
    assert meta["creation_date"] == EPOCH and meta["expiry_date"] > EPOCH
    props = meta["properties"]
    assert props["os"] == "ubuntu" and props["release"] == "noble" and props["architecture"] == "arm64"
    assert props["variant"] == "default" and props["version"] == "24.04" and props["serial"] == "20231114_22:13"
    assert "noble" in props["description"]
    assert meta["templates"]["/etc/hostname"] == {"when": ["create", "copy"], "template": "hostname.tpl"}
    assert meta["templates"]["/etc/hosts"]["template"] == "hosts.tpl"
    assert read_member(out / "web1.lxd.tar.xz", "templates/hostname.tpl") == "{{ container.name }}\n"
    hosts = read_member(out / "web1.lxd.tar.xz", "templates/hosts.tpl")
    assert "127.0.1.1\t{{ container.name }}\n" in hosts and "web1" not in hosts and "ip6-localhost" in hosts
    split = members(out / "web1.lxd/lxd.tar.xz")
    assert sorted(split) == ["metadata.yaml", "templates", "templates/hostname.tpl", "templates/hosts.tpl"]
    assert (out / "web1.lxd/rootfs.squashfs").read_bytes()[:4] == b"hsqs"


def test_lxd_default_is_the_unified_image_alone(rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unified image is all `lxc image import` needs; the split form would compress the rootfs a
    second time (as a squashfs), so it is written only when asked, and mksquashfs is not needed."""
    monkeypatch.setattr(lxdimage, "write_squashfs", lambda job, out: pytest.fail("no squashfs by default"))
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool, **kw: None if tool == "mksquashfs" else real_which(tool, **kw))
    out = tmp_path / "out"
    job = job_for(rootfs, out)
    assert job.lxd_image == exports.DEFAULT_LXD_IMAGE == "unified"
    result = exports.export(rootfs, [exports.FORMATS["lxd"]], job, keep=frozenset(), overwrite=False)
    assert result["formats"] == {"lxd": [str(out / "web1.lxd.tar.zst")]}
    assert sorted(p.name for p in out.iterdir()) == ["web1.lxd.tar.zst"]


def test_lxd_split_image_alone(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = job_for(rootfs, out, lxd_image="split")
    exports.export(rootfs, [exports.FORMATS["lxd"]], job, keep=frozenset(), overwrite=False)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["web1.lxd", "web1.lxd/lxd.tar.zst",
                                                                      "web1.lxd/rootfs.squashfs"]  # fmt: skip


def test_write_split_for_other_callers(rootfs: Path, tmp_path: Path) -> None:
    """lxdimage.write_split writes the split form anywhere (an image server's tree), the same bytes as --export."""
    out = tmp_path / "out"
    exports.export(rootfs, [exports.FORMATS["lxd"]], job_for(rootfs, out, lxd_image="split"), keep=frozenset(),
                   overwrite=False)  # fmt: skip
    with stage.staged(rootfs) as staged:
        view = staged.root
        job = job_for(view, tmp_path, compression="zstd")
        lxdimage.write_split(job, "lxd", tmp_path / "lxd.tar.zst", tmp_path / "root.squashfs")
    assert (tmp_path / "lxd.tar.zst").read_bytes() == (out / "web1.lxd/lxd.tar.zst").read_bytes()
    assert (tmp_path / "root.squashfs").read_bytes() == (out / "web1.lxd/rootfs.squashfs").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("lxd-meta.")) == []


def test_incus_templates_use_instance(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = job_for(rootfs, out, compression="gzip", lxd_image="both")
    exports.export(rootfs, [exports.FORMATS["incus"]], job, keep=frozenset(), overwrite=False)
    assert read_member(out / "web1.incus.tar.gz", "templates/hostname.tpl") == "{{ instance.name }}\n"
    assert read_member(out / "web1.incus/incus.tar.gz", "templates/hostname.tpl") == "{{ instance.name }}\n"


def test_lxc_image_for_lxc_local(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    exports.export(rootfs, [exports.FORMATS["lxc"]], job_for(rootfs, out, compression="zstd"), keep=frozenset(),
                   overwrite=False)  # fmt: skip
    image = out / "web1.lxc"
    assert sorted(p.name for p in image.iterdir()) == ["meta.tar.xz", "rootfs.tar.xz"]  # always xz
    meta = members(image / "meta.tar.xz")
    assert {"./config", "./config-user", "./create-message", "./expiry", "./templates"} <= set(meta)
    config = read_member(image / "meta.tar.xz", "./config")
    assert "lxc.include = LXC_TEMPLATE_CONFIG/common.conf" in config and "lxc.arch = x86_64" in config
    assert "userns.conf" not in config and "lxc.rootfs" not in config and "lxc.net" not in config
    assert "LXC_TEMPLATE_CONFIG/userns.conf" in read_member(image / "meta.tar.xz", "./config-user")
    assert int(read_member(image / "meta.tar.xz", "./expiry")) > EPOCH
    assert read_member(image / "meta.tar.xz", "./templates").split() == ["/etc/hostname", "/etc/hosts"]
    assert read_member(image / "rootfs.tar.xz", "./etc/hostname") == "LXC_NAME\n"
    assert "127.0.1.1\tLXC_NAME\n" in read_member(image / "rootfs.tar.xz", "./etc/hosts")
    assert (rootfs / "etc/hostname").read_text() == "web1\n"


def test_hosts_line_is_replaced_or_added(tmp_path: Path) -> None:
    write(tmp_path, "etc/hosts", HOSTS)
    assert hosts_with(tmp_path, "N").splitlines()[:2] == ["127.0.0.1\tlocalhost", "127.0.1.1\tN"]
    write(tmp_path, "etc/hosts", "127.0.0.1 localhost\n::1 ip6-localhost\n")
    assert hosts_with(tmp_path, "N").splitlines() == ["127.0.0.1 localhost", "127.0.1.1\tN", "::1 ip6-localhost"]


def test_existing_output_is_refused_and_kept(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, "web1.tar", "precious\n")
    with pytest.raises(UserError, match="already exists.*--overwrite"):
        exports.export(rootfs, [exports.FORMATS["tar"]], job_for(rootfs, out), keep=frozenset(), overwrite=False)
    assert (out / "web1.tar").read_text() == "precious\n"
    exports.export(rootfs, [exports.FORMATS["tar"]], job_for(rootfs, out), keep=frozenset(), overwrite=True)
    assert (out / "web1.tar").read_bytes()[257:262] == b"ustar"
    assert sorted(p.name for p in out.iterdir()) == ["web1.tar", "web1.template.properties"]


def test_a_failing_format_leaves_nothing_behind(rootfs: Path, tmp_path: Path) -> None:
    def broken(job: exports.ExportJob, tmp: Path) -> None:
        (tmp / "half-written").write_text("...")
        raise RuntimeError("disk full")

    bad = dataclasses.replace(exports.FORMATS["squashfs"], name="bad", write=broken, tools=())
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        exports.export(rootfs, [exports.FORMATS["tar"], bad], job_for(rootfs, out), keep=frozenset(), overwrite=False)
    assert not out.exists()
    assert not list(rootfs.parent.glob(".*vmbuilder*"))


def test_format_profiles_and_names_are_checked(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown export format 'qcow2'"):
        exports.parse_formats(["tar", "qcow2"])
    assert [f.name for f in exports.parse_formats(["LXD", "tar", "lxd"])] == ["lxd", "tar"]
    buildd = job_for(rootfs, tmp_path / "out", variant="buildd")
    with pytest.raises(UserError, match="the lxd export needs a container build"):
        exports.export(rootfs, [exports.FORMATS["lxd"]], buildd, keep=frozenset(), overwrite=False)


def test_lxc_excludes_list_device_nodes_only(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/regular").write_text("")
    assert lxcimage.device_nodes(tmp_path) == []
    assert lxdimage.metadata_yaml(job_for(tmp_path, tmp_path)).startswith('architecture: "x86_64"\n')


def test_proxy_lines_go_and_an_emptied_file_with_them(tmp_path: Path) -> None:
    conf = write(tmp_path, "99mmdebstrap", 'APT::Install-Recommends "false";\nAcquire::http::Proxy "http://p:3142";\n')
    assert drop_proxy_lines(conf) and conf.read_text() == 'APT::Install-Recommends "false";\n'
    assert not drop_proxy_lines(conf)
    only = write(tmp_path, "proxy", 'Acquire::https::Proxy "http://p";\n')
    assert drop_proxy_lines(only) and not only.exists()
