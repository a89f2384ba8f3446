"""Default mirrors come from debootstrap's own scripts, never from a host name written in our code.

The parser understands only the case/esac subset of shell that debootstrap's scripts use; the
tests feed it a copy of the real `gutsy` script (when the host has debootstrap) and a fixed copy of
its mirror-selecting header (always), in a fake file system.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuilder_lxc.log import UserError
from vmbuilder_lxc.mirrors import (
    DEBOOTSTRAP_BIN,
    DEBOOTSTRAP_SCRIPTS,
    debootstrap_def_mirror,
    default_mirror,
    script_default_mirror,
)

ARCHIVE = "http://archive.mirror.test/ubuntu"
OLD = "http://old-releases.mirror.test/ubuntu"
PORTS = "http://ports.mirror.test/ubuntu-ports"

# The header of debootstrap 1.0.128's scripts/gutsy, followed by other case blocks of the script
# (that set no mirror) so that the parser has to skip them.
GUTSY_COPY = """\
case $ARCH in
  amd64|i386)
\tcase $SUITE in
\t  gutsy|hardy|intrepid|jaunty|karmic|lucid|maverick|natty|oneiric|precise|quantal|raring|saucy|\
utopic|vivid|wily|yakkety|zesty)
\tdefault_mirror http://old-releases.mirror.test/ubuntu
\t  ;;
\t  *)
\tdefault_mirror http://archive.mirror.test/ubuntu
\t;;
\tesac
\t;;
  sparc)
\tcase $SUITE in
\t  gutsy)
\tdefault_mirror http://old-releases.mirror.test/ubuntu
\t;;
\t  *)
\tdefault_mirror http://ports.mirror.test/ubuntu-ports
\t;;
\tesac
\t;;
  *)
\tdefault_mirror http://ports.mirror.test/ubuntu-ports
\t;;
esac
mirror_style release
download_style apt
finddebs_style from-indices
variants - buildd fakechroot minbase
keyring /usr/share/keyrings/ubuntu-archive-keyring.gpg

if doing_variant fakechroot; then
\ttest "$FAKECHROOT" = "true" || error 1 FAKECHROOTREQ "This variant requires fakechroot environment to be started"
fi

case $ARCH in
\talpha|ia64) LIBC="libc6.1" ;;
\tkfreebsd-*) LIBC="libc0.1" ;;
\thurd-*)     LIBC="libc0.3" ;;
\t*)          LIBC="libc6" ;;
esac

case $SUITE in
\tgutsy|hardy|trusty|xenial|bionic|focal) ;;
\t*)
\t\t# impish+ will use zstd compression, check if supported
\t\tdpkg_zstd="$(dpkg-deb --help 2>/dev/null | grep ' zstd,' || :)"
\t\tif [ -z "$EXTRACTOR_OVERRIDE" ] && [ -z "$dpkg_zstd" ]; then
\t\t\texport EXTRACTOR_OVERRIDE=ar
\t\tfi
\t;;
esac

work_out_debs () {
\trequired="$(get_debs Priority: required)"
\tcase "$CODENAME" in
\t\tgutsy|hardy) base="$base libgdbm3" ;;
\tesac
}
"""

REAL_GUTSY_PATH = DEBOOTSTRAP_SCRIPTS / "gutsy"
# Read before any test enables pyfakefs.
REAL_GUTSY = REAL_GUTSY_PATH.read_text() if REAL_GUTSY_PATH.is_file() else None

CASES = [
    ("amd64", "noble", ARCHIVE),
    ("amd64", "xenial", ARCHIVE),
    ("amd64", "resolute", ARCHIVE),
    ("i386", "bionic", ARCHIVE),
    ("amd64", "zesty", OLD),
    ("i386", "vivid", OLD),
    ("amd64", "gutsy", OLD),
    ("arm64", "noble", PORTS),
    ("arm64", "zesty", PORTS),  # old ports releases stay on ports
    ("armhf", "jammy", PORTS),
    ("riscv64", "noble", PORTS),
    ("ppc64el", "focal", PORTS),
    ("sparc", "gutsy", OLD),
    ("sparc", "noble", PORTS),
]


@pytest.mark.parametrize(("arch", "suite", "expected"), CASES)
def test_gutsy_copy(fs: FakeFilesystem, arch: str, suite: str, expected: str) -> None:
    fs.create_file(REAL_GUTSY_PATH, contents=GUTSY_COPY)
    assert script_default_mirror(REAL_GUTSY_PATH, arch, suite) == expected
    assert default_mirror("gutsy", arch, suite) == expected


def shell_default_mirror(arch: str, suite: str) -> str:
    """What the script itself says when a shell runs it (debootstrap's helpers stubbed out)."""
    stubs = "; ".join(
        f"{name}() {{ :; }}"
        for name in ("mirror_style", "download_style", "finddebs_style", "variants", "keyring", "doing_variant",
                     "force_md5", "check_variant")
    )  # fmt: skip
    program = f'{stubs}; default_mirror() {{ echo "$1"; }}; . "{REAL_GUTSY_PATH}"'
    result = subprocess.run(
        ["sh", "-c", program], env={"ARCH": arch, "SUITE": suite, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.split()[-1]


@pytest.mark.skipif(REAL_GUTSY is None, reason="debootstrap is not installed on this host")
@pytest.mark.parametrize(("arch", "suite"), [(arch, suite) for arch, suite, _ in CASES])
def test_real_gutsy_script(arch: str, suite: str) -> None:
    """The host's own script, in full: the parser agrees with a shell running it."""
    assert default_mirror("gutsy", arch, suite) == shell_default_mirror(arch, suite)


def test_suite_symlinks_to_gutsy_work(fs: FakeFilesystem) -> None:
    """debootstrap ships noble -> gutsy; asking for the suite's own script name works too."""
    fs.create_file(REAL_GUTSY_PATH, contents=GUTSY_COPY)
    fs.create_symlink(DEBOOTSTRAP_SCRIPTS / "noble", "gutsy")
    assert default_mirror("noble", "arm64", "noble") == PORTS


def test_first_matching_branch_wins_and_quotes_are_understood(fs: FakeFilesystem) -> None:
    script = Path("/scripts/custom")
    fs.create_file(
        script,
        contents=(
            'case "${ARCH}" in\n'
            "  amd64|i386)\n"
            '    default_mirror "http://first.test/ubuntu"\n'
            "    ;;\n"
            "  amd64)\n"
            "    default_mirror http://second.test/ubuntu\n"
            "    ;;\n"
            "esac\n"
        ),
    )
    assert script_default_mirror(script, "amd64", "noble") == "http://first.test/ubuntu"
    assert script_default_mirror(script, "arm64", "noble") is None  # no branch matches


def test_top_level_default_mirror(fs: FakeFilesystem) -> None:
    script = Path("/scripts/flat")
    fs.create_file(script, contents="# comment\ndefault_mirror http://flat.test/debian\nmirror_style release\n")
    assert script_default_mirror(script, "amd64", "bookworm") == "http://flat.test/debian"


def test_missing_script_gives_none(fs: FakeFilesystem) -> None:
    assert script_default_mirror(Path("/nowhere/gutsy"), "amd64", "noble") is None


def test_def_mirror_fallback(fs: FakeFilesystem) -> None:
    """Debian's scripts set no default_mirror; debootstrap's DEF_MIRROR is the default then."""
    fs.create_file(DEBOOTSTRAP_SCRIPTS / "sid", contents="mirror_style release\ndownload_style apt\n")
    fs.create_file(
        DEBOOTSTRAP_BIN,
        contents='#!/bin/sh\nset -e\nVERSION=1.0.128\nDEF_MIRROR="http://debian.mirror.test/debian"\nDEF_HTTPS_MIRROR="x"\n',
    )
    assert debootstrap_def_mirror() == "http://debian.mirror.test/debian"
    assert default_mirror("sid", "amd64", "trixie") == "http://debian.mirror.test/debian"


def test_def_mirror_absent(fs: FakeFilesystem) -> None:
    fs.create_file(DEBOOTSTRAP_BIN, contents="#!/bin/sh\necho no mirror here\n")
    assert debootstrap_def_mirror() is None


def test_nothing_found_is_a_user_error(fs: FakeFilesystem) -> None:
    with pytest.raises(UserError) as err:
        default_mirror("gutsy", "amd64", "noble")
    assert err.value.message.startswith("cannot find a default mirror for noble/amd64")
    assert err.value.hint == "install debootstrap (apt-get install debootstrap) or pass --mirror URL"


def test_script_without_match_and_no_debootstrap_is_a_user_error(fs: FakeFilesystem) -> None:
    fs.create_file(DEBOOTSTRAP_SCRIPTS / "odd", contents="case $ARCH in\n  s390x)\ndefault_mirror http://x\n;;\nesac\n")
    with pytest.raises(UserError, match="pass --mirror URL"):
        default_mirror("odd", "amd64", "noble")
