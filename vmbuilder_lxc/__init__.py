"""vmbuilder-lxc: a VMBuilder-compatible builder of container-safe root filesystems."""

__version__ = "0.1.0"
