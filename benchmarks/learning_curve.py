"""Neural vs exact renderer as the agent's model: the same `sgfast train-agent` run, from the same seed,
for the same wall time, once with the shipped neural renderer and once with `--renderer exact`;
validation L2 and fg L2 against wall time (docs/agent.md, "Learning: exact vs neural").

    python benchmarks/learning_curve.py --minutes 60 --out runs/curve -- --config tiny --mode sg \\
        --data data/birds64.sgprep --max-step 10 --strokes-bg 6 --strokes-fg 4 --eta 1 ...

Both runs start together (`--threads 1` each; on a 2-core machine each has a core) and end by
`--time-limit`. Their logs go to OUT/<renderer>/log.txt; the validation lines ("episode E step S
(T s, U updates): val L2 ... fg L2 ...") are collected into OUT/curve.json and a table of the last
validation at or before each `--every` minutes (OUT/curve.md, also printed). `--parse-only`
rebuilds the table from existing logs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

RENDERERS = {"neural": [], "exact": ["--renderer", "exact"]}
LINE = re.compile(r"episode (\d+) step (\d+) \((\d+) s, (\d+) updates\): val L2 ([0-9.]+) fg L2 ([0-9.]+)")


def parse(log_path: str) -> list:
    rows = []
    with open(log_path) as f:
        for line in f:
            m = LINE.search(line)
            if m:
                e, s, t, u = (int(v) for v in m.groups()[:4])
                rows.append({"episode": e, "step": s, "seconds": t, "updates": u,
                             "l2": float(m.group(5)), "fg_l2": float(m.group(6))})
    return rows


def table(curves: dict, every_min: float, minutes: float) -> str:
    names = list(curves)
    head = "| minutes | " + " | ".join(f"{n}: updates, val L2, fg L2" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    marks, m = [], every_min
    while m <= minutes + 1e-9:
        marks.append(m)
        m += every_min
    for mark in marks:
        cells = []
        for n in names:
            seen = [r for r in curves[n] if r["seconds"] <= mark * 60]
            r = seen[-1] if seen else None
            cells.append(f"{r['updates']}, {r['l2']:.5f}, {r['fg_l2']:.5f}" if r else "-")
        lines.append(f"| {mark:g} | " + " | ".join(cells) + " |")
    best = {n: min((r["l2"] for r in curves[n]), default=float("nan")) for n in names}
    lines.append("| best | " + " | ".join(f"lowest val L2 {best[n]:.5f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="wall time of each run (default: 60)")
    ap.add_argument("--every", type=float, default=10.0, help="table rows every this many minutes (default: 10)")
    ap.add_argument("--out", default="runs/curve", help="folder for the two runs, curve.json, curve.md")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default: 1)")
    ap.add_argument("--parse-only", action="store_true", help="only rebuild the table from OUT/*/log.txt")
    ap.add_argument("train_args", nargs="*", help="train-agent options after --, the same for both runs")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0:
        ap.error("--minutes and --every must be positive")
    os.makedirs(args.out, exist_ok=True)
    if not args.parse_only:
        procs = []
        for name, extra in RENDERERS.items():
            folder = os.path.join(args.out, name)
            os.makedirs(folder, exist_ok=True)
            cmd = [sys.executable, "-m", "sgfast", "train-agent", *args.train_args, *extra, "--out", folder,
                   "--threads", str(args.threads), "--time-limit", str(args.minutes), "--no-progress",
                   "--export", os.path.join(folder, "actor.pt")]
            log = open(os.path.join(folder, "log.txt"), "w")
            log.write(" ".join(cmd) + "\n")
            log.flush()
            procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        for name, proc, log in procs:
            rc = proc.wait()
            log.close()
            if rc != 0:
                sys.exit(f"learning_curve: the {name} run failed (exit {rc}); see {log.name}")
    curves = {name: parse(os.path.join(args.out, name, "log.txt")) for name in RENDERERS}
    with open(os.path.join(args.out, "curve.json"), "w") as f:
        json.dump(curves, f, indent=1)
    text = table(curves, args.every, args.minutes)
    with open(os.path.join(args.out, "curve.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
