#!/usr/bin/env bash
# Published-port throughput benchmark: see bench/README.md ("Requests per second through a published
# port").
#
#   bench/run_ports.sh [--rounds N] [--seconds S] [--no-dockerd] [--no-install] [--no-build]
#                      [--nice N] [--out FILE]
#
# A busybox httpd in a container, published with -p, loaded with wrk (-t2 -c32) through three paths
# per engine: 127.0.0.1:<hostport> (userland proxy), the bridge gateway's address:<hostport> (DNAT)
# and the container's IP:80 (no proxy, the baseline); berthd (own bridge) against dockerd (own
# bridge, iptables, docker-proxy) in the same run. Median req/s and p99 latency, ratios berth/docker.
# Environment: BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_NICE (-10), BENCH_BRIDGE (bbench0),
# BENCH_DOCKER_CLI, BENCH_OUT, BENCH_BERTH_REV (shown as berth's version; default git describe), TMPDIR. Installs wrk and docker.io with apt when missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
repo=$(dirname "$here")
rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-10}
nice_n=${BENCH_NICE:--10}
bridge=${BENCH_BRIDGE:-bbench0}
with_dockerd=1
install=1
build=1
out=${BENCH_OUT:-}

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --seconds) seconds=$2; shift ;;
        --no-dockerd) with_dockerd=0 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --nice) nice_n=$2; shift ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run_ports.sh runs containers and changes iptables: run it as root" >&2; exit 1; }

docker_cli=${BENCH_DOCKER_CLI:-}
if [ -z "$docker_cli" ]; then
    if [ -x /usr/local/bin/docker ]; then docker_cli=/usr/local/bin/docker; else docker_cli=$(command -v docker || true); fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-ports.XXXXXX")
berthd_pid=
dockerd_pid=
child_pid=
berth_net_up=0      # berthd was started: its bridge and rules are ours to remove
docker_net_owned=0  # dockerd was started with iptables: docker0 and the DOCKER chains are ours
docker_proxies=()
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
forward_policy_before=$(iptables -w -S FORWARD | awk '$1 == "-P" { print $3 }')
DOCKER_CHAINS=(DOCKER DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2)


children_named() { # parent pid, comm
    local p
    for p in /proc/[0-9]*; do
        [ "$(awk '{ print $4 }' "$p/stat" 2>/dev/null)" = "$1" ] || continue
        [ "$(cat "$p/comm" 2>/dev/null)" = "$2" ] && echo "${p#/proc/}"
    done
    return 0
}

chain_exists() { iptables -w -t "$1" -n -L "$2" >/dev/null 2>&1; }

# As tests/src/lib.rs `remove_bridge`: the bridge, every rule whose comment starts with
# `berth-<bridge>:`, and the nat chain `B-<bridge>`.
remove_berth_net() {
    local table rule
    ip link del "$bridge" 2>/dev/null || true
    for table in nat filter; do
        iptables -w -t "$table" -S | grep -F -- "berth-$bridge:" | grep '^-A ' | while read -r rule; do
            sh -c "iptables -w -t $table -D ${rule#-A }" || log "could not delete: $rule"
        done
    done
    if chain_exists nat "B-$bridge"; then
        iptables -w -t nat -F "B-$bridge" && iptables -w -t nat -X "B-$bridge" || log "could not delete chain B-$bridge"
    fi
}

# dockerd leaves docker0, its chains and the jumps to them behind: remove what was not there before
# the bench (rules are compared with the snapshots taken before dockerd started).
remove_docker_net() {
    local table rule c
    for table in nat filter; do
        iptables -w -t "$table" -S | grep '^-A ' | grep -E 'DOCKER|docker0' | while read -r rule; do
            grep -qxF -- "$rule" "$T/iptables-$table.before" && continue
            sh -c "iptables -w -t $table -D ${rule#-A }" || log "could not delete: $rule"
        done
        # MASQUERADE of the docker subnet (it names neither the chain nor the bridge by name).
        iptables -w -t "$table" -S | grep '^-A ' | grep -F -- "-s $docker_subnet " | while read -r rule; do
            grep -qxF -- "$rule" "$T/iptables-$table.before" && continue
            sh -c "iptables -w -t $table -D ${rule#-A }" || log "could not delete: $rule"
        done
        for c in "${DOCKER_CHAINS[@]}"; do chain_exists "$table" "$c" && iptables -w -t "$table" -F "$c"; done
        for c in "${DOCKER_CHAINS[@]}"; do
            if chain_exists "$table" "$c"; then iptables -w -t "$table" -X "$c" || log "could not delete chain $table $c"; fi
        done
    done
    ip link del docker0 2>/dev/null || true
}

# The bench's own cgroup trees (berthd's and dockerd's --cgroup-parent): whatever still runs in
# them (a container whose daemon died first) is killed, then they are removed.
rm_cgroups() {
    local d f
    for f in /sys/fs/cgroup/*/berth-bench-ports*/*/cgroup.procs /sys/fs/cgroup/berth-bench-ports*/*/cgroup.procs; do
        [ -f "$f" ] || continue
        xargs -r kill -KILL <"$f" 2>/dev/null
    done
    sleep 0.5
    for d in /sys/fs/cgroup/*/berth-bench-ports* /sys/fs/cgroup/berth-bench-ports*; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "could not remove cgroup $d"
    done
}

cleanup() {
    local rc=$? pid ids p
    trap - EXIT INT TERM
    set +e +o pipefail # best effort from here on: one failing step must not skip the rest
    stop_pid "$child_pid" 5
    if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
        ids=$("$berth" -H "unix://$T/berth.sock" ps -aq 2>/dev/null)
        [ -z "$ids" ] || "$berth" -H "unix://$T/berth.sock" rm -f $ids >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        docker_proxies+=($(children_named "$dockerd_pid" docker-proxy))
        ids=$(DOCKER_HOST=unix://$T/docker.sock "$docker_cli" ps -aq 2>/dev/null)
        [ -z "$ids" ] || DOCKER_HOST=unix://$T/docker.sock "$docker_cli" rm -f $ids >/dev/null 2>&1
    fi
    stop_pid "$berthd_pid" 10
    if [ -n "$dockerd_pid" ]; then
        stop_pid "$dockerd_pid" 20
        pid=$(cat "$T/docker/exec/containerd/containerd.pid" 2>/dev/null)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            sleep 1
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    for p in "${docker_proxies[@]}"; do
        # Only if it is still a docker-proxy (the pid may have been reused).
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = docker-proxy ] && kill -KILL "$p" 2>/dev/null
    done
    for pid in $(our_pids berth-shim) $(our_pids containerd-shim-runc-v2); do
        kill -KILL "$pid" 2>/dev/null
    done
    local m
    awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
    [ "$berth_net_up" = 0 ] || remove_berth_net
    [ "$docker_net_owned" = 0 ] || remove_docker_net
    if [ -n "$forward_policy_before" ] && [ "$(iptables -w -S FORWARD | awk '$1 == "-P" { print $3 }')" != "$forward_policy_before" ]; then
        iptables -w -P FORWARD "$forward_policy_before"
    fi
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$ip_forward_before" ] || echo "$ip_forward_before" >/proc/sys/net/ipv4/ip_forward
    rm_cgroups
    if awk -v t="$T/" 'index($2, t) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        log "mounts are left under $T; not removing it"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_http() { # url: up to 15 s for "hello"
    local i
    for ((i = 0; i < 150; i++)); do
        [ "$(curl -s --max-time 2 "$1" 2>/dev/null)" = hello ] && return 0
        sleep 0.1
    done
    log "no answer from $1"
    return 1
}

container_ip() { # socket, container
    curl -sf --unix-socket "$1" "http://localhost/containers/$2/json" | python3 -c '
import json, sys
n = json.load(sys.stdin)["NetworkSettings"]
ips = [v.get("IPAddress") for v in (n.get("Networks") or {}).values() if v.get("IPAddress")]
print(ips[0] if ips else n.get("IPAddress", ""))'
}

free_port() { # first free TCP port from $1 on, not in the list of taken ones
    local p=$1
    shift
    while ss -Hltn "sport = :$p" | grep -q . || [[ " $* " == *" $p "* ]]; do p=$((p + 1)); done
    echo "$p"
}

# 1. Build, and the load generator.
if [ "$build" = 1 ]; then
    log "cargo build --release --bins"
    if ! run_child sh -c 'cd "$1" && exec cargo build --release --bins' sh "$repo" >"$T/build.log" 2>&1; then
        tail -40 "$T/build.log" >&2
        echo "the build failed" >&2
        exit 1
    fi
fi
berthd=$repo/target/release/berthd
berth=$repo/target/release/berth
[ -x "$berthd" ] && [ -x "$berth" ] && [ -x "$repo/target/release/berth-shim" ] ||
    { echo "missing release binaries in $repo/target/release (build first)" >&2; exit 1; }
command -v wrk >/dev/null || apt_install wrk || true
command -v wrk >/dev/null || { echo "no wrk (apt-get install wrk)" >&2; exit 1; }

renice -n "$nice_n" -p $$ >/dev/null

# 2. Names and addresses that are free on this host.
while ip link show "$bridge" >/dev/null 2>&1 || chain_exists nat "B-$bridge"; do
    [[ $bridge =~ ^(.*[^0-9])([0-9]+)$ ]] || { echo "bridge $bridge exists" >&2; exit 1; }
    bridge=${BASH_REMATCH[1]}$((BASH_REMATCH[2] + 1))
done
mapfile -t subnets < <(python3 "$here/ports.py" free-subnets 2)
berth_bip=${subnets[0]}
docker_bip=${subnets[1]}
docker_subnet=$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$docker_bip")
p_berth_lo=$(free_port 18080)
p_berth_any=$(free_port 18081 "$p_berth_lo")
p_docker_lo=$(free_port 18090 "$p_berth_lo" "$p_berth_any")
p_docker_any=$(free_port 18091 "$p_berth_lo" "$p_berth_any" "$p_docker_lo")

notes=("machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r)")
notes+=("berth: ${BENCH_BERTH_REV:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}, release build; bridge $bridge $berth_bip, host ports $p_berth_lo (127.0.0.1) and $p_berth_any (0.0.0.0)")
warm=$((seconds < 3 ? seconds : 3))
notes+=("wrk $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }') -t2 -c32 -d${seconds}s --latency; ${rounds} rounds, order rotating; a ${warm}s warm-up per path first")
notes+=("niceness of the daemons, proxies, containers and wrk: $nice_n (other work on the machine runs at 0)")
engines=(berth)

# 3. The busybox image.
log "building the busybox rootfs"
"$repo/scripts/make-busybox-rootfs.sh" "$T/busybox.tar"
httpd_cmd=(sh -c 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www')

# 4. berthd with its own bridge. The daemons run in their own sessions (setsid), so that a Ctrl-C
# in the terminal reaches this script, whose cleanup stops them in order, and not them directly.
log "starting berthd in $T (bridge $bridge, $berth_bip)"
echo '{}' >"$T/berth-daemon.json"
berth_net_up=1
setsid "$berthd" --root "$T/berth/root" --exec-root "$T/x" -H "unix://$T/berth.sock" --bridge "$bridge" --bip "$berth_bip" \
    --config-file "$T/berth-daemon.json" --cgroup-parent berth-bench-ports >"$T/berthd.log" 2>&1 &
berthd_pid=$!
if ! wait_ping "$T/berth.sock" 30 "$berthd_pid"; then
    tail -20 "$T/berthd.log" >&2
    echo "berthd did not answer /_ping" >&2
    exit 1
fi
"$berth" -H "unix://$T/berth.sock" import "$T/busybox.tar" busybox:latest >/dev/null
"$berth" -H "unix://$T/berth.sock" run -d --name ports-bench -p "127.0.0.1:$p_berth_lo:80" -p "$p_berth_any:80" \
    busybox "${httpd_cmd[@]}" >/dev/null
berth_ip=$(container_ip "$T/berth.sock" ports-bench)
berth_gw=${berth_bip%/*}
declare -A url=(
    [berth.proxy]="http://127.0.0.1:$p_berth_lo/"
    [berth.dnat]="http://$berth_gw:$p_berth_any/"
    [berth.direct]="http://$berth_ip:80/"
)

# 5. dockerd, with its bridge, iptables and docker-proxy.
if [ "$with_dockerd" = 1 ]; then
    if [ -z "$docker_cli" ]; then
        notes+=("dockerd: left out (no docker CLI)")
    elif ip link show docker0 >/dev/null 2>&1 || chain_exists nat DOCKER || chain_exists filter DOCKER; then
        notes+=("dockerd: left out (docker0 or DOCKER chains exist already: another dockerd's, not ours to remove)")
    else
        command -v dockerd >/dev/null || apt_install docker.io || log "could not install docker.io"
        if command -v dockerd >/dev/null; then
            mkdir -p "$T/docker/root" "$T/docker/exec" "$T/docker-config"
            echo '{}' >"$T/docker/daemon.json"
            iptables -w -t nat -S >"$T/iptables-nat.before"
            iptables -w -t filter -S >"$T/iptables-filter.before"
            log "starting dockerd in $T/docker (docker0, $docker_bip)"
            docker_net_owned=1
            setsid dockerd --config-file "$T/docker/daemon.json" \
                --data-root "$T/docker/root" --exec-root "$T/docker/exec" --pidfile "$T/docker/dockerd.pid" \
                -H "unix://$T/docker.sock" --bip "$docker_bip" --userland-proxy=true --ip6tables=false \
                --cgroup-parent berth-bench-ports-docker \
                --containerd-namespace berth-bench-ports --containerd-plugins-namespace berth-bench-ports-plugins \
                >"$T/dockerd.log" 2>&1 &
            dockerd_pid=$!
            if wait_ping "$T/docker.sock" 60 "$dockerd_pid"; then
                export DOCKER_CONFIG=$T/docker-config
                d() { DOCKER_HOST=unix://$T/docker.sock "$docker_cli" "$@"; }
                d import "$T/busybox.tar" busybox:latest >/dev/null
                d run -d --name ports-bench -p "127.0.0.1:$p_docker_lo:80" -p "$p_docker_any:80" \
                    busybox "${httpd_cmd[@]}" >/dev/null
                docker_ip=$(container_ip "$T/docker.sock" ports-bench)
                url[docker.proxy]="http://127.0.0.1:$p_docker_lo/"
                url[docker.dnat]="http://${docker_bip%/*}:$p_docker_any/"
                url[docker.direct]="http://$docker_ip:80/"
                docker_proxies+=($(children_named "$dockerd_pid" docker-proxy))
                v=$(curl -s --unix-socket "$T/docker.sock" http://localhost/info | python3 -c \
                    'import json, sys; i = json.load(sys.stdin); print(i["ServerVersion"] + ", " + i["Driver"])' ||
                    echo "version unknown")
                notes+=("dockerd: $(command -v dockerd) $v, docker0 $docker_bip, userland proxy $(command -v docker-proxy || echo '?') (${#docker_proxies[@]} running), host ports $p_docker_lo (127.0.0.1) and $p_docker_any (0.0.0.0)")
                engines+=(docker)
            else
                log "dockerd did not start; its log ends with:"
                tail -15 "$T/dockerd.log" >&2
                notes+=("dockerd: did not start")
            fi
        else
            notes+=("dockerd: left out (not installed)")
        fi
    fi
fi

# 6. Check every path answers, then measure.
for e in "${engines[@]}"; do
    for p in proxy dnat direct; do
        wait_http "${url[$e.$p]}" || { echo "$e $p: ${url[$e.$p]} does not answer" >&2; exit 1; }
        notes+=("$e $p: ${url[$e.$p]}")
    done
done
dnat_packets() { # engine: packets counted by its DNAT rule for the 0.0.0.0 publication (one per connection)
    local chain port
    if [ "$1" = berth ]; then chain=B-$bridge port=$p_berth_any; else chain=DOCKER port=$p_docker_any; fi
    iptables -w -t nat -L "$chain" -v -n -x | awk -v p="dpt:$port" '$0 ~ p && /DNAT/ { print $1; exit }'
}

# CPU time (clock ticks, user + system) of an engine's proxy processes: berthd (its proxy runs in
# the daemon, otherwise idle here) or every docker-proxy.
proxy_ticks() { # engine
    local p t=0
    if [ "$1" = berth ]; then p=$berthd_pid; else p=${docker_proxies[*]}; fi
    for p in $p; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo "$t"
}

mkdir -p "$T/wrk"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
log "warm-up (${warm}s per path)"
for e in "${engines[@]}"; do
    for p in proxy dnat direct; do
        run_child wrk -t2 -c32 -d"${warm}s" --latency "${url[$e.$p]}" >"$T/wrk/$e.$p.warm.txt"
    done
done
declare -A dnat_before
for e in "${engines[@]}"; do dnat_before[$e]=$(dnat_packets "$e"); done
runs=()
for e in "${engines[@]}"; do for p in proxy dnat direct; do runs+=("$e.$p"); done; done
for ((r = 1; r <= rounds; r++)); do
    n=${#runs[@]}
    for ((i = 0; i < n; i++)); do
        k=${runs[$(((i + r - 1) % n))]}
        cpu_before=$(proxy_ticks "${k%%.*}")
        run_child wrk -t2 -c32 -d"${seconds}s" --latency "${url[$k]}" >"$T/wrk/$k.$r.txt"
        echo "$(($(proxy_ticks "${k%%.*}") - cpu_before)) $(getconf CLK_TCK)" >"$T/wrk/$k.$r.cpu"
        printf -v now '%(%T)T' -1
        python3 "$here/ports.py" parse "$T/wrk/$k.$r.txt" --prefix "[bench $now] round $r/$rounds $k: " >&2
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
for e in "${engines[@]}"; do
    a=$(dnat_packets "$e")
    notes+=("$e: its DNAT rule counted $((a - ${dnat_before[$e]:-0})) connections during the DNAT rounds (check that the path is DNAT)")
done
notes+=("load average (1, 5, 15 min): $load_before before, $load_after after; $(($(date +%s) - start)) s of measuring (other work on the machine skews the numbers)")

args=(report --dir "$T/wrk" --rounds "$rounds" --seconds "$seconds" --out "$T/latest.txt"
    --title "Berth published-port benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')")
for e in "${engines[@]}"; do args+=(--engine "$e"); done
for n in "${notes[@]}"; do args+=(--note "$n"); done
echo
python3 "$here/ports.py" "${args[@]}"
if [ -n "$out" ]; then
    cp "$T/latest.txt" "$out"
    log "results copied to $out"
fi
