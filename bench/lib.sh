# Helpers shared by the bench scripts (sourced, not run). Scripts set `child_pid`, `T` (their temp
# dir, for our_pids) and `install` (1: apt_install may install) as they need.

log() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }

run_child() { # in the background, so that a signal is handled at once and the cleanup can stop it
    "$@" &
    child_pid=$!
    local rc=0
    wait "$child_pid" || rc=$?
    child_pid=
    return "$rc"
}

stop_pid() { # pid, seconds: TERM, then KILL
    local pid=$1 wait_s=$2 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop in ${wait_s}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

our_pids() { # exe-suffix: processes of that executable whose arguments name our temp dir $T
    local p
    for p in /proc/[0-9]*; do
        tr "\\0" " " 2>/dev/null <"$p/cmdline" | grep -q "^[^ ]*$1 .*$T/" && echo "${p#/proc/}"
    done
    return 0
}

wait_ping() { # socket, seconds, pid
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -sf --unix-socket "$1" http://localhost/_ping >/dev/null 2>&1 && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

apt_install() { # packages (only when $install is 1)
    [ "${install:-0}" = 1 ] || return 1
    log "installing $* with apt"
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
