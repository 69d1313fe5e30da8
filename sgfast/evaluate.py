"""Comparing painting agents on a test split (`sgfast evaluate`).

The split: `split=None` (the default) is the test split, or all the images when the data set has
none in its test split (the bundled samples are all train images), said in one line to `log`.

Every agent paints the same test images with the same number of strokes (steps x strokes per
step; agents with different strokes per step get steps = strokes // K). Per image, then averaged:

* L2 = mean over C, H, W of (I - C)^2 (the baseline's `dist`, paper Table 2); PSNR = 10 log10(1 / L2);
* foreground L2 = the same weighted by the true (soft) mask, as the training validation;
* parts L2 = the same over the pixels of the distinguishing parts (synthetic birds' part_masks/,
  the labels flagged 1 in part_masks.txt; NaN for images without such parts);
* Ψ on the final canvas (paper Table 1): pixel accuracy and IoU of Ψ(canvas) > 0.5 against the
  true mask > 0.5.

Reference rows on the same images: the target itself (Ψ's accuracy on the real image, the upper
bound for the canvases) and a fill with the image's mean colour (L2 of a one-colour painting).
The sg agent gets its masks from Ψ (the paper's setting) unless `true_masks`.
"""
from __future__ import annotations

import csv
import io
import math
import os

import numpy as np
import torch

from sgfast import metrics

COLUMNS = ["agent", "strokes", "l2", "psnr", "fg_l2", "parts_l2", "psi_acc", "psi_iou", "images"]
HEADERS = ["agent", "strokes", "L2", "PSNR (dB)", "fg L2", "parts L2", "Ψ acc", "Ψ IoU", "images"]


def distinguishing_labels(root):
    """Part labels flagged distinguishing in root/part_masks.txt ("<index> <part> <0/1>")."""
    path = os.path.join(root, "part_masks.txt")
    if not os.path.isfile(path):
        return []
    labels = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 3 and f[2] == "1":
                labels.append(int(f[0]))
    return labels


def image_metrics(target, canvas, mask, parts_mask):
    """Per-image L2, PSNR, fg L2, parts L2. target/canvas [B, 3, S, S]; mask, parts_mask [B, 1, S, S]."""
    l2 = metrics.l2(target, canvas)
    psnr = 10 * torch.log10(1.0 / l2)  # inf for an exact copy (the target reference row)
    fg = metrics.fg_l2(target, canvas, mask)
    n_parts = parts_mask.sum((1, 2, 3))
    parts = torch.where(n_parts > 0, ((target - canvas) ** 2 * parts_mask).sum((1, 2, 3)) / (3 * n_parts).clamp_min(1),
                        torch.full_like(l2, float("nan")))
    return {"l2": l2, "psnr": psnr, "fg_l2": fg, "parts_l2": parts}


@torch.no_grad()
def segmentation_metrics(segmenter, images, true_mask):
    """Ψ's pixel accuracy and IoU per image on images [B, 3, S, S] against true_mask [B, 1, S, S]."""
    from sgfast.models.segmenter import predict

    prob, _ = predict(segmenter, images)
    p, t = prob > 0.5, true_mask > 0.5
    acc = (p == t).float().mean((1, 2, 3))
    inter, union = (p & t).sum((1, 2, 3)).float(), (p | t).sum((1, 2, 3)).float()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
    return {"psi_acc": acc, "psi_iou": iou}


def _mean(x):
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def evaluate(dataset, actors, steps=None, num=None, split=None, batch_size=16, segmenter=None,
             renderer=None, expert=None, true_masks=False, device="cpu", ops="fused", grid=0,
             progress=False, painters=None, log=None, rerender=False):
    """Paint the first `num` images of `split` with each agent; returns (rows, grid image or None).

    actors: list of (label, weights path). split: "test", "train", "all", or None: the test split,
    or all the images when the test split is empty (then `log`, if given, is called with one line
    saying so). painters: optional extra (label, fn) where fn(targets [B, 3, S, S], strokes) returns
    canvases (e.g. the optimisation painter); they get the same stroke count. rerender: score each
    agent's strokes re-rendered exactly at the canvas size (rasterize_strokes mode "exact", what a
    painting at any other --size shows) instead of the agent's canvas (for a neural agent, its
    renderer's approximation of the strokes). rows: dicts with COLUMNS (means over the images).
    """
    from sgfast.agent.export import load_actor
    from sgfast.data import CUB200
    from sgfast.models.segmenter import load_segmenter
    from sgfast.paint import DEFAULT_SEGMENTER, PaintError, load_models, paint
    from sgfast.paint.rerender import result_exact

    if not actors and not painters:
        raise PaintError("nothing to evaluate: give at least one --actor")
    metas = []
    for label, path in actors:
        if not os.path.isfile(path):
            raise PaintError(f"{label}: agent weights not found: {path}")
        try:
            metas.append(load_actor(path)[1])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise PaintError(f"{label}: cannot load {path}: {exc}") from None
    sizes = {m["size"] for m in metas}
    if len(sizes) > 1:
        raise PaintError(f"the agents paint different canvas sizes {sorted(sizes)}: compare agents of one config")
    size = sizes.pop() if metas else 64
    per_step = [m["strokes_bg"] + m["strokes_fg"] for m in metas]
    if steps is None:
        steps = min((m["max_step"] for m in metas), default=20)
    # Equal stroke counts: the budget is steps x the largest K; agents with fewer strokes per
    # step take more steps only when it divides evenly (else refuse: the comparison would be unfair).
    budget = steps * max(per_step, default=5)
    for (label, _), k in zip(actors, per_step):
        if budget % k:
            raise PaintError(f"{label}: {k} strokes per step does not divide the stroke budget {budget}")
    seg_path = segmenter or DEFAULT_SEGMENTER
    if not os.path.isfile(seg_path):
        raise PaintError(f"--segmenter: Ψ weights not found: {seg_path}")
    psi, _ = load_segmenter(seg_path)
    psi.to(device).eval()

    # Images are read at 128 px at least (Ψ and the expert were trained on 128-px reads, as
    # `sgfast prepare`); true masks and parts at the canvas size for the metrics.
    try:
        hi = CUB200(dataset, split=split or "test", size=max(size, 128))
        if split is None and len(hi) == 0:  # no test images (e.g. the bundled samples): all of them
            split = "all"
            hi = CUB200(dataset, split=split, size=max(size, 128))
            if log is not None and len(hi):
                log(f"{dataset} has no test-split images: evaluating all {len(hi)} images (choose with --split)")
        lo = CUB200(dataset, split=split or "test", size=size)
    except (OSError, ValueError) as exc:
        raise PaintError(f"DATASET: {exc}") from None
    n = len(lo) if num is None else min(num, len(lo))
    if n == 0:
        hint = " (--split all evaluates every image)" if split in ("test", "train") else ""
        raise PaintError(f"DATASET: the {split or 'test'} split of {dataset} is empty{hint}")
    dist = torch.tensor(distinguishing_labels(dataset), dtype=torch.long)
    samples = [(hi[i], lo[i]) for i in range(n)]
    images = [h["image"] for h, _ in samples]
    true_mask = torch.stack([l["mask"] for _, l in samples])
    if "parts" in samples[0][1] and dist.numel():
        parts = torch.stack([torch.isin(l["parts"], dist) for _, l in samples])[:, None].float()
    else:
        parts = torch.zeros_like(true_mask)

    canvases, target = {}, None
    for (label, path), meta, k in zip(actors, metas, per_step):
        models = load_models(meta["mode"], path, renderer, segmenter if meta["mode"] == "sg" else None, expert,
                             device, ops, need_segmenter=not true_masks)
        masks = [h["mask"][0] for h, _ in samples] if (true_masks and meta["mode"] == "sg") else None
        res = paint(images, mode=meta["mode"], method="agent", steps=budget // k, masks=masks,
                    batch_size=batch_size, frames="none", progress=progress, models=models)
        bad = [r.name for r in res if not r.ok]
        if bad:
            raise PaintError(f"{label}: could not paint {bad[:3]}: {res[0].error}")
        canvases[label] = torch.stack([result_exact(r, size, device=device, ops=ops) if rerender else r.canvas
                                       for r in res])
        target = torch.stack([r.target for r in res])
    if target is None:  # only extra painters: resize the targets as paint() does
        from sgfast.data.tensor_images import resize_square
        target = resize_square(torch.stack(images), size)
    for label, fn in painters or []:
        canvases[label] = torch.cat([fn(target[s:s + batch_size], budget).cpu()
                                     for s in range(0, n, batch_size)])

    rows = []
    refs = {"target (reference)": (target, 0), "mean-colour fill (reference)":
            (target.mean((2, 3), keepdim=True).expand_as(target).contiguous(), 0)}
    entries = [(label, c, budget) for label, c in canvases.items()] + [(label, c, k) for label, (c, k) in refs.items()]
    for label, canvas, strokes in entries:
        m = image_metrics(target, canvas, true_mask, parts)
        m.update(segmentation_metrics(psi, canvas.to(device), true_mask.to(device)))
        row = {"agent": label, "strokes": strokes, "images": n}
        row.update({key: _mean(v.cpu()) for key, v in m.items()})
        rows.append(row)
    grid_img = None
    if grid:
        from sgfast.paint.export import png_bytes  # noqa: F401  (cv2 present)
        g = min(grid, n)
        cols = [target[:g]] + [c[:g] for c in canvases.values()]
        grid_img = torch.cat([torch.cat(list(col), dim=1) for col in cols], dim=2)  # [3, g*S, cols*S]
    return rows, grid_img


def _fmt(key, v):
    if isinstance(v, str):
        return v
    if key in ("strokes", "images"):
        return str(int(v))
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.2f}" if key == "psnr" else f"{v:.4f}"


def table_markdown(rows):
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(k, r[k]) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    return buf.getvalue()


def table_text(rows):
    cells = [HEADERS] + [[_fmt(k, r[k]) for k in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i])
                               for i in range(len(c))) for c in cells) + "\n"


def as_numpy_u8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
