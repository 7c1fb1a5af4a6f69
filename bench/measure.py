#!/usr/bin/env python3
"""Times `load -i` and `save -o` of one image archive against one or more daemons, interleaved.

Called by bench/run.sh, which builds Berth, starts the daemons and generates the image. Each
--target is `LABEL|DAEMON|CLIENT|SOCKET`: CLIENT is `berth:<path>` (passed `-H unix://SOCKET`) or
`docker:<path>` (given DOCKER_HOST=unix://SOCKET). DAEMON names the daemon, for the ratios.

Every run does, for each target in turn (the order rotates from run to run): remove the image if
present, `sync`, time `load -i IMAGE`, `sync`, time `save -o OUT TAG`, delete OUT. Only the load
and save commands themselves are timed (wall clock, from starting the client process to its exit).
Throughput is archive bytes / median seconds, in MB/s (10^6 bytes).
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time


class Target:
    def __init__(self, spec, workdir):
        self.label, self.daemon, client, self.socket = spec.split("|")
        self.kind, self.exe = client.split(":", 1)
        self.env = dict(os.environ)
        self.env.pop("DOCKER_CONTEXT", None)
        if self.kind == "docker":
            self.env["DOCKER_HOST"] = "unix://" + self.socket
            self.env["DOCKER_CONFIG"] = os.path.join(workdir, "docker-config")
        self.times = {"load": [], "save": []}
        self.save_sizes = []
        self.out = os.path.join(workdir, f"out-{self.label.replace(' ', '_').replace('>', '')}.tar")

    def cmd(self, *args):
        if self.kind == "berth":
            return [self.exe, "-H", "unix://" + self.socket, *args]
        return [self.exe, *args]

    def run(self, *args, check=True):
        p = subprocess.run(self.cmd(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and p.returncode != 0:
            sys.exit(f"{self.label}: `{' '.join(args)}` failed (exit {p.returncode}):\n{p.stdout}{p.stderr}")
        return p

    def timed(self, *args):
        subprocess.run(["sync"], check=True)
        t0 = time.perf_counter()
        self.run(*args)
        return time.perf_counter() - t0

    def image_id(self, tag):
        p = self.run("image", "inspect", "--format", "{{.Id}}", tag, check=False)
        return p.stdout.strip() if p.returncode == 0 else None


def fmt_mb(nbytes, seconds):
    return nbytes / 1e6 / seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--expect-id", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--target", action="append", required=True)
    a = ap.parse_args()

    targets = [Target(s, a.workdir) for s in a.target]
    image_size = os.path.getsize(a.image)
    started = time.time()
    load_before = os.getloadavg()[0]
    for run in range(a.runs):
        order = targets[run % len(targets):] + targets[: run % len(targets)]
        for t in order:
            if t.image_id(a.tag) is not None:
                t.run("rmi", a.tag)
            t.times["load"].append(t.timed("load", "-i", a.image))
            got = t.image_id(a.tag)
            if got != a.expect_id:
                sys.exit(f"{t.label}: after load, {a.tag} is {got}, expected {a.expect_id}")
            t.times["save"].append(t.timed("save", "-o", t.out, a.tag))
            size = os.path.getsize(t.out)
            if size < image_size * 0.95:
                sys.exit(f"{t.label}: save wrote only {size} bytes (the image archive has {image_size})")
            t.save_sizes.append(size)
            os.remove(t.out)
        line = "  ".join(f"{t.label}: load {t.times['load'][-1]:.2f}s save {t.times['save'][-1]:.2f}s" for t in targets)
        print(f"run {run + 1}/{a.runs}  {line}", file=sys.stderr, flush=True)
    for t in targets:
        t.run("rmi", a.tag, check=False)

    lines = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"Berth load/save benchmark, {now}")
    lines.append(f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    lines.extend(a.note)
    lines.append(f"image: {image_size / 1e6:.1f} MB docker-archive, 2 layers; {a.runs} runs each, interleaved;"
                 f" {time.time() - started:.0f} s of measuring")
    lines.append(f"1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
                 " (anything else busy on the machine skews the numbers)")
    lines.append("")
    w = max(len(t.label) for t in targets)
    lines.append(f"{'client -> daemon':<{w}}  op     median s   min s   max s    MB/s (median)")
    medians = {}
    for t in targets:
        for op in ("load", "save"):
            xs = t.times[op]
            med = statistics.median(xs)
            size = image_size if op == "load" else statistics.median(t.save_sizes)
            medians[(t.label, op)] = (med, fmt_mb(size, med))
            lines.append(f"{t.label:<{w}}  {op:<5} {med:9.3f} {min(xs):7.3f} {max(xs):7.3f} {fmt_mb(size, med):9.1f}")
    lines.append("")
    lines.append("all times (s):")
    for t in targets:
        for op in ("load", "save"):
            lines.append(f"  {t.label:<{w}}  {op}: " + " ".join(f"{x:.3f}" for x in t.times[op]))

    dockerd = [t for t in targets if t.daemon == "dockerd"]
    if dockerd:
        ref = dockerd[0]
        lines.append("")
        lines.append(f"ratios, throughput vs `{ref.label}` (>1: faster than dockerd):")
        for t in targets:
            if t is ref:
                continue
            r = [f"{op} {medians[(t.label, op)][1] / medians[(ref.label, op)][1]:.2f}x" for op in ("load", "save")]
            lines.append(f"  {t.label:<{w}}  " + "  ".join(r))
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(a.results), exist_ok=True)
    with open(a.results, "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
