#!/usr/bin/env bash
# Builds a busybox root filesystem tarball from Debian's busybox-static: /bin/busybox with every
# applet linked, /etc/passwd and /etc/group with root and nobody, /tmp, /root, /var/www.
# Usage: make-busybox-rootfs.sh OUT.tar   (then: berth import OUT.tar busybox:latest)
set -euo pipefail
out=${1:?usage: $0 OUT.tar}
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "no $bb: apt-get install busybox-static" >&2; exit 1; }
"$bb" --list-full >/dev/null 2>&1 || { echo "$bb is not a busybox with --list-full" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/www,home}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  dir=$(dirname "$applet")
  mkdir -p "$root/$dir"
  rel=$(realpath --relative-to="$root/$dir" "$root/bin/busybox")
  ln -sf "$rel" "$root/$applet"
done
cat > "$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$root/etc/group" <<'GR'
root:x:0:
nogroup:x:65534:
GR
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
# Fixed owner and times: the same busybox gives the same tarball.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$root" -cf "$out" .
