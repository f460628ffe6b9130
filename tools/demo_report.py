#!/usr/bin/env python3
"""tools/demo_report.py OUT_DIR - the demo's table and chart.

Reads OUT_DIR/raw.csv (round,scenario,transport,size,metric,value, as the
suite's steps record it) and writes, from the medians over the rounds:

  results.md   the table printed on stdout: throughput, p50, p99 and the
               xio/TCP throughput ratio of each program
  results.csv  scenario,transport,metric,value
  demo.png     two panels, throughput and p50 latency, TCP next to xio
               (gnuplot; skipped with a note when it is not installed)

It shows whatever the numbers are: no target is assumed.
"""
import csv
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "suite"))
from report import gp_bars  # noqa: E402  (the suite's chart style)

ROWS = [  # scenario, label, throughput metric, its unit
    ("pingpong", "ping-pong, 1 KiB messages", "rt_per_s", "round trips/s"),
    ("redis-set-c50-P1", "redis SET, 50 connections", "req_per_s", "requests/s"),
    ("redis-get-c50-P1", "redis GET, 50 connections", "req_per_s", "requests/s"),
    ("nginx-c64", "nginx + wrk, 64 connections", "req_per_s", "requests/s"),
]
TRANSPORTS = [("tcp", "kernel TCP"), ("xio", "xio")]


def medians(path):
    vals = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            try:
                vals[(r["scenario"], r["transport"], r["metric"])].append(float(r["value"]))
            except ValueError:
                pass
    return {k: statistics.median(v) for k, v in vals.items()}


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def table(med):
    head = ["program", "transport", "throughput", "p50 µs", "p99 µs", "xio / TCP"]
    lines = []
    for scen, label, metric, unit in ROWS:
        tcp = med.get((scen, "tcp", metric))
        for t, tname in TRANSPORTS:
            thr = med.get((scen, t, metric))
            ratio = ""
            if t == "xio":
                ratio = f"{thr / tcp:.2f}x" if thr and tcp else "-"
            lines.append([label if t == "tcp" else "", tname,
                          f"{fmt(thr)} {unit}" if thr is not None else "- (failed)",
                          fmt(med.get((scen, t, "p50_us")), 1), fmt(med.get((scen, t, "p99_us")), 1),
                          ratio])
    widths = [max(len(r[i]) for r in lines + [head]) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in lines:
        out.append("| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(r, widths))) + " |")
    return "\n".join(out)


def chart(med, out):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot is not installed (Debian package gnuplot-nox): no chart"
    dat = os.path.join(out, "demo.dat")
    with open(dat, "w") as f:
        f.write('"" "kernel TCP" "xio" "kernel TCP" "xio"\n')
        for scen, label, metric, _ in ROWS:
            v = [med.get((scen, t, m)) for m in (metric, "p50_us") for t, _ in TRANSPORTS]
            f.write(f'"{label}" ' + " ".join("?" if x is None else f"{x:.6g}" for x in v) + "\n")
    png = os.path.join(out, "demo.png")
    script = "\n".join(gp_bars(gp, png, size="1200,520", xtics_angle=-15) + [
        "set logscale y",
        "set multiplot layout 1,2 title 'xio demo: unmodified programs, kernel TCP vs xio'",
        "set title 'throughput (higher is better)'",
        "set ylabel 'per second'",
        f"plot '{dat}' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3)",
        "set title 'p50 latency (lower is better)'",
        "set ylabel 'microseconds'",
        f"plot '{dat}' using 4:xtic(1) title columnheader(4), '' using 5 title columnheader(5)",
        "unset multiplot",
    ])
    r = subprocess.run([gp], input=script, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(png):
        return f"gnuplot failed: {r.stderr.strip()[:300]}"
    return f"chart: {png}"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: demo_report.py OUT_DIR")
    out = sys.argv[1]
    med = medians(os.path.join(out, "raw.csv"))
    text = table(med)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "results.csv"), "w") as f:
        f.write("scenario,transport,metric,value\n")
        for (s, t, m), v in sorted(med.items()):
            f.write(f"{s},{t},{m},{v:.6g}\n")
    print()
    print(text)
    print()
    print(chart(med, out))


if __name__ == "__main__":
    main()
