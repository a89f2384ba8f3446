"""The one confined way to read and write inside a guest rootfs.

The build runs as root and the rootfs may come from a hostile imported image, so any symlink in it may
point at a host file. Every guest path is resolved like a chroot would resolve it: relative to
the rootfs, absolute symlinks and `..` included, never above it. Linux's openat2(2) with
RESOLVE_IN_ROOT does that in the kernel (openat2.py); where it is missing (ENOSYS, or a seccomp
filter's EPERM) a walker (guestpath.py) opens one component at a time with O_NOFOLLOW and resolves
symlinks itself.

Writes never open an existing file in place: data goes to a new file beside the target, which is
then renamed over it. So a symlink at the final component is replaced, not followed (unless a
caller asks to follow it, and then only inside the root), a hard link shared with the host is
never written through, and pseudo files (a `proc` mounted in the rootfs) cannot be written at all.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import openat2
from .guestpath import MAXSYMLINKS, O_DIR, GuestPathError, split_path, walk

TMP_PREFIX = ".vmbuilder-tmp."


class GuestFS:
    """A rootfs directory, opened once; every method takes an absolute (or root-relative) guest path.

    `kernel=False` forces the component walker (the tests run both).
    """

    def __init__(self, root: Path | str, *, kernel: bool | None = None) -> None:
        self.root = Path(root)
        self.fd = os.open(self.root, O_DIR)
        self.fake = not isinstance(os, types.ModuleType)  # a test's fake file system has no real descriptors
        self.kernel = not self.fake and openat2.available() if kernel is None else kernel

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> GuestFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolution -----------------------------------------------------------------------------

    def open_dir(self, path: str) -> int:
        """An O_PATH descriptor of directory `path`, resolved inside the root (the caller closes it)."""
        if self.kernel:
            return openat2.open_in_root(self.fd, path or "/", O_DIR)
        return walk(self.fd, path)

    def _parent(self, path: str, parents: bool) -> tuple[int, str]:
        parent, name = split_path(path)
        try:
            return self.open_dir(parent), name
        except FileNotFoundError:
            if not parents:
                raise
        self.mkdir(parent, parents=True, exist_ok=True)
        return self.open_dir(parent), name

    @contextmanager
    def at(self, path: str, *, follow: bool = False, parents: bool = False) -> Iterator[tuple[int, str]]:
        """(directory descriptor, name) of `path`'s final component, for the *at() calls.

        With `follow`, a final symlink is followed inside the root (as a chroot would), so the name
        is never a symlink; otherwise the name may be a symlink, which callers must not follow.
        """
        for _ in range(MAXSYMLINKS):
            dfd, name = self._parent(path, parents)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False) if follow else None
                target = os.readlink(name, dir_fd=dfd) if st is not None and stat.S_ISLNK(st.st_mode) else None
            except FileNotFoundError:
                target = None
            except BaseException:
                os.close(dfd)
                raise
            if target is not None:
                os.close(dfd)
                path = target if target.startswith("/") else split_path(path)[0] + "/" + target
                continue
            try:
                yield dfd, name
            except OSError as e:
                if type(e) is not GuestPathError and (
                    e.filename in (name, None) or str(e.filename).startswith(TMP_PREFIX)
                ):
                    raise type(e)(e.errno, e.strerror, f"{path} (in {self.root})") from e  # the guest path, not a name
                raise
            finally:
                os.close(dfd)
            return
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)

    # -- queries (confined like the writes: a read never leaves the root either) ------------------

    def lstat(self, path: str) -> os.stat_result:
        with self.at(path) as (dfd, name):
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)

    def stat(self, path: str) -> os.stat_result:
        with self.at(path, follow=True) as (dfd, name):
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)

    def _mode(self, path: str, follow: bool) -> int | None:
        try:
            return (self.stat(path) if follow else self.lstat(path)).st_mode
        except (FileNotFoundError, NotADirectoryError, GuestPathError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None
            raise

    def exists(self, path: str) -> bool:
        return self._mode(path, True) is not None

    def lexists(self, path: str) -> bool:
        return self._mode(path, False) is not None

    def is_dir(self, path: str) -> bool:
        mode = self._mode(path, True)
        return mode is not None and stat.S_ISDIR(mode)

    def is_file(self, path: str) -> bool:
        mode = self._mode(path, True)
        return mode is not None and stat.S_ISREG(mode)

    def is_symlink(self, path: str) -> bool:
        mode = self._mode(path, False)
        return mode is not None and stat.S_ISLNK(mode)

    def read_bytes(self, path: str, *, follow: bool = True) -> bytes:
        """A regular file's contents (a FIFO or device is refused, not opened for reading)."""
        with self.at(path, follow=follow) as (dfd, name):
            if self.fake:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
            else:  # check the type before opening for reading: a device or FIFO is never opened
                pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    if not stat.S_ISREG(os.fstat(pfd).st_mode):
                        raise GuestPathError(errno.EINVAL, "not a regular file", path)
                    fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
                finally:
                    os.close(pfd)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise GuestPathError(errno.EINVAL, "not a regular file", path)
            return fh.read()

    def read_text(self, path: str, *, follow: bool = True, errors: str = "strict") -> str:
        return self.read_bytes(path, follow=follow).decode("utf-8", errors)

    def listdir(self, path: str) -> list[str]:
        dfd = self.open_dir(path)
        try:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
        finally:
            os.close(dfd)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def glob(self, pattern: str) -> list[str]:
        """Guest paths matching a shell pattern; never descends through a symlink (a real directory's
        entries are found at their real path). A final `**` is everything below, directories excluded."""
        parts = [p for p in pattern.split("/") if p]
        found = ["/"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            step: list[str] = []
            for base in found:
                if not self._real_dir(base):
                    continue
                prefix = base.rstrip("/") + "/"
                if part == "**" and last:
                    step += self._below(base)
                elif any(c in part for c in "*?["):
                    names = self.listdir(base)
                    hidden = part.startswith(".")
                    step += [prefix + n for n in names if fnmatch.fnmatchcase(n, part) and (hidden or n[0] != ".")]
                elif self.lexists(prefix + part):
                    step.append(prefix + part)
            found = step
        return sorted(found)

    def _real_dir(self, path: str) -> bool:
        if path == "/":
            return True
        mode = self._mode(path, False)
        return mode is not None and stat.S_ISDIR(mode)

    def _below(self, top: str) -> list[str]:
        out = []
        for name in self.listdir(top):
            path = top.rstrip("/") + "/" + name
            if self._real_dir(path):
                out += self._below(path)
            else:
                out.append(path)
        return out

    # -- writes ---------------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755, *, parents: bool = False, exist_ok: bool = False) -> None:
        try:  # a symlink at `path` is followed inside the root, so its target directory is made
            with self.at(path, follow=True, parents=parents) as (dfd, name):
                os.mkdir(name, mode, dir_fd=dfd)
        except FileExistsError:
            if not (exist_ok and self.is_dir(path)):
                raise
        except GuestPathError:  # the root itself
            if not exist_ok:
                raise

    def write_bytes(
        self, path: str, data: bytes, mode: int = 0o644, *, uid: int | None = None, gid: int | None = None,
        follow: bool = False, parents: bool = True,
    ) -> None:  # fmt: skip
        """Write a new file and rename it over `path`: a symlink there is replaced, unless `follow`."""
        self._write(path, [data], mode, uid, gid, follow, parents)

    def write_text(
        self, path: str, text: str, mode: int = 0o644, *, uid: int | None = None, gid: int | None = None,
        follow: bool = False, parents: bool = True,
    ) -> None:  # fmt: skip
        self._write(path, [text.encode("utf-8")], mode, uid, gid, follow, parents)

    def truncate(self, path: str, mode: int = 0o644) -> None:
        """An empty file (a new one: a hard link or symlink at `path` is not written through)."""
        self.write_bytes(path, b"", mode)

    def _write(
        self, path: str, chunks: Iterator[bytes] | list[bytes], mode: int, uid: int | None, gid: int | None,
        follow: bool, parents: bool, times: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        with self.at(path, follow=follow, parents=parents) as (dfd, name):
            tmp = f"{TMP_PREFIX}{os.getpid()}.{name}"[:255]
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                try:
                    for chunk in chunks:
                        _write_all(fd, chunk)
                    if uid is not None or gid is not None:
                        os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                if times is not None:
                    os.utime(tmp, ns=times, dir_fd=dfd, follow_symlinks=False)
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                _unlink_quietly(tmp, dfd)
                raise

    def symlink(self, target: str, path: str, *, replace: bool = True) -> None:
        """Create the link `path` (inside the root) with `target` stored verbatim."""
        with self.at(path, parents=True) as (dfd, name):
            if not replace:
                os.symlink(target, name, dir_fd=dfd)
                return
            tmp = f"{TMP_PREFIX}{os.getpid()}.{name}"[:255]
            _unlink_quietly(tmp, dfd)
            os.symlink(target, tmp, dir_fd=dfd)
            try:
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                _unlink_quietly(tmp, dfd)
                raise

    def unlink(self, path: str, *, missing_ok: bool = False) -> None:
        """Remove a file or symlink (the link itself; nothing it points at)."""
        try:
            with self.at(path) as (dfd, name):
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rename(self, src: str, dst: str) -> None:
        """Rename inside the root, replacing `dst` (a symlink at either end is moved, not followed)."""
        with self.at(src) as (sfd, sname), self.at(dst, parents=True) as (dfd, dname):
            os.replace(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)

    def chmod(self, path: str, mode: int) -> None:
        """chmod any entry but a symlink (refused, never followed); device nodes are not opened."""
        with self.at(path) as (dfd, name):
            if self.fake:  # no /proc/self/fd in a test's fake file system
                if stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                    raise GuestPathError(errno.ELOOP, "a symlink's mode is not changed", path)
                os.chmod(name, mode, dir_fd=dfd)
                return
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise GuestPathError(errno.ELOOP, "a symlink's mode is not changed", path)
            os.chmod(f"/proc/self/fd/{fd}", mode)  # an O_PATH descriptor: fchmod() would refuse it
        finally:
            os.close(fd)

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        with self.at(path) as (dfd, name):
            os.utime(name, ns=ns, dir_fd=dfd, follow_symlinks=False)

    def mknod(self, path: str, mode: int, device: int) -> None:
        with self.at(path) as (dfd, name):
            os.mknod(name, mode, device, dir_fd=dfd)

    # -- copies from the host -------------------------------------------------------------------

    def copy_file_from_host(self, src: Path | str, path: str, *, follow: bool = True) -> None:
        """Copy a host file's contents, mode and mtime (like cp -p, owner aside) to a guest path;
        by default a symlink at `path` is followed inside the root, as `cp` in a chroot would."""
        with open(src, "rb") as fh:
            st = os.fstat(fh.fileno())
            chunks = iter(lambda: fh.read(1 << 20), b"")
            self._write(path, chunks, stat.S_IMODE(st.st_mode), None, None, follow, True,
                        (st.st_atime_ns, st.st_mtime_ns))  # fmt: skip

    def copy_tree_from_host(self, src: Path | str, path: str) -> list[str]:
        """Copy a host directory into the guest; symlinks in the source are copied as symlinks,
        never followed. Returns host paths skipped (sockets, FIFOs, devices)."""
        skipped: list[str] = []
        self.mkdir(path, parents=True, exist_ok=True)
        self.chmod_dir(path, stat.S_IMODE(os.stat(src).st_mode))
        with os.scandir(src) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                dest = path.rstrip("/") + "/" + entry.name
                if entry.is_symlink():
                    self.symlink(os.readlink(entry.path), dest)
                elif entry.is_dir(follow_symlinks=False):
                    skipped += self.copy_tree_from_host(entry.path, dest)
                elif entry.is_file(follow_symlinks=False):
                    self.copy_file_from_host(entry.path, dest, follow=False)
                else:
                    skipped.append(entry.path)
        return skipped

    def chmod_dir(self, path: str, mode: int, *, uid: int | None = None, gid: int | None = None) -> None:
        """chmod (and chown) a directory reached inside the root (a symlinked one is followed, inside)."""
        with self.at(path, follow=True) as (dfd, name):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def host_path(self, path: str) -> Path:
        """The host path of `path`'s parent as resolved inside the root, joined with the final name:
        for naming and for tools that need a path. Writing through it is not confined; use the methods."""
        with self.at(path) as (dfd, name):
            if not self.fake:
                return Path(os.readlink(f"/proc/self/fd/{dfd}")) / name
        parent = split_path(path)[0]
        return self.root / parent.lstrip("/") / name  # a fake file system: the lexical path

    def is_plain(self, path: str) -> bool:
        """True if no symlink in `path`'s directories leads elsewhere: host_path() is then the lexical
        path below the real root, so a tool that opens it on the host (dpkg-divert --root) opens the
        file a chroot would."""
        return self.host_path(path) == Path(os.path.realpath(self.root)) / path.lstrip("/")

    @staticmethod
    def absolute(path: str) -> str:
        """`path`, if it is an absolute guest path (ValueError otherwise): the plugin API (Context)
        takes no root-relative ones."""
        if not path.startswith("/"):
            raise ValueError(f"guest path {path!r} must be absolute")
        return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink_quietly(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
