#!/usr/bin/env python3
"""Helper of run_ports.sh: picks free subnets, parses wrk's output and prints the results table.

    ports.py free-subnets N            N free /24 subnets, as gateway CIDRs (172.31.250.1/24 ...)
    ports.py parse FILE [--prefix P]   one wrk output in a line, for the log
    ports.py report --dir D --rounds N --seconds S [--engine NAME ...] [--note TEXT ...]
                                       the table, from D/<engine>.<path>.<round>.txt
"""

import argparse
import ipaddress
import re
import statistics
import subprocess
import sys

PATHS = [
    ("proxy", "127.0.0.1:<hostport> (userland proxy)"),
    ("dnat", "bridge gateway:<hostport> (DNAT)"),
    ("direct", "container IP:80 (no proxy, no NAT)"),
]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def used_networks():
    nets = []
    for cmd in (["ip", "-4", "route", "show", "table", "all"], ["ip", "-4", "-o", "addr"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for word in out.split():
            if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", word):
                nets.append(ipaddress.ip_network(word, strict=False))
    return nets


def free_subnets(n):
    used = used_networks()
    found = []
    for second in (31, 30, 29):
        for third in range(250, 256):
            net = ipaddress.ip_network(f"172.{second}.{third}.0/24")
            if any(net.overlaps(u) for u in used if u.prefixlen > 0):
                continue
            found.append(f"172.{second}.{third}.1/24")
            if len(found) == n:
                return found
    sys.exit("no free /24 in 172.29-31.250-255")


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse(path):
    """wrk --latency output -> dict(rps, p99 (ms), requests, errors, non2xx)."""
    text = open(path).read()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    reqs = re.search(r"^\s+(\d+) requests in", text, re.M)
    if not (rps and p99 and reqs):
        raise ValueError(f"{path}: not a complete wrk --latency output:\n{text}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors = sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(rps.group(1)),
        "p99": ms(p99.group(1)),
        "requests": int(reqs.group(1)),
        "errors": errors,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def report(args):
    runs = {}
    for engine in args.engine:
        for path, _ in PATHS:
            rs = []
            for r in range(1, args.rounds + 1):
                try:
                    rs.append(parse(f"{args.dir}/{engine}.{path}.{r}.txt"))
                except FileNotFoundError:
                    pass
            runs[(engine, path)] = rs
    lines = list(args.title)
    lines += args.note
    lines.append("")
    engines = args.engine
    head = f"{'path':38}"
    for e in engines:
        head += f" {e + ' req/s':>14} {e + ' p99 ms':>13}"
    if "berth" in engines and "docker" in engines:
        head += f" {'req/s berth/docker':>19} {'p99 berth/docker':>17}"
    lines.append(head)
    med = {}
    for path, label in PATHS:
        row = f"{label:38}"
        for e in engines:
            rs = runs[(e, path)]
            if rs:
                med[(e, path)] = (statistics.median(r["rps"] for r in rs), statistics.median(r["p99"] for r in rs))
                row += f" {med[(e, path)][0]:14.0f} {med[(e, path)][1]:13.2f}"
            else:
                med[(e, path)] = (None, None)
                row += f" {'-':>14} {'-':>13}"
        if "berth" in engines and "docker" in engines:
            b, d = med[("berth", path)], med[("docker", path)]
            row += f" {fmt_ratio(b[0], d[0]):>19} {fmt_ratio(b[1], d[1]):>17}"
        lines.append(row)
    if "berth" in engines and "docker" in engines:
        lines.append("   medians of the rounds; req/s berth/docker > 1: berth serves more; p99 berth/docker < 1: berth's")
        lines.append("   99th percentile latency is lower")
    else:
        lines.append("   medians of the rounds")
    for e in engines:
        rp, rd = med[(e, "proxy")][0], med[(e, "direct")][0]
        rn = med[(e, "dnat")][0]
        if rd:
            parts = []
            if rp:
                parts.append(f"proxy {rp / rd:.2f}")
            if rn:
                parts.append(f"DNAT {rn / rd:.2f}")
            lines.append(f"   {e}: req/s as a share of the direct path: {', '.join(parts)}")
    for e in engines:
        cpu = []
        for path, _ in PATHS:
            ticks = reqs = 0
            for r in range(1, args.rounds + 1):
                try:
                    t, hz = open(f"{args.dir}/{e}.{path}.{r}.cpu").read().split()
                    ticks += int(t) / int(hz)
                    reqs += parse(f"{args.dir}/{e}.{path}.{r}.txt")["requests"]
                except FileNotFoundError:
                    pass
            if reqs:
                cpu.append(f"{path} {ticks * 1e6 / reqs:.0f}")
        who = "berthd" if e == "berth" else "docker-proxy processes"
        if cpu:
            lines.append(f"   {e}: CPU of {who}, us per request: {', '.join(cpu)}")
    lines.append("")
    lines.append(f"all rounds (req/s; p99 ms), round 1 first; {args.seconds} s each:")
    for e in engines:
        for path, _ in PATHS:
            rs = runs[(e, path)]
            if not rs:
                continue
            vals = "  ".join(f"{r['rps']:.0f} ({r['p99']:.2f})" for r in rs)
            errs = sum(r["errors"] for r in rs)
            bad = sum(r["non2xx"] for r in rs)
            total = sum(r["requests"] for r in rs)
            extra = f"; {errs} socket errors, {bad} non-2xx of {total} requests" if errs or bad else ""
            lines.append(f"   {e:7} {path:7} {vals}{extra}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "free-subnets":
        print("\n".join(free_subnets(int(sys.argv[2]))))
        return
    if len(sys.argv) in (3, 5) and sys.argv[1] == "parse":
        r = parse(sys.argv[2])
        prefix = sys.argv[4] if len(sys.argv) == 5 and sys.argv[3] == "--prefix" else ""
        print(f"{prefix}{r['rps']:.0f} req/s, p99 {r['p99']:.2f} ms, {r['requests']} requests, "
              f"{r['errors']} socket errors, {r['non2xx']} non-2xx")
        return
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["report"])
    p.add_argument("--dir", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--engine", action="append", default=[])
    p.add_argument("--title", action="append", default=[])
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--out")
    report(p.parse_args())


if __name__ == "__main__":
    main()
