#!/usr/bin/env bash
# Load/save throughput benchmark: see bench/README.md.
#
#   bench/run.sh [--with-dockerd] [--runs N] [--layer-mb M] [--no-build] [--out FILE]
#
# Environment: BENCH_RUNS (default 5), BENCH_DOCKERD=1 (same as --with-dockerd),
# BENCH_LAYER_MB (default 100), BENCH_DOCKER_CLI (default /usr/local/bin/docker, else `docker` on
# PATH), BENCH_OUT (same as --out), TMPDIR (where the temporary directory goes).
#
# Everything (daemon roots, sockets, the image, saved archives, results) lives in one temporary
# directory that is removed on exit; the results are printed, and copied to --out if given.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
repo=$(dirname "$here")
runs=${BENCH_RUNS:-5}
layer_mb=${BENCH_LAYER_MB:-100}
with_dockerd=${BENCH_DOCKERD:-0}
build=1
out=${BENCH_OUT:-}
tag=bench/loadsave:latest

while [ $# -gt 0 ]; do
    case $1 in
        --with-dockerd) with_dockerd=1 ;;
        --runs) runs=$2; shift ;;
        --layer-mb) layer_mb=$2; shift ;;
        --no-build) build=0 ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

docker_cli=${BENCH_DOCKER_CLI:-}
if [ -z "$docker_cli" ]; then
    if [ -x /usr/local/bin/docker ]; then docker_cli=/usr/local/bin/docker; else docker_cli=$(command -v docker || true); fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
berthd_pid=
dockerd_pid=
child_pid=

stop_dockerd() {
    [ -n "$dockerd_pid" ] || return 0
    stop_pid "$dockerd_pid" 20
    dockerd_pid=
    # dockerd stops the containerd it started; make sure (by its pid file, never by name).
    local cpid
    cpid=$(cat "$T/docker/exec/containerd/containerd.pid" 2>/dev/null || true)
    if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
        kill -TERM "$cpid" 2>/dev/null || true
        sleep 1
        kill -KILL "$cpid" 2>/dev/null || true
    fi
    # Unmount whatever the daemon left mounted under its directories, deepest first.
    local m
    awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$child_pid" 5
    stop_pid "$berthd_pid" 10
    stop_dockerd
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

# 1. Build.
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
[ -x "$berthd" ] && [ -x "$berth" ] || { echo "missing $berthd or $berth (build first)" >&2; exit 1; }

# 2. The image (deterministic: same bytes, same image ID every time).
log "generating the image (2 layers x ${layer_mb} MiB)"
image_id=$(python3 "$here/gen_image.py" "$T/image.tar" --layer-mb "$layer_mb" --tag "$tag")

# 3. berthd.
log "starting berthd in $T"
echo '{}' >"$T/berth-daemon.json" # so that no /etc/berth/daemon.json applies
"$berthd" --root "$T/berth/root" --exec-root "$T/berth/run" -H "unix://$T/berth.sock" --bridge none \
    --config-file "$T/berth-daemon.json" >"$T/berthd.log" 2>&1 &
berthd_pid=$!
if ! wait_ping "$T/berth.sock" 30 "$berthd_pid"; then
    tail -20 "$T/berthd.log" >&2
    echo "berthd did not answer /_ping" >&2
    exit 1
fi

targets=("berth CLI -> berthd|berthd|berth:$berth|$T/berth.sock")
notes=("berth: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown), release build")
if [ -n "$docker_cli" ]; then
    targets+=("docker CLI -> berthd|berthd|docker:$docker_cli|$T/berth.sock")
    notes+=("docker CLI: $docker_cli $("$docker_cli" --version 2>/dev/null | sed 's/^Docker version //')")
else
    log "no docker CLI found: measuring the berth CLI only"
fi

# 4. Optionally a real dockerd, isolated under $T.
if [ "$with_dockerd" = 1 ]; then
    if ! command -v dockerd >/dev/null; then
        log "dockerd is missing: installing Debian's docker.io"
        apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2 ||
            log "installing docker.io failed"
    fi
    if ! command -v dockerd >/dev/null; then
        notes+=("dockerd: not available (install of docker.io failed)")
    elif [ -z "$docker_cli" ]; then
        notes+=("dockerd: skipped (no docker CLI)")
    else
        mkdir -p "$T/docker/root" "$T/docker/exec"
        echo '{}' >"$T/docker/daemon.json"
        log "starting dockerd in $T/docker"
        dockerd --config-file "$T/docker/daemon.json" \
            --data-root "$T/docker/root" --exec-root "$T/docker/exec" --pidfile "$T/docker/dockerd.pid" \
            -H "unix://$T/docker.sock" --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
            --containerd-namespace berth-bench --containerd-plugins-namespace berth-bench-plugins \
            >"$T/dockerd.log" 2>&1 &
        dockerd_pid=$!
        if wait_ping "$T/docker.sock" 60 "$dockerd_pid"; then
            v=$(curl -s --unix-socket "$T/docker.sock" http://localhost/info | python3 -c \
                'import json, sys; i = json.load(sys.stdin); print(i["ServerVersion"] + ", storage driver " + i["Driver"] + ", cgroup v" + str(i.get("CgroupVersion", "?")))' ||
                echo "version unknown")
            notes+=("dockerd: $(command -v dockerd) $v")
            targets+=("docker CLI -> dockerd|dockerd|docker:$docker_cli|$T/docker.sock")
        else
            log "dockerd did not start; its log ends with:"
            tail -15 "$T/dockerd.log" >&2
            notes+=("dockerd: failed to start (see the log above); no ratios")
            stop_dockerd
        fi
    fi
fi

# 5. Measure.
log "measuring: $runs runs x ${#targets[@]} targets"
args=()
for t in "${targets[@]}"; do args+=(--target "$t"); done
for n in "${notes[@]}"; do args+=(--note "$n"); done
run_child python3 "$here/measure.py" --image "$T/image.tar" --tag "$tag" --expect-id "$image_id" --runs "$runs" \
    --workdir "$T" --results "$T/results/latest.txt" "${args[@]}"
if [ -n "$out" ]; then
    cp "$T/results/latest.txt" "$out"
    log "results copied to $out"
fi
