"""Publishing builds into a static image tree that LXD, Incus (simplestreams) and `lxc-create -t
download` fetch from over HTTPS; serving it is a web server's job (docs/publish.md)."""

# The modules are imported by name (publisher, admin, tree, streams, images); this package imports none
# of them, so that a module's `from . import streams` makes no cycle through it.
