"""Multi-instance painting quality (docs/painting.md, "Multiple instances"): how many instances get
foreground strokes, and the L2s, per --bg-gate and --min-gain.

    sgfast make-dataset scenes --out scenes --num 100 --size 128 --seed 0
    python benchmarks/paint_instances.py scenes [--steps N] [--actor W] [--gates chosen,union] [--min-gains off,0.1]

Per image of DATASET (a `make-dataset scenes` folder, read with sgfast.data.datasets.SyntheticScenes)
the shipped sg agent (or --actor) paints with the instance masks. Printed per setting: instances
painted by fg strokes, images with every instance painted, L2, fg L2 under the union of the
instances, and per-instance L2 (the mean over instances of the L2 under each one's mask); the L2s
are sgfast.evaluate's image_metrics.
"""
import argparse

import torch


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
    from sgfast.data.datasets import SyntheticScenes
    from sgfast.evaluate import image_metrics
    from sgfast.paint import load_models, paint

    items = [(r.image, [path for path, _, _ in r.instances]) for r in SyntheticScenes(args.dataset, split="all").records
             if r.instances]
    models = load_models("sg", actor=args.actor, need_segmenter=False)
    print(f"{len(items)} images, {sum(len(i) for _, i in items)} instances")
    print("| --bg-gate | --min-gain | instances painted | images with all painted | L2 | fg L2 | per-instance L2 |")
    print("|---|---|---|---|---|---|---|")
    for gate in args.gates.split(","):
        for mg in args.min_gains.split(","):
            rs = paint([p for p, _ in items], method="agent", instances=[i for _, i in items], steps=args.steps,
                       frames="none", models=models, batch_size=8, bg_gate=gate,
                       min_gain=None if mg == "off" else float(mg))
            got = every = 0
            l2, fg, per = [], [], []
            for r, (_, inst) in zip(rs, items):
                got += len(r.painted_instances)
                every += len(r.painted_instances) == len(inst)
                # the evaluate metrics, once under the union of the instances, then under each one
                gates = torch.cat([r.masks.amax(0, keepdim=True), r.masks])[:, None]
                n = gates.shape[0]
                m = image_metrics(r.target.expand(n, -1, -1, -1), r.canvas.expand(n, -1, -1, -1), gates,
                                  torch.zeros_like(gates))
                l2.append(float(m["l2"][0]))
                fg.append(float(m["fg_l2"][0]))
                per += m["fg_l2"][1:].tolist()
            mean = lambda v: sum(v) / len(v)  # noqa: E731
            print(f"| {gate} | {mg} | {got} / {len(per)} | {every} / {len(rs)} | {mean(l2):.4f} | {mean(fg):.4f} "
                  f"| {mean(per):.4f} |")

if __name__ == "__main__":
    main()
