# Check the guest's netplan configuration with the guest's own netplan, at build time.
#
# A broken YAML file (from a --templates override, say) would otherwise only show at boot, as a
# container without a network. netplan's generator binary parses every file with the same parser
# as `netplan get`, also checks it against the renderer, and fails naming the file, line and
# reason, in a few milliseconds (C; `netplan get` is a Python start in the guest, 0.15 s, a third
# of a warm build's own time). It writes only under /run, a throw-away tmpfs in the build chroot.
# `netplan generate`, the Python command around it, is not used: it also runs `systemctl
# daemon-reload`, which cannot work in a chroot. The binary is /usr/libexec/netplan/generate in
# newer netplan, /lib/netplan/generate in older; where neither is found, `netplan get` checks
# the files. netplan 1.2 (resolute) parses, then aborts (SIGABRT, an assertion on the systemd
# generator directory it is only given when systemd runs it): a generator killed by a signal
# has decided nothing, and `netplan get` checks the files instead. Inputs: ROOTFS.
for generator in /usr/libexec/netplan/generate /usr/lib/netplan/generate /lib/netplan/generate; do
    if [ -f "$ROOTFS$generator" ] && [ -x "$ROOTFS$generator" ]; then
        status=0
        said=$(chroot "$ROOTFS" "$generator" 2>&1) || status=$?
        if [ "$status" -lt 128 ]; then
            [ -z "$said" ] || printf '%s\n' "$said" >&2
            exit "$status"
        fi
        break
    fi
done
if chroot "$ROOTFS" netplan get --help >/dev/null 2>&1; then
    chroot "$ROOTFS" netplan get >/dev/null
    exit 0
fi
echo "this netplan has neither a generator binary nor 'netplan get'; its configuration is not checked" >&2
