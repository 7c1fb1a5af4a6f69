#!/usr/bin/env bash
# Installs the Debian packages Berth's build and tests need (idempotent; run as root).
#   busybox-static  the test images are made from it
#   skopeo, umoci   independent OCI tools the interop tests check berth against
#   iptables, iproute2  the network library (NAT rules) and its tests (ip netns)
#   util-linux, procps  script(1) for pty tests, ps for `top`
#   libc6-dev       static glibc, for the debug build of berth-init
set -euo pipefail
packages=(busybox-static skopeo umoci tar ca-certificates iptables iproute2 util-linux procps libc6-dev docker-registry apache2-utils bc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
