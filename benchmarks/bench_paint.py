"""Batch painting throughput: images/s and strokes/s, batched vs one image at a time vs the eager ops.

    python benchmarks/bench_paint.py [--images 16] [--batch-size 16] [--steps N] [--actor W] [--device cpu]

Semantics (S from the bundled masks, G from the expert) are computed once outside the timed part;
the timed part is the agent's episode (actor + renderer + composite) for all images.
"""
import argparse
import glob
import os
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None, help="agent steps (default: the agent's episode)")
    ap.add_argument("--actor", default=None, help="sg agent weights (default: the shipped tiny agent)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sgfast.data.tensor_images import resize_square
    from sgfast.paint import load_models, semantics
    from sgfast.paint.agent_painter import paint_batch
    from sgfast.data.imageio import read_image_rgb

    paths = sorted(glob.glob(os.path.join(ROOT, "sgfast/assets/samples/birds/images/*/*.jpg")))
    masks = [p.replace("/images/", "/segmentations/")[:-4] + ".png" for p in paths]
    idx = [i % len(paths) for i in range(args.images)]
    imgs = [read_image_rgb(paths[i]) for i in idx]
    rows = []
    for label, ops, bs in (("batched, fused", "fused", args.batch_size), ("one at a time, fused", "fused", 1),
                           ("batched, eager", "eager", args.batch_size)):
        models = load_models("sg", actor=args.actor, device=args.device, ops=ops, need_segmenter=False)
        steps = args.steps or int(models.meta["max_step"])
        sem = semantics(models, imgs, [masks[i] for i in idx])
        targets = torch.cat([resize_square(torch.from_numpy(im).permute(2, 0, 1)[None], models.size) for im in imgs])
        paint_batch(models, targets[:bs], sem[:bs], 2, "none")  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, args.images, bs):
            paint_batch(models, targets[s:s + bs], sem[s:s + bs], steps, "none")
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        k = models.meta["strokes_bg"] + models.meta["strokes_fg"]
        rows.append((label, args.images / dt, args.images * steps * k / dt))
    base = rows[0][1]
    print(f"{args.images} images, {steps} steps x {k} strokes, batch {args.batch_size}, device {args.device}, "
          f"{args.threads} threads")
    print("| pipeline | images/s | strokes/s | vs batched fused |\n|---|---|---|---|")
    for label, ips, sps in rows:
        print(f"| {label} | {ips:.1f} | {sps:.0f} | {ips / base:.2f}x |")


if __name__ == "__main__":
    main()
