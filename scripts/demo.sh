#!/usr/bin/env bash
# The main job, on a fresh machine, as root: install what is needed, build Berth, start berthd on
# its default socket (/run/berth/berth.sock), make a busybox image from Debian's busybox-static,
# load it through berth's own import, list it, and run a container from it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --bins
bin=$PWD/target/release
sock=/run/berth/berth.sock
if ! "$bin/berth" -H "unix://$sock" version >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup "$bin/berthd" >/var/log/berthd.log 2>&1 &
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  echo "berthd started (pid $!, log /var/log/berthd.log)"
fi
export BERTH_HOST=unix://$sock
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts/make-busybox-rootfs.sh "$work/busybox.tar"
"$bin/berth" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest
"$bin/berth" images
"$bin/berth" run --rm busybox echo hello
echo
echo "berthd is running. Try: DOCKER_HOST=$BERTH_HOST docker images"
echo "Stop it with: kill \$(cat /run/berth/berthd.pid)"
