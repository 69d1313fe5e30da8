"""render_strokes (exact renderer fused with compositing) against the neural renderer + composite, the
eager reference, and today's exact re-render (rasterize_strokes(mode="exact") + composite).

    python benchmarks/bench_render_strokes.py --threads 2            # every part
    python benchmarks/bench_render_strokes.py --part ddpg             # or painting, rerender

Parts (all forward + backward unless said; gradients to the canvas and the strokes, a random upstream
gradient; min and median of --repeats rounds after one warm-up round, implementations interleaved
round by round so that a busy machine slows them alike):
  ddpg      the DDPG update's shapes: B = 96, N = 5, 128^2 (paper renderer) and B = 32, N = 10, 64^2
            (tiny renderer), soft mask, 2 background strokes then foreground ones. render_strokes vs
            the neural renderer (random weights, frozen) + sgfast.ops.composite, and vs the eager
            reference (sgfast.reference.render_strokes, fewer rounds).
  painting  B = 1 at 512^2 and 1024^2 with N = 256, 1024, 4096 strokes sized as a coarse-to-fine
            painting (level l has 4^l strokes whose radius halves per level, each level covering about
            1.5 canvases): time, time per covered megapixel (capsule estimate of the strokes' area),
            and the peak RSS growth over the inputs (each case in a fresh process whose RSS is sampled
            every millisecond from outside).
  rerender  a 1,000-stroke coarse-to-fine painting with one instance mask (bg then fg strokes)
            re-rendered at --size (default 2048), forward only: today's exact re-render (what
            `sgfast render` runs: rasterize_strokes "exact", supersample 4, + composite in chunks of 16
            strokes with the same gate) against render_strokes (one call per run of strokes with the
            same gate, softness 1).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

import sgfast
import sgfast.ops as ops
import sgfast.reference as ref
from sgfast.models.renderer import Renderer
from sgfast.strokes import paint_neural

SOFTNESS = 1.0


# ---- inputs -------------------------------------------------------------------------------------

def ddpg_inputs(b, n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    canvas = torch.rand(b, 3, size, size, generator=g)
    strokes = torch.rand(b, n, 13, generator=g)
    mask = torch.rand(b, 1, size, size, generator=g)
    layer = torch.tensor([False, False] + [True] * (n - 2))
    upstream = torch.rand(b, 3, size, size, generator=g)
    return canvas, strokes, mask, layer, upstream


def painting_strokes(n, seed=0, coverage=1.5):
    """[n, 13] float64 strokes as a coarse-to-fine painting: level l has 4^l strokes (the last level cut
    to n), radius halving per level so that each level covers about `coverage` canvases (capsules of
    length 2-6 radii), random directions, curvature (the relative middle point), opacity and colour."""
    g = torch.Generator().manual_seed(seed)
    rows, total, level = [], 0, 0
    while total < n:
        c = min(4 ** level, n - total)
        r = min(65 / 256, math.sqrt(coverage / (8 * 4 ** level)))  # radius, fraction of the side
        u = torch.rand(c, 13, generator=g, dtype=torch.float64)
        z = ((256 * r * (0.7 + 0.6 * u[:, 6:8]) - 1) / 64).clamp(0, 1)
        length = r * (2 + 4 * u[:, 2])
        ang = 2 * math.pi * u[:, 3]
        s = torch.empty(c, 13, dtype=torch.float64)
        s[:, 0], s[:, 1] = u[:, 0], u[:, 1]
        s[:, 4] = (u[:, 0] + length * torch.cos(ang)).clamp(0, 1)
        s[:, 5] = (u[:, 1] + length * torch.sin(ang)).clamp(0, 1)
        s[:, 2], s[:, 3] = u[:, 4], u[:, 5]
        s[:, 6:8] = z
        s[:, 8:10] = 0.6 + 0.4 * u[:, 8:10]
        s[:, 10:13] = u[:, 10:13]
        rows.append(s)
        total += c
        level += 1
    return torch.cat(rows)


def covered_pixels(strokes, side):
    """Capsule estimate of the pixels the strokes cover, summed over strokes (overlaps counted)."""
    f = strokes.double()
    x0, y0, x1, y1, x2, y2, z0, z2 = f[:, :8].unbind(1)
    x1, y1 = x0 + (x2 - x0) * x1, y0 + (y2 - y0) * y1
    t = torch.linspace(0, 1, 17, dtype=torch.float64)[:, None]
    bx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * x1 + t ** 2 * x2
    by = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * y1 + t ** 2 * y2
    length = torch.sqrt(bx.diff(dim=0) ** 2 + by.diff(dim=0) ** 2).sum(0)
    r0, r2 = (1 + 64 * z0) / 256, (1 + 64 * z2) / 256
    area = (r0 + r2) * length + math.pi * torch.maximum(r0, r2) ** 2
    return float(area.sum()) * side * side


# ---- timing -------------------------------------------------------------------------------------

def interleaved(fns, repeats, rounds=None):
    """{name: [seconds]}: one warm-up call each, then `repeats` rounds calling each fn once per round
    (rounds[name] caps the rounds of a slow one, which gets no warm-up call when it is 1)."""
    rounds = rounds or {}
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        if rounds.get(name, repeats) > 1:
            fn()
    for r in range(repeats):
        for name, fn in fns.items():
            if r >= rounds.get(name, repeats):
                continue
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def fwd_bwd(fn, canvas, strokes, upstream):
    c = canvas.clone().requires_grad_()
    s = strokes.clone().requires_grad_()
    return lambda: torch.autograd.grad(fn(c, s), (c, s), upstream)


def ms(ts):
    return min(ts) * 1e3, statistics.median(ts) * 1e3


# ---- parts --------------------------------------------------------------------------------------

def part_ddpg(args):
    print("\n## DDPG shapes: forward + backward, ms (min / median)\n")
    print("| shape | render_strokes | neural + composite | ratio (min / median) | eager reference | ratio |")
    print("|---|---|---|---|---|---|")
    out = {}
    for cfg, b, n, size in (("paper", 96, 5, 128), ("tiny", 32, 10, 64)):
        canvas, strokes, mask, layer, up = ddpg_inputs(b, n, size)
        renderer = Renderer(cfg)
        assert renderer.config.size == size
        for p in renderer.parameters():
            p.requires_grad_(False)
        fns = {
            "fused": fwd_bwd(lambda c, s: ops.render_strokes(c, s, mask, layer, SOFTNESS), canvas, strokes, up),
            "neural": fwd_bwd(lambda c, s: paint_neural(renderer, ops.composite, c, s, mask, layer), canvas, strokes,
                              up),
            "eager": fwd_bwd(lambda c, s: ref.render_strokes(c, s, mask, layer, SOFTNESS), canvas, strokes, up),
        }
        times = interleaved(fns, args.repeats, rounds={"eager": args.eager_repeats})
        f, nn, e = ms(times["fused"]), ms(times["neural"]), ms(times["eager"])
        print(f"| {cfg}: B={b}, N={n}, {size}^2 | {f[0]:.1f} / {f[1]:.1f} | {nn[0]:.1f} / {nn[1]:.1f} "
              f"({cfg} renderer) | **{nn[0] / f[0]:.1f}x** / {nn[1] / f[1]:.1f}x | {e[0]:.0f} / {e[1]:.0f} | "
              f"**{e[0] / f[0]:.0f}x** / {e[1] / f[1]:.0f}x |", flush=True)
        out[cfg] = dict(fused_ms=f, neural_ms=nn, eager_ms=e)
    return out


def rss_bytes(pid="self"):
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def painting_case(side, n, repeats):
    """Child process of part_painting: says READY with its RSS once the inputs exist, then times
    forward + backward; the parent samples the RSS meanwhile."""
    strokes = painting_strokes(n).float()[None]
    canvas = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    up = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(2))
    fn = fwd_bwd(lambda c, s: ops.render_strokes(c, s, None, None, SOFTNESS), canvas, strokes, up)
    print(f"READY {rss_bytes()}", flush=True)
    times = interleaved({"fused": fn}, repeats)["fused"]
    return min(times) * 1e3, statistics.median(times) * 1e3


def run_painting_case(args, side, n):
    """(min ms, median ms, peak RSS growth over the inputs in MB): the RSS of a fresh process sampled
    every millisecond from outside while it runs."""
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--one-painting", f"{side},{n}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ready = int(proc.stdout.readline().split()[1])
    peak = ready
    while proc.poll() is None:
        try:
            peak = max(peak, rss_bytes(proc.pid))
        except (OSError, IndexError):
            break
        time.sleep(0.001)
    res = json.loads(proc.stdout.read().splitlines()[-1])
    if proc.wait() != 0:
        raise RuntimeError(f"{cmd} failed")
    return res["min"], res["median"], (peak - ready) / 2**20


def part_painting(args):
    print("\n## Painting shapes (B = 1, coarse-to-fine strokes): forward + backward\n")
    print("| side | N | covered Mpx (estimate) | ms (min / median) | ms per covered Mpx | peak RSS growth MB |")
    print("|---|---|---|---|---|---|")
    out = {}
    for side in (512, 1024):
        for n in (256, 1024, 4096):
            lo, med, rss = run_painting_case(args, side, n)
            mpx = covered_pixels(painting_strokes(n), side) / 1e6
            print(f"| {side} | {n} | {mpx:.1f} | {lo:.0f} / {med:.0f} | {lo / mpx:.1f} | {rss:.0f} |", flush=True)
            out[f"{side}x{n}"] = dict(min_ms=lo, median_ms=med, rss_mb=rss, covered_mpx=mpx)
    return out


def resize_gate(mask, size):
    return torch.nn.functional.interpolate(mask[None, None], size=(size, size), mode="bilinear",
                                           align_corners=False)


def rerender_today(strokes, layers, mask_ids, masks, size, supersample=4, chunk=16):
    """Today's exact re-render (sgfast.paint.rerender.render_exact's algorithm, restated so that the
    baseline stays fixed): rasterize_strokes "exact" + composite, chunks of <= 16 strokes with one gate."""
    canvas = torch.zeros(1, 3, size, size)
    gates = [resize_gate(m, size) for m in masks]
    n, s = strokes.shape[0], 0
    while s < n:
        e = s + 1
        while e < n and e - s < chunk and mask_ids[e] == mask_ids[s]:
            e += 1
        p = strokes[s:e]
        alpha = ops.rasterize_strokes(p[:, :10].contiguous(), size, "exact", supersample)[None]
        color = p[None, :, 10:].contiguous()
        if mask_ids[s] is None:
            canvas = ops.composite(canvas, alpha, color)
        else:
            layer = torch.tensor([layers[j] == "fg" for j in range(s, e)])
            canvas = ops.composite(canvas, alpha, color, gates[mask_ids[s]], layer)
        s = e
    return canvas


def rerender_fused(strokes, layers, mask_ids, masks, size, softness=SOFTNESS):
    """The same painting with render_strokes: one call per run of strokes with the same gate."""
    canvas = torch.zeros(1, 3, size, size)
    gates = [resize_gate(m, size) for m in masks]
    n, s = strokes.shape[0], 0
    while s < n:
        e = s + 1
        while e < n and mask_ids[e] == mask_ids[s]:
            e += 1
        p = strokes[s:e][None]
        if mask_ids[s] is None:
            canvas = ops.render_strokes(canvas, p, softness=softness)
        else:
            layer = torch.tensor([layers[j] == "fg" for j in range(s, e)])
            canvas = ops.render_strokes(canvas, p, gates[mask_ids[s]], layer, softness)
        s = e
    return canvas


def part_rerender(args):
    size = args.size
    n = 1000
    strokes = painting_strokes(n, seed=3).float()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
    masks = [((xx / 0.6) ** 2 + (yy / 0.45) ** 2 < 1).float()]  # one instance: an ellipse
    layers = ["bg"] * (n // 2) + ["fg"] * (n - n // 2)
    mask_ids = [0] * n
    print(f"\n## Re-render of a {n}-stroke painting at {size}^2 (forward only)\n")
    t0 = time.perf_counter()
    fused = rerender_fused(strokes, layers, mask_ids, masks, size)
    t_fused = time.perf_counter() - t0
    t0 = time.perf_counter()
    fused = rerender_fused(strokes, layers, mask_ids, masks, size)
    t_fused = min(t_fused, time.perf_counter() - t0)
    rows = [("render_strokes (softness 1)", t_fused, None)]
    for ss in args.supersample:
        t0 = time.perf_counter()
        today = rerender_today(strokes, layers, mask_ids, masks, size, supersample=ss)
        t_today = time.perf_counter() - t0
        diff = (today - fused).abs()
        rows.append((f"today: rasterize exact, supersample {ss}, + composite", t_today,
                     f"{diff.mean().item():.4f} mean, {(diff > 0.05).float().mean().item() * 100:.2f}% px > 0.05"))
    print("| pipeline | seconds | vs render_strokes | difference to render_strokes |")
    print("|---|---|---|---|")
    for name, t, d in rows:
        print(f"| {name} | {t:.2f} | {t / t_fused:.1f}x | {d or ''} |", flush=True)
    return {name: t for name, t, _ in rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("ddpg", "painting", "rerender", "all"), default="all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eager-repeats", type=int, default=1, help="rounds of the (slow) eager reference")
    p.add_argument("--size", type=int, default=2048, help="side of the re-render")
    p.add_argument("--supersample", type=int, nargs="+", default=[4, 1],
                   help="supersampling of today's re-render (each is timed once)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--one-painting", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not sgfast.HAS_EXT:
        sys.exit("bench_render_strokes: sgfast._C is not built")
    torch.set_num_threads(args.threads)
    if args.one_painting:
        side, n = (int(v) for v in args.one_painting.split(","))
        lo, med = painting_case(side, n, args.repeats)
        print(json.dumps(dict(min=lo, median=med)))
        return
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    results = {}
    if args.part in ("ddpg", "all"):
        results["ddpg"] = part_ddpg(args)
    if args.part in ("painting", "all"):
        results["painting"] = part_painting(args)
    if args.part in ("rerender", "all"):
        results["rerender"] = part_rerender(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
