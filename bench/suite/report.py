#!/usr/bin/env python3
"""bench/suite/report.py OUT_DIR - the suite's results from its raw data.

Reads OUT_DIR/raw.csv (round,scenario,transport,size,metric,value: one
measurement of one round) and OUT_DIR/failures.csv (round,scenario,
transport,size,why), and writes:

  results.csv  scenario,transport,size,metric,value: the median over the
               rounds of every metric, and for each xio row ratio_vs_tcp and
               ratio_vs_uds of the scenario's headline metric
  results.md   one Markdown table per scenario group
  *.png        one bar chart per group, busyidle's rate against N as lines,
               crowd's xio/TCP ratios beside the issue's targets, scale's
               memory and time against N (gnuplot, when it is installed)

Medians, not means: one round disturbed by the rest of a shared machine
should not move the figure. p99 columns are the median of the rounds' p99s.
"""
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

# A group is one table and one chart. Rows are (scenario, size) in the
# order measured, with one line per transport.
#   key: scenario name or prefix (ending in "-"), title, headline metric and
#   its label, whether higher is better, the p99 metric (or None), extra
#   columns, the unit of the CPU columns, the transports, transports that
#   cannot run (and why), and whether the chart wants a log scale.
GROUPS = [
    dict(key="pingpong", title="Ping-pong (bench/pingpong.c), server on CPU 0, client on CPU 1",
         main="p50_us", label="p50 RTT µs", higher=False, p99="p99_us",
         extra=[("rt_per_s", "round trips/s")], cpu="µs/round trip",
         transports=["tcp", "uds", "xio"], log=True),
    dict(key="pingpong-1core", title="Ping-pong (bench/pingpong.c), both ends on CPU 0",
         main="p50_us", label="p50 RTT µs", higher=False, p99="p99_us",
         extra=[("rt_per_s", "round trips/s")], cpu="µs/round trip",
         transports=["tcp", "uds", "xio"], log=True),
    dict(key="stream", title="One-way streaming (bench/stream.c)",
         main="msgs_per_s", label="messages/s", higher=True, p99=None,
         extra=[("gb_per_s", "GB/s")], cpu="µs/message",
         transports=["tcp", "uds", "xio"], log=True),
    dict(key="shortconn", title="Short connections (bench/shortconn.c): connect, 64 B request and reply, close",
         main="conns_per_s", label="connections/s", higher=True, p99="p99_us",
         extra=[("p50_us", "p50 µs")], cpu="µs/connection",
         transports=["tcp", "uds", "xio"], log=False),
    dict(key="redis-", title="redis-server + redis-benchmark (-t OP -c C -P P)",
         main="req_per_s", label="requests/s", higher=True, p99="p99_us",
         extra=[("p50_us", "p50 µs")], cpu="µs/request",
         transports=["tcp", "uds", "xio"], log=True),
    dict(key="nginx-", title="nginx (1 worker, return 200 \"hello\") + wrk -t1 -cC",
         main="req_per_s", label="requests/s", higher=True, p99="p99_us",
         extra=[("p50_us", "p50 µs")], cpu="µs/request",
         transports=["tcp", "uds", "xio"], log=False,
         na={"uds": "wrk cannot connect to a UNIX socket"}),
    dict(key="memcached-", title="memcached (-t 2) + bench/mcload.c (90 % get, 10 % set, 64 B values)",
         main="ops_per_s", label="operations/s", higher=True, p99="p99_us",
         extra=[("p50_us", "p50 µs")], cpu="µs/operation",
         transports=["tcp", "uds", "xio"], log=False),
    dict(key="echo", title="xio-bench-echo --quick (native API; xio-zc = zero-copy)",
         main="p50_us", label="p50 RTT µs", higher=False, p99="p99_us", extra=[], cpu=None,
         transports=["xio-zc", "xio", "io_uring-tcp", "io_uring-uds", "tcp", "uds"], log=True),
]

SIZE_NAMES = {"64": "64 B", "1024": "1 KiB", "16384": "16 KiB", "65536": "64 KiB"}


def load(path, ncols):
    rows = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("round,"):
                    continue
                rows.append(line.split(",", ncols - 1))
    return rows


def fmt(v):
    """A figure with about four significant digits, thousands grouped."""
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


class Data:
    def __init__(self, out):
        self.samples = defaultdict(list)  # (scen, transport, size, metric) -> [values]
        self.order = []                   # (scen, size) in the order first measured
        self.rounds = set()
        for rnd, scen, tr, size, metric, value in load(os.path.join(out, "raw.csv"), 6):
            try:
                self.samples[(scen, tr, size, metric)].append(float(value))
            except ValueError:
                continue
            self.rounds.add(rnd)
            if (scen, size) not in self.order:
                self.order.append((scen, size))
        self.failures = defaultdict(list)  # (scen, transport, size) -> [why]
        for rnd, scen, tr, size, why in load(os.path.join(out, "failures.csv"), 5):
            self.failures[(scen, tr, size)].append(f"round {rnd}: {why}")
            # A failure of a whole scenario (transport "all": a program is
            # missing, echo as a whole) has no row of its own; it is listed
            # under Failures.
            if (scen, size) not in self.order and tr != "all" and size != "0":
                self.order.append((scen, size))

    def med(self, scen, tr, size, metric):
        v = self.samples.get((scen, tr, size, metric))
        return statistics.median(v) if v else None

    def spread(self, scen, tr, size, metric):
        v = self.samples.get((scen, tr, size, metric))
        return (min(v), max(v)) if v and len(v) > 1 else None


def group_of(scen):
    for g in GROUPS:
        k = g["key"]
        if (k.endswith("-") and scen.startswith(k)) or scen == k:
            return g
    return None


def write_csv(d, out):
    path = os.path.join(out, "results.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["scenario", "transport", "size", "metric", "value"])
        # In the order measured: scenario by scenario, transports as run.
        for (scen, tr, size, metric) in d.samples:
            w.writerow([scen, tr, size, metric, f"{d.med(scen, tr, size, metric):.6g}"])
        for scen, size in d.order:
            g = group_of(scen)
            if not g:
                continue
            for tr in g["transports"]:
                if not tr.startswith("xio"):
                    continue
                x = d.med(scen, tr, size, g["main"])
                for base in ("tcp", "uds"):
                    r = ratio(x, d.med(scen, base, size, g["main"]))
                    if r is not None:
                        w.writerow([scen, tr, size, f"ratio_vs_{base}", f"{r:.4g}"])
        # busyidle: xio against TCP at the same N, and each transport's rate
        # at N against its own at N = 0.
        for scen, size in d.order:
            if not scen.startswith("busyidle-"):
                continue
            for tr in ("tcp", "xio"):
                v = d.med(scen, tr, size, "rate")
                r = ratio(v, d.med(scen, "tcp", size, "rate"))
                if tr == "xio" and r is not None:
                    w.writerow([scen, tr, size, "ratio_vs_tcp", f"{r:.4g}"])
                r = ratio(v, d.med(scen, tr, "0", "rate"))
                if r is not None:
                    w.writerow([scen, tr, size, "ratio_vs_n0", f"{r:.4g}"])
        # crowd: xio's advantage over TCP at the same size, by the row's
        # own figures (crowd_rows).
        for scen, size in d.order:
            for sc, metric, _, _, _, _, name in CROWD_ROWS:
                if sc != scen:
                    continue
                r = crowd_ratio(d, scen, size, metric)
                if r is not None:
                    w.writerow([scen, "xio", size, name, f"{r:.4g}"])
        # scale: each transport's traffic speed and memory against TCP's
        # at the same N.
        for scen, size in d.order:
            if scen != "scale":
                continue
            for tr in ("uds", "xio"):
                for name, r in scale_ratios(d, tr, size).items():
                    if r is not None:
                        w.writerow([scen, tr, size, name, f"{r:.4g}"])
    return path


def row_label(g, scen, size):
    if g["key"].endswith("-"):
        label = scen[len(g["key"]):]
        return label.upper().replace("-C", " -c ").replace("-P", " -P ") if g["key"] == "redis-" \
            else label.replace("c", "-c ", 1)
    return SIZE_NAMES.get(size, f"{size} B")


def main_table(d, g, md, notes):
    rows = [(s, z) for s, z in d.order if group_of(s) is g]
    if not rows:
        return
    better = "higher is better" if g["higher"] else "lower is better"
    md.append(f"## {g['title']}\n")
    head = ["", "transport", f"{g['label']} (median)"]
    if g["p99"]:
        head.append("p99 µs")
    head += [lab for _, lab in g["extra"]]
    head += ["xio/tcp", "xio/uds"]
    if g["cpu"]:
        head += [f"CPU server {g['cpu']}", f"CPU client {g['cpu']}"]
    head.append("doorbells/msg")
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "---|" * len(head))
    for scen, size in rows:
        label = row_label(g, scen, size)
        for tr in g["transports"]:
            cells = [label, tr]
            label = ""
            main = d.med(scen, tr, size, g["main"])
            fails = d.failures.get((scen, tr, size)) or d.failures.get((scen, "all", "0"))
            na = g.get("na", {}).get(tr)
            if main is None:
                if na:
                    why = f"n/a: {na}"
                elif fails:
                    notes.append(f"{scen} {size} {tr}: " + "; ".join(fails))
                    why = f"**FAIL** (note {len(notes)})"
                else:
                    why = "not run"
                cells.append(why)
                cells += [""] * (len(head) - len(cells))
                md.append("| " + " | ".join(cells) + " |")
                continue
            cell = fmt(main)
            if fails:
                notes.append(f"{scen} {size} {tr}: " + "; ".join(fails))
                cell += f" (failed in some rounds, note {len(notes)})"
            cells.append(cell)
            if g["p99"]:
                cells.append(fmt(d.med(scen, tr, size, g["p99"])))
            cells += [fmt(d.med(scen, tr, size, m)) for m, _ in g["extra"]]
            for base in ("tcp", "uds"):
                r = ratio(main, d.med(scen, base, size, g["main"])) if tr.startswith("xio") else None
                cells.append(f"{r:.2f}x" if r is not None else "–")
            if g["cpu"]:
                cells += [fmt(d.med(scen, tr, size, "cpu_srv_us")), fmt(d.med(scen, tr, size, "cpu_cli_us"))]
            db = d.med(scen, tr, size, "doorbells_per_msg")
            cells.append(f"{db:.3f}" if db is not None else "–")
            md.append("| " + " | ".join(cells) + " |")
    md.append(f"\nRatios are of the headline metric ({g['label']}, {better}).\n")


def idle_table(d, md, notes):
    if not any(s == "idle" for s, _ in d.order):
        return
    md.append("## Idle connections (bench/idle.c): CPU while 100 connections are open and quiet\n")
    md.append("| transport | server % of a core | client % of a core | monitor % of a core | doorbells/msg |")
    md.append("|---|---|---|---|---|")
    for scen, size in d.order:
        if scen != "idle":
            continue
        for tr in ("tcp", "xio"):
            v = d.med(scen, tr, size, "cpu_srv_pct")
            if v is None:
                f = d.failures.get((scen, tr, size))
                if f:
                    notes.append(f"idle {tr}: " + "; ".join(f))
                md.append(f"| {tr} | {'**FAIL** (note %d)' % len(notes) if f else 'not run'} | | | |")
                continue
            mon = d.med(scen, tr, size, "cpu_mon_pct")
            db = d.med(scen, tr, size, "doorbells_per_msg")
            md.append(f"| {tr} | {v:.3f} | {d.med(scen, tr, size, 'cpu_cli_pct'):.3f} | "
                      f"{'–' if mon is None else f'{mon:.3f}'} | {'–' if db is None else f'{db:.3f}'} |")
    md.append("\nBoth ends wait in epoll_wait with a 100 ms timeout. The monitor's share covers "
              "the whole step, connection set-up included.\n")


BUSYIDLE = [("busyidle-redis", "redis-server + redis-benchmark -c 1 -n 20000 -t get", "GET/s"),
            ("busyidle-pingpong", "epoll echo server (bench/busyidle.c) + 64 B ping-pong (bench/pingpong.c)",
             "round trips/s"),
            ("busyidle-pollpong", "poll() echo server (bench/busyidle.c --poll) + 64 B ping-pong",
             "round trips/s")]


def busyidle_table(d, md, notes):
    """One busy connection beside N idle accelerated ones: the rate, its
    ratio to TCP at the same N and to the same transport at N = 0."""
    if not any(s.startswith("busyidle-") for s, _ in d.order):
        return
    md.append("## One busy connection beside N idle ones on the same server (bench/suite/busyidle.sh)\n")
    for scen, title, unit in BUSYIDLE:
        ns = [z for s, z in d.order if s == scen]
        if not ns:
            continue
        md.append(f"### {title}\n")
        md.append(f"| idle N | transport | {unit} (median) | p50 µs | p99 µs | xio/tcp | rate vs N=0 | "
                  "CPU server µs/request | server RSS MiB | accel_conns srv/cli |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for n in ns:
            label = f"{int(n):,}"
            for tr in ("tcp", "xio"):
                v = d.med(scen, tr, n, "rate")
                if v is None:
                    f = d.failures.get((scen, tr, n))
                    if f:
                        notes.append(f"{scen} {n} {tr}: " + "; ".join(f))
                    md.append(f"| {label} | {tr} | {'**FAIL** (note %d)' % len(notes) if f else 'not run'} "
                              "| | | | | | | |")
                    label = ""
                    continue
                r = ratio(v, d.med(scen, "tcp", n, "rate")) if tr == "xio" else None
                r0 = ratio(v, d.med(scen, tr, ns[0], "rate")) if ns[0] == "0" else None
                rss = d.med(scen, tr, n, "rss_kib")
                acc = (d.med(scen, tr, n, "accel_conns_srv"), d.med(scen, tr, n, "accel_conns_cli"))
                md.append(f"| {label} | {tr} | {fmt(v)} | {fmt(d.med(scen, tr, n, 'p50_us'))} | "
                          f"{fmt(d.med(scen, tr, n, 'p99_us'))} | {'–' if r is None else f'{r:.2f}x'} | "
                          f"{'–' if r0 is None else f'{r0 * 100:.1f} %' if r0 < 0.1 else f'{r0 * 100:.0f} %'} | "
                          f"{fmt(d.med(scen, tr, n, 'cpu_srv_us'))} | "
                          f"{'–' if rss is None else f'{rss / 1024:.1f}'} | "
                          f"{'–' if None in acc else f'{acc[0]:.0f}/{acc[1]:.0f}'} |")
                label = ""
        md.append("")
    lim = [d.med("busyidle-limits", "all", "0", m) for m in ("nofile_soft", "nofile_hard", "monitor_proc_conns")]
    if lim[1] is not None:
        md.append(f"RLIMIT_NOFILE of the run: soft {lim[0]:.0f}, hard {lim[1]:.0f} (-1: unlimited); the "
                  "server and the holder ran with a soft limit of N + 1,024 (at most the hard limit); the "
                  "monitor accelerates at most "
                  f"{'?' if lim[2] is None else f'{lim[2]:.0f}'} connections per process.\n")
    md.append("The idle connections are held by another process; each sent one request and got its "
              "answer first. Server RSS is its VmRSS when the busy client is done; CPU per request is "
              "the server's over the busy client's run. Under xio accel_conns must be at least N + 1 "
              "on each end.\n")


# crowd (bench/suite/crowd.sh): (scenario, headline metric, what the row
# is (N: its size), unit, the target for xio's advantage, whether
# the figure is a time (the advantage is then TCP's time over xio's), and
# the results.csv name of that advantage).
CROWD_ROWS = [
    ("crowd-redis50", "set_per_s", "redis -c 50 SET, {n} idle", "SET/s", 10, False, "set_ratio_vs_tcp"),
    ("crowd-redis50", "get_per_s", "redis -c 50 GET, {n} idle", "GET/s", 10, False, "get_ratio_vs_tcp"),
    ("crowd-nginx", "req_per_s", "nginx + wrk -c 64, {n} idle", "requests/s", 4, False, "ratio_vs_tcp"),
    ("crowd-many", "total_s", "redis, {n} connections x {k} SET 64 KiB", "s", 1.5, True, "speedup_vs_tcp"),
]


def crowd_ratio(d, scen, size, metric):
    """xio's advantage over TCP: rates xio/TCP, times TCP/xio."""
    x, t = d.med(scen, "xio", size, metric), d.med(scen, "tcp", size, metric)
    time = next(r[5] for r in CROWD_ROWS if r[0] == scen and r[1] == metric)
    return ratio(t, x) if time else ratio(x, t)


def crowd_cells(d, scen, size, metric, notes, width):
    """The first cells of a crowd row for each transport: the figure, or
    FAIL with a note, or "not run"; None when the row has a figure."""
    out = {}
    for tr in ("tcp", "xio"):
        if d.med(scen, tr, size, metric) is not None:
            out[tr] = None
            continue
        f = d.failures.get((scen, tr, size))
        if f:
            line = f"{scen} {size} {tr}: " + "; ".join(f)
            if line not in notes:
                notes.append(line)
            out[tr] = [f"**FAIL** (note {notes.index(line) + 1})"] + [""] * (width - 1)
        else:
            out[tr] = ["not run"] + [""] * (width - 1)
    return out


def crowd_target(r, target):
    if r is None:
        return f"≥ {target:g}x"
    return f"≥ {target:g}x: {'met' if r >= target else '**not met**'}"


def crowd_table(d, md, notes):
    """Busy clients beside 5,000 idle connections, and many connections
    each doing a little: kernel TCP and xio, xio's advantage against the
    issue's target."""
    rows = [(s, z) for s, z in d.order if s in ("crowd-redis50", "crowd-nginx", "crowd-many")]
    if not rows:
        return
    md.append("## Many connections (bench/suite/crowd.sh)\n")
    rates = [(s, z) for s, z in rows if s != "crowd-many"]
    if rates:
        md.append("Busy clients beside idle connections held by other processes (each sent one "
                  "request and got its answer first, and was checked still open at the end):\n")
        md.append("| row | transport | figure (median) | p50 µs | p99 µs | xio vs tcp | target | "
                  "CPU server µs/request | server RSS MiB | accel_conns srv/cli |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for scen, size in rates:
            for sc, metric, what, unit, target, _, _ in CROWD_ROWS:
                if sc != scen:
                    continue
                pre = metric.split("_")[0] + "_" if scen == "crowd-redis50" else ""
                label = what.format(n=f"{int(size):,}")
                r = crowd_ratio(d, scen, size, metric)
                cells = crowd_cells(d, scen, size, metric, notes, 8)
                for tr in ("tcp", "xio"):
                    if cells[tr] is not None:
                        md.append(f"| {label} | {tr} | " + " | ".join(cells[tr]) + " |")
                        label = ""
                        continue
                    rss = d.med(scen, tr, size, "rss_kib")
                    acc = (d.med(scen, tr, size, "accel_conns_srv"), d.med(scen, tr, size, "accel_conns_cli"))
                    md.append(f"| {label} | {tr} | {fmt(d.med(scen, tr, size, metric))} {unit} | "
                              f"{fmt(d.med(scen, tr, size, pre + 'p50_us'))} | "
                              f"{fmt(d.med(scen, tr, size, pre + 'p99_us'))} | "
                              f"{'–' if tr == 'tcp' or r is None else f'{r:.2f}x'} | "
                              f"{crowd_target(r, target) if tr == 'xio' else ''} | "
                              f"{fmt(d.med(scen, tr, size, 'cpu_srv_us'))} | "
                              f"{'–' if rss is None else f'{rss / 1024:.1f}'} | "
                              f"{'–' if None in acc else f'{acc[0]:.0f}/{acc[1]:.0f}'} |")
                    label = ""
        md.append("\nredis: SET and GET from one redis-benchmark run (`-t set,get`); its CPU column covers "
                  "both. nginx: one warm-up GET before the row's connections takes the listener's "
                  "start-up fallback (the worker accepts as nobody a connection made on root's "
                  "hugepages), counted apart. Server RSS: VmRSS when the busy client is done, the idle "
                  "connections still held (nginx: the worker's).\n")
    many = [(s, z) for s, z in rows if s == "crowd-many"]
    if many:
        md.append("Many connections each doing a little: one client process (bench/crowd.c) opens N "
                  "connections to one redis-server, all open at once, then each sends its SETs of 64 KiB "
                  "one after the other, all connections together in one epoll loop, then all close:\n")
        md.append("| connections x SETs | transport | total s (median) | connect s | SETs s | close s | "
                  "xio speed-up | target | CPU server µs/SET | redis RSS after MiB | redis peak MiB | "
                  "client peak MiB | accel_conns srv/cli |")
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        _, metric, what, _, target, _, _ = CROWD_ROWS[3]
        for scen, size in many:
            k = next((d.med(scen, tr, size, "sets_per_conn") for tr in ("tcp", "xio")
                      if d.med(scen, tr, size, "sets_per_conn") is not None), None)
            label = f"{int(size):,} x {'?' if k is None else f'{k:.0f}'}"
            r = crowd_ratio(d, scen, size, metric)
            cells = crowd_cells(d, scen, size, metric, notes, 11)
            for tr in ("tcp", "xio"):
                if cells[tr] is not None:
                    md.append(f"| {label} | {tr} | " + " | ".join(cells[tr]) + " |")
                    label = ""
                    continue
                mib = [d.med(scen, tr, size, m) for m in ("rss_kib", "hwm_kib", "cli_hwm_kib")]
                acc = (d.med(scen, tr, size, "accel_conns_srv"), d.med(scen, tr, size, "accel_conns_cli"))
                md.append(f"| {label} | {tr} | {fmt(d.med(scen, tr, size, metric))} | "
                          + " | ".join(fmt(d.med(scen, tr, size, f"{m}_s")) for m in ("connect", "work", "close"))
                          + f" | {'–' if tr == 'tcp' or r is None else f'{r:.2f}x'} | "
                          f"{crowd_target(r, target) if tr == 'xio' else ''} | "
                          f"{fmt(d.med(scen, tr, size, 'cpu_srv_us'))} | "
                          + " | ".join("–" if v is None else f"{v / 1024:.1f}" for v in mib)
                          + f" | {'–' if None in acc else f'{acc[0]:.0f}/{acc[1]:.0f}'} |")
                label = ""
        md.append("\nxio speed-up: TCP's total time over xio's. Each row has a fresh server; 16 keys are "
                  "overwritten, so redis stores 1 MiB and its RSS shows what the connections cost. "
                  "redis RSS after: VmRSS once the client has closed everything; peak: its VmHWM.\n")
    lim = [d.med("crowd-limits", "all", "0", m) for m in ("nofile_hard", "monitor_proc_conns", "monitor_uid_conns")]
    if lim[0] is not None:
        md.append(f"Hard RLIMIT_NOFILE of the run {lim[0]:.0f}; the monitor accelerates at most "
                  f"{'?' if lim[1] is None else f'{lim[1]:,.0f}'} connections per connecting process and "
                  f"{'?' if lim[2] is None else f'{lim[2]:,.0f}'} per uid, so the idle connections are held "
                  "by processes of at most 2,500 each; a row whose client needs more FAILs, naming the "
                  "limit. Under xio accel_conns must cover the row's connections on each end, and none of "
                  "the clients' may have fallen back or left for TCP.\n")


# scale (bench/suite/scale.sh): the targets for xio against
# kernel TCP at the same N: traffic speed at least 1.5x TCP's, memory at
# most 1.5x TCP's.
SCALE_SPEED_TARGET = 1.5
SCALE_MEM_TARGET = 1.5
SCALE_NAMES = {"tcp": "kernel TCP", "uds": "UNIX socket", "xio": "xio"}


def scale_ratios(d, tr, n):
    """speed_vs_tcp: TCP's traffic time over this transport's (higher is
    faster); mem_vs_tcp, acct_vs_tcp: this transport's memory over TCP's
    by either measure (lower is smaller), None when either figure is 0 or
    less (the machine's noise swallowed it)."""
    def mem(metric):
        a, b = d.med("scale", tr, n, metric), d.med("scale", "tcp", n, metric)
        return ratio(a, b) if a is not None and b is not None and a > 0 and b > 0 else None
    return {
        "speed_vs_tcp": ratio(d.med("scale", "tcp", n, "traffic_ms"), d.med("scale", tr, n, "traffic_ms")),
        "mem_vs_tcp": mem("mem_mib"),
        "acct_vs_tcp": mem("acct_mib"),
    }


def scale_cell(d, tr, n, notes):
    """None when the row has figures, else its first cell: FAIL with a note,
    or "not run"."""
    if d.med("scale", tr, n, "traffic_ms") is not None:
        return None
    f = d.failures.get(("scale", tr, n)) or d.failures.get(("scale", "all", "0"))
    if not f:
        return "not run"
    line = f"scale {n} {tr}: " + "; ".join(f)
    if line not in notes:
        notes.append(line)
    return f"**FAIL** (note {notes.index(line) + 1})"


def scale_target(r, target, higher):
    if r is None:
        return f"{'≥' if higher else '≤'} {target:g}x"
    met = r >= target if higher else r <= target
    return f"{'≥' if higher else '≤'} {target:g}x: {'met' if met else '**not met**'}"


def scale_mem_target(rm, ra):
    """The memory target by both measures; a ratio that could not be had
    (a figure lost in the machine's noise) decides nothing."""
    cells = [f"{name} {'?' if r is None else 'met' if r <= SCALE_MEM_TARGET else '**not met**'}"
             for name, r in (("MemAvailable", rm), ("accounted", ra))]
    return f"≤ {SCALE_MEM_TARGET:g}x: " + ", ".join(cells)


def scale_table(d, md, notes):
    """N connections each moving 256 KiB, then held: the traffic phase's
    time and the memory held, per transport, xio's against TCP's beside the
    issue's targets."""
    ns = [z for s, z in d.order if s == "scale"]
    if not ns:
        return
    def mib(v):
        return "–" if v is None else f"{v / 1024:,.1f}"

    md.append("## Many connections, each moving 256 KiB, then held (bench/suite/scale.sh)\n")
    md.append("One client process (bench/scale.c, CPU 1) opens N connections to one epoll server "
              "(CPU 0) all at once and waits for every greeting (connect), writes 256 KiB on each in "
              "64 KiB writes interleaved across the connections and waits for every ack (traffic), "
              "then holds them all open and silent in epoll_wait; the memory is sampled 2 s into the "
              "hold.\n")
    md.append("| N | transport | traffic ms (median) | connect ms | close ms | CPU server ms | "
              "CPU client ms | speed vs TCP | target | accel_conns srv/cli |")
    md.append("|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        label = f"{int(n):,}"
        for tr in ("tcp", "uds", "xio"):
            c = scale_cell(d, tr, n, notes)
            if c is not None:
                md.append(f"| {label} | {tr} | {c} |" + " |" * 7)
                label = ""
                continue
            r = scale_ratios(d, tr, n)["speed_vs_tcp"] if tr != "tcp" else None
            acc = (d.med("scale", tr, n, "accel_conns_srv"), d.med("scale", tr, n, "accel_conns_cli"))
            md.append(f"| {label} | {tr} | {fmt(d.med('scale', tr, n, 'traffic_ms'))} | "
                      f"{fmt(d.med('scale', tr, n, 'connect_ms'))} | {fmt(d.med('scale', tr, n, 'close_ms'))} | "
                      f"{fmt(d.med('scale', tr, n, 'cpu_srv_ms'))} | {fmt(d.med('scale', tr, n, 'cpu_cli_ms'))} | "
                      f"{'–' if r is None else f'{r:.2f}x'} | "
                      f"{scale_target(r, SCALE_SPEED_TARGET, True) if tr == 'xio' else ''} | "
                      f"{'–' if None in acc else f'{acc[0]:.0f}/{acc[1]:.0f}'} |")
            label = ""
    md.append("\nspeed vs TCP: TCP's traffic time over this row's (higher is faster). CPU: each "
              "end's user + system time over its whole run.\n")
    md.append("| N | transport | memory MiB (median) | KiB per connection | vs TCP | accounted MiB | "
              "KiB per connection | vs TCP | target | MemAvailable drop MiB | Shmem + MiB | "
              "hugepages MiB | socket slab + MiB | RSS server / client MiB | of it shared MiB | "
              "Pss server / client MiB | peak RSS server / client MiB | still taken after MiB |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        label = f"{int(n):,}"
        for tr in ("tcp", "uds", "xio"):
            c = scale_cell(d, tr, n, notes)
            if c is not None:
                md.append(f"| {label} | {tr} | {c} |" + " |" * 15)
                label = ""
                continue
            r = scale_ratios(d, tr, n) if tr != "tcp" else {}
            rm, ra = r.get("mem_vs_tcp"), r.get("acct_vs_tcp")
            m = {k: d.med("scale", tr, n, k) for k in (
                "srv_rss_kib", "cli_rss_kib", "srv_shmem_kib", "cli_shmem_kib", "srv_pss_kib", "cli_pss_kib",
                "srv_hwm_kib", "cli_hwm_kib")}
            md.append(f"| {label} | {tr} | {fmt(d.med('scale', tr, n, 'mem_mib'))} | "
                      f"{fmt(d.med('scale', tr, n, 'kib_per_conn'))} | {'–' if rm is None else f'{rm:.2f}x'} | "
                      f"{fmt(d.med('scale', tr, n, 'acct_mib'))} | "
                      f"{fmt(d.med('scale', tr, n, 'acct_kib_per_conn'))} | "
                      f"{'–' if ra is None else f'{ra:.2f}x'} | "
                      f"{scale_mem_target(rm, ra) if tr == 'xio' else ''} | "
                      f"{fmt(d.med('scale', tr, n, 'memavail_drop_mib'))} | "
                      f"{fmt(d.med('scale', tr, n, 'shmem_mib'))} | {fmt(d.med('scale', tr, n, 'huge_mib'))} | "
                      f"{fmt(d.med('scale', tr, n, 'sock_slab_mib'))} | "
                      f"{mib(m['srv_rss_kib'])} / {mib(m['cli_rss_kib'])} | "
                      f"{mib(m['srv_shmem_kib'])} / {mib(m['cli_shmem_kib'])} | "
                      f"{mib(m['srv_pss_kib'])} / {mib(m['cli_pss_kib'])} | "
                      f"{mib(m['srv_hwm_kib'])} / {mib(m['cli_hwm_kib'])} | "
                      f"{fmt(d.med('scale', tr, n, 'left_mib'))} |")
            label = ""
    lim = [d.med("scale-limits", "all", "0", k) for k in ("nofile_hard", "monitor_proc_conns", "monitor_uid_conns")]
    md.append("\nmemory: the MemAvailable drop plus the hugepages taken, from just before the server "
              "started to 2 s into the hold: everything the N connections held (both ends' private "
              "memory, shared memory, the kernel's socket memory, the monitor's share), the issue's "
              "measure; it is the whole machine's figure, so what else ran meanwhile is in it too "
              "(still taken after, the same drop once both ends had exited, shows how much). "
              "accounted: both ends' Pss (a page shared by k processes counts 1/k in each) and "
              "hugepages, the monitor's Pss growth and the growth of the slab caches of sockets, files "
              "and epoll entries, at the same moment: blind to the rest of the machine (and to kernel "
              "memory outside those caches). RSS: VmRSS (shared pages count in both ends); peak: "
              "VmHWM." + (
                  f" Hard RLIMIT_NOFILE {lim[0]:.0f}; the monitor accelerates at most "
                  f"{'?' if lim[1] is None else f'{lim[1]:,.0f}'} connections per process and "
                  f"{'?' if lim[2] is None else f'{lim[2]:,.0f}'} per uid; a row past one FAILs, "
                  "naming it." if lim[0] is not None else "") + "\n")


def scale_chart(d, out, gp):
    """scale.png: the memory held (both measures) and the traffic phase's
    time against N, one line per transport (log scales: xio and the kernel
    may be orders of magnitude apart; a figure of 0 or less, the machine's
    noise in the MemAvailable drop, is left out)."""
    ns = sorted({int(z) for s, z in d.order if s == "scale"})
    panels = []
    for metric, title, unit in (("mem_mib", "Memory held (MemAvailable drop + hugepages)", "MiB"),
                                ("acct_mib", "Memory held, accounted (Pss, hugepages, socket slab)", "MiB"),
                                ("traffic_ms", "Traffic phase: 256 KiB on each of N connections", "ms")):
        cols = [tr for tr in ("tcp", "uds", "xio") if any(
            (d.med("scale", tr, str(n), metric) or 0) > 0 for n in ns)]
        if not cols:
            continue
        dat = os.path.join(out, "charts", f"scale-{metric}.dat")
        with open(dat, "w") as f:
            f.write("N " + " ".join(cols) + "\n")
            for n in ns:
                vals = [d.med("scale", tr, str(n), metric) for tr in cols]
                f.write(f"{n} " + " ".join("?" if v is None or v <= 0 else f"{v:.6g}" for v in vals) + "\n")
        plots = ", ".join(f"'{dat}' using 1:{i + 2} with linespoints lw 2 pt 7 title '{SCALE_NAMES[tr]}'"
                          for i, tr in enumerate(cols))
        panels += [f"set title '{gp_quote(title)}' noenhanced",
                   f"set ylabel '{unit} (lower is better)' noenhanced",
                   f"plot {plots}"]
    if not panels:
        return None, None
    count = sum(1 for p in panels if p.startswith("plot"))
    png = os.path.join(out, "scale.png")
    script = "\n".join(gp_png(gp, png, f"{560 * count},480") + [
        f"set multiplot layout 1,{count} title "
        "'Many connections (scale): memory and time against N' noenhanced",
        "set logscale y",
        "set grid xtics ytics",
        "set key top left",
        "set xlabel 'connections N'",
        "set xtics (" + ", ".join(f"'{x:,}' {x}" for x in ns) + ")",
        "set offsets graph 0.05, graph 0.05, 0, 0",
    ] + panels + ["unset multiplot"])
    return gp_run(gp, script, png)


def startup_table(d, md, notes):
    if not any(s == "startup" for s, _ in d.order):
        return
    md.append("## Start-up of a process that loads the shim and never uses it (`env /bin/true`)\n")
    md.append("| LD_PRELOAD | ms per start (median) | p99 ms | CPU µs per start | difference |")
    md.append("|---|---|---|---|---|")
    for tr in ("none", "xio"):
        v = d.med("startup", tr, "0", "ms_per_start")
        if v is None:
            f = d.failures.get(("startup", "all", "0"))
            if f:
                notes.append("startup: " + "; ".join(f))
            md.append(f"| {tr} | {'**FAIL** (note %d)' % len(notes) if f else 'not run'} | | | |")
            continue
        diff = d.med("startup", tr, "0", "diff_ms")
        md.append(f"| {'libxio_preload.so' if tr == 'xio' else 'none'} | {v:.3f} | "
                  f"{fmt(d.med('startup', tr, '0', 'p99_ms'))} | {fmt(d.med('startup', tr, '0', 'cpu_us_per_start'))} | "
                  f"{'–' if diff is None else f'{diff:+.3f} ms'} |")
    md.append("\nNo connection is made, so this row has no XIO_STATS proof to give.\n")


def gp_quote(text):
    """text for a single-quoted gnuplot string, where '' is one quote."""
    return text.replace("'", "''")


def gp_png(gp, png, size):
    """The first lines of any chart: a PNG terminal, pngcairo when this
    gnuplot has it, plain text labels, '?' for a missing value."""
    t = subprocess.run([gp, "-e", "set terminal"], capture_output=True, text=True)
    term = f"pngcairo size {size} font ',10'" if "pngcairo" in t.stdout + t.stderr \
        else f"png size {size}"
    return [
        f"set terminal {term}",
        "set termoption noenhanced",
        f"set output '{png}'",
        "set datafile missing '?'",
    ]


def gp_bars(gp, png, size="1000,520", xtics_angle=-20):
    """The first lines of a bar chart (also tools/demo_report.py's): a PNG
    terminal and clustered bars."""
    return gp_png(gp, png, size) + [
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set key top left",
        "set grid ytics",
        f"set xtics rotate by {xtics_angle} noenhanced",
    ]


def charts(d, out):
    """One PNG per group: the headline metric, bars per transport."""
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot is not installed (Debian package gnuplot-nox): no charts"
    made = []
    specs = list(GROUPS) + [
        dict(key="idle", title="Idle connections: server CPU, % of a core", main="cpu_srv_pct",
             label="% of a core", transports=["tcp", "xio"], log=False),
        dict(key="startup", title="Start-up: ms per start", main="ms_per_start",
             label="ms", transports=["none", "xio"], log=False),
    ]
    os.makedirs(os.path.join(out, "charts"), exist_ok=True)
    for g in specs:
        rows = [(s, z) for s, z in d.order if (group_of(s) is g) or s == g["key"]]
        if not rows:
            continue
        name = g["key"].rstrip("-")
        dat = os.path.join(out, "charts", name + ".dat")
        with open(dat, "w") as f:
            f.write('"" ' + " ".join(f'"{t}"' for t in g["transports"]) + "\n")
            for scen, size in rows:
                label = row_label(g, scen, size) if g in GROUPS else scen
                vals = [d.med(scen, t, size, g["main"]) for t in g["transports"]]
                f.write(f'"{label}" ' + " ".join("?" if v is None else f"{v:.6g}" for v in vals) + "\n")
        png = os.path.join(out, name + ".png")
        # On a log scale the bars rise from the bottom of the range: start
        # it at the power of ten below the smallest value.
        lo = min((v for s, z in rows for t in g["transports"]
                  for v in [d.med(s, t, z, g["main"])] if v), default=1)
        floor = 10 ** math.floor(math.log10(lo)) if lo > 0 else 1
        ylabel = g["label"] + (" (higher is better)" if g.get("higher") else
                               " (lower is better)" if "higher" in g else "")
        script = "\n".join(gp_bars(gp, png) + [
            f"set title '{gp_quote(g['title'])}' noenhanced",
            f"set ylabel '{gp_quote(ylabel)}' noenhanced",
            f"set logscale y; set yrange [{floor:g}:*]" if g.get("log") else "set yrange [0:*]",
            f"plot for [i=2:{len(g['transports']) + 1}] '{dat}' using i:xtic(1) title columnheader(i)",
        ])
        r = subprocess.run([gp], input=script, capture_output=True, text=True)
        if r.returncode == 0 and os.path.exists(png):
            made.append(os.path.basename(png))
        else:
            return f"gnuplot failed on {name}: {r.stderr.strip()[:300]}"
    for chart in (busyidle_chart, crowd_chart, scale_chart):
        png, err = chart(d, out, gp)
        if err:
            return err
        if png:
            made.append(png)
    return "charts: " + ", ".join(made) if made else "no charts (no data)"


def gp_run(gp, script, png):
    """Run a gnuplot script; (the PNG's name, None) or (None, why not)."""
    r = subprocess.run([gp], input=script, capture_output=True, text=True)
    if r.returncode == 0 and os.path.exists(png):
        return os.path.basename(png), None
    return None, f"gnuplot failed on {os.path.basename(png)}: {r.stderr.strip()[:300]}"


def busyidle_chart(d, out, gp):
    """busyidle.png: each workload's rate against the number of idle
    connections N, one line for kernel TCP and one for xio, a panel per
    workload (log scale: xio's rate falls by orders of magnitude while the
    readiness scan walks every connection). A transport with no figure at
    any N has no line; a workload with none at all, no panel."""
    panels, xs = [], set()
    for scen, title, unit in BUSYIDLE:
        ns = [z for s, z in d.order if s == scen]
        cols = [tr for tr in ("tcp", "xio") if any(d.med(scen, tr, n, "rate") for n in ns)]
        if not cols:
            continue
        dat = os.path.join(out, "charts", scen + ".dat")
        with open(dat, "w") as f:
            f.write("N " + " ".join(cols) + "\n")
            for n in sorted(ns, key=int):
                xs.add(int(n))
                vals = [d.med(scen, tr, n, "rate") for tr in cols]
                f.write(f"{n} " + " ".join("?" if v is None else f"{v:.6g}" for v in vals) + "\n")
        names = {"tcp": "kernel TCP", "xio": "xio"}
        plots = ", ".join(f"'{dat}' using 1:{i + 2} with linespoints lw 2 pt 7 title '{names[tr]}'"
                          for i, tr in enumerate(cols))
        panels += [f"set title '{gp_quote(title)}' noenhanced",
                   f"set ylabel '{gp_quote(unit)} (higher is better)' noenhanced",
                   f"plot {plots}"]
    if not panels:
        return None, None
    count = sum(1 for p in panels if p.startswith("plot"))
    png = os.path.join(out, "busyidle.png")
    script = "\n".join(gp_png(gp, png, f"{560 * count},480") + [
        f"set multiplot layout 1,{count} title "
        "'One busy connection beside N idle ones (busyidle): rate against N' noenhanced",
        "set logscale y",
        "set grid xtics ytics",
        "set key top right",
        "set xlabel 'idle connections N'",
        # Tics at the N measured, which are few and far apart.
        "set xtics (" + ", ".join(f"'{x:,}' {x}" for x in sorted(xs)) + ")",
        "set offsets graph 0.05, graph 0.05, 0, 0",
    ] + panels + ["unset multiplot"])
    return gp_run(gp, script, png)


def crowd_chart(d, out, gp):
    """crowd.png: for each crowd row, xio's advantage over kernel TCP (rates
    xio/TCP, crowd-many's times TCP/xio) beside the issue's target, as
    bars on a log scale with 1x (no better than TCP) drawn."""
    rows = []
    for scen, size in d.order:
        for sc, metric, what, _, target, _, _ in CROWD_ROWS:
            if sc != scen:
                continue
            k = d.med(scen, "tcp", size, "sets_per_conn") or d.med(scen, "xio", size, "sets_per_conn")
            label = what.format(n=f"{int(size):,}", k="?" if k is None else f"{k:.0f}")
            rows.append((label, crowd_ratio(d, scen, size, metric), target))
    if not any(r for _, r, _ in rows):
        return None, None
    dat = os.path.join(out, "charts", "crowd.dat")
    with open(dat, "w") as f:
        f.write('"" "xio vs kernel TCP" "target"\n')
        for label, r, target in rows:
            f.write(f'"{label}" {"?" if r is None else f"{r:.6g}"} {target:g}\n')
    vals = [r for _, r, _ in rows if r] + [t for _, _, t in rows]
    lo, hi = min(vals + [1]), max(vals)
    png = os.path.join(out, "crowd.png")
    script = "\n".join(gp_bars(gp, png, "1100,560", -25) + [
        "set title 'Many connections (crowd): xio against kernel TCP, and the target' noenhanced",
        "set ylabel 'xio / TCP (rates), TCP / xio (times): higher is better' noenhanced",
        f"set logscale y; set yrange [{10 ** math.floor(math.log10(lo)):g}:{hi * 3:g}]",
        "set key top right Left reverse",
        "set rmargin 14",
        "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2",
        f"plot for [i=2:3] '{dat}' using i:xtic(1) title columnheader(i)",
    ])
    return gp_run(gp, script, png)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py OUT_DIR")
    out = sys.argv[1]
    d = Data(out)
    write_csv(d, out)
    md, notes = [], []
    header = open(os.path.join(out, "header.md")).read() if os.path.exists(os.path.join(out, "header.md")) else ""
    md.append(header.rstrip() + "\n")
    md.append(f"Medians over {len(d.rounds)} round(s). Every xio row ran the same unmodified "
              "program with both ends under LD_PRELOAD=libxio_preload.so and was checked to have "
              "gone over shared memory (XIO_STATS: accel_conns > 0 and tx_bytes > 0 on both ends; "
              "echo: the monitor's accelerated count). doorbells/msg = both ends' doorbells / both "
              "ends' messages sent. CPU columns: user + system time of that end divided by the "
              "requests it handled.\n")
    for g in GROUPS:
        main_table(d, g, md, notes)
    idle_table(d, md, notes)
    busyidle_table(d, md, notes)
    crowd_table(d, md, notes)
    scale_table(d, md, notes)
    startup_table(d, md, notes)
    # Failures of whole scenarios (a tool missing) and any not shown above.
    shown = "\n".join(notes)
    for (scen, tr, size), why in sorted(d.failures.items()):
        line = f"{scen} {size} {tr}: " + "; ".join(why)
        if line not in shown:
            notes.append(line)
    if notes:
        md.append("## Failures\n")
        for i, n in enumerate(notes, 1):
            md.append(f"{i}. {n}")
        md.append("")
    chart_note = charts(d, out)
    pngs = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    if pngs:
        md.append("## Charts\n")
        md += [f"![{p}]({p})" for p in pngs]
        md.append("")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(chart_note, file=sys.stderr)


if __name__ == "__main__":
    main()
