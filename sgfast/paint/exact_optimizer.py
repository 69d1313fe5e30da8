"""Coarse-to-fine stroke optimisation through the exact renderer (`render_strokes`), at the image's
own shape.

A painting is a flat background (the target's mean colour) and N strokes in [0, 1]^13, the same
numbers at every resolution: rows scale with H, columns with W, radii with sqrt(H W), so a stroke
keeps its place and stays round whatever the size it is rendered at. They are found in stages at
rising resolution (long side 64, 128, ... up to the output's):

1. new strokes are placed where the error of the current painting is largest (positions drawn
   with probability proportional to the squared error, smoothed), sized to the stage (their
   radius a few pixels of the stage's side: coarse stages paint large strokes, fine ones small),
   coloured from the target under them, mostly opaque;
2. all strokes so far are optimised by Adam on the mean squared error at the stage's resolution
   (parameters as logits: p = sigmoid(logit) keeps every number in [0, 1]), with the softness
   (the anti-aliasing ramp, in pixels) annealed from 2 to 1 so that strokes whose edges do not yet
   meet the error still get gradients.

Guidance (mode sg): with a foreground mask S, each stage's new strokes are split between background
strokes (gated by 1 - S, placed where the error outside the object is) and foreground strokes
(gated by S, placed on the object) in proportion to the error each side; the stage paints its
background strokes first. With a focus map G and weight nu the loss adds the focus term of Eq. 14,
nu * sum(G (C - I)^2) / sum(G), and new strokes go where the loss (not just the error) is largest.
Without S (baseline mode) no stroke is gated.

The images of a batch are painted together (one render_strokes call per iteration; their losses are
summed, Adam's update is per parameter, so each image's strokes only follow its own loss). The
painting returned is the strokes rendered at the output size with softness 1 (what
`sgfast render strokes.json` reproduces).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from sgfast.data.tensor_images import resize_to
from sgfast.strokes import STROKE_PARAMS

MIN_STAGE_SIDE = 64


@dataclasses.dataclass(frozen=True)
class Preset:
    """How the stroke budget is spent: the iterations per stage and how fast they go."""

    name: str
    iters: int          # Adam iterations per stage
    lr: float           # Adam step on the logits
    stroke_px: float    # new strokes' radius at each stage, in the stage's pixels (about)


PRESETS = {
    "fast": Preset("fast", iters=40, lr=0.06, stroke_px=1.5),
    "balanced": Preset("balanced", iters=80, lr=0.05, stroke_px=1.5),
    "quality": Preset("quality", iters=160, lr=0.04, stroke_px=1.5),
}


def stage_shapes(height: int, width: int, long_side: int) -> list:
    """The (h, w) of each stage: long side 64, 128, ... doubling up to `long_side`, the aspect ratio
    of (height, width) kept (each side at least 8)."""
    sides, s = [], long_side
    while True:
        sides.append(s)
        if s <= MIN_STAGE_SIDE:
            break
        s = max(MIN_STAGE_SIDE, (s + 1) // 2)
    shapes = []
    for side in reversed(sides):
        scale = side / max(height, width)
        shapes.append((max(8, round(height * scale)), max(8, round(width * scale))))
    return shapes


def stroke_counts(total: int, stages: int) -> list:
    """New strokes per stage: later stages get more (their strokes are smaller), every stage >= 1
    while strokes are left; the counts add up to `total`."""
    weights = [2 ** i for i in range(stages)]
    counts = [int(total * w / sum(weights)) for w in weights]
    counts[-1] += total - sum(counts)
    return counts


def _logit(p):
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


def radius_z(radius_px: float, h: int, w: int) -> float:
    """The z in [0, 1] whose radius (1 + 64 z) / 256 * sqrt(h w) is radius_px (clipped)."""
    z = (256 * radius_px / math.sqrt(h * w) - 1) / 64
    return min(max(z, 0.0), 1.0)


def place_strokes(target, canvas, n, radius_px, generator, weight=None):
    """n new strokes per image [B, n, 13] where |target - canvas|^2 (times `weight` [B, 1, h, w] if
    given; blurred) is largest: start point drawn from the error, end point a stroke length away in
    a random direction, radius about radius_px stage pixels, colour the target's (blurred) under the
    start, opacity 0.85-1."""
    b, _, h, w = target.shape
    dev = target.device
    err = ((target - canvas) ** 2).sum(1, keepdim=True)
    if weight is not None:
        err = err * weight
    k = max(3, int(2 * radius_px) | 1)
    err = F.avg_pool2d(err, k, stride=1, padding=k // 2, count_include_pad=False)[:, 0]
    prob = err.flatten(1) + 1e-12
    idx = torch.multinomial(prob.cpu(), n, replacement=True, generator=generator).to(dev)  # [B, n]
    rows, cols = idx // w, idx % w
    u = lambda *shape: torch.rand(*shape, generator=generator).to(dev)  # noqa: E731
    p = torch.empty(b, n, STROKE_PARAMS, device=dev, dtype=target.dtype)
    # x = rows: a pixel centre (r + 0.5) / h maps back through (255 v + 0.5) / 256 to v
    x0 = (((rows.to(target.dtype) + u(b, n)) / h) * 256 - 0.5) / 255
    y0 = (((cols.to(target.dtype) + u(b, n)) / w) * 256 - 0.5) / 255
    angle = 2 * math.pi * u(b, n)
    length = radius_px * (2 + 4 * u(b, n))  # pixels
    x2 = x0 + length * torch.cos(angle) / h
    y2 = y0 + length * torch.sin(angle) / w
    p[..., 0], p[..., 1] = x0, y0
    p[..., 2], p[..., 3] = 0.5 + 0.1 * (u(b, n) - 0.5), 0.5 + 0.1 * (u(b, n) - 0.5)  # a slight curve
    p[..., 4], p[..., 5] = x2, y2
    z = radius_z(radius_px, h, w)
    p[..., 6:8] = z * (0.75 + 0.5 * u(b, n, 2))
    p[..., 8:10] = 0.85 + 0.15 * u(b, n, 2)
    blurred = F.avg_pool2d(target, k, stride=1, padding=k // 2, count_include_pad=False)
    p[..., 10:13] = blurred.flatten(2).gather(2, idx[:, None, :].expand(b, 3, n)).transpose(1, 2)
    return p.clamp(0, 1)


def background_of(target):
    """[B, 3, 1, 1]: each image's mean colour (the flat fill the strokes start from)."""
    return target.mean((2, 3), keepdim=True)


def pixel_weights(focus, nu, h, w):
    """The loss's weight of each pixel [B, 1, h, w]: 1 / (h w) (the mean squared error) plus
    nu G / sum(G) (the focus term), or None without a focus term."""
    if focus is None or nu == 0:
        return None
    return 1.0 / (h * w) + nu * focus / focus.sum((2, 3), keepdim=True).clamp(min=1e-12)


def stage_loss(canvas, target, weight):
    """Per-image loss summed over the batch: mean squared error, or the weighted sum (pixel_weights)."""
    sq = ((canvas - target) ** 2).mean(1, keepdim=True)
    return (sq.mean((1, 2, 3)) if weight is None else (sq * weight).sum((1, 2, 3))).sum()


def split_new(target, current, new, weight, mask):
    """How many of a stage's `new` strokes are background strokes: the share of the (weighted)
    error that lies outside S, over the batch."""
    err = ((target - current) ** 2).sum(1, keepdim=True)
    if weight is not None:
        err = err * weight
    outside, total = float((err * (1 - mask)).sum()), float(err.sum())
    return 0 if total <= 0 else min(new, max(0, round(new * outside / total)))


def optimize_exact(target, n_strokes, render_strokes, long_side=None, preset="balanced", init=None, seed=0,
                   on_iteration=None, mask=None, focus=None, nu=0.0, init_layer=None):
    """Paint target [B, 3, H, W] (float in [0, 1], the image's shape) with n_strokes strokes per image.

    render_strokes: the op (sgfast.backend's fused or eager one). long_side: the last stage's long
    side (default: the target's). init [B, M, 13] (M <= n_strokes): strokes to start from (e.g. the
    agent's), kept first in the painting order; init_layer [M] bool their layers (with a mask).
    mask [B, 1, H, W]: S, the strokes' gates (None: no gates). focus [B, 1, H, W]: G of the focus
    term, weighted nu. on_iteration(stage, iteration, loss): progress.
    Returns (strokes [B, n_strokes, 13] in [0, 1], background [B, 3], layer [n_strokes] bool (True:
    foreground) or None without a mask).
    """
    if n_strokes < 1:
        raise ValueError(f"strokes must be >= 1, got {n_strokes}")
    if nu < 0:
        raise ValueError(f"nu must be >= 0, got {nu}")
    if nu > 0 and focus is None:
        raise ValueError("a focus weight nu > 0 needs a focus map")
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    b, _, height, width = target.shape
    long_side = long_side or max(height, width)
    shapes = stage_shapes(height, width, long_side)
    have = 0 if init is None else init.shape[1]
    if have > n_strokes:
        raise ValueError(f"{have} initial strokes for a budget of {n_strokes}")
    counts = stroke_counts(n_strokes - have, len(shapes))
    gen = torch.Generator().manual_seed(seed)
    background = background_of(target).detach()
    logits = _logit(init.detach()) if init is not None else target.new_zeros(b, 0, STROKE_PARAMS)
    layer = None
    if mask is not None:
        layer = (init_layer.to(torch.bool).cpu() if init_layer is not None
                 else torch.ones(have, dtype=torch.bool))
        if layer.shape != (have,):
            raise ValueError(f"init_layer must be [{have}], got {tuple(layer.shape)}")
    for stage, ((h, w), new) in enumerate(zip(shapes, counts)):
        tgt = resize_to(target, h, w)
        msk = None if mask is None else resize_to(mask, h, w).contiguous()
        weight = pixel_weights(None if focus is None else resize_to(focus, h, w), nu, h, w)
        base = background.expand(b, 3, h, w).contiguous()
        gates = {} if msk is None else {"mask": msk, "layer": layer}
        if new:
            with torch.no_grad():
                current = render_strokes(base, torch.sigmoid(logits), softness=1.0, **gates) if logits.shape[1] else base
                radius = preset.stroke_px * max(1.0, (len(shapes) - stage))  # coarse stages: bigger strokes
                if msk is None:
                    fresh = place_strokes(tgt, current, new, radius, gen, weight)
                    logits = torch.cat([logits, _logit(fresh)], 1)
                else:  # background strokes where the error outside S is, then foreground ones on S
                    n_bg = split_new(tgt, current, new, weight, msk)
                    ones = torch.ones_like(msk) if weight is None else weight
                    parts = [(n_bg, ones * (1 - msk), False), (new - n_bg, ones * msk, True)]
                    for n, where, fg in parts:
                        if n:
                            logits = torch.cat([logits, _logit(place_strokes(tgt, current, n, radius, gen, where))], 1)
                            layer = torch.cat([layer, torch.full((n,), fg, dtype=torch.bool)])
        gates = {} if msk is None else {"mask": msk, "layer": layer.to(target.device)}
        logits = logits.detach().requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=preset.lr)
        for it in range(preset.iters):
            softness = 2.0 - it / max(1, preset.iters - 1)  # 2 px -> 1 px
            with torch.enable_grad():
                canvas = render_strokes(base, torch.sigmoid(logits), softness=softness, **gates)
                loss = stage_loss(canvas, tgt, weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            if on_iteration is not None:
                on_iteration(stage, it, float(loss.detach()) / b)
    return torch.sigmoid(logits).detach(), background[:, :, 0, 0], layer


def render_painting(strokes, background, height, width, render_strokes, softness=1.0, mask=None, layer=None):
    """The painting at (height, width): the background, then the strokes (gated by mask [B, 1,
    height, width] and layer when given). [B, 3, height, width]."""
    b = strokes.shape[0]
    base = background.view(b, 3, 1, 1).expand(b, 3, height, width).contiguous()
    gates = {} if mask is None else {"mask": mask, "layer": layer.to(strokes.device)}
    return render_strokes(base, strokes, softness=softness, **gates)
