"""Built-in plugins of vmbuilder-lxc (installed as the vmbuilder_lxc.plugins package)."""
