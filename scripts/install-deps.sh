#!/usr/bin/env bash
# Installs the Debian packages Berth's build and tests need (idempotent; run as root).
#   busybox-static  the test images are made from it
#   skopeo, umoci   independent OCI tools the interop tests check berth against
#   podman          another independent client for berth-registry's interop tests
#   python3-venv    a venv for the ORAS Python client (PyPI `oras`, installed below)
#   iptables, iproute2  the network library (NAT rules) and its tests (ip netns)
#   util-linux, procps  script(1) for pty tests, ps for `top`
#   libc6-dev       static glibc, for the debug build of berth-init
#   passwd          useradd/usermod, for berthd's --userns-remap=default (dockremap) in the tests
set -euo pipefail
packages=(busybox-static skopeo umoci tar ca-certificates iptables iproute2 util-linux procps libc6-dev docker-registry apache2-utils bc podman python3-venv passwd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The ORAS Python client for berth-registry's interop test (crates/berth-registry/tests/oras.rs), in its
# own venv so neither Debian's Python nor a user's is changed. Debian's python3, not whatever is first
# on PATH: python3-venv above is for that one.
oras_venv=/opt/berth-test-venv
oras_version=0.2.43
if ! "$oras_venv/bin/python3" -c "import oras.client, oras.version, sys; sys.exit(oras.version.__version__ != '$oras_version')" 2>/dev/null; then
  echo "installing: oras $oras_version (PyPI) in $oras_venv"
  /usr/bin/python3 -m venv "$oras_venv"
  "$oras_venv/bin/pip" install --quiet --disable-pip-version-check "oras==$oras_version"
fi
