#!/usr/bin/env bash
# Image build time benchmark: see bench/README.md ("Image build time").
#
#   bench/run_build.sh [--rounds N] [--no-dockerd] [--no-podman] [--no-install] [--no-build]
#                      [--nice N] [--out FILE]
#
# Builds bench/build_ctx/Dockerfile (RUN steps writing 20 MB and 500 files, a COPY of a generated
# context of 200 small files and one 10 MB file, ENV/WORKDIR/LABEL/CMD) with `berth build` and with
# `DOCKER_BUILDKIT=0 docker build` against berthd, `DOCKER_BUILDKIT=0 docker build` against a private
# dockerd (the classic builder) and `podman build` when installed: --no-cache, fully cached (the same
# build again) and the same context with a `FROM busybox` Dockerfile (the cost of sending the
# context). Median wall-clock of N rounds, ratios berth/docker.
# Environment: BENCH_ROUNDS (5), BENCH_NICE (-10), BENCH_DOCKER_CLI, BENCH_OUT, TMPDIR.
# Installs docker.io with apt when dockerd is missing (not with --no-install).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
repo=$(dirname "$here")
rounds=${BENCH_ROUNDS:-5}
nice_n=${BENCH_NICE:--10}
with_dockerd=1
with_podman=1
install=1
build=1
out=${BENCH_OUT:-}

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --no-dockerd) with_dockerd=0 ;;
        --no-podman) with_podman=0 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --nice) nice_n=$2; shift ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run_build.sh runs build containers: run it as root" >&2; exit 1; }

docker_cli=${BENCH_DOCKER_CLI:-}
if [ -z "$docker_cli" ]; then
    if [ -x /usr/local/bin/docker ]; then docker_cli=/usr/local/bin/docker; else docker_cli=$(command -v docker || true); fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-build.XXXXXX")
berthd_pid=
dockerd_pid=
child_pid=
podman=()


rm_cgroups() { # the bench's own cgroup trees, in every v1 hierarchy and on cgroup2
    local d
    for d in /sys/fs/cgroup/*/berth-bench-build* /sys/fs/cgroup/berth-bench-build*; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "could not remove cgroup $d"
    done
}

cleanup() {
    local rc=$? pid ids
    trap - EXIT INT TERM
    set +e +o pipefail # best effort from here on: one failing step must not skip the rest
    stop_pid "$child_pid" 10
    # Images and containers, engine by engine (the daemons' roots go with $T anyway; this stops
    # whatever an interrupted build left running).
    if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
        ids=$("$berth" -H "unix://$T/berth.sock" ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || "$berth" -H "unix://$T/berth.sock" rm -f $ids >/dev/null 2>&1 || true
    fi
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        ids=$(DOCKER_HOST=unix://$T/docker.sock "$docker_cli" ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || DOCKER_HOST=unix://$T/docker.sock "$docker_cli" rm -f $ids >/dev/null 2>&1 || true
    fi
    if [ ${#podman[@]} -gt 0 ]; then
        "${podman[@]}" rm -af -t 0 >/dev/null 2>&1 || true
        "${podman[@]}" rmi -af >/dev/null 2>&1 || true
        buildah --root "$T/podman/root" --runroot "$T/podman/run" rm -a >/dev/null 2>&1 || true
    fi
    stop_pid "$berthd_pid" 10
    if [ -n "$dockerd_pid" ]; then
        stop_pid "$dockerd_pid" 20
        pid=$(cat "$T/docker/exec/containerd/containerd.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 1
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    for pid in $(our_pids berth-shim) $(our_pids containerd-shim-runc-v2) $(our_pids conmon); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    local m
    awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
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
[ -x "$berthd" ] && [ -x "$berth" ] && [ -x "$repo/target/release/berth-shim" ] ||
    { echo "missing release binaries in $repo/target/release (build first)" >&2; exit 1; }

renice -n "$nice_n" -p $$ >/dev/null

notes=("machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r), $T on $(stat -f -c %T "$T")")
notes+=("niceness of the daemons and clients: $nice_n; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)")
notes+=("berth: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown), release build")
notes+=("all builds: --network none; docker CLI with DOCKER_BUILDKIT=0 (the classic builder)")

# 2. The busybox image and the build context.
log "building the busybox rootfs and the context"
"$repo/scripts/make-busybox-rootfs.sh" "$T/busybox.tar"
ctx=$T/context
mkdir -p "$ctx/ctx/small"
cp "$here/build_ctx/Dockerfile" "$here/build_ctx/Dockerfile.context" "$ctx/"
python3 - "$ctx/ctx" <<'PY'
import random, sys
d = sys.argv[1]
r = random.Random(20261128)  # the same bytes on every run
for i in range(200):
    with open(f"{d}/small/file{i:03}.txt", "w") as f:
        f.write("".join(r.choice("abcdefghijklmnopqrstuvwxyz\n") for _ in range(r.randint(100, 4000))))
with open(f"{d}/big.bin", "wb") as f:
    f.write(r.randbytes(10 << 20))
PY
ctx_bytes=$(tar -C "$ctx" -cf - . | wc -c)
notes+=("context: $(find "$ctx" -type f | wc -l) files, tar $((ctx_bytes / 1024)) KiB")

# 3. berthd.
log "starting berthd in $T"
echo '{}' >"$T/berth-daemon.json"
"$berthd" --root "$T/berth/root" --exec-root "$T/x" -H "unix://$T/berth.sock" --bridge none \
    --config-file "$T/berth-daemon.json" --cgroup-parent berth-bench-build >"$T/berthd.log" 2>&1 &
berthd_pid=$!
if ! wait_ping "$T/berth.sock" 30 "$berthd_pid"; then
    tail -20 "$T/berthd.log" >&2
    echo "berthd did not answer /_ping" >&2
    exit 1
fi
"$berth" -H "unix://$T/berth.sock" import "$T/busybox.tar" busybox:latest >/dev/null

# Engines: name, then the command that builds; "$@" of the command gets the extra flags.
engines=(berth)
mkdir -p "$T/docker-config"
if [ -n "$docker_cli" ]; then
    engines+=(docker-berthd)
    notes+=("docker CLI: $docker_cli $("$docker_cli" --version 2>/dev/null | sed 's/^Docker version //')")
fi

# 4. A real dockerd, isolated under $T, without a bridge.
if [ "$with_dockerd" = 1 ] && [ -n "$docker_cli" ]; then
    command -v dockerd >/dev/null || apt_install docker.io || log "could not install docker.io"
    if command -v dockerd >/dev/null; then
        mkdir -p "$T/docker/root" "$T/docker/exec"
        echo '{}' >"$T/docker/daemon.json"
        log "starting dockerd in $T/docker"
        dockerd --config-file "$T/docker/daemon.json" \
            --data-root "$T/docker/root" --exec-root "$T/docker/exec" --pidfile "$T/docker/dockerd.pid" \
            -H "unix://$T/docker.sock" --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
            --cgroup-parent berth-bench-build-docker \
            --containerd-namespace berth-bench-build --containerd-plugins-namespace berth-bench-build-plugins \
            >"$T/dockerd.log" 2>&1 &
        dockerd_pid=$!
        if wait_ping "$T/docker.sock" 60 "$dockerd_pid"; then
            DOCKER_HOST=unix://$T/docker.sock DOCKER_CONFIG=$T/docker-config \
                "$docker_cli" import "$T/busybox.tar" busybox:latest >/dev/null
            v=$(curl -s --unix-socket "$T/docker.sock" http://localhost/info | python3 -c \
                'import json, sys; i = json.load(sys.stdin); print(i["ServerVersion"] + ", " + i["Driver"])' ||
                echo "version unknown")
            notes+=("dockerd: $(command -v dockerd) $v")
            engines+=(docker-dockerd)
        else
            log "dockerd did not start; its log ends with:"
            tail -15 "$T/dockerd.log" >&2
            notes+=("dockerd: did not start")
        fi
    else
        notes+=("dockerd: not installed")
    fi
fi

# 5. podman (buildah inside), with its own storage under $T.
if [ "$with_podman" = 1 ]; then
    if command -v podman >/dev/null; then
        mkdir -p "$T/podman/tmp"
        printf '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' >"$T/podman/containers.conf"
        export CONTAINERS_CONF=$T/podman/containers.conf
        podman=(podman --root "$T/podman/root" --runroot "$T/podman/run" --tmpdir "$T/podman/tmp"
            --storage-driver overlay --cgroup-manager cgroupfs --events-backend file)
        "${podman[@]}" import -q "$T/busybox.tar" localhost/busybox:latest >/dev/null
        engines+=(podman)
        notes+=("podman: $(podman --version | awk '{ print $3 }'), overlay, cgroupfs, build --layers --isolation chroot, host network (chroot isolation allows no other; the RUN steps use none) (buildah runs RUN steps chrooted, without crun: with OCI isolation the RUN steps fail on this hybrid-cgroup host, see bench/hugetlb.sh)")
    else
        notes+=("podman: not installed")
    fi
fi

build_cmd() { # engine, extra build flags...
    local e=$1
    shift
    case $e in
        berth) "$berth" -H "unix://$T/berth.sock" build -q --network none -t bench/build:latest "$@" "$ctx" ;;
        docker-berthd) DOCKER_BUILDKIT=0 DOCKER_HOST=unix://$T/berth.sock DOCKER_CONFIG=$T/docker-config \
            "$docker_cli" build -q --network none -t bench/build:latest "$@" "$ctx" ;;
        docker-dockerd) DOCKER_BUILDKIT=0 DOCKER_HOST=unix://$T/docker.sock DOCKER_CONFIG=$T/docker-config \
            "$docker_cli" build -q --network none -t bench/build:latest "$@" "$ctx" ;;
        podman) "${podman[@]}" build -q --layers --isolation chroot -t bench/build:latest "$@" "$ctx" ;;
    esac
}

declare -A times failed
timed_build() { # engine, phase, extra flags...: appends the wall-clock ms to times[engine/phase]
    local e=$1 phase=$2 t0 t1
    shift 2
    [ -z "${failed[$e]:-}" ] || return 0
    t0=$(date +%s%N)
    if ! run_child build_cmd "$e" "$@" >"$T/last-$e.log" 2>&1; then
        log "$e: build failed ($phase); its output ends with:"
        tail -15 "$T/last-$e.log" >&2
        failed[$e]=$phase
        notes+=("$e: build failed in phase $phase: $(tail -1 "$T/last-$e.log")")
        return 0
    fi
    t1=$(date +%s%N)
    times[$e/$phase]+="$(((t1 - t0) / 1000000)) "
}

median() { # numbers...
    [ $# -gt 0 ] || { echo -; return; }
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# 6. Measure; the engines take turns in every round, so that drift of the machine's load hits all.
log "warm-up: one build per engine"
for e in "${engines[@]}"; do timed_build "$e" warmup; done
for ((r = 1; r <= rounds; r++)); do
    log "round $r/$rounds: --no-cache"
    for e in "${engines[@]}"; do timed_build "$e" nocache --no-cache; done
done
for e in "${engines[@]}"; do timed_build "$e" prime; done # the cache of the last --no-cache build
for ((r = 1; r <= rounds; r++)); do
    log "round $r/$rounds: cached, and the context alone"
    for e in "${engines[@]}"; do timed_build "$e" cached; done
    for e in "${engines[@]}"; do timed_build "$e" context -f "$ctx/Dockerfile.context"; done
done
notes+=("load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)")

# 7. Results.
{
    echo "Image build time, bench/build_ctx/Dockerfile, median of $rounds rounds (ms), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    printf '| %-28s | %9s | %8s | %13s | %15s |\n' engine "no cache" cached "context alone" "cached-context"
    printf '| %-28s | %9s | %8s | %13s | %15s |\n' "---" "---:" "---:" "---:" "---:"
    declare -A med
    for e in "${engines[@]}"; do
        label=$e
        case $e in
            berth) label="berth CLI -> berthd" ;;
            docker-berthd) label="docker CLI -> berthd" ;;
            docker-dockerd) label="docker CLI -> dockerd" ;;
            podman) label="podman (buildah)" ;;
        esac
        for p in nocache cached context; do
            # shellcheck disable=SC2086
            med[$e/$p]=$(median ${times[$e/$p]:-})
        done
        d=- c=${med[$e/cached]} x=${med[$e/context]}
        [ "$c" = - ] || [ "$x" = - ] || d=$((c - x))
        printf '| %-28s | %9s | %8s | %13s | %15s |\n' "$label" "${med[$e/nocache]}" "${med[$e/cached]}" "${med[$e/context]}" "$d"
    done
    if [ -n "${med[docker-dockerd/nocache]:-}" ]; then
        echo
        echo "Ratios against docker CLI -> dockerd (classic builder; < 1 is faster):"
        for e in berth docker-berthd podman; do
            [ -n "${med[$e/nocache]:-}" ] || continue
            line="  $e:"
            for p in nocache cached context; do
                a=${med[$e/$p]} b=${med[docker-dockerd/$p]}
                if [ "$a" = - ] || [ "$b" = - ] || [ "$b" = 0 ]; then line+=" $p -"; else
                    line+=" $p $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"; fi
            done
            echo "$line"
        done
    fi
    echo
    echo "Goals: no cache <= 1/2 of docker's classic builder; cached <= 50 ms beyond sending the context (cached-context)."
    echo "Every round, all times (ms):"
    for e in "${engines[@]}"; do
        for p in warmup nocache prime cached context; do echo "  $e $p: ${times[$e/$p]:-}"; done
    done
    echo
    for n in "${notes[@]}"; do echo "- $n"; done
} >"$T/results.txt"
cat "$T/results.txt"
if [ -n "$out" ]; then
    cp "$T/results.txt" "$out"
    log "results copied to $out"
fi
