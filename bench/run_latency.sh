#!/usr/bin/env bash
# Container start latency and memory benchmark: see bench/README.md ("Run latency and memory").
#
#   bench/run_latency.sh [--rounds N] [--fleet N] [--no-dockerd] [--no-podman] [--no-crun]
#                        [--no-install] [--no-build] [--nice N] [--out FILE]
#
# Measures `run --rm --network none busybox true` (berth CLI and docker CLI against berthd, docker
# CLI against a real dockerd, podman, crun on the same OCI bundle), berthd's idle memory, and N
# containers started at once (wall time; Pss of each berth-shim / containerd-shim / conmon).
# Environment: BENCH_ROUNDS (20), BENCH_FLEET (50), BENCH_NICE (-10: daemons, clients and containers
# run at this niceness, so that other work on the machine disturbs them less), BENCH_DOCKER_CLI,
# BENCH_OUT, TMPDIR.
# Installs docker.io, podman and crun with apt when missing (not with --no-install).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
repo=$(dirname "$here")
rounds=${BENCH_ROUNDS:-20}
fleet_n=${BENCH_FLEET:-50}
with_dockerd=1
with_podman=1
with_crun=1
install=1
build=1
out=${BENCH_OUT:-}
nice_n=${BENCH_NICE:--10}

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --fleet) fleet_n=$2; shift ;;
        --no-dockerd) with_dockerd=0 ;;
        --no-podman) with_podman=0 ;;
        --no-crun) with_crun=0 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --out) out=$2; shift ;;
        --nice) nice_n=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run_latency.sh runs containers: run it as root" >&2; exit 1; }

docker_cli=${BENCH_DOCKER_CLI:-}
if [ -z "$docker_cli" ]; then
    if [ -x /usr/local/bin/docker ]; then docker_cli=/usr/local/bin/docker; else docker_cli=$(command -v docker || true); fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-lat.XXXXXX")
berthd_pid=
dockerd_pid=
child_pid=
podman=()
hugetlb_moved=0


rm_cgroups() { # the bench's own cgroup trees, in every v1 hierarchy and on cgroup2
    local d
    for d in /sys/fs/cgroup/*/berth-bench-* /sys/fs/cgroup/berth-bench-*; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "could not remove cgroup $d"
    done
}

cleanup() {
    local rc=$? pid ids
    trap - EXIT INT TERM
    set +e +o pipefail # best effort from here on: one failing step must not skip the rest
    stop_pid "$child_pid" 10
    # Containers, engine by engine (the measuring side removes them; this is for interruptions).
    if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
        ids=$("$berth" -H "unix://$T/berth.sock" ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || "$berth" -H "unix://$T/berth.sock" rm -f $ids >/dev/null 2>&1 || true
    fi
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        ids=$(DOCKER_HOST=unix://$T/docker.sock "$docker_cli" ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || DOCKER_HOST=unix://$T/docker.sock "$docker_cli" rm -f $ids >/dev/null 2>&1 || true
    fi
    if [ ${#podman[@]} -gt 0 ]; then
        # podman's containers live in the measuring side's mount namespace: enter it through a
        # conmon that is still there.
        pid=$(our_pids conmon)
        pid=${pid%%$'\n'*}
        if [ -n "$pid" ]; then
            nsenter -t "$pid" -m "${podman[@]}" rm -af -t 0 >/dev/null 2>&1 || true
        fi
        "${podman[@]}" rm -af -t 0 >/dev/null 2>&1 || true
    fi
    if [ -d "$T/crun/state" ]; then
        for pid in $(crun --root "$T/crun/state" list -q 2>/dev/null || true); do
            crun --root "$T/crun/state" delete -f "$pid" >/dev/null 2>&1 || true
        done
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
    # Whatever is still ours: shims and conmons (by pid, matched on our temp dir).
    for pid in $(our_pids berth-shim) $(our_pids containerd-shim-runc-v2) $(our_pids conmon); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    local m
    awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
    rm_cgroups
    if [ "$hugetlb_moved" = 1 ]; then
        "$here/hugetlb.sh" restore "$T/hugetlb-restore" || log "hugetlb: $("$here/hugetlb.sh" state)"
        log "hugetlb after the bench: $("$here/hugetlb.sh" state)"
    fi
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

# Everything started from here on (daemons, shims, clients, containers) inherits the niceness.
renice -n "$nice_n" -p $$ >/dev/null

notes=("machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r), cgroups $(
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; elif [ -d /sys/fs/cgroup/unified ]; then echo hybrid; else echo v1; fi)")
notes+=("niceness of the daemons, clients and containers: $nice_n (other work on the machine runs at 0)")
notes+=("berth: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown), release build")
skips=()

# 2. The busybox image, from the project's script.
log "building the busybox rootfs"
"$repo/scripts/make-busybox-rootfs.sh" "$T/busybox.tar"

# 3. berthd.
log "starting berthd in $T"
echo '{}' >"$T/berth-daemon.json"
"$berthd" --root "$T/berth/root" --exec-root "$T/x" -H "unix://$T/berth.sock" --bridge none \
    --config-file "$T/berth-daemon.json" --cgroup-parent berth-bench-lat >"$T/berthd.log" 2>&1 &
berthd_pid=$!
if ! wait_ping "$T/berth.sock" 30 "$berthd_pid"; then
    tail -20 "$T/berthd.log" >&2
    echo "berthd did not answer /_ping" >&2
    exit 1
fi
"$berth" -H "unix://$T/berth.sock" import "$T/busybox.tar" busybox:latest >/dev/null

args=(--here "$here" --root "$T" --berth "$berth" --berth-sock "$T/berth.sock" --berthd-pid "$berthd_pid"
    --rounds "$rounds" --fleet "$fleet_n" --results "$T/latest.txt" --json "$T/latest.json")
mkdir -p "$T/docker-config"
if [ -n "$docker_cli" ]; then
    args+=(--docker-cli "$docker_cli" --docker-config "$T/docker-config")
    notes+=("docker CLI: $docker_cli $("$docker_cli" --version 2>/dev/null | sed 's/^Docker version //')")
else
    skips+=("docker CLI -> berthd=no docker CLI")
fi

# 4. A real dockerd, isolated under $T, without a bridge (all engines run with --network none).
if [ "$with_dockerd" = 1 ] && [ -n "$docker_cli" ]; then
    command -v dockerd >/dev/null || apt_install docker.io || log "could not install docker.io"
    if command -v dockerd >/dev/null; then
        mkdir -p "$T/docker/root" "$T/docker/exec"
        echo '{}' >"$T/docker/daemon.json"
        log "starting dockerd in $T/docker"
        dockerd --config-file "$T/docker/daemon.json" \
            --data-root "$T/docker/root" --exec-root "$T/docker/exec" --pidfile "$T/docker/dockerd.pid" \
            -H "unix://$T/docker.sock" --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
            --cgroup-parent berth-bench-docker \
            --containerd-namespace berth-bench --containerd-plugins-namespace berth-bench-plugins \
            >"$T/dockerd.log" 2>&1 &
        dockerd_pid=$!
        if wait_ping "$T/docker.sock" 60 "$dockerd_pid"; then
            DOCKER_HOST=unix://$T/docker.sock DOCKER_CONFIG=$T/docker-config \
                "$docker_cli" import "$T/busybox.tar" busybox:latest >/dev/null
            v=$(curl -s --unix-socket "$T/docker.sock" http://localhost/info | python3 -c \
                'import json, sys; i = json.load(sys.stdin); print(i["ServerVersion"] + ", " + i["Driver"] + ", runtime " + i["DefaultRuntime"] + ", cgroup v" + str(i.get("CgroupVersion", "?")))' ||
                echo "version unknown")
            notes+=("dockerd: $(command -v dockerd) $v; containerd $(containerd --version 2>/dev/null | awk '{ print $3 }'), runc $(runc --version 2>/dev/null | awk 'NR == 1 { print $3 }')")
            cpid=
            for ((i = 0; i < 50; i++)); do
                cpid=$(cat "$T/docker/exec/containerd/containerd.pid" 2>/dev/null || true)
                [ -n "$cpid" ] && break
                sleep 0.1
            done
            args+=(--dockerd-sock "$T/docker.sock" --dockerd-pid "$dockerd_pid")
            [ -z "$cpid" ] || args+=(--containerd-pid "$cpid")
        else
            log "dockerd did not start; its log ends with:"
            tail -15 "$T/dockerd.log" >&2
            skips+=("docker CLI -> dockerd=dockerd did not start")
        fi
    else
        skips+=("docker CLI -> dockerd=dockerd not installed")
    fi
fi

# crun and podman refuse hybrid cgroups while hugetlb is on cgroup2: hugetlb.sh moves it to a v1
# hierarchy mounted only in the measuring side's private mount namespace, for the phases that
# need it.
need_hugetlb=0
"$here/hugetlb.sh" needed && need_hugetlb=1

# 5. crun, on a bundle made from berth's own config.json.
if [ "$with_crun" = 1 ]; then
    command -v crun >/dev/null || apt_install crun || log "could not install crun"
    if command -v crun >/dev/null; then
        id=$("$berth" -H "unix://$T/berth.sock" run -d --network none busybox sleep 30)
        cp "$T/berth/root/containers/$id/config.json" "$T/berth-config.json"
        "$berth" -H "unix://$T/berth.sock" rm -f "$id" >/dev/null
        mkdir -p "$T/crun/bundle/rootfs" "$T/crun/state"
        tar -xf "$T/busybox.tar" -C "$T/crun/bundle/rootfs"
        python3 - "$T/berth-config.json" "$T/crun/bundle" <<'EOF'
import json, sys
src, b = sys.argv[1], sys.argv[2]
c = json.load(open(src))
c["root"] = {"path": "rootfs", "readonly": False}
c["process"]["args"] = ["true"]
c["process"]["env"] = [e for e in c["process"]["env"] if not e.startswith("HOSTNAME=")] + ["HOSTNAME=bench"]
c["hostname"] = "bench"
files = {"resolv.conf": "", "hostname": "bench\n", "hosts": "127.0.0.1\tlocalhost\n"}
for m in c["mounts"]:
    if m["type"] == "bind" and m["destination"].rsplit("/", 1)[-1] in files:
        name = m["destination"].rsplit("/", 1)[-1]
        open(f"{b}/{name}", "w").write(files[name])
        m["source"] = f"{b}/{name}"
c["linux"]["cgroupsPath"] = "berth-bench-crun/run"
json.dump(c, open(f"{b}/config.json", "w"), indent=1)
EOF
        args+=(--crun "$(command -v crun)" --crun-state "$T/crun/state" --crun-bundle "$T/crun/bundle")
        notes+=("crun: $(crun --version | head -1 | awk '{ print $3 }'); bundle = berth's config.json of a busybox container, rootfs unpacked once (no overlay mount per run), args [true]")
    else
        skips+=("crun=not installed")
    fi
fi

# 6. podman, with its own storage under $T.
if [ "$with_podman" = 1 ]; then
    command -v podman >/dev/null || apt_install podman || log "could not install podman"
    if command -v podman >/dev/null; then
        mkdir -p "$T/podman/tmp"
        printf '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' >"$T/podman/containers.conf"
        export CONTAINERS_CONF=$T/podman/containers.conf
        podman=(podman --root "$T/podman/root" --runroot "$T/podman/run" --tmpdir "$T/podman/tmp"
            --storage-driver overlay --cgroup-manager cgroupfs --events-backend file)
        "${podman[@]}" import -q "$T/busybox.tar" localhost/busybox:latest >/dev/null
        # root here lacks CAP_SYS_RESOURCE: podman's default rlimits (nofile 1048576, nproc
        # 4194304) fail in crun's setrlimit, so they are clamped below the host's hard limits.
        prun='["--cgroup-parent", "berth-bench-podman", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]'
        args+=(--podman "$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${podman[@]}")"
            --podman-run-args "$prun")
        notes+=("podman: $(podman --version | awk '{ print $3 }'), conmon $(conmon --version 2>/dev/null | awk 'NR == 1 { print $3 }'), runtime $(podman "${podman[@]:1}" info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null), overlay, cgroupfs, --cgroup-parent berth-bench-podman, --ulimit nofile=20000:20000 --ulimit nproc=4096:4096")
    else
        skips+=("podman=not installed")
    fi
fi
if [ "$need_hugetlb" = 1 ] && { [ ${#podman[@]} -gt 0 ] || [ "$with_crun" = 1 ]; }; then
    args+=(--hugetlb)
    hugetlb_moved=1
    notes+=("hybrid cgroups: hugetlb moved to a v1 hierarchy, mounted only in the measuring namespace, during the latency runs and the podman fleet (crun and podman create hugetlb cgroups; berthd and dockerd, in the host namespace, see no hugetlb)")
fi
for n in "${notes[@]}"; do args+=(--note "$n"); done
for s in "${skips[@]}"; do args+=(--skip "$s"); done

# 7. Measure, in a private mount namespace (see hugetlb.sh).
log "measuring"
run_child unshare -m --propagation private python3 "$here/latency.py" "${args[@]}"
if [ -n "$out" ]; then
    cp "$T/latest.txt" "$out"
    log "results copied to $out"
fi
