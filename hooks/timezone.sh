# Set the guest's time zone the way tzdata itself records it.
#
# tzdata's maintainer script rewrites /etc/localtime into its canonical form (UTC becomes Etc/UTC)
# and keeps /etc/timezone in step, so a zone written any other way would be changed back by the
# next tzdata upgrade or reinstall. Point /etc/localtime at the zone, then let tzdata normalise it.
# Inputs: ROOTFS, VM_TIMEZONE.
zone=${VM_TIMEZONE:?}
if [ ! -e "$ROOTFS/usr/share/zoneinfo/$zone" ]; then
    echo "time zone $zone does not exist in the guest (is tzdata installed?)" >&2
    exit 1
fi
# The host's ln and mv open these paths: /etc must be the rootfs's own directory (a symlink there
# could lead out of the rootfs), and both files are replaced by a rename, never written through.
if [ -L "$ROOTFS/etc" ] || [ ! -d "$ROOTFS/etc" ]; then
    echo "the guest's /etc is not a directory; refusing to write the time zone through it" >&2
    exit 1
fi
ln -sfn "/usr/share/zoneinfo/$zone" "$ROOTFS/etc/localtime"
# Older tzdata (the upstart era) reads the zone from /etc/timezone; keep it in step where it exists.
if [ -f "$ROOTFS/etc/timezone" ] && [ ! -L "$ROOTFS/etc/timezone" ]; then
    echo "$zone" > "$ROOTFS/etc/.timezone.vmbuilder-tmp"
    mv -f "$ROOTFS/etc/.timezone.vmbuilder-tmp" "$ROOTFS/etc/timezone"
fi
if [ -e "$ROOTFS/var/lib/dpkg/info/tzdata.list" ]; then
    chroot "$ROOTFS" dpkg-reconfigure --frontend noninteractive tzdata >/dev/null
fi
