"""The source strategy (vmbuilder_lxc/source/): each source's add_user and configure, through a fake
distro (the Host protocol), so that what today only the root integration tests reach is checked here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from vmbuilder_lxc.source import Host
from vmbuilder_lxc.source.archive import ArchiveHost, ArchiveSource
from vmbuilder_lxc.source.image import ImageSource

USERADD = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "--groups", "sudo"]


class FakeDistro:
    """Records what a source runs in the guest; settings are a plain dict."""

    name = "ubuntu"

    def __init__(self, rootfs: Path, **settings: Any) -> None:
        self.context = SimpleNamespace(rootfs=rootfs)
        self.settings = {"name": None, **settings}
        self.ran: list[tuple[str, ...]] = []
        self.configured: list[str] = []

    def run_in_target(self, *argv: str, input: str | None = None) -> None:
        self.ran.append(argv)

    def configure_guest(self) -> None:
        self.configured.append("guest")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\nsudo:x:27:\n")
    return tmp_path


def test_archive_source_runs_useradd_and_configures_the_whole_guest(rootfs: Path) -> None:
    distro = FakeDistro(rootfs)
    source = ArchiveSource(cast(ArchiveHost, distro))
    source.add_user(USERADD, "ubuntu")  # a fresh bootstrap: the account is always made
    assert distro.ran == [(*USERADD, "ubuntu")]
    source.configure()
    assert distro.configured == ["guest"]


def test_image_source_keeps_an_account_the_image_has(rootfs: Path) -> None:
    distro = FakeDistro(rootfs, name="Ubuntu User")
    ImageSource(cast(Host, distro)).add_user(USERADD, "ubuntu")
    assert distro.ran == [("usermod", "--comment", "Ubuntu User", "ubuntu")]


def test_image_source_adds_a_new_user(rootfs: Path) -> None:
    distro = FakeDistro(rootfs)
    ImageSource(cast(Host, distro)).add_user(USERADD, "alice")
    assert distro.ran == [(*USERADD, "alice")]


def test_image_source_drops_the_sudo_group_the_image_lacks(rootfs: Path) -> None:
    (rootfs / "etc/group").write_text("root:x:0:\n")
    distro = FakeDistro(rootfs)
    ImageSource(cast(Host, distro)).add_user(USERADD, "alice")
    assert distro.ran == [("useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "alice")]


def test_image_source_reads_the_accounts_inside_the_rootfs(
    rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """/etc/passwd a symlink to a host file with the user in it: not followed, so the user is made."""
    outside = tmp_path_factory.mktemp("host") / "passwd"
    outside.write_text("alice:x:1000:1000::/home/alice:/bin/bash\n")
    (rootfs / "etc/passwd").unlink()
    (rootfs / "etc/passwd").symlink_to(outside)
    distro = FakeDistro(rootfs)
    ImageSource(cast(Host, distro)).add_user(USERADD, "alice")
    assert distro.ran == [(*USERADD, "alice")]
