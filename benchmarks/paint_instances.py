"""Multi-instance painting quality (docs/painting.md, "Multiple instances"): how many instances get
foreground strokes, and the L2s, per --bg-gate and --min-gain.

    sgfast make-dataset scenes --out scenes --num 100 --size 128 --seed 0
    python benchmarks/paint_instances.py scenes [--steps N] [--actor W] [--gates chosen,union] [--min-gains off,0.1]

Per image of DATASET (a `make-dataset scenes` folder: images.txt, images/, instances/<name>_<i>.png)
the shipped sg agent (or --actor) paints with the instance masks. Printed per setting: instances
painted by fg strokes, images with every instance painted, L2, fg L2 under the union of the
instances, and per-instance L2 (the mean over instances of the L2 under each one's mask).
"""
import argparse
import glob
import os

import torch


def scenes(root):
    items = []
    for line in open(os.path.join(root, "images.txt")):
        _, rel = line.split()
        inst = sorted(glob.glob(os.path.join(root, "instances", os.path.splitext(rel)[0] + "_*.png")))
        if inst:
            items.append((os.path.join(root, "images", rel), inst))
    return items


def masked_l2(r, m):
    return float((((r.canvas - r.target) ** 2) * m).sum() / (3 * m.sum()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--steps", type=int, default=None, help="agent steps (default: the agent's episode)")
    ap.add_argument("--actor", default=None, help="sg agent weights (default: the shipped tiny agent)")
    ap.add_argument("--gates", default="chosen,union")
    ap.add_argument("--min-gains", default="off,0.1")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sgfast.paint import load_models, paint

    items = scenes(args.dataset)
    models = load_models("sg", actor=args.actor, need_segmenter=False)
    print(f"{len(items)} images, {sum(len(i) for _, i in items)} instances")
    print("| --bg-gate | --min-gain | instances painted | images with all painted | L2 | fg L2 | per-instance L2 |")
    print("|---|---|---|---|---|---|---|")
    for gate in args.gates.split(","):
        for mg in args.min_gains.split(","):
            rs = paint([p for p, _ in items], instances=[i for _, i in items], steps=args.steps, frames="none",
                       models=models, batch_size=8, bg_gate=gate, min_gain=None if mg == "off" else float(mg))
            got = every = 0
            l2, fg, per = [], [], []
            for r, (_, inst) in zip(rs, items):
                painted = {u for u, layer in zip(r.mask_ids, r.layers) if layer == "fg"}
                got += len(painted)
                every += len(painted) == len(inst)
                l2.append(float(((r.canvas - r.target) ** 2).mean()))
                fg.append(masked_l2(r, r.masks.amax(0)))
                per += [masked_l2(r, m) for m in r.masks]
            mean = lambda v: sum(v) / len(v)  # noqa: E731
            print(f"| {gate} | {mg} | {got} / {len(per)} | {every} / {len(rs)} | {mean(l2):.4f} | {mean(fg):.4f} "
                  f"| {mean(per):.4f} |")


if __name__ == "__main__":
    main()
