"""treecopy: a tree copied by two `cp -a` side by side ends up as one `cp -a` leaves it.

The copies run for real on a small tree in tmp_path that has what the split must not lose: hard
links between the two parts and within one, owners, modes, extended attributes and times on the
two directories both parts write into, and entries of every kind.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmbuilder_lxc import treecopy
from vmbuilder_lxc.cache import BaseCache

ROOT = os.geteuid() == 0


def make_tree(top: Path) -> Path:
    src = top / "src"
    for d in ("usr/lib/x86_64-linux-gnu", "usr/bin", "usr/share/doc", "etc", "var/lib", "tmp"):
        (src / d).mkdir(parents=True)
    (src / "usr/lib/x86_64-linux-gnu/libbig.so").write_bytes(os.urandom(300_000))  # usr/lib: the large part
    (src / "usr/bin/perl").write_bytes(b"\x7fELF" + bytes(1000))
    os.link(src / "usr/bin/perl", src / "usr/lib/perl-alias")  # across the parts
    os.link(src / "usr/bin/perl", src / "usr/bin/perl5.36")  # within one part
    os.link(src / "usr/lib/x86_64-linux-gnu/libbig.so", src / "etc/libbig.link")  # across again
    (src / "usr/share/doc/README").write_text("doc\n")
    os.symlink("usr/bin", src / "bin")
    os.symlink("../bin/perl", src / "usr/share/perl-link")
    # a hard-linked symlink across the parts: joined as the link itself, never as what it points at
    os.link(src / "usr/share/perl-link", src / "usr/lib/perl-link-alias", follow_symlinks=False)
    os.mkfifo(src / "var/lib/fifo")
    (src / "tmp").chmod(0o1777)
    (src / "usr/bin/perl").chmod(0o4755)
    for d, mode in (("usr", 0o750), (".", 0o711)):
        path = src / d
        os.setxattr(path, "user.vmbuilder-test", f"on {d}".encode())
        path.chmod(mode)
        if ROOT:
            os.setxattr(path, "trusted.vmbuilder-test", b"t")
            os.chown(path, 1234, 5678)
    for i, d in enumerate(("usr/bin", "usr", ".")):  # the innermost first: each touches its parent
        os.utime(src / d, ns=(1_000_000_000 + i, 1_500_000_000_123_456_789 + i))
    return src


def snapshot(top: Path) -> tuple[dict[str, Any], set[frozenset[str]]]:
    """Every path's metadata (times of directories too) and the sets of paths sharing an inode."""
    entries: dict[str, Any] = {}
    inodes: dict[int, set[str]] = {}
    for path in [top, *sorted(top.rglob("*"))]:
        rel = os.path.relpath(path, top)
        st = path.lstat()
        xattrs = {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
        link = os.readlink(path) if path.is_symlink() else None
        size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
        entries[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size,
                        st.st_mtime_ns, xattrs, link)  # fmt: skip
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            inodes.setdefault(st.st_ino, set()).add(rel)
    return entries, {frozenset(paths) for paths in inodes.values()}


def link_sets(src: Path) -> Any:
    """What the cache's check hands copy_tree: src's paths that share an inode, by set."""
    return lambda: [sorted(paths) for paths in snapshot(src)[1]]


@pytest.fixture
def src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return make_tree(tmp_path)


def test_the_tree_is_split_at_usr_lib(src: Path) -> None:
    assert treecopy.split(src) == ("usr/lib", ["usr/bin", "usr/share", "bin", "etc", "tmp", "var"])


def test_a_split_copy_is_what_one_cp_a_makes(src: Path, tmp_path: Path) -> None:
    subprocess.run(["cp", "-a", "--no-target-directory", str(src), str(tmp_path / "one")], check=True)
    treecopy.copy_tree(src, tmp_path / "two", "copying", link_sets(src))
    one, two = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert two == one
    assert frozenset({"usr/bin/perl", "usr/bin/perl5.36", "usr/lib/perl-alias"}) in two[1]
    assert two[0]["usr"][5] == 1_500_000_000_123_456_790 and two[0]["."][1] == 0o711


def test_a_copy_into_an_existing_empty_directory(src: Path, tmp_path: Path) -> None:
    """restore() makes the rootfs before it copies: its own mode and times are replaced by src's."""
    (tmp_path / "two").mkdir(mode=0o755)
    os.setxattr(tmp_path / "two", "user.stale", b"x")
    subprocess.run(["cp", "-a", "--no-target-directory", str(src), str(tmp_path / "one")], check=True)
    treecopy.copy_tree(src, tmp_path / "two", "copying", link_sets(src))
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")


@pytest.mark.parametrize("why", ["one core", "usr is a link", "no usr", "usr has one child"])
def test_other_trees_get_one_plain_copy(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        why: str) -> None:  # fmt: skip
    if why == "one core":
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
    elif why == "usr is a link":
        os.rename(src / "usr", src / "realusr")
        os.symlink("realusr", src / "usr")
    elif why == "no usr":
        os.rename(src / "usr", src / "realusr")
    else:
        for child in ("bin", "share"):
            subprocess.run(["rm", "-rf", str(src / "usr" / child)], check=True)
    assert treecopy.split(src) is None
    subprocess.run(["cp", "-a", "--no-target-directory", str(src), str(tmp_path / "one")], check=True)
    treecopy.copy_tree(src, tmp_path / "two", "copying", link_sets(src))
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")


def test_a_failing_part_fails_the_copy(src: Path, tmp_path: Path) -> None:
    from vmbuilder_lxc.run import CommandError

    (tmp_path / "two/usr/share").mkdir(parents=True)
    (tmp_path / "two/usr/share/doc").write_text("a file where the copy needs a directory")
    with pytest.raises(CommandError):
        treecopy.copy_tree(src, tmp_path / "two", "copying", link_sets(src))


def test_a_cache_hit_is_copied_split_with_the_links_its_check_found(src: Path, tmp_path: Path) -> None:
    """restore() hands copy_tree the hard links that the tree check collected while cp ran."""
    cache = BaseCache(tmp_path / "cache")
    with cache.locked("k"):
        stored = cache.store("k", src, {"suite": "noble"}, {})
        assert stored is not None
        entry = cache.lookup("k", content=False)
        assert entry is not None and cache.restore(entry, tmp_path / "ct/rootfs")
    subprocess.run(["cp", "-a", "--no-target-directory", str(entry.root), str(tmp_path / "one")], check=True)
    assert snapshot(tmp_path / "ct/rootfs") == snapshot(tmp_path / "one")
