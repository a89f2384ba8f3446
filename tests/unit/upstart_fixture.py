"""Fixture trees of Ubuntu's upstart-era packages, and a small model of how dpkg upgrades them.

The file lists under ``fixtures/upstart/<release>/`` come from real dpkg ``info/<pkg>.list`` files or are
reconstructed from packaging (see ``fixtures/upstart/PROVENANCE.md``). Tests map :data:`FIXTURE_DIR` into
pyfakefs (``fs.add_real_directory(FIXTURE_DIR)``), lay a release down with :func:`build_tree`, apply a
container tweak, and then call :func:`simulate_upgrade` to see which tweaks an ``apt-get upgrade`` undoes.

dpkg rules modelled by :func:`simulate_upgrade` (dpkg(1), dpkg-divert(1), Debian Policy 10.7.3):

* Diversions: a path listed in ``var/lib/dpkg/diversions`` whose diverting package is not the package being
  unpacked (``:`` = ``dpkg-divert --local``) is written to its divert-to path; the original path is not touched.
  This is why ``dpkg-divert --local --rename`` survives upgrades.
* Conffiles (``Conffiles:`` in ``var/lib/dpkg/status``): replaced only when the file on disk still has the
  md5sum recorded at the last install, i.e. the admin did not change it. A modified conffile is kept (what
  ``--force-confold`` does instead of asking). A deleted conffile counts as a local change and is not
  re-created (only ``--force-confmiss`` would). The recorded md5 is updated only for replaced conffiles.
* Every other packaged file is overwritten, or re-created if it was deleted or renamed away, on every upgrade.
  This is why edits to e.g. ``/lib/init/fstab`` do not survive.

Simplifications: the package's new version ships exactly the same paths; symlinks are laid down as regular
files; maintainer scripts are not run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

RELEASES = ("lucid", "maverick", "natty", "oneiric", "precise", "trusty", "utopic")

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "upstart"

DPKG_DIR = Path("var/lib/dpkg")


def _release_dir(release: str) -> Path:
    if release not in RELEASES:
        raise ValueError(f"unknown upstart-era release: {release!r}")
    return FIXTURE_DIR / release


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def packages(release: str) -> dict[str, str]:
    """Package name -> version for ``release``, in the order of the VERSIONS file."""
    result: dict[str, str] = {}
    for line in _read_lines(_release_dir(release) / "VERSIONS"):
        name, version = line.split(maxsplit=1)
        result[name] = version
    return result


def package_files(release: str, package: str) -> list[str]:
    """The absolute paths (files and symlinks) that ``package`` ships in ``release``."""
    return _read_lines(_release_dir(release) / f"{package}.list")


def package_conffiles(release: str, package: str) -> list[str]:
    """The conffiles of ``package`` in ``release``."""
    return _read_lines(_release_dir(release) / f"{package}.conffiles")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def file_content(package: str, version: str, path: str) -> str:
    """The content :func:`build_tree` writes for ``path``: one comment line (a valid upstart job for /etc/init)."""
    return f"# {package} {version} {path}\n"


def _write(root: Path, path: str, content: str) -> None:
    target = _under(root, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")


def _write_status(root: Path, release: str, conffile_md5s: dict[str, dict[str, str]]) -> None:
    paragraphs = []
    for package, version in packages(release).items():
        lines = [
            f"Package: {package}",
            "Status: install ok installed",
            f"Version: {version}",
            "Architecture: amd64",
        ]
        md5s = conffile_md5s.get(package, {})
        if md5s:
            lines.append("Conffiles:")
            lines.extend(f" {path} {digest}" for path, digest in md5s.items())
        paragraphs.append("\n".join(lines) + "\n")
    (root / DPKG_DIR / "status").write_text("\n".join(paragraphs), encoding="utf-8")


def read_status_conffiles(root: Path) -> dict[str, dict[str, str]]:
    """Package -> {conffile: md5} as recorded in ``var/lib/dpkg/status``."""
    result: dict[str, dict[str, str]] = {}
    package = ""
    in_conffiles = False
    for line in (root / DPKG_DIR / "status").read_text(encoding="utf-8").splitlines():
        if line.startswith("Package:"):
            package = line.split(":", 1)[1].strip()
            result.setdefault(package, {})
            in_conffiles = False
        elif line.startswith("Conffiles:"):
            in_conffiles = True
        elif in_conffiles and line.startswith(" "):
            path, digest = line.split()[:2]
            result[package][path] = digest
        else:
            in_conffiles = False
    return result


def build_tree(root: Path, release: str) -> None:
    """Lay down every listed file of ``release`` under ``root`` plus a matching dpkg database."""
    info = root / DPKG_DIR / "info"
    info.mkdir(parents=True, exist_ok=True)
    md5s: dict[str, dict[str, str]] = {}
    for package, version in packages(release).items():
        files = package_files(release, package)
        conffiles = package_conffiles(release, package)
        for path in files:
            _write(root, path, file_content(package, version, path))
        md5s[package] = {path: _md5(file_content(package, version, path)) for path in conffiles}
        (info / f"{package}.list").write_text("".join(f"{p}\n" for p in files), encoding="utf-8")
        (info / f"{package}.conffiles").write_text("".join(f"{p}\n" for p in conffiles), encoding="utf-8")
    _write_status(root, release, md5s)
    (root / DPKG_DIR / "diversions").write_text("", encoding="utf-8")


def read_diversions(root: Path) -> dict[str, tuple[str, str]]:
    """Parse ``var/lib/dpkg/diversions``: original path -> (divert-to path, diverting package or ``:``)."""
    path = root / DPKG_DIR / "diversions"
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) % 3:
        raise ValueError(f"{path}: expected groups of three lines, got {len(lines)} lines")
    return {lines[i]: (lines[i + 1], lines[i + 2]) for i in range(0, len(lines), 3)}


def simulate_upgrade(
    root: Path,
    release: str,
    new_content: Callable[[str, str], str] | None = None,
) -> list[str]:
    """Unpack every package of ``release`` again as dpkg does on an upgrade; return the paths written.

    ``new_content(package, path)`` gives the new packaged content; by default the :func:`build_tree` line
    with `` (upgraded)`` appended. See the module docstring for the rules.
    """
    versions = packages(release)

    def content(package: str, path: str) -> str:
        if new_content is not None:
            return new_content(package, path)
        return file_content(package, versions[package], path).rstrip("\n") + " (upgraded)\n"

    diversions = read_diversions(root)
    recorded = read_status_conffiles(root)
    written: list[str] = []
    for package in versions:
        conffiles = set(package_conffiles(release, package))
        md5s = recorded.setdefault(package, {})
        for path in package_files(release, package):
            target_path = path
            diversion = diversions.get(path)
            if diversion is not None and diversion[1] != package:
                target_path = diversion[0]
            new = content(package, path)
            if path in conffiles:
                on_disk = _under(root, target_path)
                if not on_disk.is_file():
                    continue  # deleted by the admin: a local change, kept
                if _md5(on_disk.read_text(encoding="utf-8")) != md5s.get(path):
                    continue  # modified: --force-confold keeps it
                md5s[path] = _md5(new)
            _write(root, target_path, new)
            written.append(target_path)
    _write_status(root, release, recorded)
    return written
