"""`sgfast paint --method exact`: each image painted at its own shape (long side `--size`) by
coarse-to-fine stroke optimisation through the exact renderer (exact_optimizer.py), its strokes
redrawn by `sgfast render` exactly as painted.

Images are painted one at a time (their shapes differ); the progress bar moves per iteration. A
grey photograph (its three channels equal) is painted in grey: every stroke's colour is its grey
level, so no colour appears that the photo does not have.
"""
from __future__ import annotations

import torch

from sgfast.backend import get_ops
from sgfast.data.tensor_images import to_u8_hwc
from sgfast.paint.exact_optimizer import PRESETS, optimize_exact, render_painting, stage_shapes, stroke_counts
from sgfast.paint.inputs import as_image_list, load_images
from sgfast.paint.rerender import long_side_shape
from sgfast.paint.result import PaintError, PaintResult
from sgfast.strokes import SHAPE_PARAMS

DEFAULT_LONG_SIDE = 512
DEFAULT_STROKES = 1000
DEFAULT_PRESET = "fast"
SOFTNESS = 1.0  # the painting's anti-aliasing ramp, pixels at the output size


def is_grey(image: torch.Tensor) -> bool:
    """[3, H, W] with its channels equal to within half a uint8 level."""
    return bool((image.amax(0) - image.amin(0)).max() <= 0.5 / 255)


def paint_exact(images, strokes=DEFAULT_STROKES, long_side=DEFAULT_LONG_SIDE, preset=DEFAULT_PRESET, device="cpu",
                ops="fused", frames="step", progress=False, seed=0):
    """PaintResults (mode "exact", canvas [3, h, w] with max(h, w) = long_side) of `images` (paths,
    arrays, tensors as paint() takes). frames "step": one progress frame per stage; "none": none."""
    if strokes < 1:
        raise PaintError(f"strokes must be >= 1, got {strokes}")
    if not 8 <= long_side <= 16384:
        raise PaintError(f"size must be in [8, 16384], got {long_side}")
    if preset not in PRESETS:
        raise PaintError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if frames not in ("step", "stroke", "none"):
        raise PaintError(f"frames must be 'step', 'stroke' or 'none', got {frames!r}")
    try:
        render_strokes = get_ops(ops).render_strokes
    except (RuntimeError, ValueError) as exc:
        raise PaintError(f"--ops: {exc}") from None
    device = torch.device(device)
    results, loaded = load_images(as_image_list(images), max_side=2 * long_side, mode="exact", keep_aspect=True)
    plans = []
    for _, _, img in loaded:
        h, w = long_side_shape(img.shape[0], img.shape[1], long_side)
        plans.append((h, w, stage_shapes(h, w, long_side)))
    bar = None
    if progress and loaded:
        from tqdm import tqdm

        total = sum(len(shapes) for _, _, shapes in plans) * PRESETS[preset].iters
        bar = tqdm(total=total, desc="paint (exact)", unit="it", dynamic_ncols=True)
    for (i, name, img), (h, w, shapes) in zip(loaded, plans):
        photo = torch.from_numpy(img).permute(2, 0, 1)[None].to(device)
        target = torch.nn.functional.interpolate(photo, size=(h, w), mode="bilinear", align_corners=False,
                                                 antialias=True).clamp(0, 1) if photo.shape[-2:] != (h, w) else photo
        if bar:
            bar.set_postfix_str(name)
        params, background = optimize_exact(target, strokes, render_strokes, long_side=long_side, preset=preset,
                                            seed=seed + i, on_iteration=(lambda *_: bar.update(1)) if bar else None)
        if is_grey(target[0]):  # a grey photo stays grey
            params[..., SHAPE_PARAMS:] = params[..., SHAPE_PARAMS:].mean(-1, keepdim=True)
            background[:] = background.mean(-1, keepdim=True)
        with torch.no_grad():
            canvas = render_painting(params, background, h, w, render_strokes, SOFTNESS)
            counts = stroke_counts(strokes, len(shapes))
            keep = []
            if frames != "none":  # the painting after each stage
                ends = [sum(counts[:k + 1]) for k in range(len(counts))]
                keep = [to_u8_hwc(background.view(3, 1, 1).expand(3, h, w))]
                keep += [to_u8_hwc(render_painting(params[:, :e], background, h, w, render_strokes, SOFTNESS)[0])
                         for e in ends[:-1]] + [to_u8_hwc(canvas[0])]
        steps = [k for k, c in enumerate(counts) for _ in range(c)]
        results[i] = PaintResult(
            name=name, target=target[0].cpu(), canvas=canvas[0].cpu(), strokes=params[0].double().cpu().numpy(),
            layers=["all"] * strokes, mask_ids=[None] * strokes, steps=steps, frames=keep, mode="exact",
            background=tuple(float(c) for c in background[0]), softness=SOFTNESS)
    if bar:
        bar.close()
    return results
