"""Publishing builds into a static image tree that LXD, Incus (simplestreams) and `lxc-create -t
download` fetch from over HTTPS; serving it is a web server's job (docs/publish.md)."""

from .admin import list_tree, prune, verify
from .publisher import Options, publish
from .tree import Tree

__all__ = ["Options", "Tree", "list_tree", "prune", "publish", "verify"]
