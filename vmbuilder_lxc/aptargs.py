"""The last check before a value reaches apt, mmdebstrap or debootstrap.

The settings' validators refuse bad values in preflight already; these checks run again where a
command line, a sources line or an apt.conf line is built, so that no future code path can hand a
user's value to those tools as an option (defense in depth). Each raises UserError, which the CLI
reports as one line with exit code 2.

What each tool does with `--`: apt-get's command-line parser ends option processing there, and so
does mmdebstrap's Getopt::Long (which otherwise takes options anywhere, even after the suite).
debootstrap's shell loop rejects `--` but stops at the first non-option, so its operands only have
to not start with '-'.

Signature checks: nothing here can turn them off. Only --insecure adds the options that do
(see bootstrap.INSECURE_APTOPTS and debootstrap's --no-check-gpg), and a mirror can never carry a
`[trusted=yes]` option, because a URL with spaces or brackets is refused.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from .log import UserError

# A package as apt-get install/purge takes it: a Debian policy name, optionally :ARCH and =VERSION.
# No '/': apt-get treats an argument with a slash as a local .deb file (unsigned) or a release.
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9][a-z0-9-]*)?(=[A-Za-z0-9.+~:-]+)?$")
COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
SUITE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
ARCH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MIRROR_SCHEMES = ("http", "https", "file")
PROXY_SCHEMES = ("http", "https", "socks5h")
# Characters a URL may keep when it is written into a sources line or a quoted apt.conf value.
# apt.conf has no escape for '"', and ';', '{', '}' and whitespace end or open a statement.
URL_SAFE = re.compile(r"^[A-Za-z0-9._~:/?@!$&()*+,=%\[\]-]+$")


def _shown(value: str) -> str:
    """The value as an error message may show it: one line, whatever it holds."""
    return repr(value) if not value.isprintable() or " " in value else value


def operand(value: str, what: str) -> str:
    """A positional argument of apt-get/mmdebstrap/debootstrap: never empty, never an option."""
    if not value or value.startswith("-") or not value.isprintable() or any(c.isspace() for c in value):
        raise UserError(f"{what} {_shown(value)} cannot be passed to the package tools",
                        f"{what} takes a plain name, not an option or text with spaces")  # fmt: skip
    return value


def package(value: str, what: str = "--addpkg") -> str:
    operand(value, what)
    if not PACKAGE.match(value):
        raise UserError(
            f"{what} {_shown(value)} is not a package name",
            "use a Debian package name (lowercase letters, digits, '+', '-', '.'), optionally :ARCH or =VERSION",
        )
    return value


def packages(values: Iterable[str], what: str = "--addpkg") -> list[str]:
    return [package(v, what) for v in values]


def component(value: str) -> str:
    operand(value, "--components")
    if not COMPONENT.match(value):
        raise UserError(f"--components {_shown(value)} is not an archive component", "use names like main, universe")
    return value


def suite(value: str) -> str:
    if not SUITE.match(value):
        raise UserError(f"suite {_shown(value)} is not a release name", "use --suite with a codename like noble")
    return value


def arch(value: str) -> str:
    if not ARCH.match(value):
        raise UserError(f"--arch {_shown(value)} is not an architecture name", "use a Debian name like amd64")
    return value


def _url(value: str, what: str, schemes: tuple[str, ...], example: str) -> str:
    hint = f"give a URL like {example}, without spaces, quotes, options or [brackets] of apt's"
    if not value or not value.isprintable() or not URL_SAFE.match(value) or value.startswith("-"):
        raise UserError(f"{what} {_shown(value)} is not a plain URL", hint)
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UserError(f"{what} {value} is not a valid URL", hint) from None
    if parts.scheme not in schemes:
        raise UserError(f"{what} {value} is not a {'/'.join(schemes)} URL", hint)
    if parts.scheme != "file" and not parts.hostname:
        raise UserError(f"{what} {value} names no host", hint)
    if parts.scheme == "file" and not parts.path.startswith("/"):
        raise UserError(f"{what} {value} names no absolute path", hint)
    return value


def mirror(value: str, what: str = "--mirror") -> str:
    """An archive URL for a sources line or the bootstrapper: http(s):// or file://, no options."""
    if "[" in value or "]" in value:  # `[trusted=yes]` and friends are apt's source options
        raise UserError(f"{what} {_shown(value)} holds brackets", "give the archive's plain URL, no apt options")
    return _url(value, what, MIRROR_SCHEMES, "http://HOST/ubuntu")


def proxy(value: str) -> str:
    """An HTTP proxy URL that can be quoted in apt.conf and passed as one option value."""
    return _url(value, "--proxy", PROXY_SCHEMES, "http://HOST:3142")


def apt_conf(key: str, value: str) -> str:
    """One apt.conf statement, `Key "value";`, refusing what could end the quoted string."""
    if not re.fullmatch(r"[A-Za-z0-9:_-]+", key) or not URL_SAFE.match(value):
        raise UserError(f"cannot write {key} {_shown(value)} into apt's configuration", "give a plain URL")
    return f'{key} "{value}";'


def source_line(mirror_url: str, suite_name: str, components: Iterable[str], what: str = "--mirror") -> str:
    """A one-line `deb` source with nothing but the URL, the suite and the components."""
    comps = [component(c) for c in components]
    if not comps:
        raise UserError("no archive components", "give --components, e.g. main")
    return " ".join(["deb", mirror(mirror_url, what), suite(suite_name), *comps])
