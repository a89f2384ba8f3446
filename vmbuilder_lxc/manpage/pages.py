"""The page builders: vmbuilder.1, one page per hypervisor and distro, and vmbuilder-fetch-keyring.1.

The prose of the built-in plugins lives here; the option items come from layout.py, so only the
words around them are written by hand. Nothing here reads config files, the cache or the network.
"""

from __future__ import annotations

from ..cache import DEFAULT_CACHE_DIR
from ..cli import PROG
from ..keyring import DEBIAN_KEYRING, KEYRING_DIR, UBUNTU_KEYRING, UBUNTU_KEYRING_FILES, fetch_parser
from ..plugin import Plugin, by_kind, command_parsers, commands_for, discover
from ..settings import SYSTEM_CONFIG, USER_CONFIG
from .layout import (
    FETCH_KEYRING,
    FETCH_PAGE,
    MAIN_PAGE,
    Group,
    all_settings,
    option_groups,
    option_metavar,
    parser_items,
    plugin_pages,
    positionals,
    usage,
    write_groups,
)
from .roff import bold, esc, fmt, italic, notes, see_also, sentence, start_page, synopsis, title_date

EXTERNAL_PAGES = ("lxc-start(1)", "lxc-attach(1)", "virsh(1)", "debootstrap(8)", "mmdebstrap(1)", "sbuild(1)")

CONFIG_EXAMPLE = (
    "[DEFAULT]",
    "mirror = http://mirror.example.lan/ubuntu",
    "proxy = http://apt-cache.example.lan:3142",
    "",
    "[ubuntu]",
    "suite = noble",
    "user = ops",
    "ssh-user-key = /etc/vmbuilder/ops.pub",
)


def main_page(plugins: dict[str, type[Plugin]], groups: list[Group], date: str) -> str:
    page = start_page(PROG, "build container-safe root filesystems for LXC and libvirt-lxc", date)
    synopsis(page, [
        f"{bold(PROG)} {italic('HYPERVISOR')} {italic('DISTRO')} [{italic('options')}]",
        f"{bold(PROG)} {italic('HYPERVISOR')} {italic('COMMAND')} [{italic('arguments')}]",
        f"{bold(PROG)} [{bold('--help')} | {bold('--version')}]",
    ])  # fmt: skip
    page.lines.append(".SH DESCRIPTION")
    page.para(
        f"`{PROG}` bootstraps a Debian-family root filesystem (with mmdebstrap or debootstrap, archive "
        "signatures always checked), makes it container-safe in ways that survive package upgrades, and "
        "writes what the hypervisor needs next to it: for `lxc`, an LXC configuration that `lxc-start` "
        "boots. It can also define the container as a libvirt-lxc domain and export template archives."
    )
    page.para(
        "It is a Python 3 successor to Canonical's VMBuilder: the same command shape, the same option "
        "names, the same configuration files and the same plugin hook names. The build runs in a private "
        "mount namespace, in a hidden directory beside DEST that is renamed into place only on success; on "
        "a failure or an interrupt it is unmounted and removed."
    )
    page.para("The installed plugins (each hypervisor and distro has its own page):")
    for kind, title in (("hypervisor", "Hypervisor"), ("distro", "Distro"), ("plugin", "Plugin")):
        for name, cls in by_kind(plugins, kind).items():
            ref = f" See {bold(f'{PROG}-{name}')}(1)." if kind != "plugin" else ""
            page.item(f"{bold(name)} ({esc(title.lower())})", esc(sentence(cls.description)) + ref)
    commands = [(hv, name, fn) for hv in by_kind(plugins, "hypervisor")
                for name, fn in sorted(commands_for(plugins, hv).items())]  # fmt: skip
    if commands:
        page.para("Commands, described in the hypervisor's page:")
        for hv, name, fn in commands:
            doc = (fn.__doc__ or "").strip().splitlines()
            page.item(bold(f"{PROG} {hv} {name}"), esc(sentence(doc[0])) if doc else "")
    page.lines.append(".SH OPTIONS")
    page.para(
        "These options exist with every hypervisor and distro (a plugin limited to some says so); the "
        f"hypervisor's and the distro's own options are in their pages, and `{PROG} HYPERVISOR DISTRO "
        "--help` lists them all. Every option is also a configuration-file key (see CONFIGURATION FILES). "
        "Boolean options that a configuration file can set, or that are on by default, have a `--no-` form "
        "that turns them off. List options may be repeated, and each value may hold several items separated "
        "by commas."
    )
    write_groups(page, groups, plugins)
    page.lines.append(".SH CONFIGURATION FILES")
    page.para(
        f"Settings are read from `{SYSTEM_CONFIG}`, then `{USER_CONFIG}`, then each `-c FILE` in the order "
        "given, in VMBuilder's INI format. Within a file the section `[DEFAULT]` applies to every build, "
        "`[HYPERVISOR]` (e.g. `[lxc]`) to builds with that hypervisor and `[DISTRO]` (e.g. `[ubuntu]`) to "
        "builds of that distro; later sections and later files win. The command line wins over all of "
        "them, even when it repeats the default."
    )
    page.para(
        "Every option is a key: `--name VALUE` is `name = VALUE`; booleans take yes/no, true/false, on/off "
        "or 1/0; lists take comma or space separated values. Aliases and underscores are accepted "
        "(`destdir`, `ssh_user_key`). A key the build does not know is a warning in `[DEFAULT]` and an "
        "error in the other sections. `--config` and `--list-suites` are command line only."
    )
    page.example(*CONFIG_EXAMPLE)
    page.lines.append(".SH ENVIRONMENT")
    env = [
        ("SOURCE_DATE_EPOCH", "The time (seconds since 1970) that `--export` and `vmbuilder lxc export` "
         "clamp file times to, so that an export is reproducible; without it, the time of the build."),
        ("VMBUILDER_NO_ENTRY_POINTS", "Set to 1 to load only the built-in plugins, not those registered "
         "by other installed packages in the `vmbuilder_lxc.plugins` entry-point group."),
        ("VMBUILDER_LIBVIRT_BACKEND", "Set to `virsh` to talk to libvirt through `virsh` even when the "
         "libvirt Python binding is installed."),
        ("TERM", "On a terminal whose TERM is not `dumb` the progress of a long step is one line "
         "rewritten in place; elsewhere, while a step runs, a heartbeat line comes after every 15 seconds "
         "without output."),
        ("PATH", "Searched after /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin and /bin for "
         "the tools a build runs. They run with a clean environment (LC_ALL=C.UTF-8, "
         "DEBIAN_FRONTEND=noninteractive), so the host's locale does not leak into the guest."),
    ]  # fmt: skip
    for name, text in env:
        page.item(bold(name), fmt(text))
    page.lines.append(".SH EXIT STATUS")
    for code, text in (
        ("0", "Success."),
        ("1", "The build failed (the failing command and the end of its output are shown), or "
         "`vmbuilder lxc validate` found errors."),
        ("2", "Bad input: one line naming the problem and the fix, no traceback. Also a missing "
         "HYPERVISOR or DISTRO."),
        ("130", "Interrupted by SIGINT (Ctrl-C); the build directory was removed."),
        ("143", "Interrupted by SIGTERM; the build directory was removed."),
        ("129", "Interrupted by SIGHUP; the build directory was removed."),
    ):  # fmt: skip
        page.item(bold(code), fmt(text))
    page.lines.append(".SH FILES")
    for path, text in (
        (str(SYSTEM_CONFIG), "System-wide settings."),
        (str(USER_CONFIG), "Per-user settings."),
        (f"{DEFAULT_CACHE_DIR}/bases/", "Cached base systems (`--cache-dir`, `--cache-max-age`, `--no-cache`)."),
        ("DEST/rootfs/", "The guest's root file system."),
        ("DEST/vmbuilder-lxc.json", "What was built and how (the summary `--json` prints); `--overwrite` "
         "replaces only a DEST that has it."),
    ):  # fmt: skip
        page.item(bold(path), fmt(text))
    page.lines.append(".SH EXAMPLES")
    page.para("A noble container with a user who logs in with an SSH key and no network, then start it:")
    page.example(
        "vmbuilder lxc ubuntu --suite noble --hostname web1 --user alice \\",
        "    --ssh-user-key ~/.ssh/id_ed25519.pub --network none -d /srv/lxc/web1",
        "lxc-start -P /srv/lxc -n web1",
    )
    page.para("Straight into LXC's default path, with a static address and limits:")
    page.example(
        "vmbuilder lxc ubuntu --suite jammy --lxc-path /var/lib/lxc --hostname db1 \\",
        "    --ip 10.0.3.20 --mask 24 --gw 10.0.3.1 --dns 10.0.3.1 --mem 2G --cpus 2",
        "lxc-start -n db1",
    )
    page.para("A Debian guest, a libvirt-lxc domain, and template exports:")
    page.example(
        "vmbuilder lxc debian --suite trixie --hostname deb1 --network none -d /srv/lxc/deb1",
        "vmbuilder lxc ubuntu --suite noble --libvirt lxc:/// --network none \\",
        "    --autostart --hostname n1 -d /srv/ct/n1",
        "vmbuilder lxc ubuntu --suite noble -d /srv/ct/noble --network none \\",
        "    --export lxd,lxc,tar --export-dir /srv/images",
    )
    notes(page)
    see_also(page, [f"{p[:-2]}(1)" for p in plugin_pages(plugins) if p != MAIN_PAGE] + list(EXTERNAL_PAGES))
    return page.render()


# Prose of the built-in plugins' pages; a third-party plugin's page has its description only.
HYPERVISOR_TEXT: dict[str, tuple[str, ...]] = {
    "lxc": (
        "The `lxc` hypervisor writes a container directory: DEST/rootfs holds the guest and DEST/config "
        "its LXC 3+ configuration, so that `lxc-start -P $(dirname DEST) -n $(basename DEST)` starts it, "
        "or plain `lxc-start -n NAME` when DEST is in LXC's default path (see `--lxc-path`).",
        "The configuration includes LXC's common.conf, so lxcfs is used when the host runs it; `--mem` and "
        "`--cpus` become limits in the keys of this host's cgroup layout. eth0 is a veth on `--bridge` "
        "(lxcbr0) unless `--network none` leaves only the loopback device. A buildd chroot "
        "(`--variant buildd`) gets no configuration: it does not boot.",
    ),
}
HYPERVISOR_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "lxc": (
        ("DEST/rootfs/", "The guest."),
        ("DEST/config", "The LXC configuration (`lxc.rootfs.path`, network, limits, `lxc.start.auto`)."),
        ("DEST/vmbuilder-lxc.json", "What was built and how; `vmbuilder lxc export` reads it."),
        ("DEST/libvirt.xml", "With `--libvirt`: the domain as it was defined."),
        ("/var/lib/lxc", "LXC's default path; `--lxc-path /var/lib/lxc` builds there, named after `--hostname`."),
    ),
}
HYPERVISOR_EXAMPLES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "lxc": (
        ("Build, start and enter a container:", (
            "vmbuilder lxc ubuntu --suite noble --network none -d /srv/lxc/web1",
            "lxc-start -P /srv/lxc -n web1",
            "lxc-attach -P /srv/lxc -n web1")),
        ("Check a domain XML, and export a finished build again:", (
            "vmbuilder lxc validate --rootfs /srv/ct/n1/rootfs /srv/ct/n1/libvirt.xml",
            "vmbuilder lxc export --export lxd,tar --export-dir /srv/images /srv/ct/n1")),
    ),
}  # fmt: skip


def hypervisor_page(name: str, plugins: dict[str, type[Plugin]], groups: dict[str, list[Group]], date: str) -> str:
    cls = plugins[name]
    page = start_page(f"{PROG}-{name}", f"the {name} hypervisor of {PROG} ({cls.description})", date)
    parsers = command_parsers(plugins, name)
    lines = [f"{bold(f'{PROG} {name}')} {italic('DISTRO')} [{italic('options')}]"]
    lines += [" ".join([bold(f"{PROG} {name} {cmd}"), f"[{italic('options')}]", *map(italic, positionals(p))])
              for cmd, p in parsers.items()]  # fmt: skip
    synopsis(page, lines)
    page.lines.append(".SH DESCRIPTION")
    for text in HYPERVISOR_TEXT.get(name, (sentence(cls.description),)):
        page.para(text)
    only_here = [c for c in by_kind(plugins, "plugin").values() if c.hypervisors and name in c.hypervisors]
    if only_here:
        names = ", ".join(f"`{c.name}`" for c in only_here)
        page.para(f"Generic plugins that apply only with this hypervisor: {names}; their options are in {PROG}(1).")
    page.para(f"The options below add to those of {PROG}(1) and of the distro ({PROG}-DISTRO(1)).")
    page.lines.append(".SH OPTIONS")
    write_groups(page, groups[f"{PROG}-{name}.1"], plugins)
    if parsers:
        fallback = all_settings(groups)
        page.lines.append(".SH COMMANDS")
        for cmd, parser in parsers.items():
            page.request("SS", usage(f"{PROG} {name} {cmd}", parser))
            page.text(esc(sentence(parser.description or cmd)))
            parser_items(page, parser, fallback)
    files = HYPERVISOR_FILES.get(name)
    if files:
        page.lines.append(".SH FILES")
        for path, text in files:
            page.item(bold(path), fmt(text))
    examples = HYPERVISOR_EXAMPLES.get(name)
    if examples:
        page.lines.append(".SH EXAMPLES")
        for text, example in examples:
            page.para(text)
            page.example(*example)
    notes(page)
    see_also(page, [f"{PROG}(1)", *(f"{PROG}-{d}(1)" for d in by_kind(plugins, "distro")), *EXTERNAL_PAGES[:3]])
    return page.render()


DISTRO_TEXT: dict[str, tuple[str, ...]] = {
    "ubuntu": (
        "The `ubuntu` distro builds every Ubuntu release from lucid 10.04 (upstart) to the development "
        "series (systemd). With `--bootstrapper auto`, releases from 18.04 on are bootstrapped with "
        "mmdebstrap when it is installed, older ones with debootstrap (its gutsy script).",
        "The guest gets eth0 by DHCP (or `--ip`), marked optional so that boot never waits for it: netplan "
        "where the release uses it, ifupdown before; its hostname in /etc/hosts; an empty /etc/machine-id and "
        "no SSH host keys (each container makes its own at first boot); the initial user in the sudo group "
        "with a locked password unless `--pass` is given; root locked unless `--rootpass` is given; apt "
        "sources for the release, -updates and -security; packages up to date at build time. Every tweak "
        "that makes it container-safe is listed per release in docs/tweaks.md, the release table in "
        "docs/releases.md.",
    ),
    "debian": (
        "The `debian` distro builds Debian 12 bookworm, 13 trixie, the testing suite and sid with the "
        "same code as the ubuntu distro; only its data differs.",
        "The guest gets eth0 from systemd-networkd (/etc/systemd/network/10-lxc-eth0.network; nothing "
        "waits for the network at boot), systemd-resolved, fresh SSH host keys at first boot, and the "
        "initial user `debian` in the sudo group. The security sources come from the sibling archive "
        "(`--mirror URL/debian` gives URL/debian-security, or set `--security-mirror`); sid has no "
        "-updates or -security. Details in docs/debian.md, every tweak in docs/tweaks-debian.md.",
    ),
}
SUITE_TEXT: dict[str, str] = {
    "ubuntu": "`--suite` takes a codename (`noble`), a version (`24.04`), `devel` (the release in development), "
    "`lts` (the newest released LTS, the default) or `stable` (the newest release).",
    "debian": "`--suite` takes a codename (`trixie`, `forky`, `sid`), a version (`13`), `stable` (the newest "
    "release) or `devel` (the testing suite); `lts`, the default, means `stable`, since Debian marks no release LTS.",
}
DISTRO_KEYRINGS = {"ubuntu": UBUNTU_KEYRING, "debian": DEBIAN_KEYRING}


def distro_page(name: str, plugins: dict[str, type[Plugin]], groups: list[Group], date: str) -> str:
    cls = plugins[name]
    page = start_page(f"{PROG}-{name}", f"the {name} distro of {PROG} ({cls.description})", date)
    synopsis(page, [f"{bold(PROG)} {italic('HYPERVISOR')} {bold(name)} [{italic('options')}]"])
    page.lines.append(".SH DESCRIPTION")
    for text in DISTRO_TEXT.get(name, (sentence(cls.description),)):
        page.para(text)
    page.para(f"The options below add to those of {PROG}(1) and of the hypervisor ({PROG}-HYPERVISOR(1)).")
    page.lines.append(".SH SUITES")
    if name in SUITE_TEXT:
        page.para(SUITE_TEXT[name])
    page.para(
        f"The releases are read from distro-info-data (/usr/share/distro-info/{name}.csv) when the build "
        f"runs, so a new release needs no new version of {PROG}. `{PROG} lxc {name} --list-suites` prints "
        "every release with its init system, network stack, support status and whether it can be built; "
        "when distro-info-data does not know the development series yet, it asks the archive."
    )
    page.lines.append(".SH OPTIONS")
    write_groups(page, groups, plugins)
    keyring = DISTRO_KEYRINGS.get(name)
    if keyring is not None:
        page.lines.append(".SH FILES")
        how = (f"On a host without the ubuntu-keyring package, `{FETCH_KEYRING}` installs it."
               if keyring == UBUNTU_KEYRING else "From the debian-archive-keyring package.")  # fmt: skip
        page.item(bold(str(keyring)), fmt(f"The keyring that verifies the archive (`--keyring`). {how}"))
        page.item(bold(f"/usr/share/distro-info/{name}.csv"), fmt("The known releases (distro-info-data)."))
    page.lines.append(".SH EXAMPLES")
    page.example(f"vmbuilder lxc {name} --list-suites",
                 f"vmbuilder lxc {name} --suite {'trixie' if name == 'debian' else 'noble'} --network none "
                 f"-d /srv/lxc/{name}1")  # fmt: skip
    others = [f"{PROG}-{h}(1)" for h in by_kind(plugins, "hypervisor")]
    extra = [f"{FETCH_KEYRING}(1)"] if keyring == UBUNTU_KEYRING else []
    notes(page)
    see_also(page, [f"{PROG}(1)", *others, *extra, "debootstrap(8)", "mmdebstrap(1)"])
    return page.render()


KEYRING_FILE_TEXT = (
    "The keyring that verifies the Ubuntu archive.",
    "The keys since removed from it, for archived releases (`--keyring`).",
)


def fetch_keyring_page(date: str) -> str:
    parser = fetch_parser()
    page = start_page(FETCH_KEYRING, "install the Ubuntu archive keyring on a host without ubuntu-keyring", date)
    options = [f"[{bold(a.option_strings[-1])} {italic(option_metavar(a) or '')}]" for a in parser._actions
               if a.option_strings and option_metavar(a)]  # fmt: skip
    synopsis(page, [" ".join([bold(FETCH_KEYRING), *options])])
    page.lines.append(".SH DESCRIPTION")
    page.para(
        f"Debian has no ubuntu-keyring package, and `{PROG} HYPERVISOR ubuntu` verifies the Ubuntu archive "
        f"with `{UBUNTU_KEYRING}`. `{FETCH_KEYRING}` downloads the ubuntu-keyring package from the Ubuntu "
        "mirror that debootstrap itself uses (or `--mirror`), checks it against a SHA-256 digest pinned in "
        "vmbuilder-lxc, and installs only its keyrings. It never adds the keys to the host's apt trust "
        "(/etc/apt/trusted.gpg.d), unlike installing the package with dpkg. On Ubuntu, install ubuntu-keyring "
        "with apt instead."
    )
    page.lines.append(".SH OPTIONS")
    parser_items(page, parser, {})
    page.lines.append(".SH EXIT STATUS")
    page.item(bold("0"), fmt("The keyrings are installed."))
    page.item(bold("1"), fmt("The download failed or the digest did not match; nothing was installed."))
    page.item(bold("2"), fmt("Bad arguments."))
    page.lines.append(".SH FILES")
    for name, text in zip(UBUNTU_KEYRING_FILES, KEYRING_FILE_TEXT, strict=True):
        page.item(bold(str(KEYRING_DIR / name)), fmt(text))
    see_also(page, [f"{PROG}(1)", f"{PROG}-ubuntu(1)", "debootstrap(8)"])
    return page.render()


def generate(plugins: dict[str, type[Plugin]] | None = None) -> dict[str, str]:
    """Every page by file name."""
    plugins = discover() if plugins is None else plugins
    date = title_date()
    groups = option_groups(plugins)
    pages = {MAIN_PAGE: main_page(plugins, groups[MAIN_PAGE], date)}
    for name in by_kind(plugins, "hypervisor"):
        pages[f"{PROG}-{name}.1"] = hypervisor_page(name, plugins, groups, date)
    for name in by_kind(plugins, "distro"):
        pages[f"{PROG}-{name}.1"] = distro_page(name, plugins, groups[f"{PROG}-{name}.1"], date)
    pages[FETCH_PAGE] = fetch_keyring_page(date)
    return pages
