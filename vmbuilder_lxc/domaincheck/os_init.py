"""Rules on <os> and init: the os type and arch, boot elements LXC has no use for, and the init
program, its arguments, environment, directory and user (looked up in the rootfs when it is known)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from .helpers import NotResolvable, resolve_in_root, tag_of, text_of
from .model import ERROR, WARNING, Domain, Issue, Rule, RuleTable

# The capabilities of the LXC driver list `exe` for the host architecture and, where the kernel
# offers a 32-bit personality, for that one too (libvirt's lxc_container.c).
ALT_32BIT_ARCH: dict[str, str] = {
    "x86_64": "i686",
    "aarch64": "armv7l",
    "s390x": "s390",
    "ppc64": "ppc",
    "mips64": "mips",
    "mips64el": "mipsel",
    "sparc64": "sparc",
    "parisc64": "parisc",
}
BOOT_ELEMENTS = ("kernel", "initrd", "cmdline", "dtb", "root", "loader", "boot", "bootmenu", "smbios", "nvram")
# Variables libvirt sets for init itself; an <initenv> of the same name replaces libvirt's value.
INIT_ENV_FROM_LIBVIRT = tuple(
    "PATH TERM HOME container container_uuid container_ttys LIBVIRT_LXC_UUID LIBVIRT_LXC_NAME "
    "LIBVIRT_LXC_CMDLINE".split()
)
ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NUMERIC_ID = re.compile(r"\+?[0-9]+")

_rule = RuleTable()


def _names_in(rootfs: Path, table: str) -> set[str] | None:
    """User or group names of /etc/passwd or /etc/group in the rootfs; None if it has no such file."""
    try:
        text = resolve_in_root(rootfs, table).read_text(errors="replace")
    except (OSError, NotResolvable):
        return None
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line and not line.startswith("#")}


@_rule(
    "os-type",
    ERROR,
    "define",
    "<os><type> is 'exe'",
    "LXC has capabilities only for os type exe: 'could not find capabilities for ostype=...'",
)
def _os_type(d: Domain) -> Iterator[Issue]:
    os_type = text_of(d.os.find("type") if d.os is not None else None)
    if os_type != "exe":
        yield Issue(
            "<os><type>",
            f"a container runs an init program (os type 'exe'), not '{os_type}'"
            if os_type
            else "the os type is missing; a container runs an init program (os type 'exe')",
            "use <os><type>exe</type></os>",
        )


@_rule(
    "os-arch",
    ERROR,
    "define",
    "<os><type arch=...>, if given, is the host's arch or its 32-bit personality",
    "'could not find capabilities for ostype=exe arch=...'; a container runs on the host's kernel",
)
def _os_arch(d: Domain) -> Iterator[Issue]:
    el = d.os.find("type") if d.os is not None else None
    arch = el.get("arch") if el is not None else None
    if el is None or arch is None:
        return
    allowed = [d.host_arch] + ([ALT_32BIT_ARCH[d.host_arch]] if d.host_arch in ALT_32BIT_ARCH else [])
    if arch not in allowed:
        yield Issue(
            f"<os><type arch='{arch}'>",
            f"a container shares the host's kernel, which runs {' or '.join(allowed)}",
            f"use arch='{d.host_arch}' or leave arch out",
        )


@_rule(
    "os-boot",
    ERROR,
    "define --validate",
    "no kernel/initrd/cmdline/dtb/root/loader/boot/bootmenu/smbios/nvram in <os>",
    "the schema rejects them for os type exe; without --validate the driver drops them silently",
)
def _os_boot(d: Domain) -> Iterator[Issue]:
    for el in d.os if d.os is not None else []:
        if el.tag in BOOT_ELEMENTS:
            fix = "remove it; pass arguments to init with <initarg>" if el.tag == "cmdline" else "remove it"
            yield Issue(f"<os><{el.tag}>", "a container boots no kernel, so the LXC driver has no use for it", fix)


@_rule(
    "init",
    ERROR,
    "define",
    "<os><init> is present and an absolute path",
    "'init binary must be specified'; the schema requires an absolute path",
)
def _init(d: Domain) -> Iterator[Issue]:
    path = text_of(d.os.find("init") if d.os is not None else None)
    if not path:
        yield Issue(
            "<os><init>", "libvirt needs the program to start as the container's PID 1", "add <init>/sbin/init</init>"
        )
    elif not path.startswith("/"):
        yield Issue(
            "<os><init>",
            f"'{path}' is relative; init is looked up from the container's /",
            f"give the absolute path, e.g. /{path.lstrip('./')}",
        )


@_rule(
    "init-path",
    ERROR,
    "container start",
    "<os><init> is an executable regular file in the rootfs (symlinks followed inside it)",
    "'cannot find init path ... relative to container root'",
    needs_rootfs=True,
)
def _init_path(d: Domain) -> Iterator[Issue]:
    path = text_of(d.os.find("init") if d.os is not None else None)
    if d.rootfs is None or not path.startswith("/"):
        return
    element = f"<os><init>{path}</init>"
    fix = "install the init system in the rootfs or point <init> at it (e.g. /lib/systemd/systemd)"
    if not d.rootfs.is_dir():
        yield Issue(element, f"the rootfs {d.rootfs} does not exist on this host", "build the rootfs first")
        return
    try:
        host_path = resolve_in_root(d.rootfs, path)
        st = os.stat(host_path, follow_symlinks=False)
    except NotResolvable as exc:
        yield Issue(element, f"{path} cannot be resolved in the rootfs: {exc}", fix)
        return
    except OSError:
        yield Issue(element, f"{path} does not exist in the rootfs {d.rootfs}", fix)
        return
    if not stat.S_ISREG(st.st_mode):
        yield Issue(element, f"{path} is not a regular file in the rootfs", fix)
    elif not st.st_mode & 0o111:
        yield Issue(element, f"{path} is not executable in the rootfs", f"chmod +x {host_path}, or {fix}")


@_rule("initarg", ERROR, "define", "every <initarg> has text", "'No data supplied for <initarg> element'")
def _initarg(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initarg") if d.os is not None else []:
        if not el.text:
            yield Issue("<os><initarg>", "libvirt rejects an empty argument", "remove the empty <initarg/>")


@_rule(
    "initenv",
    ERROR,
    "define",
    "every <initenv> has a name matching `[a-zA-Z_][a-zA-Z0-9_]*` and a value",
    "'No name supplied for <initenv> element' / 'No value supplied for <initenv name=...> element'; "
    "the schema checks the name",
)
def _initenv(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initenv") if d.os is not None else []:
        name = el.get("name")
        if not name:
            yield Issue("<os><initenv>", "libvirt needs the variable's name", "add name='VARIABLE'")
        elif not ENV_NAME.fullmatch(name):
            yield Issue(
                f"<os>{tag_of(el, 'name')}",
                "a variable name has letters, digits and '_' and does not start with a digit",
                "rename the variable",
            )
        if not el.text:
            yield Issue(
                f"<os>{tag_of(el, 'name')}",
                "libvirt rejects a variable without a value",
                "give a value or remove the element",
            )


@_rule(
    "initenv-value",
    WARNING,
    "define",
    "<initenv> values have no `<`, `&` or quotes",
    "libvirt 9.0 writes the value back without XML escaping, so the stored definition breaks",
)
def _initenv_value(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initenv") if d.os is not None else []:
        if el.text and re.search(r"[<&'\"]", el.text):
            yield Issue(
                f"<os>{tag_of(el, 'name')}",
                "libvirt 9.0 saves the value without XML escaping, "
                "so a <, &, ' or \" in it corrupts the stored definition",
                "avoid these characters in the value (set it in a file in the rootfs instead)",
            )


@_rule(
    "initenv-reserved",
    WARNING,
    "container start",
    "<initenv> does not set a variable libvirt sets for init",
    "the <initenv> value replaces libvirt's (container=lxc-libvirt, container_uuid, PATH, ...)",
)
def _initenv_reserved(d: Domain) -> Iterator[Issue]:
    for el in d.os.findall("initenv") if d.os is not None else []:
        if el.get("name") in INIT_ENV_FROM_LIBVIRT:
            yield Issue(
                f"<os>{tag_of(el, 'name')}",
                f"libvirt sets {el.get('name')} for init itself and this value would replace libvirt's"
                + (" (systemd reads it)" if el.get("name", "").startswith("container") else ""),
                "remove it and let libvirt set it",
            )


@_rule(
    "initdir",
    ERROR,
    "define --validate",
    "<initdir> is absolute and not '/'",
    "the schema type absFilePath rejects relative paths and '/' alone",
)
def _initdir(d: Domain) -> Iterator[Issue]:
    el = d.os.find("initdir") if d.os is not None else None
    if el is None:
        return
    path = text_of(el)
    if path == "/":
        yield Issue("<os><initdir>", "the schema rejects '/' alone", "leave <initdir> out (init starts in /)")
    elif not path.startswith("/"):
        yield Issue("<os><initdir>", f"'{path}' is not an absolute path", "give an absolute path such as /root")


@_rule(
    "inituser",
    ERROR,
    "define --validate",
    "<inituser> and <initgroup> come together",
    "the schema requires both when one is given",
)
def _inituser(d: Domain) -> Iterator[Issue]:
    if d.os is None:
        return
    user, group = d.os.find("inituser"), d.os.find("initgroup")
    if (user is None) != (group is None):
        have, missing = ("inituser", "initgroup") if group is None else ("initgroup", "inituser")
        yield Issue(f"<os><{have}>", f"the schema requires <{missing}> with <{have}>", f"add <{missing}>")


@_rule(
    "inituser-exists",
    ERROR,
    "container start",
    "<inituser>/<initgroup> exist in the rootfs's /etc/passwd and /etc/group",
    "'User ... doesn't exist' / 'Group ... doesn't exist'",
    needs_rootfs=True,
)
def _inituser_exists(d: Domain) -> Iterator[Issue]:
    if d.os is None or d.rootfs is None or not d.rootfs.is_dir():
        return
    for tag, table in (("inituser", "/etc/passwd"), ("initgroup", "/etc/group")):
        value = text_of(d.os.find(tag))
        if not value or NUMERIC_ID.fullmatch(value):
            continue
        names = _names_in(d.rootfs, table)
        if names is None or value not in names:
            yield Issue(
                f"<os><{tag}>",
                f"'{value}' is not in the rootfs's {table}; libvirt looks it up in the container",
                "create it in the rootfs or give a number",
            )


RULES: tuple[Rule, ...] = tuple(_rule.rules)
