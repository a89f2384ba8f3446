"""`vmbuilder lxc publish`: its bad input is one line (exit 2) before any work; --list, --prune and
--verify of a tree through the command, with --json."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.publish.tree import Tree

from .test_publish import SERIAL_A, SERIAL_B, image, put

# vmbuilder_lxc.plugins is the plugins/ folder, installed under that name (mypy knows it as plugins/).
_plugin = importlib.import_module("vmbuilder_lxc.plugins.publish")
Publish, run_command = _plugin.Publish, _plugin.run_command


def args(*argv: str):  # type: ignore[no-untyped-def]
    return Publish.publish_parser().parse_intermixed_args(list(argv))


@pytest.mark.parametrize(("argv", "match"), [
    (["T", "--list", "--verify"], "two actions"),
    (["T", "--retention", "2", "--list"], "applies to --prune only"),
    (["T", "--list", "D"], "takes no DEST"),
    (["T"], "nothing to publish"),
    (["T", "--list"], "is not an image tree"),
    (["T", "--alias", "a,b", "D"], "alias"),
    (["T", "D", "--image-variant", "Big"], "lower-case"),
    (["T", "D", "--compression-level", "12"], "xz level"),
])  # fmt: skip
def test_bad_input_is_refused_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                          match: str) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=match):
        run_command(args(*argv))


def test_prune_needs_a_retention(tmp_path: Path) -> None:
    put(Tree(tmp_path / "t"), image())
    with pytest.raises(UserError, match="needs --retention"):
        run_command(args(str(tmp_path / "t"), "--prune"))
    with pytest.raises(UserError, match="not a number of versions"):
        run_command(args(str(tmp_path / "t"), "--prune", "--retention", "0"))


def test_list_prune_verify_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = Tree(tmp_path / "t")
    put(t, image(SERIAL_A))
    put(t, image(SERIAL_B))
    assert Publish.publish_command([str(t.root), "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["products"]["ubuntu:noble:amd64:default"]["newest"] == SERIAL_B
    assert Publish.publish_command([str(t.root), "--prune", "--retention", "1"]) == 0
    assert "dropped ubuntu:noble:amd64:default " + SERIAL_A in capsys.readouterr().out
    assert Publish.publish_command([str(t.root), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    (t.root / f"images/ubuntu/noble/amd64/default/{SERIAL_B}/rootfs.squashfs").write_bytes(b"changed")
    assert Publish.publish_command([str(t.root), "--verify"]) == 1
    assert "BAD: " in capsys.readouterr().out
