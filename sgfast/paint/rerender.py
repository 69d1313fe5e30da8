"""Exact re-rendering of a painting's strokes at any size: rasterize_strokes(mode="exact") +
composite, with each stroke's gate (the instance masks, resized to the output)."""
from __future__ import annotations

import numpy as np
import torch

from sgfast.backend import Ops, get_ops
from sgfast.data.tensor_images import resize_square, resize_to
from sgfast.memory import check_fits, memory_budget
from sgfast.paint.result import PaintResult
from sgfast.strokes import STROKE_PARAMS, colors, shapes


def check_rerender_fits(size, gates=1, budget=None) -> int:
    """The fixed memory of an exact re-render at `size` with `gates` masks (the canvas twice, the
    gates, the uint8 image), in bytes; sgfast.memory.OverBudget, naming the size and --size, when
    it and one stroke's alpha do not fit the budget."""
    plane = 4 * size * size  # one float32 plane
    fixed = 2 * 3 * plane + gates * plane + 3 * size * size
    check_fits(fixed + plane, f"re-rendering at {size} px", "choose a smaller --size", budget)
    return fixed


@torch.no_grad()
def render_exact(strokes, layers, mask_ids, masks, size, supersample=4, background=(0.0, 0.0, 0.0),
                 device="cpu", chunk=16, ops="fused", budget=None):
    """Re-render strokes [N, 13] exactly at `size` (rasterize_strokes mode "exact" + composite).

    masks: list of [h, w] soft masks (any size, resized bilinearly to `size`), gating stroke i by
    masks[mask_ids[i]] (fg) or 1 - it (bg). Returns [3, size, size] float. Strokes are composited in
    chunks of consecutive strokes with the same gate, which is the same as one pass (composite is
    sequential). ops: "fused", "eager" or an Ops (sgfast.backend).

    Memory: the canvas (twice, while a chunk is composited), the gates and the final 8-bit image are
    the fixed part, refused up front (sgfast.memory.OverBudget, naming the size) when over `budget`
    (default sgfast.memory.memory_budget()); the chunk of alpha maps gets what is left, at most
    `chunk` strokes.
    """
    ops = ops if isinstance(ops, Ops) else get_ops(ops)
    composite, rasterize_strokes = ops.composite, ops.rasterize_strokes
    budget = memory_budget() if budget is None else budget
    gated = len({m for m in mask_ids if m is not None})
    fixed = check_rerender_fits(size, gated, budget)
    chunk = max(1, min(chunk, (budget - fixed) // (4 * size * size)))

    strokes = torch.as_tensor(np.asarray(strokes), dtype=torch.float32, device=device).view(-1, STROKE_PARAMS)
    canvas = torch.tensor(background, dtype=torch.float32, device=device).view(1, 3, 1, 1).expand(
        1, 3, size, size).contiguous()
    gates = [None if m is None else resize_square(torch.as_tensor(np.asarray(m), dtype=torch.float32, device=device)
                                            [None, None], size) for m in masks]
    n = strokes.shape[0]
    s = 0
    while s < n:
        e = s + 1
        while e < n and e - s < chunk and mask_ids[e] == mask_ids[s]:
            e += 1
        p = strokes[s:e]
        alpha = rasterize_strokes(shapes(p).contiguous(), size, "exact", supersample)[None]
        color = colors(p[None])
        if mask_ids[s] is None:
            canvas = composite(canvas, alpha, color)
        else:
            layer = torch.tensor([layers[j] == "fg" for j in range(s, e)], device=device)
            canvas = composite(canvas, alpha, color, gates[mask_ids[s]], layer)
        s = e
    return canvas[0].cpu()


def long_side_shape(height, width, long_side):
    """(h, w) with max(h, w) = long_side and the aspect of (height, width)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@torch.no_grad()
def render_painting_at(strokes, background, height, width, long_side, softness=1.0, device="cpu", ops="fused",
                       mask=None, layers=None):
    """A render_strokes painting (method "exact") redrawn with its long side at `long_side`, its
    shape kept: the flat background, then the strokes [N, 13], gated by mask ([h, w] S at any size,
    resized bilinearly) and layers ("fg" / "bg" per stroke) when the painting has them (mode sg).
    Returns [3, h, w] float on the CPU. At the painting's own size this is the painting itself."""
    ops = ops if isinstance(ops, Ops) else get_ops(ops)
    h, w = long_side_shape(height, width, long_side)
    check_fits(4 * 3 * h * w * (3 if mask is None else 4), f"re-rendering at {long_side} px",
               "choose a smaller --size")
    strokes = torch.as_tensor(np.asarray(strokes), dtype=torch.float32, device=device).view(1, -1, STROKE_PARAMS)
    base = torch.tensor(background, dtype=torch.float32, device=device).view(1, 3, 1, 1).expand(1, 3, h, w)
    gates = {}
    if mask is not None:
        s = torch.as_tensor(np.asarray(mask), dtype=torch.float32, device=device)[None, None]
        gates = {"mask": resize_to(s, h, w).contiguous(),
                 "layer": torch.tensor([layer == "fg" for layer in layers], device=device)}
    return ops.render_strokes(base.contiguous(), strokes, softness=softness, **gates)[0].cpu()


def result_exact(result: PaintResult, size, supersample=4, device="cpu", ops="fused"):
    """render_exact of a PaintResult's strokes with its gates (a method "exact" painting: redrawn by
    render_strokes with its long side at `size`)."""
    if result.exact:
        mask = None if result.masks is None else result.masks[0].numpy()
        return render_painting_at(result.strokes, result.background, result.canvas.shape[-2], result.canvas.shape[-1],
                                  size, result.softness, device, ops, mask=mask, layers=result.layers)
    masks = [] if result.masks is None else [m.numpy() for m in result.gate_masks]
    return render_exact(result.strokes, result.layers, result.mask_ids, masks, size, supersample, device=device,
                        ops=ops)
