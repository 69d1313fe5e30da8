"""`sgfast paint --divide D`: the baseline's grid refinement (Learning to Paint, test.py). An
inference-only trick, not in the paper.

1. The first steps // 2 steps paint the whole image at the agent's canvas size S.
2. The canvas is upscaled (bilinear) to D*S and cut into D x D patches of S x S; each patch is
   painted for the remaining steps against the matching patch of the target read at D*S (all
   patches of all images in one batch; the step input continues at steps // 2, where the authors
   restart it at 0 with a halved episode).
3. The patches are stitched and the seams smoothed: a 3x3 box filter applied to the two pixel
   rows / columns either side of every patch border (the authors smooth the seams the same way).

sg mode: each patch is painted with its own crops of S (every instance's, so Eq. 16 picks the
instance per patch), of G and of the target; the fg and bg layers are refined and stitched the same
way. A patch without foreground gets an empty S: its fg strokes are gated off, its bg strokes not.
The exported strokes are mapped to the D*S canvas (patch positions scaled and offset, radius z / D,
so one pixel stays one pixel): `sgfast render` redraws them; the seam smoothing is not in them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sgfast.data.tensor_images import on_uint8_levels, resize_square, to_u8_hwc
from sgfast.paint.agent_painter import paint_batch
from sgfast.paint.instances import DEFAULT_MIN_GAIN, stroke_gates
from sgfast.strokes import STROKE_PARAMS


def smooth_seams(canvas, d):
    """3x3 box filter on the 2 pixels either side of each internal patch border. canvas [B, 3, H, W]."""
    if d <= 1:
        return canvas
    h = canvas.shape[-1]
    p = h // d
    blurred = F.avg_pool2d(F.pad(canvas, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    sel = torch.zeros(h, dtype=torch.bool, device=canvas.device)
    for i in range(1, d):
        sel[i * p - 2:i * p + 2] = True
    band = sel[:, None] | sel[None, :]
    return torch.where(band, blurred, canvas)


def to_patches(x, d):
    """[B, C, d*S, d*S] -> [B*d*d, C, S, S], patch (r, c) at index b*d*d + r*d + c."""
    b, c, h, _ = x.shape
    s = h // d
    return x.view(b, c, d, s, d, s).permute(0, 2, 4, 1, 3, 5).reshape(b * d * d, c, s, s)


def from_patches(x, d):
    """Inverse of to_patches."""
    n, c, s, _ = x.shape
    b = n // (d * d)
    return x.view(b, d, d, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, c, d * s, d * s)


def to_global(strokes, d, r, c):
    """Stroke params [N, 13] painted in patch (r, c) of a D x D grid -> params on the whole canvas."""
    g = strokes.clone()
    g[:, [0, 4]] = (strokes[:, [0, 4]] + r) / d   # x = rows; (x1, y1) are relative: unchanged
    g[:, [1, 5]] = (strokes[:, [1, 5]] + c) / d
    g[:, [6, 7]] = strokes[:, [6, 7]] / d         # radius 1 + z size / 2 in pixels: the same pixels
    return g


@torch.no_grad()
def paint_divided(models, targets, targets_hi, steps, frames_per, d, sem=None, sem_hi=None, bg_gate="chosen",
                  min_gain=DEFAULT_MIN_GAIN):
    """The agent with grid refinement. targets [B, 3, S, S], targets_hi [B, 3, d*S, d*S]; sg mode:
    sem / sem_hi per image (masks [M, ., .], boxes, gbp [M, ., .]) at S and at d*S.

    Returns per image a dict: canvas [3, dS, dS]; fg, bg: the layers at dS (sg mode, else None);
    strokes [N, 13] (global); steps, layers ("bg"/"fg"; sg mode), mask_ids (the instance gating
    each stroke; sg mode) per stroke; frames (uint8 [dS, dS, 3]). bg_gate, min_gain: as in
    sgfast.paint.paint (the instance choice restarts per patch: its errors are the patch's).
    """
    sg = models.mode == "sg"
    b, size = targets.shape[0], models.size
    kb, kf = models.meta["strokes_bg"], models.meta["strokes_fg"]
    k = kb + kf
    first = steps // 2
    rest = steps - first
    if not sg:
        sem = sem_hi = [None] * b
    if first:
        c1, fg1, bg1, act1, ch1, fr1 = paint_batch(models, targets, sem, first, frames_per, bg_gate=bg_gate,
                                                    min_gain=min_gain)
    else:
        c1, act1, ch1 = torch.zeros_like(targets), [], []
        fg1, bg1 = torch.zeros_like(targets), torch.zeros_like(targets)
        fr1 = [[to_u8_hwc(torch.zeros(3, size, size))] for _ in range(b)]
    up = resize_square(c1, d * size)
    up = on_uint8_levels(up)  # the canvas stays on uint8 levels, as between agent steps
    layers0 = (to_patches(resize_square(fg1, d * size), d), to_patches(resize_square(bg1, d * size), d)) if sg else None
    # Each patch is painted as an image of its own: its crop of the target, of every instance's S
    # and of G (whole-image G: the expert classifies whole objects, a patch is not one). The box is
    # no input of the actor, so it is not cropped.
    sem2 = [None] * (b * d * d)
    if sg:
        sem2 = []
        for m, _, g in sem_hi:
            mp, gp = to_patches(m[None], d), to_patches(g[None], d)
            sem2 += [(mp[q], None, gp[q]) for q in range(d * d)]
    c2, fg2, bg2, act2, ch2, fr2 = paint_batch(models, to_patches(targets_hi, d), sem2, rest, frames_per,
                                                canvas0=to_patches(up, d), t0=first, layers0=layers0, bg_gate=bg_gate,
                                                min_gain=min_gain)
    canvas = smooth_seams(from_patches(c2, d), d)
    fg = smooth_seams(from_patches(fg2, d), d) if sg else None
    bg = smooth_seams(from_patches(bg2, d), d) if sg else None
    out = []
    for j in range(b):
        s1 = [a[j].view(k, STROKE_PARAMS) for a in act1]
        gates = (lambda us: stroke_gates(us, kb, kf, sem[j][0].shape[0], bg_gate)) if sg else None  # noqa: E731
        ids = gates([int(ch1[t][j]) for t in range(first)]) if sg else []
        s2 = []
        for t, a in enumerate(act2):  # step by step, every patch's K strokes in grid order
            for r in range(d):
                for c in range(d):
                    q = j * d * d + r * d + c
                    s2.append(to_global(a[q].view(k, STROKE_PARAMS), d, r, c))
                    if sg:
                        ids += gates([int(ch2[t][q])])
        strokes = torch.cat(s1 + s2).double().numpy()
        frames = []
        if frames_per != "none":
            up_frame = lambda f: f.repeat(d, axis=0).repeat(d, axis=1)  # noqa: E731 (nearest)
            frames = [up_frame(f) for f in fr1[j]]
            for t in range(1, len(fr2[0])):  # frame 0 of phase 2 is the upscaled canvas
                tiles = torch.stack([torch.from_numpy(fr2[j * d * d + q][t]).permute(2, 0, 1)
                                     for q in range(d * d)]).float()
                frames.append(from_patches(tiles, d)[0].permute(1, 2, 0).byte().numpy())
            frames[-1] = to_u8_hwc(canvas[j])
        out.append({
            "canvas": canvas[j].cpu(), "fg": None if fg is None else fg[j].cpu(),
            "bg": None if bg is None else bg[j].cpu(), "strokes": strokes,
            "steps": [t for t in range(first) for _ in range(k)] + [first + t for t in range(rest)
                                                                   for _ in range(d * d * k)],
            "layers": (["bg"] * kb + ["fg"] * kf) * (len(strokes) // k), "mask_ids": ids, "frames": frames})
    return out
