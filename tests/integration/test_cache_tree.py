"""The base cache as a tree: a container from a cache hit is the same as one from a miss.

One cold build (a fresh cache key, so a miss that stores the tree) and one warm build of the same
inputs (a hit that copies the tree) go to DESTs with the same name, so even the host name agrees.
Their rootfs are compared path by path: type, mode, owner, xattrs (capabilities, ACLs), link
targets, device numbers and content. Only the per-container identity files may differ.
`vmbuilder lxc cache list --json` then shows the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Build, Builder, vmbuilder_command
from .faultlib import fresh_key_hooks

BASE = ("--suite", "noble", "--network", "none")
# Made per container on purpose (first boot or the configure stage): never part of the base.
IDENTITY = {
    "etc/machine-id", "var/lib/dbus/machine-id", "var/lib/systemd/random-seed",
    "etc/ssh/ssh_host_ecdsa_key", "etc/ssh/ssh_host_ecdsa_key.pub", "etc/ssh/ssh_host_ed25519_key",
    "etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub",
}  # fmt: skip


def _describe(root: Path) -> dict[str, Any]:
    """path -> what must agree: type, mode, owner, xattrs, the content, link target or device, and
    a file's link count (the warm copy is two cp -a whose hard links are joined again)."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            xattrs = {a: os.getxattr(path, a, follow_symlinks=False) for a in os.listxattr(path, follow_symlinks=False)}
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    body: Any = hashlib.file_digest(fh, "sha256").hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                body = st.st_rdev
            else:
                body = None
            links = None if stat.S_ISDIR(st.st_mode) else st.st_nlink
            found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, xattrs, body, links)
    return found


@pytest.fixture(scope="module")
def miss_and_hit(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Build, Build]:
    top = tmp_path_factory.mktemp("cache-tree")
    hooks = ["--hook-dir", str(fresh_key_hooks(top / "hooks"))]
    miss = builder.run(*BASE, *hooks, "-d", str(top / "miss" / "ct")).check()
    hit = builder.run(*BASE, *hooks, "-d", str(top / "hit" / "ct")).check()
    return miss, hit


def test_a_hit_gives_the_same_rootfs_as_a_miss(miss_and_hit: tuple[Build, Build]) -> None:
    miss, hit = miss_and_hit
    assert miss.summary["cache"]["hit"] is False and hit.summary["cache"]["hit"] is True
    assert miss.summary["cache"]["key"] == hit.summary["cache"]["key"]
    a, b = _describe(miss.rootfs), _describe(hit.rootfs)
    assert sorted(set(a) ^ set(b)) == []
    differ = sorted(p for p in a if a[p] != b[p] and p not in IDENTITY)
    assert differ == [], [(p, a[p], b[p]) for p in differ[:5]]


def test_cache_list_shows_the_entry(builder: Builder, miss_and_hit: tuple[Build, Build]) -> None:
    key = miss_and_hit[1].summary["cache"]["key"]
    cache = ["--cache-dir", str(builder.cache_dir)]
    proc = subprocess.run([vmbuilder_command(), "lxc", "cache", "list", "--json", *cache],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    entries = {e["key"]: e for e in json.loads(proc.stdout)["entries"]}
    entry = entries[key]
    assert (entry["suite"], entry["arch"], entry["status"]) == ("noble", "amd64", "ok")
    assert entry["size"] > 100 << 20 and entry["last_used_days"] is not None
    verify = subprocess.run([vmbuilder_command(), "lxc", "cache", "verify", *cache],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
