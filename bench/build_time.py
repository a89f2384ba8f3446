#!/usr/bin/env python3
"""Benchmark: time to a bootable container, vmbuilder-lxc against its peers, in one run.

    sudo python3 bench/build_time.py [--suite jammy] [--keep]

Measures, on this machine and in this order:
  vmbuilder cold   vmbuilder lxc ubuntu with an empty cache
  vmbuilder warm   the same again (cache hit)
  lxc-create cold  lxc-create -t ubuntu (lxc-templates) with its cache cleared
  lxc-create warm  the same again (its rootfs cache)
  mmdebstrap       plain mmdebstrap --variant=minbase into a directory (no configuration at all)
and prints wall times and ratios against lxc-create, measured in the same run. Tools that are not
installed are reported as such. Not part of the test suite: timings belong here, not in tests.
The default suite is jammy because lxc-templates' ubuntu template cannot build noble or newer on
Debian 12 (its debootstrap has no script for them).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LXC_TEMPLATE_CACHE = Path("/var/cache/lxc")


def timed(argv: list[str], **kwargs: object) -> tuple[float | None, str]:
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    seconds = time.monotonic() - start
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return None, f"failed: {lines[-1] if lines else result.returncode}"
    return seconds, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="jammy")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmbuilder-bench-"))
    lxcpath = work / "lxc"
    lxcpath.mkdir()
    rows: list[tuple[str, float | None, str]] = []

    if shutil.which("vmbuilder"):
        cache = work / "cache"
        for label, name in (("vmbuilder cold", "vb1"), ("vmbuilder warm", "vb2")):
            argv = ["vmbuilder", "lxc", "ubuntu", "--suite", args.suite, "--network", "none",
                    "--cache-dir", str(cache), "-d", str(lxcpath / name)]  # fmt: skip
            rows.append((label, *timed(argv)))
    else:
        rows.append(("vmbuilder", None, "not installed"))

    template = Path("/usr/share/lxc/templates/lxc-ubuntu")
    if template.exists() and shutil.which("lxc-create"):
        shutil.rmtree(LXC_TEMPLATE_CACHE / args.suite, ignore_errors=True)
        for label, name in (("lxc-create cold", "lc1"), ("lxc-create warm", "lc2")):
            argv = ["lxc-create", "-P", str(lxcpath), "-n", name, "-t", "ubuntu", "--", "-r", args.suite]
            rows.append((label, *timed(argv)))
    else:
        rows.append(("lxc-create", None, "lxc-templates not installed"))

    if shutil.which("mmdebstrap"):
        argv = ["mmdebstrap", "--variant=minbase", args.suite, str(work / "mm"),
                "--keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg"]  # fmt: skip
        rows.append(("mmdebstrap (no config)", *timed(argv)))

    reference = {label.split()[1]: secs for label, secs, _ in rows if label.startswith("lxc-create") and secs}
    print(f"\nTime to a container for {args.suite} on this machine (one run each):\n")
    print(f"{'what':<24} {'seconds':>8}   ratio to lxc-create (same cache state)")
    for label, seconds, why in rows:
        if seconds is None:
            print(f"{label:<24} {'-':>8}   {why}")
            continue
        state = label.split()[-1]
        ref = reference.get(state)
        ratio = f"{seconds / ref:.2f}x" if ref else "n/a"
        print(f"{label:<24} {seconds:8.1f}   {ratio}")
    if not args.keep:
        for name in ("lc1", "lc2"):
            subprocess.run(["lxc-destroy", "-P", str(lxcpath), "-n", name], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)])
    else:
        print(f"\nkept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
