"""--from-template through the real CLI (issue #5 acceptance 6, and the import round trip).

The crafted archives aim every escape at paths under tmp_path (never at the host's /etc); the test
checks that none of them appeared, that DEST and the build directory were never created, and that
the error is one line. The round trip turns a default noble build (the session's cached base) into
a template and deploys it again under another name, then boots it once.
"""

from __future__ import annotations

import gzip
import io
import re
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Builder, Container, boot_within, leftovers, vmbuilder_command


def _member(
    name: str, type: bytes = tarfile.REGTYPE, linkname: str = "", data: bytes = b"pwned\n"
) -> Callable[[tarfile.TarFile], None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = type
        info.linkname = linkname
        info.mode = 0o755 if type == tarfile.DIRTYPE else 0o644
        if type == tarfile.REGTYPE:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        else:
            archive.addfile(info)

    return add


def _crafted(path: Path, *members: Callable[[tarfile.TarFile], None]) -> Path:
    """A small rootfs-looking archive (so only the crafted members are wrong) plus the crafted members."""
    with tarfile.open(path, "w:gz") as archive:
        for add in (
            _member("./", tarfile.DIRTYPE),
            _member("./etc", tarfile.DIRTYPE),
            _member("./etc/os-release", data=b"ID=ubuntu\nVERSION_ID=24.04\nVERSION_CODENAME=noble\n"),
            _member("./etc/hostname", data=b"evil\n"),
            *members,
        ):
            add(archive)
    return path


# name -> (members aimed at OUT (a directory under tmp_path), the member the error must name)
CRAFTED: dict[str, tuple[Callable[[Path], list[Callable[[tarfile.TarFile], None]]], str]] = {
    "dotdot": (lambda out: [_member("../../etc/passwd")], "../../etc/passwd"),
    "absolute-symlink": (
        lambda out: [_member("./etc/x", tarfile.SYMTYPE, linkname=str(out)), _member("./etc/x/passwd")],
        "./etc/x/passwd",
    ),
    "hardlink": (
        lambda out: [_member("./etc/shadow2", tarfile.LNKTYPE, linkname=str(out / "victim")), _member("./etc/shadow2")],
        "./etc/shadow2",
    ),
}


def _refused_in_one_line(template: Path, dest: Path) -> list[str]:
    """Import TEMPLATE into DEST: exit 2 and exactly one line on stderr (the timeout is a hang guard)."""
    proc = subprocess.run(
        [vmbuilder_command(), "lxc", "ubuntu", "--from-template", str(template), "-d", str(dest), "--network", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines


@pytest.mark.parametrize("case", CRAFTED, ids=CRAFTED.keys())
def test_crafted_template_is_refused_with_one_line(case: str, tmp_path: Path) -> None:
    """Acceptance 6: each crafted tarball is refused, exit 2, one line naming the member, nothing written."""
    out = tmp_path / "outside"  # where the escapes aim
    out.mkdir()
    victim = out / "victim"
    victim.write_text("original\n")
    work = tmp_path / "work"  # DEST's parent: the build directory would be created here
    work.mkdir()
    dest = work / "dest"
    members, name = CRAFTED[case]
    template = _crafted(tmp_path / f"{case}.tar.gz", *members(out))

    lines = _refused_in_one_line(template, dest)
    assert lines[0].startswith(f"vmbuilder: error: template {template}: unsafe member {name!r}: ")

    assert not dest.exists()
    assert list(work.iterdir()) == [], "nothing may be created beside DEST"
    assert leftovers(work) == []
    assert sorted(p.name for p in out.iterdir()) == ["victim"]  # no passwd written through the symlink
    assert victim.read_text() == "original\n"
    assert victim.stat().st_nlink == 1
    assert not (tmp_path / "etc").exists() and not (work.parent / "etc" / "passwd").exists()


def _raw_header(name: str, size_field: bytes, typ: bytes = b"0") -> bytes:
    """A tar header block tarfile cannot write: its size field may claim anything (GNU base-256)."""
    h = bytearray(512)
    h[0 : len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:124] = b"0000000\0" * 2
    h[124:136] = size_field
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


# name -> (the archive's bytes, the start of the one-line error after "template FILE")
HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    # The hang: an 11 KB tar whose member claims 10^12 bytes spun in the pre-check for minutes.
    "size-claim": (
        lambda: _raw_header("./etc/big", b"\x80" + (10**12).to_bytes(11, "big")) + b"x" * 10_000,
        " is truncated: member './etc/big' claims 1000000000000 bytes",
    ),
    "pax-claim": (
        lambda: _raw_header("PaxHeaders/x", b"\x80" + (10**12).to_bytes(11, "big"), b"x") + b"9" * 10_000,
        ": an extended header at byte 0 claims 1000000000000 bytes",
    ),
    "bomb": (
        lambda: (
            gzip.compress(_raw_header("./etc/zeros", b"\x80" + (1 << 50).to_bytes(11, "big")), 1)
            + gzip.compress(bytes(1 << 24), 1)
        ),
        " needs at least 1024.0 TiB for its members up to './etc/zeros', and only ",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=HOSTILE.keys())
def test_hostile_template_is_refused_in_bounded_time(case: str, tmp_path: Path) -> None:
    """Issue 12 item 5: whatever the headers claim, preflight answers with one line (the timeout is a hang guard)."""
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "dest"
    make, message = HOSTILE[case]
    template = tmp_path / f"{case}.tar"
    template.write_bytes(make())
    lines = _refused_in_one_line(template, dest)
    assert lines[0].startswith(f"vmbuilder: error: template {template}{message}"), lines[0]
    assert list(work.iterdir()) == [], "nothing may be created beside DEST"


def _has_export(builder: Builder) -> bool:
    """Whether the export plugin (--export tar) is installed in this tree."""
    proc = subprocess.run(builder.argv("--help"), capture_output=True, text=True, timeout=60, cwd="/")
    return "--export " in proc.stdout


def _template_from(builder: Builder, tmp_path: Path) -> Path:
    """A tar template of a default noble build: our --export tar if there is one, else tar of the rootfs."""
    base = tmp_path / "base"
    exports = tmp_path / "exports"
    if _has_export(builder):
        exports.mkdir()
        builder.run(
            "--suite", "noble", "-d", str(base), "--network", "none", "--export", "tar", "--export-dir", str(exports)
        ).check()  # fmt: skip
        found = sorted(exports.glob("base.tar*"))
        assert found, f"--export tar wrote nothing named base.tar* into {exports}: {list(exports.iterdir())}"
        return found[0]
    builder.run("--suite", "noble", "-d", str(base), "--network", "none").check()
    template = tmp_path / "noble.tar.gz"
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(base / "rootfs"), "-czf", str(template), "."], check=True
    )
    return template


def test_round_trip_boots_with_its_own_identity(
    builder: Builder, tmp_path: Path, container: Callable[[Path], Container], lxcfs: Path
) -> None:
    """Our own tar template, imported under another name, boots to running as that name with a fresh id."""
    template = _template_from(builder, tmp_path)
    dest = tmp_path / "imp1"
    build = builder.run(
        "--from-template", str(template), "-d", str(dest), "--network", "none", "--hostname", "imported"
    ).check()  # fmt: skip

    info = build.summary["template"]
    assert info["path"] == str(template)
    assert info["layout"] == "rootfs"
    assert info["os_release"]["VERSION_CODENAME"] == "noble"
    assert info["ours"] is True
    sha = subprocess.run(["sha256sum", str(template)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert info["sha256"] == sha
    assert build.summary["release"]["series"] == "noble"
    assert "cache" not in build.summary  # nothing was bootstrapped

    rootfs = dest / "rootfs"
    with tarfile.open(template) as archive:  # device nodes in dev/ are not extracted, and the build says so
        devices = [m.name for m in archive if m.ischr() or m.isblk()]
    if devices:
        assert f"skipped {len(devices)} device node" in build.stderr, build.stderr[-3000:]
    nodes = [
        p for p in (rootfs / "dev").iterdir() if stat.S_ISCHR(p.lstat().st_mode) or stat.S_ISBLK(p.lstat().st_mode)
    ]
    assert not nodes
    assert (rootfs / "etc/hostname").read_text() == "imported\n"
    assert "127.0.1.1\timported" in (rootfs / "etc/hosts").read_text().splitlines()
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert not list((rootfs / "etc/ssh").glob("ssh_host_*"))
    passwd = (rootfs / "etc/passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in passwd].count("ubuntu") == 1, "the template's user is not added twice"
    assert (dest / "config").is_file()

    c = boot_within(container, dest, "imported noble")
    assert c.sh("hostname") == "imported"
    assert re.fullmatch(r"[0-9a-f]{32}", c.sh("cat /etc/machine-id")), "a fresh machine-id at first boot"
    assert "ssh-ed25519" in c.sh("ssh-keyscan -T 10 -t ed25519 127.0.0.1 2>/dev/null")  # keys made at boot
    assert c.sh("passwd -S ubuntu").split()[1] == "L"
    assert c.failed_units() == []
    assert c.sh("systemctl is-system-running") == "running"
