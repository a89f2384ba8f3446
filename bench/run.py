"""Run issue 15's benchmarks side by side and print: work | project | peer/limit | ratio | target | met?

    sudo /opt/vmbuilder-lxc/venv/bin/python -m bench.run [--quick] [--json FILE] [--suite jammy]

Run from the source tree as root. Everything is made under one work directory (default under
/var/tmp) and removed at the end, including the loop-mounted btrfs image; --keep keeps it. The
default suite is jammy because lxc-templates' ubuntu template (a peer) cannot build noble or newer
on Debian 12. Never run by the test suite: timings belong here, not in tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from . import measure
from .proc import disk_type, empty_trash, have, machine, remove
from .stats import Row, markdown_table, summary


def mount_btrfs(work: Path) -> Path | None:
    """A loop-mounted btrfs for the btrfs backing; installs btrfs-progs if missing, saying so."""
    if not have("mkfs.btrfs"):
        print("bench: --backing btrfs needs btrfs-progs; installing it (apt-get install -y)", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "btrfs-progs"], capture_output=True, check=False)
    if not have("mkfs.btrfs"):
        return None
    image, mnt = work / "btrfs.img", work / "btrfs"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "12G", str(image)], check=True)
    made = subprocess.run(["mkfs.btrfs", "-q", str(image)], capture_output=True)
    if made.returncode != 0 or subprocess.run(["mount", "-o", "loop", str(image), str(mnt)]).returncode != 0:
        return None
    return mnt


def unmount_btrfs(work: Path) -> None:
    mnt = work / "btrfs"
    if mnt.is_mount():
        subprocess.run(["umount", str(mnt)], check=False)
    remove(work / "btrfs.img")


def run_all(b: measure.Bench) -> list[Row]:
    """Every measurement, in an order where each one finds what it needs (the cold build first)."""
    rows: list[Row] = []
    rows += measure.cold_build(b)
    rows += [] if b.quick else measure.emulated_build(b)
    rows += measure.warm_dir(b)
    rows += measure.warm_idmap(b)
    rows += measure.warm_backing(b, "overlay", b.work / "ov")
    btrfs = mount_btrfs(b.work) if "btrfs" in b.backings else None
    b.btrfs_empty = measure._fs_used(btrfs) if btrfs else 0
    rows += measure.warm_backing(b, "btrfs", btrfs)
    scale_rows, dests = measure.scale(b, "overlay", b.work / "ov")
    rows += measure.overlay_disk(b, dests)
    rows += scale_rows
    for dest in dests:
        measure._remove_container(b, dest)
    scale_rows, dests = measure.scale(b, "dir", b.work / "dirs")
    rows += scale_rows
    remove(b.work / "dirs")
    scale_rows, dests = measure.scale(b, "btrfs", btrfs, df_of=btrfs)
    rows += scale_rows
    for dest in dests:
        measure._remove_container(b, dest)
    rows += measure.lxc_copy_clones(b)
    rows += measure.exports(b)
    rows += measure.python_rss(b)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="jammy", help="the Ubuntu suite every build uses (default: jammy)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and clones; skip lxc-create cold and the extra xz peer")  # fmt: skip
    parser.add_argument("--repeats", type=int, help="A B pairs per timed comparison (default: 3, --quick 2)")
    parser.add_argument("--scale", type=int, help="containers in the scale runs (default: 20, --quick 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows and the machine as JSON ('-': stdout)")
    parser.add_argument("--workdir", default="/var/tmp", help="where the work directory is made (default: /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmbuilder-bench-", dir=args.workdir))
    b = measure.Bench(
        work=work,
        suite=args.suite,
        repeats=args.repeats or (2 if args.quick else 3),
        scale=args.scale or (5 if args.quick else 20),
        quick=args.quick,
        lxc_samples=1 if args.quick else 3,
        backings=measure.detect_backings(),
    )
    b.lxcpath.mkdir()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = {**machine(), "disk": disk_type(work), "date": now, "suite": args.suite, "quick": str(args.quick),
            "backings": ",".join(sorted(b.backings)) or "none"}  # fmt: skip
    try:
        rows = run_all(b)
    finally:
        empty_trash()
        for container in b.lxcpath.glob("*"):
            subprocess.run(["lxc-destroy", "-P", str(b.lxcpath), "-n", container.name], capture_output=True)
        unmount_btrfs(work)
        if not args.keep:
            remove(work)
    print()
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    print()
    print(markdown_table(rows))
    print()
    print(summary(rows))
    for note in b.notes:
        print(f"note: {note}")
    if args.json:
        data = {"machine": info, "rows": [row.as_dict() for row in rows], "notes": b.notes,
                "python_rss_kb": b.self_rss}  # fmt: skip
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
