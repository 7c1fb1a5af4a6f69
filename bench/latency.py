#!/usr/bin/env python3
"""Container start latency and memory benchmark: the measuring half of run_latency.sh.

Runs (normally inside a private mount namespace, see hugetlb.sh):
  1. idle memory of berthd (and dockerd + containerd): VmRSS and smaps_rollup Pss;
  2. `run --rm busybox true` latency, N interleaved rounds over all engines (hugetlb moved to v1
     for crun and podman only during this phase and the podman fleet);
  3. fleets: N containers `run -d busybox sleep 300` started all at once per engine: wall time,
     then Pss of each per-container process (berth-shim, containerd-shim-runc-v2, conmon);
  4. the report (text table), also written to --results.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


IDLE_QUIET_S = 3


def mem(pid):
    """VmRSS (kB) and smaps_rollup fields (kB) of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["VmRSS"] = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    out["Private"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def procs_matching(exe_suffix, needle):
    """Pids whose argv[0] ends with exe_suffix and whose command line contains needle."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace").endswith(exe_suffix) and needle.encode() in b" ".join(argv):
            pids.append(int(p))
    return pids


class Engine:
    def __init__(self, key, label, run_prefix, env=None, extra_run=(), fleet=None, cleanup=None, list_cmd=None):
        self.key = key
        self.label = label
        self.run_prefix = run_prefix  # argv up to and including "run"
        self.env = env
        self.extra_run = list(extra_run)
        self.fleet = fleet  # (exe suffix, needle) of the per-container process, or None
        self.cleanup = cleanup  # argv that removes all containers
        self.list_cmd = list_cmd  # argv that lists running container ids
        self.daemon_pid = None  # daemon whose CPU (own + reaped children) counts for each run
        self.cpu_complete = False  # whether that accounts for all the processes involved

    def rm_true(self, n):
        return self.run_prefix + ["--rm", "--network", "none"] + self.extra_run + ["busybox", "true"]

    def detached(self, n):
        return self.run_prefix + ["-d", "--network", "none"] + self.extra_run + ["busybox", "sleep", "300"]


class Crun(Engine):
    def __init__(self, crun, state, bundle, cgroup_parent):
        super().__init__("crun", "crun run (same OCI bundle)", [crun, "--root", state, "run", "--bundle", bundle])
        self.cgroup_parent = cgroup_parent
        self.cpu_complete = True  # crun waits for the container's process

    def rm_true(self, n):
        return self.run_prefix + [f"bench-{os.getpid()}-{n}"]


def run(argv, env=None, check=True, capture=True, timeout=120):
    e = None
    if env:
        e = dict(os.environ)
        e.update(env)
    r = subprocess.run(argv, env=e, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[-500:]}")
    return r


TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """CPU seconds of a process and of its waited-for children (utime, stime, cutime, cstime)."""
    if not pid:
        return 0.0
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / TCK


def timed(argv, env=None, daemon_pid=None):
    """Wall seconds of one command, and CPU seconds: the client's and its waited-for children's,
    plus (daemon_pid) the daemon's own and its reaped children's (berthd reaps its shims, which
    reap the container's processes) over the same interval."""
    e = None
    if env:
        e = dict(os.environ)
        e.update(env)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    d0 = proc_cpu(daemon_pid)
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=e, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[-500:]}")
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime) + proc_cpu(daemon_pid) - d0
    return dt, cpu


def hugetlb(here, what):
    r = subprocess.run([os.path.join(here, "hugetlb.sh"), what], stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"hugetlb.sh {what}: {r.stderr.decode(errors='replace').strip()}")
    sys.stderr.write(r.stderr.decode(errors="replace"))


def latency(engines, rounds, warmup, settle):
    times = {e.key: [] for e in engines}
    cpu = {e.key: [] for e in engines}
    failed = {}
    n = 0
    for e in engines:
        for _ in range(warmup):
            n += 1
            try:
                timed(e.rm_true(n), e.env, e.daemon_pid)
            except Exception as ex:  # noqa: BLE001 - reported, the engine is dropped
                failed[e.key] = str(ex)
                log(f"{e.label}: warm-up failed: {ex}")
                break
    live = [e for e in engines if e.key not in failed]
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)]
        for e in order:
            if e.key in failed:
                continue
            n += 1
            time.sleep(settle)  # what the previous engine left running in the background
            try:
                dt, c = timed(e.rm_true(n), e.env, e.daemon_pid)
                times[e.key].append(dt)
                cpu[e.key].append(c)
            except Exception as ex:  # noqa: BLE001
                failed[e.key] = str(ex)
                log(f"{e.label}: run failed: {ex}")
    return times, cpu, failed


def fleet(e, count, pid_for_daemon=None):
    """Starts `count` detached containers at once; returns wall time and per-process memory."""
    res = {"label": e.label, "count": count}
    procs = []
    t0 = time.perf_counter()
    for i in range(count):
        env = None
        if e.env:
            env = dict(os.environ)
            env.update(e.env)
        procs.append(subprocess.Popen(e.detached(i), env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    errors = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            errors.append(err.decode(errors="replace").strip()[-300:])
    res["wall"] = time.perf_counter() - t0
    res["failed"] = len(errors)
    if errors:
        res["error"] = errors[0]
        log(f"{e.label}: {len(errors)} of {count} starts failed, e.g. {errors[0]}")
    if e.list_cmd:
        out = run(e.list_cmd, e.env, check=False).stdout.decode().split()
        res["running"] = len(out)
    time.sleep(1.0)  # let the shims settle after start-up
    if e.fleet:
        exe, needle = e.fleet
        pids = procs_matching(exe, needle)
        per = []
        for pid in pids:
            try:
                per.append(mem(pid))
            except OSError:
                pass
        res["procs"] = len(per)
        if per:
            for k in ("Pss", "Rss", "Private"):
                vals = [m.get(k, 0) for m in per]
                res[k] = {"mean": statistics.mean(vals), "max": max(vals), "min": min(vals)}
    if pid_for_daemon:
        res["daemon"] = {name: mem(pid) for name, pid in pid_for_daemon.items() if pid}
    t1 = time.perf_counter()
    if e.cleanup:
        run(e.cleanup, e.env, check=False, timeout=300)
    res["cleanup_s"] = time.perf_counter() - t1
    return res


def fmt_kb(kb):
    return f"{kb / 1024:.2f} MiB" if kb >= 1024 else f"{kb:.0f} kB"


def report(R):
    L = []
    p = L.append
    p(f"Berth run-latency / memory benchmark, {R['date']}")
    for n in R["notes"]:
        p(n)
    p(f"1-minute load average: {R['load_before']:.2f} before, {R['load_after']:.2f} after; {R['elapsed']:.0f} s of measuring")
    p("")
    lat = R["latency"]
    p(f"1. `run --rm --network none busybox true`, {R['rounds']} interleaved rounds ({R['warmup']} warm-up runs each, "
      f"not counted; {R['settle']:.2f} s pause before each run)")
    p("")
    p(f"{'engine':34} {'median ms':>9} {'min ms':>8} {'max ms':>8} {'p90 ms':>8}  {'CPU ms/run':>10}")
    med = {}
    for key, label in R["engines"]:
        ts = lat["times"].get(key) or []
        if key in lat["failed"] or not ts:
            p(f"{label:34} {'failed: ' + lat['failed'].get(key, 'no runs')[:120]}")
            continue
        s = sorted(ts)
        med[key] = statistics.median(s)
        p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
        cs = lat.get("cpu", {}).get(key) or []
        if cs and lat.get("cpu_complete", {}).get(key):
            cpu_s = f"{statistics.mean(cs) * 1000:10.1f}"
        elif cs:
            cpu_s = f"{'(CLI ' + format(statistics.mean(cs) * 1000, '.1f') + ')':>10}"
        else:
            cpu_s = ""
        p(f"{label:34} {med[key] * 1000:9.1f} {s[0] * 1000:8.1f} {s[-1] * 1000:8.1f} {p90 * 1000:8.1f}  {cpu_s}")
    for key, why in R.get("skipped", {}).items():
        p(f"{key:34} not measured: {why}")
    p("   CPU ms/run: mean user+system CPU of the client, its waited-for children and (berthd) the daemon with")
    p("   its reaped shims and containers; for dockerd and podman only the client's is known (their shims and")
    p("   conmons are reparented away), shown in parentheses.")
    p("")
    p("   ratios of medians:")
    b = med.get("berth")
    for key, label in R["engines"]:
        if key == "berth" or key not in med or not b:
            continue
        p(f"   berth CLI / {label:34} {b / med[key]:6.3f}  ({med[key] / b:.1f}x berth's time)")
    if b and "dockerd" in med:
        p(f"   goal berth <= 1/8 of dockerd's: {'met' if b <= med['dockerd'] / 8 else 'MISSED'} "
          f"({b * 1000:.1f} ms vs {med['dockerd'] * 1000 / 8:.1f} ms)")
    if b and "crun" in med:
        p(f"   goal berth <= 1.5x crun's:      {'met' if b <= med['crun'] * 1.5 else 'MISSED'} "
          f"({b * 1000:.1f} ms vs {med['crun'] * 1500:.1f} ms)")
    p("")
    p("   all times (ms, in run order):")
    for key, label in R["engines"]:
        ts = lat["times"].get(key) or []
        if ts:
            p(f"   {label:34} " + " ".join(f"{t * 1000:.0f}" for t in ts))
    p("")
    p(f"2. idle daemon memory (image loaded, no containers, {IDLE_QUIET_S} s without requests)")
    p("")
    p(f"{'process':34} {'VmRSS':>10} {'Pss':>10} {'Private':>10}")
    for name, m in R["idle"].items():
        p(f"{name:34} {fmt_kb(m['VmRSS']):>10} {fmt_kb(m['Pss']):>10} {fmt_kb(m['Private']):>10}")
    if "berthd" in R["idle"]:
        m = R["idle"]["berthd"]
        p(f"   goal berthd idle RSS <= 15 MB: {'met' if m['VmRSS'] <= 15 * 1000 * 1000 / 1024 else 'MISSED'} "
          f"(VmRSS {m['VmRSS'] * 1024 / 1e6:.1f} MB, Pss {m['Pss'] * 1024 / 1e6:.1f} MB)")
    if "berthd_after_latency" in R:
        m = R["berthd_after_latency"]
        p(f"   berthd after the latency runs: VmRSS {fmt_kb(m['VmRSS'])}, Pss {fmt_kb(m['Pss'])}")
    p("")
    n = R["fleet_n"]
    p(f"3./4. {n} containers `run -d --network none busybox sleep 300`, all started at once")
    p("")
    p(f"{'engine':34} {'wall s':>7} {'ok':>4} {'procs':>5} {'Pss mean':>10} {'Pss max':>10} {'Rss mean':>10} {'Priv mean':>10}  process")
    for f in R["fleets"]:
        ok = f["count"] - f["failed"]
        if "Pss" in f:
            p(f"{f['label']:34} {f['wall']:7.2f} {ok:4d} {f['procs']:5d} {fmt_kb(f['Pss']['mean']):>10} "
              f"{fmt_kb(f['Pss']['max']):>10} {fmt_kb(f['Rss']['mean']):>10} {fmt_kb(f['Private']['mean']):>10}  {f['proc_name']}")
        else:
            p(f"{f['label']:34} {f['wall']:7.2f} {ok:4d}")
    for f in R["fleets"]:
        if f.get("daemon"):
            for name, m in f["daemon"].items():
                p(f"   {name} with {n} containers: VmRSS {fmt_kb(m['VmRSS'])}, Pss {fmt_kb(m['Pss'])}")
    for f in R["fleets"]:
        if f.get("key") == "berth" and "Pss" in f:
            p(f"   goal shim Pss <= 1 MB with {n} containers: "
              f"{'met' if f['Pss']['max'] <= 1000 * 1000 / 1024 else 'MISSED'} "
              f"(mean {f['Pss']['mean'] * 1024 / 1e6:.2f} MB, max {f['Pss']['max'] * 1024 / 1e6:.2f} MB)")
    for f in R["fleets"]:
        if f.get("error"):
            p(f"   {f['label']}: {f['failed']} failed, e.g.: {f['error']}")
    p(f"   (removing the {n}: " + ", ".join(f"{f['label']} {f['cleanup_s']:.1f} s" for f in R["fleets"]) + ")")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--here", required=True)
    ap.add_argument("--berth", required=True)
    ap.add_argument("--berth-sock", required=True)
    ap.add_argument("--berthd-pid", type=int, required=True)
    ap.add_argument("--root", required=True, help="the bench's temp dir (to recognise our processes)")
    ap.add_argument("--docker-cli")
    ap.add_argument("--docker-config")
    ap.add_argument("--dockerd-sock")
    ap.add_argument("--dockerd-pid", type=int)
    ap.add_argument("--containerd-pid", type=int)
    ap.add_argument("--podman", help="podman argv prefix, JSON list")
    ap.add_argument("--podman-run-args", default="[]", help="JSON list")
    ap.add_argument("--crun")
    ap.add_argument("--crun-state")
    ap.add_argument("--crun-bundle")
    ap.add_argument("--hugetlb", action="store_true", help="move hugetlb to v1 for crun/podman")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--settle", type=float, default=0.1, help="seconds of pause before each timed run")
    ap.add_argument("--fleet", type=int, default=50)
    ap.add_argument("--dockerd-fleet", type=int)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--skip", action="append", default=[], help="key=reason")
    ap.add_argument("--results", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    berth_env = {"DOCKER_HOST": f"unix://{a.berth_sock}"}
    berth = Engine("berth", "berth CLI -> berthd", [a.berth, "-H", f"unix://{a.berth_sock}", "run"],
                   fleet=("berth-shim", f"--state {a.root}/"),
                   cleanup=["sh", "-c", f'ids=$("$0" -H "$1" ps -aq); [ -z "$ids" ] || "$0" -H "$1" rm -f $ids >/dev/null',
                            a.berth, f"unix://{a.berth_sock}"],
                   list_cmd=[a.berth, "-H", f"unix://{a.berth_sock}", "ps", "-q"])
    berth.daemon_pid, berth.cpu_complete = a.berthd_pid, True
    engines = [berth]
    docker_berthd = dockerd = podman = crun = None
    if a.docker_cli:
        denv = {"DOCKER_HOST": f"unix://{a.berth_sock}", "DOCKER_CONFIG": a.docker_config}
        docker_berthd = Engine("docker-berthd", "docker CLI -> berthd", [a.docker_cli, "run"], env=denv,
                               fleet=berth.fleet, cleanup=berth.cleanup, list_cmd=berth.list_cmd)
        docker_berthd.daemon_pid, docker_berthd.cpu_complete = a.berthd_pid, True
        engines.append(docker_berthd)
    if a.docker_cli and a.dockerd_sock:
        denv = {"DOCKER_HOST": f"unix://{a.dockerd_sock}", "DOCKER_CONFIG": a.docker_config}
        dockerd = Engine("dockerd", "docker CLI -> dockerd", [a.docker_cli, "run"], env=denv,
                         fleet=("containerd-shim-runc-v2", f"{a.root}/"),
                         cleanup=["sh", "-c", 'ids=$("$0" ps -aq); [ -z "$ids" ] || "$0" rm -f $ids >/dev/null', a.docker_cli],
                         list_cmd=[a.docker_cli, "ps", "-q"])
        engines.append(dockerd)
    if a.podman:
        pp = json.loads(a.podman)
        podman = Engine("podman", "podman run", pp + ["run"], extra_run=json.loads(a.podman_run_args),
                        fleet=("conmon", f"{a.root}/"), cleanup=pp + ["rm", "-af", "-t", "0"],
                        list_cmd=pp + ["ps", "-q"])
        engines.append(podman)
    if a.crun:
        crun = Crun(a.crun, a.crun_state, a.crun_bundle, "berth-bench-crun")
        engines.append(crun)

    R = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "notes": a.note, "rounds": a.rounds,
         "warmup": a.warmup, "settle": a.settle, "fleet_n": a.fleet, "engines": [(e.key, e.label) for e in engines],
         "skipped": dict(s.split("=", 1) for s in a.skip)}
    R["load_before"] = os.getloadavg()[0]
    t_start = time.perf_counter()

    # 1. Idle memory: after a few quiet seconds (berthd gives its freed heap back a second or two
    # after the last request; dockerd's Go runtime returns memory on its own schedule).
    time.sleep(IDLE_QUIET_S)
    R["idle"] = {"berthd": mem(a.berthd_pid)}
    if a.dockerd_pid:
        R["idle"]["dockerd (reference)"] = mem(a.dockerd_pid)
    if a.containerd_pid:
        R["idle"]["containerd (dockerd's; reference)"] = mem(a.containerd_pid)
    log(f"berthd idle: VmRSS {R['idle']['berthd']['VmRSS']} kB, Pss {R['idle']['berthd']['Pss']} kB")

    # 2. Latency (and the podman fleet, which also needs hugetlb on v1).
    moved = False
    try:
        if a.hugetlb and (podman or crun):
            hugetlb(a.here, "on")
            moved = True
            log("hugetlb mounted as a v1 hierarchy in this mount namespace")
        log(f"latency: {a.rounds} rounds x {len(engines)} engines")
        times, cpu, failed = latency(engines, a.rounds, a.warmup, a.settle)
        R["latency"] = {"times": times, "cpu": cpu, "failed": failed,
                        "cpu_complete": {e.key: e.cpu_complete for e in engines}}
        R["berthd_after_latency"] = mem(a.berthd_pid)
        R["fleets"] = []
        if podman and "podman" not in failed:
            log(f"fleet: {a.fleet} x podman run -d")
            f = fleet(podman, a.fleet)
            f.update(key="podman", proc_name="conmon")
            R["fleets"].append(f)
    finally:
        if moved:
            hugetlb(a.here, "off")
            log("hugetlb unmounted")

    # 3./4. Fleets.
    log(f"fleet: {a.fleet} x berth run -d")
    f = fleet(berth, a.fleet, {"berthd": a.berthd_pid})
    f.update(key="berth", proc_name="berth-shim")
    R["fleets"].insert(0, f)
    if docker_berthd:
        log(f"fleet: {a.fleet} x docker run -d -> berthd")
        f = fleet(docker_berthd, a.fleet)
        f.update(key="docker-berthd", proc_name="berth-shim")
        R["fleets"].insert(1, f)
    if dockerd and "dockerd" not in R["latency"]["failed"]:
        n = a.dockerd_fleet or a.fleet
        log(f"fleet: {n} x docker run -d -> dockerd")
        f = fleet(dockerd, n, {"dockerd": a.dockerd_pid, "containerd": a.containerd_pid})
        f.update(key="dockerd", proc_name="containerd-shim-runc-v2")
        R["fleets"].insert(2, f)

    R["elapsed"] = time.perf_counter() - t_start
    R["load_after"] = os.getloadavg()[0]
    with open(a.json, "w") as fh:
        json.dump(R, fh, indent=1)
    text = report(R)
    with open(a.results, "w") as fh:
        fh.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
