"""--from-template (image_import.py, source/image.py): layouts, os-release, compression, refusals, what it adopts.

Archives are built here with tarfile (members made by hand, links and devices included). Every
escape aims at a path under tmp_path, never at the host. Building and booting an imported rootfs
is tests/integration/test_import.py.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.unit.conftest import CSV, ContextFactory
from vmbuilder_lxc import image_import as ti
from vmbuilder_lxc.archive_safety import UnsafeArchive
from vmbuilder_lxc.distro import DebianFamily
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.source.image import ImageSource
from vmbuilder_lxc.suites import DISTRO_INFO_DIR

NOBLE = b"""PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""
BOOKWORM = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
PASSWD = b"root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n"
GROUP = b"root:x:0:\nsudo:x:27:ubuntu\nubuntu:x:1000:\n"


def member(name: str, type: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = mode
    return info


def d(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, tarfile.DIRTYPE, mode=0o755), None


def f(name: str, data: bytes = b"x\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, mode=mode), data


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777), None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, tarfile.LNKTYPE, linkname=target), None


def chr_(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = member(name, tarfile.CHRTYPE, mode=0o666)
    info.devmajor, info.devminor = 1, 3
    return info, None


Entry = tuple[tarfile.TarInfo, bytes | None]
Importer = Callable[..., DebianFamily]


def rootfs(prefix: str = "./", os_release: bytes = NOBLE, *extra: Entry) -> list[Entry]:
    """A small but complete-looking root filesystem under `prefix` (./, rootfs/, chroot-autobuild/)."""
    p = prefix
    return [
        d(p or "."),
        d(f"{p}etc"),
        sym(f"{p}etc/os-release", "../usr/lib/os-release"),
        f(f"{p}etc/passwd", PASSWD),
        f(f"{p}etc/group", GROUP),
        f(f"{p}etc/hostname", b"template\n"),
        d(f"{p}usr"),
        d(f"{p}usr/lib"),
        f(f"{p}usr/lib/os-release", os_release),
        d(f"{p}usr/sbin"),
        sym(f"{p}usr/sbin/init", "../lib/systemd/systemd"),
        sym(f"{p}sbin", "usr/sbin"),
        d(f"{p}var"),
        d(f"{p}var/lib"),
        d(f"{p}var/lib/dpkg"),
        d(f"{p}var/lib/dpkg/info"),
        f(f"{p}var/lib/dpkg/info/libc6:amd64.list", b"/.\n"),
        f(f"{p}usr/sbin/su", mode=0o4755),
        *extra,
    ]


def write(path: Path, entries: list[Entry], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for info, data in entries:
            if info.isreg():
                data = data if data is not None else b""
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return path


# -- compression ---------------------------------------------------------------------------------


def test_compression_is_sniffed_from_content_not_name(tmp_path: Path) -> None:
    plain = write(tmp_path / "t.tar", rootfs())
    data = plain.read_bytes()
    cases = {
        "gzip": gzip.compress(data),
        "xz": lzma.compress(data),
        "bzip2": bz2.compress(data),
        "none": data,
    }
    for expected, content in cases.items():
        misnamed = tmp_path / f"{expected}.tar.zst"  # the name says zstd; the content decides
        misnamed.write_bytes(content)
        assert ti.compression(misnamed) == expected
        assert ti.inspect(misnamed).compression == expected


def test_compression_zstd(tmp_path: Path) -> None:
    if shutil.which("zstd") is None:
        pytest.fail("zstd is not installed (apt-get install zstd)")
    plain = write(tmp_path / "t.tar", rootfs())
    out = tmp_path / "t.tar.gz"  # misnamed again
    subprocess.run(["zstd", "-q", "-o", str(out), str(plain)], check=True)
    assert ti.compression(out) == "zstd"
    image = ti.inspect(out)
    assert (image.compression, image.series) == ("zstd", "noble")


# -- os-release ----------------------------------------------------------------------------------


def test_parse_os_release_quoting() -> None:
    text = """# a comment
NAME="Ubuntu"
ID=ubuntu
VERSION='24.04 LTS (Noble Numbat)'
PRETTY_NAME="A \\"quoted\\" name"
not a field
BROKEN="unbalanced
"""
    fields = ti.parse_os_release(text)
    assert fields["NAME"] == "Ubuntu"
    assert fields["ID"] == "ubuntu"
    assert fields["VERSION"] == "24.04 LTS (Noble Numbat)"
    assert fields["PRETTY_NAME"] == 'A "quoted" name'
    assert fields["BROKEN"] == "unbalanced"
    assert "not a field" not in fields


def test_lsb_release_for_releases_without_os_release() -> None:
    text = (
        'DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=10.04\nDISTRIB_CODENAME=lucid\nDISTRIB_DESCRIPTION="Ubuntu 10.04.4 LTS"\n'
    )
    assert ti.os_release_from_lsb(text) == {
        "ID": "ubuntu",
        "VERSION_ID": "10.04",
        "VERSION_CODENAME": "lucid",
        "PRETTY_NAME": "Ubuntu 10.04.4 LTS",
    }


def test_os_release_through_the_etc_symlink(tmp_path: Path) -> None:
    image = ti.inspect(write(tmp_path / "t.tar", rootfs()))
    assert image.distro_id == "ubuntu"
    assert image.series == "noble"
    assert image.description == "Ubuntu 24.04.1 LTS"


def test_os_release_regular_etc_file_wins(tmp_path: Path) -> None:
    entries = [e for e in rootfs() if e[0].name != "./etc/os-release"] + [f("./etc/os-release", BOOKWORM)]
    assert ti.inspect(write(tmp_path / "t.tar", entries)).series == "bookworm"


def test_lsb_release_fallback(tmp_path: Path) -> None:
    entries = [e for e in rootfs() if "os-release" not in e[0].name]
    entries.append(f("./etc/lsb-release", b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=10.04\nDISTRIB_CODENAME=lucid\n"))
    image = ti.inspect(write(tmp_path / "t.tar", entries))
    assert (image.distro_id, image.series) == ("ubuntu", "lucid")


# -- layouts -------------------------------------------------------------------------------------


def test_layout_detection_by_names() -> None:
    assert ti.detect_layout({"", "etc", "etc/passwd", "usr"}, "x.tar.gz") == (ti.ROOTFS, None)
    assert ti.detect_layout({"etc", "usr"}, "rootfs.tar.xz") == (ti.LXC, None)
    assert ti.detect_layout({"metadata.yaml", "templates", "rootfs", "rootfs/etc"}, "n.lxd.tar.xz") == (ti.LXD, None)
    assert ti.detect_layout({"chroot-autobuild", "chroot-autobuild/etc"}, "b.tar.gz") == (ti.BUILDD, None)
    assert ti.detect_layout({"config", "vmbuilder-lxc.json", "rootfs", "rootfs/etc"}, "c.tar") == (
        ti.CONTAINER_DIR,
        None,
    )
    _, problem = ti.detect_layout({"metadata.yaml", "templates", "templates/hostname.tpl"}, "meta.tar.xz")
    assert problem and "metadata tarball" in problem
    _, problem = ti.detect_layout({"config", "config-user", "create-message", "expiry", "templates"}, "meta.tar.xz")
    assert problem and "rootfs.tar.xz" in problem
    _, problem = ti.detect_layout({"README"}, "x.tar")
    assert problem and "no root filesystem" in problem


def test_normalize() -> None:
    assert ti.normalize("./etc//x/") == "etc/x"
    assert ti.normalize("./") == ""
    assert ti.normalize("rootfs/./etc") == "rootfs/etc"


@pytest.mark.parametrize(
    ("filename", "entries", "layout"),
    [
        ("x.tar.gz", rootfs("./"), ti.ROOTFS),
        ("x.tar.gz", rootfs(""), ti.ROOTFS),  # names without ./
        ("rootfs.tar.xz", rootfs("./"), ti.LXC),
        ("n.lxd.tar.xz", [f("metadata.yaml", b"architecture: x86_64\n"), d("templates"), *rootfs("rootfs/")], ti.LXD),
        ("b.tar.gz", [d("chroot-autobuild"), *rootfs("chroot-autobuild/")], ti.BUILDD),
        ("c.tar", [f("config"), f("vmbuilder-lxc.json"), *rootfs("rootfs/")], ti.CONTAINER_DIR),
    ],
    ids=["rootfs-dot", "rootfs-bare", "lxc", "lxd", "buildd", "container-dir"],
)
def test_inspect_each_layout(tmp_path: Path, filename: str, entries: list[Entry], layout: str) -> None:
    mode = "w:xz" if filename.endswith(".xz") else "w:gz" if filename.endswith(".gz") else "w"
    image = ti.inspect(write(tmp_path / filename, entries, mode))
    assert image.layout == layout
    assert image.strip == {ti.LXD: "rootfs", ti.BUILDD: "chroot-autobuild", ti.CONTAINER_DIR: "rootfs"}.get(layout, "")
    assert image.series == "noble"
    assert image.arch == "amd64"
    assert image.accounts == {"root": 0, "ubuntu": 1000}
    assert image.groups == {"root", "sudo", "ubuntu"}
    assert image.has_init
    assert not image.ours and image.host_keys == []
    assert image.members == len(entries)


def test_inspect_ours_keys_and_init(tmp_path: Path) -> None:
    entries = rootfs(
        "./",
        NOBLE,
        d("./etc/systemd"),
        d("./etc/systemd/system"),
        f("./etc/systemd/system/vmbuilder-ssh-hostkeys.service"),
        d("./etc/ssh"),
        f("./etc/ssh/ssh_host_ed25519_key"),
        f("./etc/ssh/ssh_host_ed25519_key.pub"),
    )
    entries = [e for e in entries if "init" not in e[0].name]
    image = ti.inspect(write(tmp_path / "t.tar", entries))
    assert image.ours
    assert image.host_keys == ["etc/ssh/ssh_host_ed25519_key"]
    assert not image.has_init


def test_summary_entry(tmp_path: Path) -> None:
    image = ti.inspect(write(tmp_path / "t.tar.gz", rootfs(), "w:gz"))
    summary = image.summary()
    assert summary["path"] == str(tmp_path / "t.tar.gz")
    assert summary["layout"] == "rootfs"
    assert summary["compression"] == "gzip"
    assert summary["os_release"]["VERSION_CODENAME"] == "noble"


# -- refusals ------------------------------------------------------------------------------------


def refusal(tmp_path: Path, entries: list[Entry], allow_setuid: bool = True) -> UnsafeArchive:
    path = write(tmp_path / "bad.tar", entries)
    with pytest.raises(UnsafeArchive) as caught:
        ti.inspect(path, allow_setuid=allow_setuid)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"template {path}: unsafe member ")
    return caught.value


def test_refuses_dotdot(tmp_path: Path) -> None:
    err = refusal(tmp_path, [*rootfs(), f("../../etc/passwd")])
    assert "'../../etc/passwd'" in err.message
    assert "outside the archive root" in err.message


def test_refuses_write_through_absolute_symlink(tmp_path: Path) -> None:
    out = str(tmp_path / "outside")
    err = refusal(tmp_path, [*rootfs(), sym("./etc/x", out), f("./etc/x/passwd")])
    assert "'./etc/x/passwd'" in err.message
    assert f"through the symlink 'etc/x' (to '{out}')" in err.message


@pytest.mark.parametrize("target", ["/etc/shadow", "../../x"])
def test_refuses_hardlink_escape(tmp_path: Path, target: str) -> None:
    err = refusal(tmp_path, [*rootfs(), hard("./etc/shadow-copy", target)])
    assert "'./etc/shadow-copy'" in err.message
    assert "hardlink" in err.message


def test_refuses_device_outside_dev(tmp_path: Path) -> None:
    err = refusal(tmp_path, [*rootfs(), chr_("./etc/null")])
    assert "character device outside dev/" in err.message


def test_device_in_dev_is_fine(tmp_path: Path) -> None:
    ti.inspect(write(tmp_path / "t.tar", [*rootfs(), d("./dev"), chr_("./dev/null")]))


def test_setuid_refused_only_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tar", rootfs())
    ti.inspect(path)  # su is setuid: fine by default
    err = refusal(tmp_path, rootfs(), allow_setuid=False)
    assert "'./usr/sbin/su'" in err.message and "setuid" in err.message
    assert err.hint and "setuid" in err.hint


def test_refuses_names_gnu_tar_would_refuse(tmp_path: Path) -> None:
    """Refused in preflight, not only later by safe_extract(): `etc/../x` stays inside but GNU tar refuses it."""
    err = refusal(tmp_path, [*rootfs(), f("./etc/../x")])
    assert "GNU tar refuses" in err.message


def test_unsafe_is_reported_before_an_unknown_layout(tmp_path: Path) -> None:
    """A crafted archive with no rootfs at all is refused as unsafe, not as 'no root filesystem'."""
    err = refusal(tmp_path, [f("../../etc/passwd")])
    assert "'../../etc/passwd'" in err.message


def test_more_problems_are_counted(tmp_path: Path) -> None:
    err = refusal(tmp_path, [*rootfs(), f("../a"), f("../b"), f("../c")])
    assert err.message.endswith("(and 2 more problems)")


def test_not_a_rootfs(tmp_path: Path) -> None:
    path = write(tmp_path / "meta.tar.xz", [f("config"), f("create-message"), f("expiry"), d("templates")], "w:xz")
    with pytest.raises(UserError, match="LXC's meta.tar.xz") as caught:
        ti.inspect(path)
    assert not isinstance(caught.value, UnsafeArchive)


def test_squashfs_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rootfs.squashfs"
    path.write_bytes(b"hsqs" + bytes(92))
    with pytest.raises(UserError, match="is a squashfs image, not a tarball"):
        ti.inspect(path)


# -- /etc/hosts ----------------------------------------------------------------------------------


def test_hosts_replaces_the_127_0_1_1_line_and_keeps_the_rest() -> None:
    text = "127.0.0.1\tlocalhost\n127.0.1.1\told\n10.0.0.5 db # ours\n127.0.1.1 again\n::1 ip6-localhost\n"
    assert ti.hosts_text(text, "web1.example.org web1") == (
        "127.0.0.1\tlocalhost\n127.0.1.1\tweb1.example.org web1\n10.0.0.5 db # ours\n::1 ip6-localhost\n"
    )


def test_hosts_gets_a_127_0_1_1_line_after_localhost() -> None:
    assert ti.hosts_text("# hosts\n127.0.0.1 localhost\n::1 ip6-localhost\n", "c1") == (
        "# hosts\n127.0.0.1 localhost\n127.0.1.1\tc1\n::1 ip6-localhost\n"
    )
    assert ti.hosts_text("", "c1") == "127.0.1.1\tc1\n"


# -- ImageSource.set_defaults(): what the build adopts from the template ---------------------------


@pytest.fixture
def imported(fake_fs: FakeFilesystem, make_ctx: ContextFactory) -> Importer:
    """Configure `vmbuilder lxc ubuntu --from-template /t/x.tar.gz ARGS` on a fake file system."""
    fake_fs.create_file(DISTRO_INFO_DIR / "ubuntu.csv", contents=CSV)
    fake_fs.create_dir("/t")

    def factory(*argv: str, entries: list[Entry] | None = None) -> DebianFamily:
        write(Path("/t/x.tar.gz"), entries if entries is not None else rootfs(), "w:gz")
        ctx = make_ctx("--from-template", "/t/x.tar.gz", "-d", "/srv/ct/c1", "--network", "none", *argv)
        distro = ctx.distro
        assert isinstance(distro, DebianFamily)
        distro.set_defaults()
        return distro

    return factory


def test_prepare_adopts_release_and_arch(imported: Importer) -> None:
    distro = imported()
    assert distro.release.series == "noble"
    assert distro.settings["arch"] == "amd64"
    assert distro.settings.source("suite") == "--from-template"
    assert isinstance(distro.source, ImageSource) and distro.source.image.layout == "rootfs"
    summary = distro.context.summary["template"]
    assert summary["layout"] == "rootfs" and len(summary["sha256"]) == 64
    assert summary["os_release"]["ID"] == "ubuntu"
    assert distro.context.summary["release"]["series"] == "noble"


def test_prepare_warns_when_suite_differs(imported: Importer, capsys: pytest.CaptureFixture[str]) -> None:
    distro = imported("--suite", "jammy")
    assert distro.release.series == "jammy"
    assert "--suite jammy, but the template is Ubuntu 24.04.1 LTS" in capsys.readouterr().err


def test_prepare_takes_the_suite_by_version(imported: Importer, capsys: pytest.CaptureFixture[str]) -> None:
    imported("--suite", "24.04")
    assert "but the template is" not in capsys.readouterr().err


def test_prepare_refuses_another_distro(imported: Importer) -> None:
    with pytest.raises(UserError) as caught:
        imported(entries=rootfs("./", BOOKWORM))
    assert caught.value.message == "template /t/x.tar.gz is Debian GNU/Linux 12 (bookworm) (ID=debian), not ubuntu"
    assert caught.value.hint == "import it with its own distro: vmbuilder lxc debian --from-template /t/x.tar.gz"


def test_prepare_refuses_bootstrap_settings(imported: Importer) -> None:
    with pytest.raises(UserError, match=r"^--addpkg, --ip do not apply to --from-template"):
        imported("--addpkg", "vim", "--ip", "10.0.3.5")


def test_prepare_refuses_another_arch(imported: Importer) -> None:
    with pytest.raises(UserError, match="--arch arm64, but template /t/x.tar.gz is amd64"):
        imported("--arch", "arm64")


def test_prepare_needs_a_suite_without_os_release(imported: Importer) -> None:
    entries = [e for e in rootfs() if "os-release" not in e[0].name]
    with pytest.raises(UserError, match="has no etc/os-release"):
        imported(entries=entries)
    distro = imported("--suite", "jammy", entries=entries)
    assert distro.release.series == "jammy"


def test_preflight_refuses_a_uid_that_differs(imported: Importer) -> None:
    distro = imported("--uid", "2000")
    with pytest.raises(UserError, match="user ubuntu already exists in the template with uid 1000"):
        distro.source.preflight()
