# Check the guest's netplan configuration with the guest's own netplan, at build time.
#
# A broken YAML file (from a --templates override, say) would otherwise only show at boot, as a
# container without a network. `netplan get` parses and validates every file without side
# effects (jammy and newer; `netplan generate` would also run `systemctl daemon-reload`, which
# cannot work in a chroot). Older netplan has no `get`; its generator binary validates the same
# way and writes only under /run, a throw-away tmpfs in the build chroot. Inputs: ROOTFS.
# Whether this netplan has `get` is first read from its files, not asked of it: each netplan run
# is a Python start in the guest (0.15 s). Its commands live in netplan_cli/cli/commands (jammy's
# 0.107, noble's 1.0) or netplan/cli/commands (older; `get` came with 0.101). Where neither is
# found, netplan itself is asked, as before.
for commands in /usr/share/netplan/netplan_cli/cli/commands /usr/share/netplan/netplan/cli/commands \
    /usr/lib/python3/dist-packages/netplan_cli/cli/commands; do
    if [ -f "$ROOTFS$commands/get.py" ]; then
        chroot "$ROOTFS" netplan get >/dev/null
        exit 0
    fi
done
if chroot "$ROOTFS" netplan get --help >/dev/null 2>&1; then
    chroot "$ROOTFS" netplan get >/dev/null
    exit 0
fi
for generator in /lib/netplan/generate /usr/lib/netplan/generate; do
    if [ -x "$ROOTFS$generator" ]; then
        exec chroot "$ROOTFS" "$generator"
    fi
done
echo "this netplan has neither 'netplan get' nor a generator binary; its configuration is not checked" >&2
