"""DEST's safety without root: check_destination, the atomic commit and its rollback, stale partials.

DEST is never clobbered without --overwrite, --overwrite replaces only our own builds (or an empty
directory), and at every moment DEST is absent, the old build or the new one. These tests drive
pipeline.py's functions with a small fake context on tmp_path; rename failures are injected where
the kernel would report them. Messages are not asserted word for word: the exception type (a
UserError is exit 2) and what DEST holds afterwards are the behaviour.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from tests.unit.conftest import DictSettings
from vmbuilder_lxc import pipeline
from vmbuilder_lxc.context import Context
from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.pipeline import MARKER, PARTIAL_SUFFIX


class Ctx:
    """The parts of Context that check_destination, _commit and _build use."""

    def __init__(self, dest: Path, *, overwrite: bool = False, keep_dest: bool = True, plugins: Any = ()) -> None:
        self.dest = dest
        self.name = dest.name
        self.keep_dest = keep_dest
        self.settings = DictSettings(overwrite=overwrite)
        self.workdir: Path | None = None
        self.plugins = list(plugins)
        self.hook_env: dict[str, str] = {}
        self.summary: dict[str, Any] = {}
        self.chroot: Any = None
        self.hypervisor_name = "lxc"
        self.distro_name = "ubuntu"
        self.distro = self

    @property
    def rootfs(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "rootfs"

    def bootstrap(self) -> None:
        """The distro's bootstrap: a one-file rootfs."""
        self.rootfs.mkdir()
        (self.rootfs / "new").write_text("new build")


def old_build(dest: Path) -> None:
    """A previous build of ours at DEST."""
    (dest / "rootfs").mkdir(parents=True)
    (dest / "rootfs/old").write_text("old build")
    (dest / MARKER).write_text("{}\n")


def tree(path: Path) -> dict[str, str]:
    """Every file below path with its content (symlinks by target): what a user would see."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_text()
    return out


def check_destination(ctx: Ctx) -> None:
    pipeline.check_destination(cast(Context, ctx))


def commit(ctx: Ctx) -> None:
    pipeline._commit(cast(Context, ctx))


# -- check_destination ----------------------------------------------------------------------------------


def test_a_missing_dest_is_fine(tmp_path: Path) -> None:
    for overwrite in (False, True):
        check_destination(Ctx(tmp_path / "ct", overwrite=overwrite))
    check_destination(Ctx(tmp_path / "new/parents/ct"))  # parents are made later
    assert sorted(tmp_path.iterdir()) == []  # checking creates nothing


@pytest.mark.parametrize("kind", ["empty", "ours", "not-ours", "file", "symlink-to-ours", "dangling-symlink"])
def test_an_existing_dest_needs_overwrite(tmp_path: Path, kind: str) -> None:
    dest = make_dest(tmp_path, kind)
    before = tree(tmp_path)
    with pytest.raises(UserError):
        check_destination(Ctx(dest, overwrite=False))
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("kind", "allowed"), [
    ("empty", True), ("ours", True), ("not-ours", False), ("file", False), ("symlink-to-ours", False),
    ("dangling-symlink", False), ("marker-is-a-directory", False), ("hidden-file-only", False),
])  # fmt: skip
def test_overwrite_replaces_only_an_empty_directory_or_our_own_build(tmp_path: Path, kind: str, allowed: bool) -> None:
    dest = make_dest(tmp_path, kind)
    before = tree(tmp_path)
    ctx = Ctx(dest, overwrite=True)
    if allowed:
        check_destination(ctx)
    else:
        with pytest.raises(UserError):
            check_destination(ctx)
    assert tree(tmp_path) == before


def make_dest(tmp_path: Path, kind: str) -> Path:
    dest = tmp_path / "ct"
    if kind == "empty":
        dest.mkdir()
    elif kind == "ours":
        old_build(dest)
    elif kind == "not-ours":
        (dest / "home").mkdir(parents=True)
        (dest / "home/precious").write_text("someone's data")
    elif kind == "file":
        dest.write_text("a file, not a directory")
    elif kind == "symlink-to-ours":
        old_build(tmp_path / "elsewhere")
        dest.symlink_to(tmp_path / "elsewhere")
    elif kind == "dangling-symlink":
        dest.symlink_to(tmp_path / "nowhere")
    elif kind == "marker-is-a-directory":
        (dest / MARKER).mkdir(parents=True)
    elif kind == "hidden-file-only":
        dest.mkdir()
        (dest / ".profile").write_text("not empty")
    return dest


def test_export_only_does_not_care_about_an_existing_dest(tmp_path: Path) -> None:
    """--export-only leaves DEST alone; only DEST's parent must be writable."""
    dest = make_dest(tmp_path, "not-ours")
    check_destination(Ctx(dest, keep_dest=False))


@pytest.mark.parametrize("dest", ["/", "/.", "/tmp/.."])
def test_root_is_refused(dest: str) -> None:
    for overwrite in (False, True):
        with pytest.raises(UserError):
            check_destination(Ctx(Path(dest), overwrite=overwrite))


def test_a_dest_with_something_mounted_below_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running container's rootfs: replacing it would pull the filesystem from under it."""
    dest = make_dest(tmp_path, "ours")
    monkeypatch.setattr(pipeline, "mounts_below", lambda path: [path / "rootfs/proc"])
    with pytest.raises(UserError):
        check_destination(Ctx(dest, overwrite=True))


def test_a_refusal_is_one_line_user_error_with_a_hint(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, "not-ours")
    with pytest.raises(UserError) as info:
        check_destination(Ctx(dest, overwrite=True))
    assert info.value.hint and "\n" not in str(info.value)


# -- the commit: DEST is absent, the old build or the new one, never anything else -----------------------


def built(ctx: Ctx) -> Ctx:
    """A finished build directory beside DEST, as _build leaves it before the commit."""
    ctx.workdir = ctx.dest.parent / f".{ctx.name}.1{PARTIAL_SUFFIX}"
    (ctx.workdir / "rootfs").mkdir(parents=True)
    (ctx.workdir / "rootfs/new").write_text("new build")
    (ctx.workdir / MARKER).write_text('{"status": "ok"}\n')
    (ctx.workdir / ".pid").write_text(str(os.getpid()))
    return ctx


NEW = {MARKER: '{"status": "ok"}\n', "rootfs/new": "new build"}
OLD = {MARKER: "{}\n", "rootfs/old": "old build"}


def renameat2_failing(flags_to_fail: int, err: int) -> Callable[[Path, Path, int], None]:
    real = pipeline._renameat2

    def fake(src: Path, dst: Path, flags: int) -> None:
        if flags == flags_to_fail:
            raise OSError(err, os.strerror(err), str(src))
        real(src, dst, flags)

    return fake


def test_commit_replaces_our_old_build(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path / "ct", overwrite=True)
    old_build(ctx.dest)
    commit(built(ctx))
    assert tree(ctx.dest) == NEW
    assert [p.name for p in tmp_path.iterdir()] == ["ct"] and ctx.workdir is None


def test_a_failed_exchange_leaves_the_old_dest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = built(Ctx(tmp_path / "ct", overwrite=True))
    old_build(ctx.dest)
    monkeypatch.setattr(pipeline, "_renameat2", renameat2_failing(pipeline.RENAME_EXCHANGE, errno.EBUSY))
    with pytest.raises(OSError):
        commit(ctx)
    assert tree(ctx.dest) == OLD
    assert ctx.workdir is not None and (ctx.workdir / "rootfs/new").exists()  # for _build's cleanup


def test_without_exchange_a_failed_second_rename_puts_the_old_dest_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-rename fallback: old aside, new in. If the second fails, the first is undone."""
    ctx = built(Ctx(tmp_path / "ct", overwrite=True))
    old_build(ctx.dest)
    monkeypatch.setattr(pipeline, "_renameat2", renameat2_failing(pipeline.RENAME_EXCHANGE, errno.EINVAL))
    real_replace = os.replace
    moves: list[tuple[str, str]] = []

    def replace(src: Any, dst: Any) -> None:
        moves.append((Path(src).name, Path(dst).name))
        if Path(src) == ctx.workdir:
            raise OSError(errno.EIO, "Input/output error", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(pipeline.os, "replace", replace)
    with pytest.raises(OSError, match="Input/output"):
        commit(ctx)
    assert moves[0][0] == "ct" and moves[-1][1] == "ct"  # moved aside, then back
    assert tree(ctx.dest) == OLD
    assert ctx.workdir is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ct", ctx.workdir.name])


def test_without_exchange_the_two_renames_replace_the_old_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = built(Ctx(tmp_path / "ct", overwrite=True))
    old_build(ctx.dest)
    monkeypatch.setattr(pipeline, "_renameat2", renameat2_failing(pipeline.RENAME_EXCHANGE, errno.ENOSYS))
    commit(ctx)
    assert tree(ctx.dest) == NEW
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]


def test_a_dest_that_appeared_during_the_build_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DEST was absent at preflight; someone created it while we built. Without --overwrite: refused."""
    ctx = built(Ctx(tmp_path / "ct", overwrite=False))
    real = pipeline._renameat2

    def racing(src: Path, dst: Path, flags: int) -> None:
        if flags == pipeline.RENAME_NOREPLACE and not dst.exists():
            dst.mkdir()
            (dst / "theirs").write_text("made by someone else")
        real(src, dst, flags)

    monkeypatch.setattr(pipeline, "_renameat2", racing)
    with pytest.raises(UserError):
        commit(ctx)
    assert tree(ctx.dest) == {"theirs": "made by someone else"}
    assert ctx.workdir is not None and ctx.workdir.is_dir()


def test_a_dest_that_changed_to_not_ours_during_the_build_is_not_replaced(tmp_path: Path) -> None:
    ctx = built(Ctx(tmp_path / "ct", overwrite=True))
    make_dest(tmp_path, "not-ours")
    with pytest.raises(UserError):
        commit(ctx)
    assert tree(ctx.dest) == {"home/precious": "someone's data"}


# -- the whole pipeline with fakes: a failure anywhere leaves the old DEST --------------------------------


class Plugin:
    """A plugin that can fail at one hook."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at
        self.called: list[str] = []

    def __getattr__(self, hook: str) -> Callable[..., None]:
        def call(*args: Any) -> None:
            self.called.append(hook)
            if hook == self.fail_at:
                raise RuntimeError(f"{hook} failed")

        return call


class FakeChroot:
    def __init__(self, root: Path, apt_proxy: str | None = None) -> None:
        self.root = root

    def __enter__(self) -> FakeChroot:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def build(monkeypatch: pytest.MonkeyPatch) -> Callable[[Ctx], dict[str, Any]]:
    """pipeline.build with root-only steps faked: no namespace, no reaper, no mounts."""
    monkeypatch.setattr(pipeline.os, "geteuid", lambda: 0)
    monkeypatch.setattr(pipeline, "start_reaper", lambda: None)
    monkeypatch.setattr(pipeline, "stop_reaper", lambda: None)
    monkeypatch.setattr(pipeline, "enter_private_mount_namespace", lambda: None)
    monkeypatch.setattr(pipeline, "Chroot", FakeChroot)

    @contextmanager
    def ignoring(handler: Any) -> Any:  # unit tests keep pytest's signal handlers
        yield

    monkeypatch.setattr(pipeline, "interrupts_handled_by", ignoring)
    return lambda ctx: pipeline.build(cast(Context, ctx))


@pytest.mark.parametrize("fail_at", ["configure_os", "post_install", "finalize"])
def test_a_failed_build_leaves_the_old_dest_and_no_build_directory(
    tmp_path: Path, build: Callable[[Ctx], dict[str, Any]], fail_at: str
) -> None:
    ctx = Ctx(tmp_path / "ct", overwrite=True, plugins=[Plugin(fail_at)])
    old_build(ctx.dest)
    with pytest.raises(Exception, match=f"{fail_at} failed"):
        build(ctx)
    assert tree(ctx.dest) == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]


def test_a_failed_commit_leaves_the_old_dest_and_no_build_directory(
    tmp_path: Path, build: Callable[[Ctx], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = Ctx(tmp_path / "ct", overwrite=True, plugins=[Plugin()])
    old_build(ctx.dest)
    monkeypatch.setattr(pipeline, "_renameat2", renameat2_failing(pipeline.RENAME_EXCHANGE, errno.EXDEV))
    with pytest.raises(OSError):
        build(ctx)
    assert tree(ctx.dest) == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]


def test_a_successful_build_replaces_the_old_dest(tmp_path: Path, build: Callable[[Ctx], dict[str, Any]]) -> None:
    plugin = Plugin()
    ctx = Ctx(tmp_path / "ct", overwrite=True, plugins=[plugin])
    old_build(ctx.dest)
    summary = build(ctx)
    assert summary["status"] == "ok"
    assert tree(ctx.dest / "rootfs") == {"new": "new build"}
    assert (ctx.dest / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]
    assert plugin.called[-1] == "deploy"


def test_a_build_that_is_refused_in_preflight_touches_nothing(
    tmp_path: Path, build: Callable[[Ctx], dict[str, Any]]
) -> None:
    plugin = Plugin()
    ctx = Ctx(tmp_path / "ct", overwrite=False, plugins=[plugin])
    old_build(ctx.dest)
    with pytest.raises(UserError):
        build(ctx)
    assert tree(ctx.dest) == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]
    assert "configure_os" not in plugin.called


def test_a_failed_build_removes_the_parents_it_created(tmp_path: Path, build: Callable[[Ctx], dict[str, Any]]) -> None:
    ctx = Ctx(tmp_path / "a/b/ct", plugins=[Plugin("finalize")])
    with pytest.raises(Exception, match="finalize failed"):
        build(ctx)
    assert list(tmp_path.iterdir()) == []


# -- stale partial directories --------------------------------------------------------------------------


def dead_pid() -> int:
    """A PID no process can have."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def partial(parent: Path, name: str, pid: int | str | None) -> Path:
    path = parent / f".{name}{PARTIAL_SUFFIX}"
    (path / "rootfs/etc").mkdir(parents=True)
    (path / "rootfs/etc/hostname").write_text("x\n")
    if pid is not None:
        (path / ".pid").write_text(str(pid))
    return path


def test_stale_partials_of_dead_builds_are_removed(tmp_path: Path) -> None:
    dead = partial(tmp_path, "ct.dead1", dead_pid())
    no_pid = partial(tmp_path, "ct.nopid", None)
    garbage = partial(tmp_path, "ct.garbage", "not a pid")
    mine = partial(tmp_path, "ct.mine", os.getpid())  # our own PID: an earlier build of this process
    old = partial(tmp_path, f"ct.old-{dead_pid()}", None)  # an old build moved aside by the two-rename commit
    pipeline._remove_stale_partials(tmp_path, "ct")
    for path in (dead, no_pid, garbage, mine, old):
        assert not os.path.lexists(path), path


def test_live_builds_and_other_names_are_kept(tmp_path: Path) -> None:
    live = partial(tmp_path, "ct.live", os.getppid())  # a running process: a concurrent build
    other = partial(tmp_path, "web.1", dead_pid())  # another container's build
    prefix = partial(tmp_path, "ctx.1", dead_pid())  # `ctx` is not `ct`
    dest = tmp_path / "ct"
    dest.mkdir()
    (dest / "keep").write_text("the current build")
    pipeline._remove_stale_partials(tmp_path, "ct")
    for path in (live, other, prefix):
        assert path.is_dir(), path
    assert tree(dest) == {"keep": "the current build"}


def test_a_partial_that_is_a_symlink_is_removed_without_following_it(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (target / "data").mkdir(parents=True)
    (target / "data/file").write_text("not ours")
    parent = tmp_path / "builds"
    parent.mkdir()
    link = parent / f".ct.1{PARTIAL_SUFFIX}"
    link.symlink_to(target)
    pipeline._remove_stale_partials(parent, "ct")
    assert not os.path.lexists(link)
    assert tree(target) == {"data/file": "not ours"}


def test_the_next_build_directory_replaces_stale_ones(tmp_path: Path) -> None:
    stale = partial(tmp_path, "ct.1", dead_pid())
    ctx = Ctx(tmp_path / "ct")
    created = pipeline._make_workdir(cast(Context, ctx))
    assert created == []
    assert not stale.exists()
    assert ctx.workdir is not None and ctx.workdir.parent == tmp_path
    assert ctx.workdir.name.startswith(".ct.") and ctx.workdir.name.endswith(PARTIAL_SUFFIX)
    assert (ctx.workdir / ".pid").read_text() == str(os.getpid())
    assert ctx.workdir.stat().st_mode & 0o777 == 0o755
