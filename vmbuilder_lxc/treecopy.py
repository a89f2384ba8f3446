"""A base system copied as one `cp -a` would copy it, by two `cp -a` on the two cores.

`cp -a` of a base system is kernel time on one core (0.92 s of system time in a 0.94 s copy of a
jammy base here); two copies of two parts of the tree side by side finish in about three quarters
of that, and a warm `--backing dir` build is mostly this copy. The tree is split at `usr/`, the
bulk of every base: usr/lib is one part, everything else the other, each copied by
`cp -a --parents` from inside the tree. What one `cp -a` gives and two do not is then restored:

- hard links between the parts (each cp keeps the links within its own part) are joined again,
  from the source's inode numbers;
- the two directories both parts write into (the top and `usr`) get the source's owner, mode,
  extended attributes (ACLs, capabilities, SELinux labels) and times, the times last.

A tree without a real `usr/lib` and another entry in `usr/`, or a one-core machine, gets one plain
`cp -a`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .run import run

CP = ("cp", "-a", "--reflink=auto")
# Both parts run in one shell (run() runs one command at a time): the large part in the
# background, the rest in the foreground, and the shell fails if either cp failed.
SPLIT_SCRIPT = """\
dst=$1 big=$2
shift 2
cp -a --reflink=auto --parents -t "$dst" -- "$big" & pid=$!
rest=0
cp -a --reflink=auto --parents -t "$dst" -- "$@" || rest=$?
wait "$pid" || exit $?
exit "$rest"
"""


def split(src: Path) -> tuple[str, list[str]] | None:
    """(usr/lib, every other entry), relative to src; None: copy it whole. usr/lib holds about half
    of every Debian-family base (libraries, perl, python; 93 of jammy's 197 MB), and naming it
    costs nothing, where weighing every child would walk the tree before the copy starts."""
    usr = src / "usr"
    if (os.cpu_count() or 1) < 2 or usr.is_symlink() or not usr.is_dir():
        return None
    lib = usr / "lib"
    if lib.is_symlink() or not lib.is_dir():
        return None
    rest = sorted(f"usr/{name}" for name in os.listdir(usr) if name != "lib")
    if not rest:
        return None
    return "usr/lib", rest + sorted(name for name in os.listdir(src) if name != "usr")


def copy_tree(src: Path, dst: Path, progress: str, link_sets: Callable[[], Iterable[Sequence[str]]]) -> None:
    """`cp -a` of the tree at src onto the directory dst (made if missing), split where it pays.
    `link_sets` gives the paths of src that share an inode, by set: the cache's check collects
    them in the walk it makes anyway (cachetree.compare), so no second walk is needed."""
    dst.mkdir(parents=True, exist_ok=True)
    parts = split(src)
    if parts is None:
        run([*CP, "--no-target-directory", "--", src, dst], progress=progress)
        return
    big, rest = parts
    (dst / "usr").mkdir(mode=0o700, exist_ok=True)
    run(["sh", "-c", SPLIT_SCRIPT, "sh", dst.absolute(), big, *rest], cwd=src, progress=progress)
    join_hard_links(src, dst, link_sets())
    for rel in ("usr", "."):  # the inner one first: setting usr's times leaves the top's alone
        copy_dir_metadata(src / rel, dst / rel)


def join_hard_links(src: Path, dst: Path, link_sets: Iterable[Sequence[str]]) -> None:
    """Link again in dst every set of paths that share an inode in src but were copied apart."""
    touched: set[str] = set()
    for paths in link_sets:
        first = dst / paths[0]
        ino = first.lstat().st_ino
        for rel in paths[1:]:
            target = dst / rel
            if target.lstat().st_ino != ino:
                temp = target.with_name(f".{target.name}.vmbuilder-link")
                os.link(first, temp, follow_symlinks=False)  # a linked symlink is joined, never what it names
                os.replace(temp, target)
                touched.add(os.path.dirname(rel))
    for rel in touched:  # a rename sets its directory's times: back to the source's, as cp -a left them
        st = (src / rel).lstat()
        os.utime(dst / rel, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_dir_metadata(src: Path, dst: Path) -> None:
    """Owner, mode, extended attributes, then times of directory src onto dst (as cp -a does)."""
    st = src.lstat()
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    wanted = set(os.listxattr(src, follow_symlinks=False))
    for name in os.listxattr(dst, follow_symlinks=False):
        if name not in wanted:
            os.removexattr(dst, name, follow_symlinks=False)
    for name in sorted(wanted):
        os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
