#!/usr/bin/env bash
# Registry push/pull throughput over loopback: see bench/README.md ("Registry push and pull").
#
#   bench/run_registry.sh [--rounds N] [--layer-mb M] [--no-distribution] [--no-skopeo]
#                         [--no-build] [--out FILE]
#
# Pushes and pulls a ~210 MB two-layer image (uncompressed layers, gen_image.py) with `berth push`/
# `berth pull` (through a private berthd) and with skopeo, against berth-registry and Debian's
# docker-registry (distribution 2.8), each with a fresh storage root before every push.
# Environment: BENCH_ROUNDS (3), BENCH_LAYER_MB (100), BENCH_OUT, TMPDIR, BENCH_TRACE=1 (set -x).
set -euo pipefail
[ -z "${BENCH_TRACE:-}" ] || set -x

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
repo=$(dirname "$here")
rounds=${BENCH_ROUNDS:-3}
layer_mb=${BENCH_LAYER_MB:-100}
with_distribution=1
with_skopeo=1
build=1
out=${BENCH_OUT:-}
tag=bench/registry:latest

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --layer-mb) layer_mb=$2; shift ;;
        --no-distribution) with_distribution=0 ;;
        --no-skopeo) with_skopeo=0 ;;
        --no-build) build=0 ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-reg.XXXXXX")
berthd_pid=
registry_pid=
child_pid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e +o pipefail
    stop_pid "$child_pid" 5
    stop_pid "$registry_pid" 10
    stop_pid "$berthd_pid" 10
    local m
    awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
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

wait_v2() { # port, seconds, pid: the registry answers /v2/
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -s -o /dev/null "http://127.0.0.1:$1/v2/" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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
berth_registry=$repo/target/release/berth-registry
for b in "$berthd" "$berth" "$berth_registry"; do
    [ -x "$b" ] || { echo "missing $b (build first)" >&2; exit 1; }
done
B=("$berth" -H "unix://$T/berth.sock")

registries=(berth-registry)
if [ "$with_distribution" = 1 ]; then
    if command -v docker-registry >/dev/null; then registries+=(distribution); else
        log "docker-registry not installed (apt-get install docker-registry): distribution skipped"
    fi
fi
if [ "$with_skopeo" = 1 ] && ! command -v skopeo >/dev/null; then
    log "skopeo not installed: skopeo skipped"
    with_skopeo=0
fi

# 2. The image: uncompressed layers, the bytes berth stores on load and pushes as they are.
log "generating the image (2 layers x ${layer_mb} MiB)"
image_id=$(python3 "$here/gen_image.py" "$T/image.tar" --layer-mb "$layer_mb" --tag "$tag")
# Bytes transferred: the layers and the config as stored in the archive.
image_bytes=$(python3 - "$T/image.tar" <<'EOF'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
m = json.load(t.extractfile("manifest.json"))[0]
print(sum(t.getmember(n).size for n in m["Layers"] + [m["Config"]]))
EOF
)

# 3. berthd.
log "starting berthd in $T"
echo '{}' >"$T/berth-daemon.json"
"$berthd" --root "$T/berth/root" --exec-root "$T/berth/run" -H "unix://$T/berth.sock" --bridge none \
    --config-file "$T/berth-daemon.json" >"$T/berthd.log" 2>&1 &
berthd_pid=$!
if ! wait_ping "$T/berth.sock" 30 "$berthd_pid"; then
    tail -20 "$T/berthd.log" >&2
    echo "berthd did not answer /_ping" >&2
    exit 1
fi
"${B[@]}" load -i "$T/image.tar" >/dev/null

# A registry with an empty storage root, so that every push uploads every blob.
port=
start_registry() { # kind
    stop_pid "$registry_pid" 10
    registry_pid=
    rm -rf "$T/reg"
    mkdir -p "$T/reg/root"
    port=$(free_port)
    case $1 in
        berth-registry)
            "$berth_registry" serve --addr "127.0.0.1:$port" --root "$T/reg/root" >"$T/reg/log" 2>&1 &
            ;;
        distribution)
            cat >"$T/reg/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/reg/root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
            docker-registry serve "$T/reg/config.yml" >"$T/reg/log" 2>&1 &
            ;;
    esac
    registry_pid=$!
    if ! wait_v2 "$port" 20 "$registry_pid"; then
        tail -20 "$T/reg/log" >&2
        echo "$1 did not answer /v2/" >&2
        exit 1
    fi
}

now() { date +%s.%N; }
results=$T/times.tsv # tool, op, registry, seconds
: >"$results"
timed() { # tool op registry -- command...
    local tool=$1 op=$2 reg=$3 t0 t1
    shift 4
    sync
    t0=$(now)
    if ! run_child "$@" >"$T/cmd.log" 2>&1; then
        tail -20 "$T/cmd.log" >&2
        echo "$tool $op against $reg failed: $*" >&2
        exit 1
    fi
    t1=$(now)
    printf '%s\t%s\t%s\t%s\n' "$tool" "$op" "$reg" "$(echo "$t1 - $t0" | bc)" >>"$results"
    log "$tool $op $reg: $(echo "$t1 - $t0" | bc) s"
}

# Runs a `berth pull`, appends its total time and the time to its last "Download complete".
timed_pull_py='
import subprocess, sys, time
results, reg, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
downloaded, out = None, []
for line in p.stdout:
    out.append(line)
    if "Download complete" in line:
        downloaded = time.monotonic() - t0
total = time.monotonic() - t0
if p.wait() != 0 or downloaded is None:
    sys.exit("berth pull failed or showed no Download complete:\n" + "".join(out[-20:]))
with open(results, "a") as f:
    f.write(f"berth\tpull\t{reg}\t{total}\n")
    f.write(f"berth\tpull-download\t{reg}\t{downloaded}\n")
now = time.strftime("%H:%M:%S")
print(f"[bench {now}] berth pull {reg}: {total:.3f} s (download phase {downloaded:.3f} s)", file=sys.stderr)
'

berth_round() { # registry kind
    start_registry "$1"
    local ref="localhost:$port/bench:1"
    "${B[@]}" tag "$tag" "$ref"
    timed berth push "$1" -- "${B[@]}" push "$ref"
    [ "$r" != 0 ] || ! command -v skopeo >/dev/null || notes+=("berth push's layers in $1: $(registry_layers)")
    "${B[@]}" rmi -f "$image_id" >/dev/null
    "${B[@]}" image inspect "$image_id" >/dev/null 2>&1 && { echo "rmi left $image_id" >&2; exit 1; }
    # Timed like the others, and also up to the last "Download complete" (blobs fetched, hashed
    # and stored; the rest is unpacking the layers), which is what skopeo's dir: pull does.
    sync
    if ! run_child python3 -c "$timed_pull_py" "$results" "$1" "${B[@]}" pull "$ref"; then
        echo "berth pull against $1 failed" >&2
        exit 1
    fi
    local got
    got=$("${B[@]}" image inspect --format '{{.Id}}' "$ref")
    [ "$got" = "$image_id" ] || { echo "pulled $got, expected $image_id" >&2; exit 1; }
    # Back to the state of a load (one tag, same blobs): the pull stored the same layers.
    "${B[@]}" tag "$ref" "$tag"
    "${B[@]}" rmi "$ref" >/dev/null
}

skopeo_round() { # registry kind
    start_registry "$1"
    local ref="docker://localhost:$port/bench:1"
    # docker-archive layers are uncompressed; skopeo gzips them on the way to a docker://
    # destination (--dest-compress=false does not stop it) unless told to keep the digests:
    # berth pushes the uncompressed blobs as stored, so both send the same bytes.
    timed skopeo push "$1" -- skopeo copy -q --dest-tls-verify=false --preserve-digests \
        "docker-archive:$T/image.tar" "$ref"
    rm -rf "$T/pulled"
    timed skopeo pull "$1" -- skopeo copy -q --src-tls-verify=false "$ref" "dir:$T/pulled"
    rm -rf "$T/pulled"
}

# What a push put in the registry, to check that both send the same bytes: each layer's media
# type (skopeo labels docker-archive's uncompressed layers tar.gzip) and size.
registry_layers() {
    skopeo inspect --raw --tls-verify=false "docker://localhost:$port/bench:1" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(", ".join(l["mediaType"].rsplit("/", 1)[-1] + " " + str(l["size"]) for l in m["layers"]))'
}

notes=("machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)")
notes+=("berth: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown), release build; skopeo $(skopeo --version 2>/dev/null | awk '{ print $3 }'); docker-registry $(docker-registry --version 2>/dev/null | awk '{ print $3 }')")
notes+=("image: $image_id, $image_bytes bytes (2 uncompressed layers + config)")

log "measuring: $rounds rounds, registries: ${registries[*]}"
for ((r = 0; r < rounds; r++)); do
    for reg in "${registries[@]}"; do
        if [ "$with_skopeo" = 1 ] && [ $((r % 2)) = 1 ]; then skopeo_round "$reg"; fi
        berth_round "$reg"
        if [ "$with_skopeo" = 1 ] && [ $((r % 2)) = 0 ]; then
            skopeo_round "$reg"
            [ "$r" != 0 ] || notes+=("skopeo push's layers in $reg: $(registry_layers)")
        fi
    done
done
stop_pid "$registry_pid" 10
registry_pid=
notes+=("load average at end: $(cut -d' ' -f1-3 /proc/loadavg)")

python3 - "$results" "$image_bytes" "${notes[@]}" >"$T/table.txt" <<'EOF'
import statistics, sys
path, size, notes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
times = {}
for line in open(path):
    tool, op, reg, s = line.split("\t")
    times.setdefault((tool, op, reg), []).append(float(s))
mb = size / 1e6
print(f"Registry push/pull over loopback, {mb:.1f} MB image, MB/s = image bytes / wall time (median)")
print()
print(f"{'registry':<16}{'op':<15}{'berth MB/s':>12}{'skopeo MB/s':>13}{'berth/skopeo':>14}   berth s / skopeo s (each round)")
for reg in sorted({k[2] for k in times}):
    for op in ("push", "pull", "pull-download"):
        b = times.get(("berth", op, reg))
        s = times.get(("skopeo", "pull" if op == "pull-download" else op, reg))
        bm = mb / statistics.median(b) if b else None
        sm = mb / statistics.median(s) if s else None
        ratio = f"{bm / sm:.2f}" if bm and sm else "-"
        each = " ".join(f"{x:.2f}" for x in b or []) + " / " + " ".join(f"{x:.2f}" for x in s or [])
        print(f"{reg:<16}{op:<15}{bm or 0:>12.0f}{sm or 0:>13.0f}{ratio:>14}   {each}")
print()
print("pull-download: berth pull up to its last 'Download complete' (blobs fetched, verified, stored,")
print("fsynced; not yet unpacked), beside skopeo's whole pull to dir: (writes the blobs, unpacks nothing).")
print()
for n in notes:
    print("- " + n)
EOF
cat "$T/table.txt"
if [ -n "$out" ]; then
    cp "$T/table.txt" "$out"
    log "results copied to $out"
fi
