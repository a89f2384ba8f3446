"""VMBuilder 0.12's command-line options and what became of each here: the upgrade path, as data.

The table drives three things: the error an upgrader gets for a VMBuilder-only option (on the
command line or as a config key, see settings.py), docs/upgrading.md (docgen), and a unit test
that checks every entry against our real settings table, so the mapping cannot go stale.

Where the list comes from (facts only: option names and behaviour, read from the source):
  - VMBuilder 0.12.4 (get_version_info() in VMBuilder/__init__.py says 0.12.4), the snapshot in
    github.com/simonjj/vmbuilder-centos-support at 83817a9f99aae6454605c7ba38c58c15e7d8e5d5:
    VMBuilder/contrib/cli.py (the frontend's build and disk options), VMBuilder/plugins/ubuntu/
    distro.py and dapper.py (the ubuntu distro), plugins/network (domain, ip, mask, net, bcast,
    gw, dns, mac), plugins/libvirt, plugins/kvm/vm.py, xen/vm.py, vmware/vm.py, virtualbox/vm.py,
    plugins/postinst, plugins/firstscripts, plugins/ec2 (not registered in 0.12.4), VMBuilder/util.py
    (config files: [DEFAULT] and the plugin's own section; unknown keys ignored);
  - the Launchpad history imported in github.com/newroco/vmbuilder (VMBuilder/plugins/ubuntu/
    distro.py adds --debootstrap-tarball, as Ubuntu's python-vm-builder 0.12.4+bzr489 shipped it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["same", "changed", "replaced", "not applicable", "unsupported"]
STATUSES: tuple[Status, ...] = ("same", "changed", "replaced", "not applicable", "unsupported")
# Statuses whose options do not exist here: giving one is an error that says what to do.
GONE: tuple[Status, ...] = ("replaced", "not applicable", "unsupported")

# VMBuilder's plugins that declared the options (short labels, as docs/upgrading.md shows them).
SOURCES = {
    "cli": "frontend",
    "ubuntu": "ubuntu",
    "network": "network",
    "libvirt": "libvirt",
    "mem": "kvm, xen, vmware, vbox",
    "cpus": "kvm, vmware, vbox",
    "xen": "xen",
    "vbox": "vbox",
    "postinst": "postinst",
    "firstscripts": "firstscripts",
    "ec2": "ec2",
}
# VMBuilder read only its plugins' settings from config files, not the frontend's own options.
NOT_CONFIG_KEYS = ("cli", "ec2")


@dataclass(frozen=True)
class VMBuilderOption:
    """One VMBuilder option. `note` says how ours differs (same/changed) or why it does not apply
    (not applicable); `fix` says what to do instead (replaced, not applicable, unsupported)."""

    flags: tuple[str, ...]  # VMBuilder's spellings, the long name first
    source: str  # key of SOURCES
    did: str  # what it did in VMBuilder
    status: Status
    note: str = ""
    fix: str = ""
    ours: str = ""  # replaced: our option
    area: str = ""  # not applicable: "disk-image", "kernel", ... (named in the error)

    def __post_init__(self) -> None:
        if self.source not in SOURCES or self.status not in STATUSES:
            raise ValueError(f"bad compat entry {self.flags}")
        if self.status in GONE and not self.fix:
            raise ValueError(f"compat entry {self.flags} needs a fix")
        if (self.status == "replaced") != bool(self.ours) or (self.status == "not applicable") != bool(self.area):
            raise ValueError(f"compat entry {self.flags}: ours/area do not match the status")

    @property
    def name(self) -> str:
        return self.flags[0]

    @property
    def config_key(self) -> bool:
        """Whether VMBuilder read it from its config files."""
        return self.source not in NOT_CONFIG_KEYS

    def problem(self, subject: str) -> tuple[str, str]:
        """(message, hint) for a user who gave this VMBuilder-only option; `subject` names where."""
        if self.status == "replaced":
            return f"{subject} is a VMBuilder option, replaced by {self.ours}", self.fix
        if self.status == "not applicable":
            return f"{subject} is a VMBuilder {self.area} option", f"{self.note}: {self.fix}"
        return f"{subject} is a VMBuilder option that vmbuilder-lxc does not support", self.fix

    def here(self) -> str:
        """What it is here, in one phrase (docs/upgrading.md)."""
        if self.status == "replaced":
            return f"use `{self.ours}`: {self.fix}"
        if self.status == "not applicable":
            return f"{self.note}: {self.fix}"
        if self.status == "unsupported":
            return self.fix
        return self.note


def same(flags: tuple[str, ...], source: str, did: str, note: str = "") -> VMBuilderOption:
    return VMBuilderOption(flags, source, did, "same", note)


def changed(flags: tuple[str, ...], source: str, did: str, note: str) -> VMBuilderOption:
    return VMBuilderOption(flags, source, did, "changed", note)


def replaced(flags: tuple[str, ...], source: str, did: str, ours: str, fix: str) -> VMBuilderOption:
    return VMBuilderOption(flags, source, did, "replaced", fix=fix, ours=ours)


def not_applicable(flags: tuple[str, ...], source: str, did: str, area: str, why: str, fix: str) -> VMBuilderOption:
    return VMBuilderOption(flags, source, did, "not applicable", why, fix, area=area)


def unsupported(flags: tuple[str, ...], source: str, did: str, fix: str) -> VMBuilderOption:
    return VMBuilderOption(flags, source, did, "unsupported", fix=fix)


# VMBuilder's hypervisors (their `arg`), none of which exists here.
VMBUILDER_HYPERVISORS = ("kvm", "qemu", "xen", "vmw6", "vmserver", "esxi", "vbox")
DROP = "drop it"
NO_DISK = "containers have no disk image"
NO_WORKDIR = "the build runs in a hidden directory beside DEST, renamed into place when it succeeds"
NO_KERNEL = "a container runs on the host's kernel"
NO_EC2 = "an EC2 image is a Xen disk image with a kernel, and containers have neither"
EC2_FIX = "drop it; for images use --export"

VMBUILDER_OPTIONS: tuple[VMBuilderOption, ...] = (
    # -- frontend: build options --------------------------------------------------------------------------------
    same(("--help", "-h"), "cli", "show the options", "`vmbuilder lxc ubuntu --help` shows every plugin's options"),
    same(("--version",), "cli", "print the version"),
    same(("--debug",), "cli", "show debug output", "also tracebacks and each command's output"),
    same(("--verbose", "-v"), "cli", "show progress output", "also every command that is run"),
    unsupported(("--quiet", "-q"), "cli", "silent operation",
                "the step log goes to stderr: redirect it (2>/dev/null), or give --json and read stdout"),
    changed(("--overwrite", "-o"), "cli",
            "delete an existing destination directory first (and replace a libvirt domain of the same name)",
            "only a DEST holding an earlier vmbuilder-lxc build is replaced, and only after the new build "
            "succeeded; a libvirt domain only when it is shut off"),
    changed(("--config", "-c"), "cli", "read one more config file after /etc/vmbuilder.cfg and ~/.vmbuilder.cfg",
            "repeatable: every -c FILE is read, in order (VMBuilder read only the last one)"),
    changed(("--templates",), "cli", "put DIR first on the Cheetah template search path (DIR/PLUGIN/NAME.tmpl)",
            "Jinja2 templates under the packaged names (DIR/netplan/10-lxc.yaml.j2); repeatable; "
            "VMBuilder's .tmpl files, also those in /etc/vmbuilder/ and ~/.vmbuilder/, are not read"),
    same(("--destdir", "-d"), "cli", "destination directory (default: DISTRO-HYPERVISOR)",
         "now also spelled --dest; it holds rootfs/ and the LXC config instead of disk images"),
    not_applicable(("--only-chroot",), "cli", "stop after building the chroot, before any disk image", "disk-image",
                   "every build here is a root filesystem directory (DEST/rootfs) with no disk-image step", DROP),
    not_applicable(("--chroot-dir",), "cli", "build the chroot in this directory", "build-directory", NO_WORKDIR,
                   "drop it; choose the place with -d DEST"),
    replaced(("--existing-chroot",), "cli", "skip the bootstrap and use this chroot", "--from-template",
             "pack the chroot into a tarball (tar -C DIR -cf FILE.tar .) and give --from-template FILE.tar"),
    not_applicable(("--tmp", "-t"), "cli", "directory for temporary files (default: $TMPDIR or /tmp)",
                   "build-directory", NO_WORKDIR, "drop it; choose the file system with -d DEST"),
    not_applicable(("--tmpfs",), "cli", "build on a tmpfs of this size", "build-directory", NO_WORKDIR,
                   "drop it; mount a tmpfs on DEST's parent directory yourself if you want one"),
    # -- frontend: disk -----------------------------------------------------------------------------------------
    not_applicable(("--rootsize",), "cli", "size of the root file system in MB (default 4096)", "disk-image",
                   NO_DISK, DROP),
    not_applicable(("--optsize",), "cli", "size of a separate /opt file system in MB", "disk-image", NO_DISK, DROP),
    not_applicable(("--swapsize",), "cli", "size of the swap partition in MB (default 1024)", "disk-image",
                   "containers have no swap partition: the host's swap and the memory cgroup apply", DROP),
    not_applicable(("--raw",), "cli", "write the image to this file or block device", "disk-image", NO_DISK,
                   "drop it; to keep a container on its own block device, mount it and build into it with -d"),
    not_applicable(("--part",), "cli", "partition layout file (mount point and size per line, '---' between disks)",
                   "disk-image", NO_DISK, "drop it; mount the file systems you want before building, or add "
                   "lxc.mount.entry lines to DEST/config"),
    # -- ubuntu distro: packages --------------------------------------------------------------------------------
    same(("--addpkg",), "ubuntu", "install packages in the guest (repeatable)", "also comma separated"),
    changed(("--removepkg",), "ubuntu", "remove packages from the guest (repeatable)",
            "packages are purged (configuration files too) and what they alone needed is autoremoved"),
    same(("--seedfile",), "ubuntu", "preseed debconf before the packages are installed"),
    # -- ubuntu distro: general OS options ----------------------------------------------------------------------
    same(("--arch", "-a"), "ubuntu", "target architecture (amd64, i386, lpia; default: the host's)",
         "any Debian architecture the host can run, foreign ones through qemu-user-static"),
    changed(("--hostname",), "ubuntu", "host name of the guest and name of the VM (default: ubuntu)",
            "the default is the name of -d DEST when one is given; it also names the LXC container and the "
            "libvirt domain"),
    # -- ubuntu distro: installation options --------------------------------------------------------------------
    changed(("--suite",), "ubuntu", "release to install, from a fixed list (default: lucid)",
            "any release distro-info-data knows, a version number, devel, lts or stable; the default is lts, "
            "the newest LTS"),
    not_applicable(("--flavour", "--kernel-flavour"), "ubuntu", "kernel flavour to install", "kernel", NO_KERNEL,
                   DROP),
    changed(("--variant",), "ubuntu", "passed to debootstrap --variant (minbase, buildd, fakechroot)",
            "minbase (the default) or default builds a container; buildd builds a chroot for sbuild and schroot "
            "instead (docs/sbuild.md); fakechroot is not offered"),
    unsupported(("--debootstrap-tarball",), "ubuntu", "passed to debootstrap --unpack-tarball",
                "the base-system cache already bootstraps each base once; for builds without the archive, point "
                "--install-mirror at a local mirror or apt cache"),
    unsupported(("--iso",), "ubuntu", "install from a loop-mounted installation ISO",
                "build from a mirror: --install-mirror URL (a local mirror or apt cache) is used only while building"),
    same(("--mirror",), "ubuntu", "archive mirror for the guest", "the default comes from debootstrap's scripts"),
    changed(("--proxy",), "ubuntu", "HTTP proxy for the package downloads",
            "used while building only; VMBuilder also left it in the guest's /etc/apt/apt.conf"),
    same(("--install-mirror",), "ubuntu", "mirror used only during the installation"),
    same(("--security-mirror",), "ubuntu", "mirror of the security pocket"),
    same(("--install-security-mirror",), "ubuntu", "security mirror used only during the installation"),
    same(("--components",), "ubuntu", "archive components (default: main, restricted, universe)"),
    unsupported(("--ppa",), "ubuntu", "add a Launchpad PPA to the guest's sources.list",
                "add the PPA with an --execscript (chroot \"$1\" add-apt-repository ...), or --copy its apt sources "
                "file and signing key into the guest"),
    changed(("--lang",), "ubuntu", "locale of the guest (default: the host's $LANG)",
            "the default is C.UTF-8, whatever the host's locale"),
    same(("--timezone",), "ubuntu", "time zone of the guest (default: UTC)"),
    # -- ubuntu distro: the initial user ------------------------------------------------------------------------
    same(("--user",), "ubuntu", "name of the initial user (default: ubuntu)"),
    changed(("--name",), "ubuntu", "full name of the initial user (default: Ubuntu)", "no default"),
    changed(("--pass",), "ubuntu", "password of the initial user (default: ubuntu)",
            "no default password: without --pass the password is locked; log in with --ssh-user-key or lxc-attach"),
    same(("--rootpass",), "ubuntu", "root password (root is locked without it)"),
    same(("--uid",), "ubuntu", "UID of the initial user"),
    unsupported(("--gid",), "ubuntu", "GID of the initial user",
                "change it in an --execscript: chroot \"$1\" groupmod -g GID USER, then chown the home directory"),
    not_applicable(("--lock-user",), "ubuntu", "lock the initial user's password", "user",
                   "the initial user's password is already locked unless --pass is given", DROP),
    # -- ubuntu distro: other options ---------------------------------------------------------------------------
    same(("--ssh-key",), "ubuntu", "authorize a public key file for root"),
    same(("--ssh-user-key",), "ubuntu", "authorize a public key file for the initial user",
         "openssh-server is always installed (VMBuilder added it when a key was given)"),
    unsupported(("--manifest",), "ubuntu", "write the installed packages and versions to a file",
                "after the build: dpkg-query --admindir=DEST/rootfs/var/lib/dpkg -W "
                "-f='${Package} ${Version}\\n' > FILE"),
    # -- network plugin -----------------------------------------------------------------------------------------
    changed(("--domain",), "network", "DNS domain of the guest (default: the host's domain)",
            "optional, no default"),
    same(("--ip",), "network", "IPv4 address of the guest, or dhcp (the default)"),
    same(("--mac",), "network", "MAC address of the guest (default: random)"),
    changed(("--mask",), "network", "netmask (default: guessed from the address class)",
            "the default is 24; a prefix length or a dotted netmask"),
    not_applicable(("--net",), "network", "network address (default: from --ip and --mask)", "network",
                   "the guest's network configuration needs no network address", DROP),
    not_applicable(("--bcast",), "network", "broadcast address (default: from --ip and --mask)", "network",
                   "the broadcast address follows from --ip and --mask", DROP),
    changed(("--gw",), "network", "gateway (default: guessed from the address)",
            "no default: without --gw a static guest has no default route (a warning says so)"),
    changed(("--dns",), "network", "name server (default: the gateway)",
            "repeatable; no default: without --dns a static guest has no name server"),
    # -- libvirt plugin -----------------------------------------------------------------------------------------
    changed(("--libvirt",), "libvirt", "define the VM as a domain at this libvirt URI (KVM and QEMU only)",
            "defines a libvirt-lxc domain: give an lxc:/// URI, not qemu:///system (docs/libvirt.md)"),
    changed(("--bridge",), "libvirt", "connect the VM's NIC to this host bridge",
            "the host bridge of the container's veth (default lxcbr0), for lxc-start and for --libvirt"),
    changed(("--network",), "libvirt", "connect the VM's NIC to this libvirt network (default: default)",
            "'none' for no network; with --libvirt a libvirt network (default: default); otherwise the veth goes "
            "on --bridge"),
    # -- hypervisors --------------------------------------------------------------------------------------------
    changed(("--mem",), "mem", "RAM of the VM in MB (default 128)",
            "a memory limit (cgroup) in MB or with a G suffix; no default, no limit"),
    replaced(("-m",), "mem", "short form of --mem", "--mem", "a memory limit in MB (or 2G), not the guest's RAM"),
    changed(("--cpus",), "cpus", "number of virtual CPUs (default 1)",
            "a CPU limit: a CFS quota of this many CPUs; no default, no limit"),
    not_applicable(("--xen-kernel",), "xen", "kernel of the Xen guest", "kernel", NO_KERNEL, DROP),
    not_applicable(("--xen-ramdisk",), "xen", "initrd of the Xen guest", "kernel", "a container has no initrd", DROP),
    not_applicable(("--vbox-disk-format",), "vbox", "VirtualBox disk format (vdi or vmdk)", "disk-image", NO_DISK,
                   "drop it; archives of the container come from --export (tar, lxc, lxd, incus, squashfs, sbuild)"),
    # -- postinst and firstscripts ------------------------------------------------------------------------------
    same(("--copy",), "postinst", "copy host files into the guest, one 'SOURCE DEST' line each",
         "lines may also carry '#' comments and shell quoting"),
    same(("--execscript", "--exec"), "postinst", "run a host script with the guest's root directory as $1",
         "the build facts (SUITE, ARCH, HOSTNAME, ...) are in its environment"),
    changed(("--firstboot",), "firstscripts", "run a script once at the guest's first boot (from /etc/rc.local)",
            "run once by the guest's init: a systemd unit (vmbuilder-firstboot.service), upstart job to utopic"),
    unsupported(("--firstlogin",), "firstscripts", "run a script at the user's first login (it may be interactive)",
                "use --firstboot for what needs no user, or --copy a script into /etc/profile.d/ that removes itself"),
    # -- ec2 plugin ---------------------------------------------------------------------------------------------
    not_applicable(("--ec2",), "ec2", "build an EC2 image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-name", "--ec2-prefix"), "ec2", "name of the image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-cert",), "ec2", "EC2 certificate file", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-key",), "ec2", "EC2 private key file", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-user",), "ec2", "AWS account number", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-bucket",), "ec2", "S3 bucket for the image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-access-key",), "ec2", "AWS access key ID", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-secret-key",), "ec2", "AWS secret access key", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-kernel", "--ec2-aki"), "ec2", "kernel (AKI) of the image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-ramdisk", "--ec2-ari"), "ec2", "ramdisk (ARI) of the image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-version",), "ec2", "version of the image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-landscape",), "ec2", "install the Landscape client", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-bundle",), "ec2", "bundle the image", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-upload",), "ec2", "upload the bundle to S3", "EC2", NO_EC2, EC2_FIX),
    not_applicable(("--ec2-register",), "ec2", "register the image with EC2", "EC2", NO_EC2, EC2_FIX),
)  # fmt: skip
_BY_FLAG = {flag: entry for entry in VMBUILDER_OPTIONS for flag in entry.flags}


def lookup(flag_or_key: str) -> VMBuilderOption | None:
    """The VMBuilder option spelled `--flag`, `-f` or as a config key (`kernel_flavour`), if any."""
    text = flag_or_key.strip()
    if not text.startswith("-"):
        text = "--" + text.lower().replace("_", "-")
    entry = _BY_FLAG.get(text)
    if entry is None and len(text) > 2 and text[1] != "-":  # -m512: a short option with its value attached
        entry = _BY_FLAG.get(text[:2])
    return entry


def vmbuilder_only(flag_or_key: str) -> VMBuilderOption | None:
    """The entry when `flag_or_key` is a VMBuilder option that does not exist here, else None."""
    entry = lookup(flag_or_key)
    return entry if entry is not None and entry.status in GONE else None


def hypervisor_hint(name: str) -> str | None:
    """What to say to `vmbuilder kvm ubuntu`: VMBuilder's disk-image hypervisors are not here."""
    if name not in VMBUILDER_HYPERVISORS:
        return None
    return f"'{name}' is a VMBuilder hypervisor of disk images; vmbuilder-lxc builds containers: use 'vmbuilder lxc'"
