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
# The zone tzdata already recorded (the base's usual state: Etc/UTC for the default UTC): running
# dpkg-reconfigure would rewrite the same link and /etc/timezone, at a quarter of a second per build.
# Only tzdata's own canonical form counts ("Etc/$zone" is that form for UTC, UCT, GMT and the like),
# and /etc/timezone, where it exists, must already say the same.
current=$(readlink "$ROOTFS/etc/localtime" 2>/dev/null || true)
if [ "$current" = "/usr/share/zoneinfo/$zone" ] || [ "$current" = "/usr/share/zoneinfo/Etc/$zone" ]; then
    if [ -f "$ROOTFS/usr/share/zoneinfo/${current#/usr/share/zoneinfo/}" ] && [ ! -L "$ROOTFS/etc/timezone" ]; then
        recorded=
        if [ -f "$ROOTFS/etc/timezone" ]; then
            IFS= read -r recorded < "$ROOTFS/etc/timezone" || true  # the first line (a builtin: no head process)
        fi
        if [ ! -e "$ROOTFS/etc/timezone" ] || [ "$recorded" = "${current#/usr/share/zoneinfo/}" ]; then
            exit 0
        fi
    fi
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
