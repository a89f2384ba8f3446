#!/bin/bash
# vmbuilder-lxc quick start for a fresh Debian 12 or Ubuntu 24.04 machine, run as root.
#
#   bash quickstart.sh demo   build a default Ubuntu container and start it
#   bash quickstart.sh test   run the whole test suite (unit and integration tests)
#
# Each command installs what it needs first: apt packages, the Ubuntu archive keyring (on Debian,
# fetched and checked against its pinned SHA-256), and this checkout into a virtualenv at
# $VENV (default /opt/vmbuilder-lxc/venv) with `vmbuilder` linked into /usr/local/bin.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${VENV:-/opt/vmbuilder-lxc/venv}
DEMO_NAME=${DEMO_NAME:-demo}
KEYRING=/usr/share/keyrings/ubuntu-archive-keyring.gpg

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run this as root (it installs packages and builds containers)"
[ -r /etc/os-release ] && . /etc/os-release

install_packages() {
    local pkgs=(debootstrap mmdebstrap distro-info-data debian-archive-keyring lxc lxcfs uidmap zstd xz-utils
                python3 python3-venv python3-pip ca-certificates curl)
    if [ "${1:-}" = test ]; then
        # Debian's own python3-sh (1.14) and python3-jinja2: the suite checks the tool runs on them.
        pkgs+=(python3-sh python3-jinja2 iproute2)
        # libvirt-lxc for the libvirt tests; python3-libvirt for the binding path (Debian's python3).
        pkgs+=(libvirt-daemon libvirt-daemon-driver-lxc libvirt-clients python3-libvirt)
        # virt-xml-validate (libvirt-clients) needs xmllint: the hostile-value test validates the domain XML.
        pkgs+=(libxml2-utils)
        # The export tests: LXD imports and launches our images; squashfs and file capabilities are read back.
        pkgs+=(lxd lxd-client squashfs-tools libcap2-bin)
        # The publish tests (issue 17): a CA and a server certificate made with openssl, trusted with
        # update-ca-certificates (ca-certificates), and lxc-create -t download, which fetches with wget.
        pkgs+=(openssl wget)
        # The id shift's unit tests (--idmap) set and read POSIX ACLs with setfacl/getfacl.
        pkgs+=(acl)
        # The sbuild export: sbuild 0.85 builds a package in it (unshare mode, with uidmap).
        pkgs+=(sbuild)
        # --backing btrfs: the test makes and loop-mounts a btrfs image (mkfs.btrfs, btrfs subvolume).
        pkgs+=(btrfs-progs)
        # Foreign architectures (test_foreign.py): qemu-user with binfmt_misc entries that carry the F flag,
        # and arch-test, which mmdebstrap needs to bootstrap a foreign --arch.
        pkgs+=(qemu-user-static binfmt-support arch-test)
        # The Debian package: dpkg-buildpackage with its Build-Depends, lintian, and the man pages and
        # bash completion read back by their consumers.
        pkgs+=(build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian
               man-db bash-completion)
    fi
    if [ "${ID:-}" = ubuntu ]; then
        pkgs+=(ubuntu-keyring)
    fi
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [[ " ${missing[*]} " == *" libvirt-daemon "* ]]; then
            # libvirt-daemon pulls in the qemu driver, whose setup needs this user and group.
            getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
            id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
        fi
        say "Installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ "${1:-}" = test ]; then
        install_incus
    fi
}

debian_mirror() {
    # The Debian mirror this host already uses for its release (sources.list or deb822 .sources,
    # as apt itself reads them), else debootstrap's default: never a host name of our own.
    local uri
    uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' 2>/dev/null \
        | awk -v r="$VERSION_CODENAME" '$2 == r && $3 == "deb" { print $1; exit }')
    if [ -z "$uri" ] && [ -r /usr/sbin/debootstrap ]; then
        uri=$(sed -n 's/^DEF_MIRROR="\(.*\)"$/\1/p' /usr/sbin/debootstrap | head -n 1)
    fi
    [ -n "$uri" ] || die "cannot tell which Debian mirror this host uses (no $VERSION_CODENAME source in apt)"
    echo "${uri%/}"
}

install_incus() {
    # The Incus tests: Debian 12 has no incus, bookworm-backports has 6.0. Only incus-base (and what it
    # needs that is not installed yet) comes from backports; backports keeps apt's default priority
    # (100), so nothing already installed is upgraded from it, then or later. incus-base is the daemon
    # and client for containers: the `incus` package adds VM support, which needs backports' qemu 10 and
    # would upgrade the qemu-utils that libvirt's packages installed.
    dpkg-query -W -f='${Status}' incus-base 2>/dev/null | grep -q "ok installed" && return 0
    local target=()
    if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
        local list=/etc/apt/sources.list.d/vmbuilder-bookworm-backports.sources
        if [ ! -s "$list" ]; then
            local mirror
            mirror=$(debian_mirror)  # on its own line, so that set -e stops at its failure
            say "Adding bookworm-backports to apt's sources ($list), for incus"
            printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
                "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg > "$list.tmp"
            mv "$list.tmp" "$list"
        fi
        target=(-t bookworm-backports)
    fi
    say "Installing incus-base ${target[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${target[@]}" incus-base >/dev/null
}

install_project() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "Creating the virtualenv $VENV"
        mkdir -p "$(dirname "$VENV")"
        python3 -m venv "$VENV"
    fi
    say "Installing vmbuilder-lxc from $HERE into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e "$HERE${1:+[$1]}"
    ln -sf "$VENV/bin/vmbuilder" /usr/local/bin/vmbuilder
    ln -sf "$VENV/bin/vmbuilder-fetch-keyring" /usr/local/bin/vmbuilder-fetch-keyring
}

ensure_keyring() {
    if [ ! -s "$KEYRING" ]; then
        say "Fetching the Ubuntu archive keyring (Debian has no ubuntu-keyring package)"
        "$VENV/bin/vmbuilder-fetch-keyring"
    fi
}

start_lxcfs() {
    # A mount whose lxcfs process has gone (killed with its session) answers ENOTCONN: drop it first.
    if grep -q " /var/lib/lxcfs " /proc/self/mountinfo && ! stat /var/lib/lxcfs/proc/meminfo >/dev/null 2>&1; then
        say "Unmounting a stale lxcfs mount (its daemon is gone)"
        umount -l /var/lib/lxcfs
    fi
    if ! grep -q " /var/lib/lxcfs " /proc/self/mountinfo; then
        say "Starting lxcfs (container-sized /proc/meminfo and friends)"
        if [ -d /run/systemd/system ]; then
            systemctl start lxcfs
        else
            mkdir -p /var/lib/lxcfs
            setsid lxcfs /var/lib/lxcfs >/dev/null 2>&1 < /dev/null &
            for _ in $(seq 1 50); do grep -q " /var/lib/lxcfs " /proc/self/mountinfo && break; sleep 0.1; done
        fi
    fi
}

enable_binfmt() {
    # Debian 12 without systemd leaves binfmt_misc unmounted; binfmt-support then registers nothing.
    # Both steps are idempotent: an already mounted binfmt_misc and enabled entries are kept.
    local dir=/proc/sys/fs/binfmt_misc
    if [ ! -e "$dir/status" ]; then
        say "Mounting binfmt_misc (foreign architectures run through qemu-user)"
        mount -t binfmt_misc binfmt_misc "$dir"
    fi
    update-binfmts --enable >/dev/null 2>&1 || true
    [ -e "$dir/qemu-aarch64" ] || die "update-binfmts registered no qemu-aarch64 entry"
}

network_args() {
    # The default network is a veth on lxcbr0, which lxc-net provides. Without systemd (build
    # sandboxes) lxc-net is not running; then build the container without a network.
    if [ ! -e /sys/class/net/lxcbr0 ] && [ -d /run/systemd/system ]; then
        systemctl start lxc-net >/dev/null 2>&1 || true
    fi
    if [ -e /sys/class/net/lxcbr0 ]; then
        echo ""
    else
        echo "--network none"
        echo "quickstart: lxcbr0 does not exist and cannot be started here; building with --network none" >&2
    fi
}

demo() {
    install_packages
    install_project
    ensure_keyring
    start_lxcfs
    local net
    net=$(network_args)
    if lxc-info -n "$DEMO_NAME" >/dev/null 2>&1; then
        lxc-stop -n "$DEMO_NAME" >/dev/null 2>&1 || true
    fi
    say "Building container '$DEMO_NAME' in /var/lib/lxc"
    # shellcheck disable=SC2086
    vmbuilder lxc ubuntu --lxc-path /var/lib/lxc --hostname "$DEMO_NAME" --overwrite $net
    say "Starting it"
    lxc-start -n "$DEMO_NAME"
    local state=unknown
    for _ in $(seq 1 60); do
        state=$(lxc-attach -n "$DEMO_NAME" -- systemctl is-system-running 2>/dev/null || true)
        case "$state" in running|degraded) break ;; esac
        sleep 1
    done
    echo "systemctl is-system-running: $state"
    echo
    echo "Get a shell:       lxc-attach -n $DEMO_NAME"
    echo "See the console:   lxc-console -n $DEMO_NAME   (Ctrl-a q to leave)"
    echo "Stop it:           lxc-stop -n $DEMO_NAME"
    [ "$state" = running ]
}

run_tests() {
    install_packages test
    install_project test
    ensure_keyring
    start_lxcfs
    enable_binfmt
    say "Running the test suite"
    cd "$HERE"
    VMBUILDER_REQUIRE_INTEGRATION=1 "$VENV/bin/python" -m pytest -ra -p no:cacheprovider "$@" tests
}

case "${1:-}" in
    demo) demo ;;
    test) shift; run_tests "$@" ;;
    *) echo "usage: bash quickstart.sh demo|test" >&2; exit 2 ;;
esac
