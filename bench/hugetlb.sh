#!/usr/bin/env bash
# The hugetlb move that crun 1.8 needs on a hybrid cgroup host (../shared/DESIGN.md, "Facts about
# these machines"), confined as far as the kernel allows. Used by run_latency.sh.
#
#   hugetlb.sh needed        exit 0 if this host is hybrid with hugetlb on the cgroup2 mount
#   hugetlb.sh on            (inside a private mount namespace) mount hugetlb as a v1 hierarchy
#                            at /sys/fs/cgroup/hugetlb, seen only by this namespace
#   hugetlb.sh off           (same namespace) remove our cgroups from it and unmount it
#   hugetlb.sh restore DIR   (anywhere) if hugetlb is still a v1 hierarchy, mount it privately at
#                            DIR, remove the bench's empty cgroups, unmount: back on cgroup2
#   hugetlb.sh state         print where hugetlb is ("cgroup2" or "v1 hierarchy N, M cgroups")
#
# Moving a controller between hierarchies is global, but the mount is not: `on` mounts it in a
# private mount namespace over a private tmpfs copy of /sys/fs/cgroup, so no other program on
# the host sees the v1 hugetlb hierarchy or puts cgroups in it (other engines on the host, which
# look for hugetlb in mountinfo, then find no hugetlb at all for the duration). A v1 hierarchy is
# destroyed, and hugetlb goes back to cgroup2, when it is unmounted with no child cgroups left;
# cgroups that were just removed still count until the kernel has released them, so `off`
# waits for that before unmounting.
set -euo pipefail

# Only the bench's own cgroups are ever removed.
prefix=berth-bench-

hier() { awk '$1 == "hugetlb" { print $2, $3 }' /proc/cgroups; }

rm_ours() { # hierarchy mount point
    local d
    for d in "$1"/"$prefix"*; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

wait_released() { # wait until the hierarchy holds only its root cgroup (at most 5 s)
    local i n
    for ((i = 0; i < 50; i++)); do
        read -r _ n < <(hier)
        [ "$n" = 1 ] && return 0
        sleep 0.1
    done
    return 1
}

others() { # child cgroups that are not ours
    find "$1" -mindepth 1 -maxdepth 1 -type d ! -name "$prefix*" -printf '%f ' 2>/dev/null || true
}

case ${1:-} in
    needed)
        [ -f /sys/fs/cgroup/unified/cgroup.controllers ] &&
            grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers
        ;;
    on)
        [ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] ||
            { echo "hugetlb.sh on: not in a private mount namespace" >&2; exit 1; }
        tmp=$(mktemp -d)
        mkdir "$tmp/old" "$tmp/new"
        mount --rbind /sys/fs/cgroup "$tmp/old"
        mount -t tmpfs -o mode=755 tmpfs "$tmp/new"
        for d in "$tmp/old"/*; do
            [ -d "$d" ] || continue
            mkdir "$tmp/new/${d##*/}"
            mount --rbind "$d" "$tmp/new/${d##*/}"
        done
        mkdir "$tmp/new/hugetlb"
        mount -t cgroup -o hugetlb cgroup "$tmp/new/hugetlb"
        mount --move "$tmp/new" /sys/fs/cgroup
        umount -l "$tmp/old"
        rmdir "$tmp/old" "$tmp/new" "$tmp" 2>/dev/null || true
        ;;
    off)
        h=/sys/fs/cgroup/hugetlb
        grep -q " $h cgroup " /proc/self/mounts || exit 0
        rm_ours "$h"
        o=$(others "$h")
        [ -z "$o" ] || echo "hugetlb.sh: cgroups of others in the hierarchy: $o" >&2
        wait_released || true
        umount "$h"
        # The hierarchy is only destroyed if it had no children when its last mount went; when
        # that raced with the release of a removed cgroup, mount and unmount it once more.
        for ((i = 0; i < 5; i++)); do
            sleep 0.2
            read -r id _ < <(hier)
            [ "$id" != 0 ] || break
            tmp=$(mktemp -d)
            if timeout 10 mount -t cgroup -o hugetlb cgroup "$tmp"; then
                rm_ours "$tmp"
                wait_released || true
                umount "$tmp"
            fi
            rmdir "$tmp"
        done
        ;;
    restore)
        dir=${2:?usage: hugetlb.sh restore DIR}
        read -r id _ < <(hier)
        [ "$id" != 0 ] || exit 0
        mkdir -p "$dir"
        unshare -m --propagation private bash -c '
            set -e
            timeout 10 mount -t cgroup -o hugetlb cgroup "$1"
            "$0" __clean "$1"
            umount "$1"' "$0" "$dir"
        rmdir "$dir" 2>/dev/null || true
        sleep 0.2
        read -r id _ < <(hier)
        if [ "$id" != 0 ]; then
            echo "hugetlb.sh: hugetlb is still a v1 hierarchy ($id)" >&2
            exit 1
        fi
        ;;
    __clean)
        rm_ours "$2"
        o=$(others "$2")
        [ -z "$o" ] || echo "hugetlb.sh: hugetlb stays on v1: cgroups of others in it: $o" >&2
        wait_released || true
        ;;
    state)
        read -r id n < <(hier)
        if [ "$id" = 0 ]; then echo cgroup2; else echo "v1 hierarchy $id, $n cgroups"; fi
        ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
