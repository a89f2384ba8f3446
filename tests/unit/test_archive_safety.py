"""archive_safety: every rule has a crafted bad archive and a good one that must pass.

Members are TarInfo objects built by hand (links, devices and odd types included), checked directly
with check_members() and written to real archives in tmp_path for check_archive() and
safe_extract(). The archives that are extracted aim every escape at tmp_path/outside, never at
the host, so a checker bug shows up as a file there instead of damage elsewhere.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from vmbuilder_lxc.archive_safety import (
    MemberProblem,
    UnsafeArchive,
    check_archive,
    check_members,
    read_members,
    safe_extract,
)
from vmbuilder_lxc.log import UserError

DATA = b"data\n"


def member(name: str, type: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = mode
    info.size = len(DATA) if info.isreg() else 0
    return info


def f(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    return member(name, mode=mode)


def d(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    return member(name, tarfile.DIRTYPE, mode=mode)


def sym(name: str, target: str) -> tarfile.TarInfo:
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hard(name: str, target: str) -> tarfile.TarInfo:
    return member(name, tarfile.LNKTYPE, linkname=target)


def chr_(name: str) -> tarfile.TarInfo:
    info = member(name, tarfile.CHRTYPE, mode=0o666)
    info.devmajor, info.devminor = 1, 3
    return info


def blk(name: str) -> tarfile.TarInfo:
    info = member(name, tarfile.BLKTYPE, mode=0o660)
    info.devmajor, info.devminor = 7, 0
    return info


def fifo(name: str) -> tarfile.TarInfo:
    return member(name, tarfile.FIFOTYPE)


WriteMode = Literal["w", "w:gz", "w:bz2", "w:xz"]


def write_tar(path: Path, members: list[tarfile.TarInfo], mode: WriteMode = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(DATA) if info.isreg() else None)
    return path


def zstd_tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    plain = write_tar(path.with_suffix(""), members)
    subprocess.run(["zstd", "-q", "--rm", "-o", str(path), str(plain)], check=True)
    return path


def only_problem(problems: list[MemberProblem]) -> MemberProblem:
    assert len(problems) == 1, problems
    return problems[0]


def listing(root: Path) -> list[str]:
    """Everything under `root`, links not followed: what an escape would change."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- The rules, member by member ----------------------------------------------------------------
# Each case: the members, check_members() keywords, the member named and a fragment of the reason.
# `out` is where an escape would land; check_members() tests pass "/etc" like a real attack.

Case = tuple[Callable[[str], list[tarfile.TarInfo]], dict[str, object], str, str]

BAD: dict[str, Case] = {
    "absolute-name": (lambda out: [f(f"{out}/passwd")], {}, "{out}/passwd", "absolute member name"),
    "dotdot-escape": (lambda out: [f("../../etc/passwd")], {}, "../../etc/passwd", "outside the archive root"),
    "dotdot-escape-inner": (lambda out: [d("a"), f("a/../../x")], {}, "a/../../x", "outside the archive root"),
    "symlink-relative-escape": (
        lambda out: [d("etc"), sym("etc/x", "../../../etc/shadow")],
        {},
        "etc/x",
        "symlink to '../../../etc/shadow' leads outside the root",
    ),
    "symlink-root-escape": (lambda out: [sym("up", "..")], {}, "up", "leads outside the root"),
    "through-absolute-symlink": (
        lambda out: [sym("evil", out), f("evil/passwd")],
        {},
        "evil/passwd",
        "extracting through the symlink 'evil'",
    ),
    "through-symlink-dotdot": (
        lambda out: [d("z"), sym("z/y", out), f("z/y/../b")],
        {},
        "z/y/../b",
        "through the symlink 'z/y'",
    ),
    "through-relative-symlink": (
        lambda out: [d("a"), sym("a/lib", "../bin"), d("bin"), f("a/lib/x")],
        {},
        "a/lib/x",
        "through the symlink 'a/lib'",
    ),
    "hardlink-absolute": (
        lambda out: [f("a"), hard("b", f"{out}/target")],
        {},
        "b",
        "hardlink to the absolute path",
    ),
    "hardlink-escape": (lambda out: [hard("b", "../outside/target")], {}, "b", "leads outside the archive root"),
    "hardlink-not-earlier": (lambda out: [hard("b", "a"), f("a")], {}, "b", "not an earlier member"),
    "hardlink-missing": (lambda out: [hard("b", "nowhere")], {}, "b", "not an earlier member"),
    "hardlink-directory": (lambda out: [d("a"), hard("b", "a")], {}, "b", "hardlink to the directory"),
    "hardlink-through-symlink": (
        lambda out: [sym("s", out), hard("b", "s/target")],
        {},
        "b",
        "passes through the symlink 's'",
    ),
    "hardlink-gnu-reads-otherwise": (
        lambda out: [d("z"), d("z/y"), f("z/b"), f("b"), hard("h", "z/y/../b")],
        {},
        "h",
        "GNU tar would link it to 'b', not 'z/b'",
    ),
    "hardlink-to-escaping-symlink": (
        lambda out: [d("a"), d("a/b"), sym("a/b/c", "../x"), hard("q", "a/b/c")],
        {},
        "q",
        "symlink to '../x' leads outside the root",
    ),
    "hardlink-to-device": (
        lambda out: [d("dev"), chr_("dev/null"), d("etc"), hard("etc/null", "dev/null")],
        {},
        "etc/null",
        "character device outside dev/",
    ),
    "chr-outside-dev": (lambda out: [d("etc"), chr_("etc/null")], {}, "etc/null", "character device outside dev/"),
    "blk-outside-dev": (lambda out: [blk("sda")], {}, "sda", "block device outside dev/"),
    "device-named-dev": (lambda out: [chr_("dev")], {}, "dev", "character device outside dev/"),
    "setuid-refused": (
        lambda out: [d("usr"), f("usr/su", 0o4755)],
        {"allow_setuid": False},
        "usr/su",
        "setuid or setgid file (mode 4755)",
    ),
    "setgid-refused": (
        lambda out: [f("wall", 0o2755)],
        {"allow_setuid": False},
        "wall",
        "setuid or setgid file (mode 2755)",
    ),
    "unknown-type": (lambda out: [member("x", b"Z")], {}, "x", "unsupported member type 'Z'"),
    "gnu-dumpdir-type": (lambda out: [member("x", b"D")], {}, "x", "unsupported member type 'D'"),
    "dir-then-symlink": (
        lambda out: [d("etc"), sym("etc", out), f("etc/passwd")],
        {},
        "etc",
        "replaces an earlier directory of the same name with a symlink",
    ),
    "implicit-dir-then-symlink": (
        lambda out: [f("a/b"), sym("a", out)],
        {},
        "a",
        "replaces an earlier directory",
    ),
    "dir-then-hardlinked-symlink": (
        lambda out: [sym("s", out), d("x"), hard("x", "s")],
        {},
        "x",
        "replaces an earlier directory",
    ),
    "symlink-then-dir": (
        lambda out: [sym("s", out), d("s", 0o777)],
        {},
        "s",
        "turns an earlier symlink of the same name into a directory",
    ),
    "root-is-symlink": (lambda out: [sym(".", out)], {}, ".", "the root directory itself is a symlink"),
    "strip-root-is-symlink": (
        lambda out: [sym("rootfs", out)],
        {"strip": "rootfs"},
        "rootfs",
        "the root directory itself is a symlink",
    ),
    "strip-double-slash": (
        lambda out: [d("rootfs"), f(f"rootfs/{out}/escaped")],
        {"strip": "rootfs"},
        "rootfs/{out}/escaped",
        "GNU tar --strip-components would extract it as the absolute path '{out}/escaped'",
    ),
    "strip-mixed-spelling": (
        lambda out: [d("rootfs"), f("rootfs/a"), f("./rootfs/b")],
        {"strip": "rootfs"},
        "./rootfs/b",
        "GNU tar strips only one spelling",
    ),
    "strip-unusual-spelling": (
        lambda out: [d("x"), f("x/../rootfs/f")],
        {"strip": "rootfs"},
        "x/../rootfs/f",
        "spells the rootfs/ prefix unusually",
    ),
    "strip-hardlink-outside": (
        lambda out: [f("metadata.yaml"), d("rootfs"), hard("rootfs/m", "metadata.yaml")],
        {"strip": "rootfs"},
        "rootfs/m",
        "other side of the rootfs/ boundary",
    ),
    "strip-hardlink-spelling": (
        lambda out: [d("rootfs"), f("rootfs/a"), hard("rootfs/b", "./rootfs/a")],
        {"strip": "rootfs"},
        "rootfs/b",
        "would not find the hardlink target",
    ),
    "strip-device-outside": (
        lambda out: [d("dev"), chr_("dev/null"), d("rootfs"), f("rootfs/x")],
        {"strip": "rootfs"},
        "dev/null",
        "character device outside the rootfs/ directory",
    ),
}

GOOD: dict[str, tuple[list[tarfile.TarInfo], dict[str, object]]] = {
    "normalised-names": ([d("./"), d("./etc"), f("etc//passwd"), f("./etc/group")], {}),
    "dotdot-inside": ([d("a"), f("a/../b")], {}),
    "absolute-symlinks": ([d("sbin"), sym("sbin/init", "/lib/systemd/systemd"), sym("lib64", "/usr/lib64")], {}),
    "relative-symlink-inside": ([d("etc"), sym("etc/x", "../usr/share/x"), sym("y", "./etc/../etc/x")], {}),
    "merged-usr": ([sym("bin", "usr/bin"), d("usr"), d("usr/bin"), f("usr/bin/ls"), sym("lib", "usr/lib")], {}),
    "symlink-replaced-by-file": ([sym("a", "/etc"), f("a")], {}),
    "hardlinks": ([d("usr"), f("usr/a"), hard("usr/b", "usr/a"), hard("./c", "./usr/b"), hard("d", "x/../usr/a")], {}),
    "hardlink-to-symlink": ([sym("s", "/etc/os-release"), hard("t", "s")], {}),
    "devices-under-dev": (
        [d("dev"), chr_("dev/null"), blk("dev/loop0"), d("dev/net"), chr_("dev/net/tun"), hard("dev/n", "dev/null")],
        {},
    ),
    "fifos-anywhere": ([d("run"), fifo("run/initctl"), fifo("fifo")], {}),
    "setuid-allowed": ([d("usr"), f("usr/su", 0o4755), f("usr/wall", 0o2755)], {}),
    "setgid-directory": ([d("var"), d("var/mail", 0o2775), d("var/local", 0o2775)], {"allow_setuid": False}),
    "regular-kinds": ([member("sparse", tarfile.GNUTYPE_SPARSE), member("contiguous", tarfile.CONTTYPE)], {}),
    "duplicates": ([d("etc"), d("etc", 0o700), f("a"), f("a"), d("b"), f("b/c"), d("b")], {}),
    "lxd-unified": (
        [
            f("metadata.yaml"),
            d("templates"),
            f("templates/hostname.tpl"),
            d("rootfs"),
            d("rootfs/etc"),
            f("rootfs/etc/hostname"),
            sym("rootfs/bin", "usr/bin"),
            sym("rootfs/sbin/init", "/lib/systemd/systemd"),
            d("rootfs/dev"),
            chr_("rootfs/dev/null"),
            hard("rootfs/etc/hostname2", "rootfs/etc/hostname"),
        ],
        {"strip": "rootfs"},
    ),
    "dot-slash-rootfs": (
        [
            d("./"),
            f("./metadata.yaml"),
            d("./rootfs"),
            d("./rootfs/etc"),
            f("./rootfs/etc/a"),
            hard("./rootfs/etc/b", "./rootfs/etc/a"),
        ],
        {"strip": "rootfs/"},
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_members(case: Case) -> None:
    members, kwargs, name, why = case
    problems = check_members(members("/etc"), **kwargs)  # type: ignore[arg-type]
    assert problems, "not refused"
    first = problems[0]
    assert first.name == name.format(out="/etc")
    assert why.format(out="/etc") in first.why


@pytest.mark.parametrize("case", GOOD.values(), ids=GOOD.keys())
def test_good_members(case: tuple[list[tarfile.TarInfo], dict[str, object]]) -> None:
    members, kwargs = case
    assert check_members(members, **kwargs) == []  # type: ignore[arg-type]


def test_brief_examples() -> None:
    """The examples of the rules, verbatim."""
    assert only_problem(check_members([f("/etc/passwd")])).why == "absolute member name"
    assert check_members([sym("evil", "/etc"), f("evil/passwd")]) == [
        MemberProblem("evil/passwd", "extracting through the symlink 'evil' (to '/etc') would write outside the root")
    ]
    # lib -> ../../.. escapes by itself, and lib/x is written through it: two problems.
    problems = check_members([sym("lib", "../../.."), f("lib/x")])
    assert [p.name for p in problems] == ["lib", "lib/x"]


def test_setuid_hint() -> None:
    problem = only_problem(check_members([f("su", 0o4755)], allow_setuid=False))
    assert "setuid" in problem.hint


def test_nul_in_name() -> None:
    problem = only_problem(check_members([f("s\0x")]))
    assert "NUL" in problem.why


def test_invalid_strip() -> None:
    with pytest.raises(UserError, match="invalid strip prefix '../rootfs'"):
        check_members([], strip="../rootfs")


# --- check_archive: compressions, damaged and foreign files ----------------------------------------

GOOD_ROOTFS = [
    d("./"),
    d("./etc"),
    f("./etc/hostname"),
    d("./usr"),
    d("./usr/bin"),
    f("./usr/bin/ls", 0o755),
    hard("./usr/bin/dir", "./usr/bin/ls"),
    f("./usr/bin/su", 0o4755),
    sym("./bin", "usr/bin"),
    d("./sbin"),
    sym("./sbin/init", "/lib/systemd/systemd"),
    d("./run"),
    fifo("./run/initctl"),
]


WRITE_MODES: dict[str, WriteMode] = {".tar": "w", ".tar.gz": "w:gz", ".tar.bz2": "w:bz2", ".tar.xz": "w:xz"}


def compressed(tmp_path: Path, suffix: str, members: list[tarfile.TarInfo]) -> Path:
    path = tmp_path / f"t{suffix}"
    if suffix == ".tar.zst":
        return zstd_tar(path, members)
    return write_tar(path, members, WRITE_MODES[suffix])


SUFFIXES = [".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_check_archive_good(tmp_path: Path, suffix: str) -> None:
    check_archive(compressed(tmp_path, suffix, GOOD_ROOTFS))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_check_archive_bad(tmp_path: Path, suffix: str) -> None:
    members = [*GOOD_ROOTFS, sym("./evil", "/etc"), f("./evil/passwd"), f("./evil/shadow")]
    path = compressed(tmp_path, suffix, members)
    with pytest.raises(UnsafeArchive) as caught:
        check_archive(path)
    text = str(caught.value)
    assert "\n" not in text
    assert caught.value.message == (
        f"{path}: unsafe member './evil/passwd': extracting through the symlink 'evil' (to '/etc') would write "
        "outside the root (and 1 more problem)"
    )
    assert caught.value.hint and "trust" in caught.value.hint


@pytest.mark.parametrize("name", BAD.keys())
def test_check_archive_each_rule(tmp_path: Path, name: str) -> None:
    members, kwargs, member_name, _ = BAD[name]
    out = str(tmp_path / "outside")
    path = write_tar(tmp_path / "bad.tar.gz", members(out), "w:gz")
    with pytest.raises(UnsafeArchive, match="unsafe member") as caught:
        check_archive(path, **kwargs)  # type: ignore[arg-type]
    assert repr(member_name.format(out=out)) in caught.value.message
    assert "\n" not in str(caught.value)


def test_check_archive_allows_setuid_by_default(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar", [f("su", 0o4755)])
    check_archive(path)
    with pytest.raises(UnsafeArchive, match="setuid"):
        check_archive(path, allow_setuid=False)


def test_names_stay_on_one_line(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar", [f("/etc/cron.d/x\nroot")])
    with pytest.raises(UnsafeArchive) as caught:
        check_archive(path)
    assert "\n" not in str(caught.value)
    assert "'/etc/cron.d/x\\nroot'" in str(caught.value)


def test_damaged_header_is_refused(tmp_path: Path) -> None:
    """tarfile stops at a bad checksum; GNU tar skips the header and extracts what follows."""
    first = write_tar(tmp_path / "a.tar", [f("one")]).read_bytes()[:1024]
    second = bytearray(write_tar(tmp_path / "b.tar", [f("two")]).read_bytes()[:1024])
    second[148:156] = b"0000000\0"  # a wrong checksum
    third = write_tar(tmp_path / "c.tar", [sym("evil", "/etc"), f("evil/passwd")]).read_bytes()
    path = tmp_path / "damaged.tar"
    path.write_bytes(first + bytes(second) + third)
    with pytest.raises(UnsafeArchive, match=r"the tar header at byte 1024 is damaged .*GNU tar would skip it"):
        check_archive(path)


def test_not_a_tar_archive(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 200)
    with pytest.raises(UserError, match=r"cannot read .*notes.txt as a tar archive") as caught:
        check_archive(path)
    assert not isinstance(caught.value, UnsafeArchive)
    assert "\n" not in str(caught.value)


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read .*: No such file or directory"):
        check_archive(tmp_path / "missing.tar.xz")


def test_truncated_zstd(tmp_path: Path) -> None:
    path = zstd_tar(tmp_path / "t.tar.zst", GOOD_ROOTFS + [f(f"big{i}") for i in range(50)])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UserError, match=r"cannot decompress .*t\.tar\.zst"):
        check_archive(path)


def test_truncated_xz(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar.xz", GOOD_ROOTFS, "w:xz")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(UserError, match="cannot read .* as a tar archive"):
        check_archive(path)


# --- safe_extract ------------------------------------------------------------------------------------


def test_safe_extract_rootfs(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "rootfs.tar.xz", GOOD_ROOTFS, "w:xz")
    dest = tmp_path / "dest"
    safe_extract(path, dest)
    assert listing(tmp_path) == sorted(
        ["rootfs.tar.xz", "dest", *(f"dest/{p}" for p in ["etc", "etc/hostname", "usr", "usr/bin", "usr/bin/ls",
         "usr/bin/dir", "usr/bin/su", "bin", "sbin", "sbin/init", "run", "run/initctl"])]
    )  # fmt: skip
    assert (dest / "etc/hostname").read_bytes() == DATA
    assert os.readlink(dest / "sbin/init") == "/lib/systemd/systemd"
    assert os.readlink(dest / "bin") == "usr/bin"
    assert os.path.samefile(dest / "usr/bin/ls", dest / "usr/bin/dir")
    assert stat.S_ISFIFO((dest / "run/initctl").lstat().st_mode)
    if os.geteuid() == 0:
        assert stat.S_IMODE((dest / "usr/bin/su").stat().st_mode) == 0o4755


@pytest.mark.parametrize("spelling", ["rootfs", "./rootfs"])
def test_safe_extract_lxd_unified(tmp_path: Path, spelling: str) -> None:
    lead = "./" if spelling.startswith("./") else ""
    members = [
        f(f"{lead}metadata.yaml"),
        d(f"{lead}templates"),
        f(f"{lead}templates/hostname.tpl"),
        d(spelling),
        d(f"{spelling}/etc"),
        f(f"{spelling}/etc/hostname"),
        hard(f"{spelling}/etc/hostname2", f"{spelling}/etc/hostname"),
        sym(f"{spelling}/bin", "usr/bin"),
    ]
    path = write_tar(tmp_path / "unified.tar.gz", members, "w:gz")
    dest = tmp_path / "dest"
    dest.mkdir()
    safe_extract(path, dest, strip="rootfs")
    assert listing(tmp_path) == [
        "dest", "dest/bin", "dest/etc", "dest/etc/hostname", "dest/etc/hostname2", "unified.tar.gz",
    ]  # fmt: skip
    assert os.path.samefile(dest / "etc/hostname", dest / "etc/hostname2")


def test_safe_extract_zstd(tmp_path: Path) -> None:
    path = zstd_tar(tmp_path / "rootfs.tar.zst", GOOD_ROOTFS)
    safe_extract(path, tmp_path / "dest")
    assert (tmp_path / "dest/usr/bin/ls").read_bytes() == DATA


@pytest.mark.parametrize("name", BAD.keys())
def test_safe_extract_refuses_before_writing(tmp_path: Path, name: str) -> None:
    members, kwargs, _, _ = BAD[name]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("host file\n")
    path = write_tar(tmp_path / "bad.tar", members(str(outside)))
    dest = tmp_path / "dest"
    dest.mkdir()
    before = listing(tmp_path)
    with pytest.raises(UnsafeArchive):
        safe_extract(path, dest, **kwargs)  # type: ignore[arg-type]
    assert listing(tmp_path) == before
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("members", "strip"),
    [([d("a"), f("a/../b")], ""), ([d("rootfs"), f("rootfs/x"), f("rootfs/../metadata.yaml")], "rootfs")],
    ids=["plain", "selected-by-strip"],
)
def test_safe_extract_refuses_dotdot_names(tmp_path: Path, members: list[tarfile.TarInfo], strip: str) -> None:
    """`a/../b` stays inside, but GNU tar refuses such names: refused before anything is written."""
    path = write_tar(tmp_path / "t.tar", members)
    check_archive(path, strip=strip)
    with pytest.raises(UnsafeArchive, match="GNU tar refuses member names containing '..'"):
        safe_extract(path, tmp_path / "dest", strip=strip)
    assert not (tmp_path / "dest").exists()


def test_safe_extract_nothing_under_strip(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar", [f("metadata.yaml"), d("rootfs")])
    with pytest.raises(UserError, match="has nothing under rootfs/"):
        safe_extract(path, tmp_path / "dest", strip="rootfs")
    assert not (tmp_path / "dest").exists()


def test_safe_extract_needs_empty_dest(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar", GOOD_ROOTFS)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old").write_text("x")
    with pytest.raises(UserError, match="is not an empty directory"):
        safe_extract(path, dest)
    with pytest.raises(UserError, match="is not an empty directory"):
        safe_extract(path, dest / "old")
    assert listing(dest) == ["old"]


def test_check_members_gnu_tar_agrees_with_safe_extract() -> None:
    """gnu_tar=True refuses ahead of time what safe_extract() would refuse (a checked-early import)."""
    members = [d("a"), f("a/../b")]
    assert check_members(members) == []
    assert "GNU tar refuses" in only_problem(check_members(members, gnu_tar=True)).why


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_read_members_returns_wanted_contents(tmp_path: Path, suffix: str) -> None:
    path = compressed(tmp_path, suffix, GOOD_ROOTFS)
    seen = list(read_members(path, lambda m: m.name == "./etc/hostname"))
    assert len(seen) == len(GOOD_ROOTFS)
    assert {m.name: data for m, data in seen if data is not None} == {"./etc/hostname": DATA}


def test_read_members_is_strict(tmp_path: Path) -> None:
    path = compressed(tmp_path, ".tar.xz", GOOD_ROOTFS)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UserError, match="cannot read"):
        list(read_members(path, lambda m: True))
