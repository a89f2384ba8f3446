"""URLs a user gives: archive mirrors, the HTTP proxy and the libvirt URI.

A mirror is written into the guest's apt sources and handed to the bootstrapper, a proxy into a
quoted apt.conf value and http_proxy: so each is a plain URL from a small character set, with no
spaces, quotes, brackets (apt's `[trusted=yes]` options), query or fragment.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

from .textchecks import Invalid, no_control, shown

HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)
# What a mirror or proxy URL may hold: RFC 3986 unreserved, '%' escapes, ':/@' and '+='.
URL_CHARS = re.compile(r"^[A-Za-z0-9._~%:/@+=-]+$")
USERINFO = re.compile(r"^[A-Za-z0-9._~%+-]+(:[A-Za-z0-9._~%+-]*)?$")
URI_CHARS = re.compile(r"^[A-Za-z0-9._~%:/@+=?&,-]+$")


def _url_parts(value: str, schemes: tuple[str, ...], hint: str) -> urllib.parse.SplitResult:
    """The parts of a plain URL: no spaces, quotes, brackets, query or fragment; a host for http(s)."""
    no_control(value)
    if " " in value or "[" in value or "]" in value:
        raise Invalid("spaces and [brackets] are not part of a URL (apt options like [trusted=yes] are "
                      "not accepted)", hint)  # fmt: skip
    if "?" in value or "#" in value:
        raise Invalid("a query (?...) or fragment (#...) is not accepted", hint)
    if not URL_CHARS.match(value):
        bad = sorted({c for c in value if not URL_CHARS.match(c)})
        raise Invalid(f"characters {' '.join(bad)} are not accepted in a URL", hint)
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        raise Invalid("not a valid URL (is the port a number from 1 to 65535?)", hint) from None
    if parts.scheme not in schemes:
        raise Invalid(f"not a {', '.join(s + '://' for s in schemes)} URL", hint)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise Invalid("a file URL names an absolute path: file:///srv/mirror", hint)
        return parts
    if not parts.hostname:
        raise Invalid("the URL names no host", hint)
    if port == 0:
        raise Invalid("port 0 is not a port", hint)
    if "@" in parts.netloc and not USERINFO.match(parts.netloc.rsplit("@", 1)[0]):
        raise Invalid("the user name or password in the URL has characters that need %-escaping", hint)
    host = parts.hostname
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not all(HOST_LABEL.match(label) for label in host.rstrip(".").split(".")):
            raise Invalid(f"'{host}' is not a host name", hint) from None
    return parts


def mirror(value: str) -> str:
    """An archive mirror: written into the guest's sources and given to the bootstrapper."""
    _url_parts(value, ("http", "https", "file"), "give a plain http://, https:// or file:/// URL, e.g. "
               "http://HOST/ubuntu; use --keyring for an archive signed by another key")  # fmt: skip
    return value


def proxy(value: str) -> str:
    """An HTTP proxy: it ends up quoted in an apt.conf line and in http_proxy."""
    _url_parts(value, ("http", "https"), "give an http:// URL like http://HOST:3128")
    return value


def libvirt_uri(value: str) -> str:
    """A libvirt connection URI of the LXC driver: lxc:///, lxc:///system, lxc+ssh://root@host/..."""
    hint = "give an lxc:/// URI, e.g. lxc:/// or lxc+ssh://root@HOST/ (docs/libvirt.md)"
    no_control(value)
    if not URI_CHARS.match(value):
        raise Invalid("spaces, quotes and brackets are not accepted in a libvirt URI", hint)
    scheme = value.split(":", 1)[0]
    if not re.fullmatch(r"lxc(\+[a-z0-9]+)?", scheme) or "://" not in value:
        raise Invalid(f"'{shown(scheme)}' is not libvirt's LXC driver", hint)
    return value
