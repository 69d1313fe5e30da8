"""`sgfast paint --method exact`: each image painted at its own shape (long side `--size`) by
coarse-to-fine stroke optimisation through the exact renderer (exact_optimizer.py), its strokes
redrawn by `sgfast render` exactly as painted.

Mode sg (the default): the strokes are background strokes gated by 1 - S and foreground strokes
gated by S, S from a --mask file, a segmenter, or the whole image (photo_semantics.py); with nu > 0
the loss adds the focus term on G. Mode baseline: no gates. init "agent": the agent paints the image
(squeezed to its square canvas) first and the optimisation starts from its strokes.

Images of the same shape are painted together, up to batch_size at a time (one render_strokes call
per iteration for the batch); the progress bar moves per iteration. A grey photograph (its three
channels equal) is painted in grey: every stroke's colour is its grey level, so no colour appears
that the photo does not have.
"""
from __future__ import annotations

import torch

from sgfast.backend import get_ops
from sgfast.data.tensor_images import on_uint8_levels, resize_square, resize_to, to_u8_hwc
from sgfast.memory import OverBudget, check_fits
from sgfast.paint.exact_optimizer import PRESETS, optimize_exact, render_painting, stage_shapes, stroke_counts
from sgfast.paint.inputs import as_image_list, load_images, mask_box
from sgfast.paint.photo_semantics import Guides, photo_guidance
from sgfast.paint.rerender import long_side_shape
from sgfast.paint.result import PaintError, PaintResult
from sgfast.strokes import SHAPE_PARAMS, STROKE_PARAMS

DEFAULT_LONG_SIDE = 512
DEFAULT_STROKES = 1000
DEFAULT_PRESET = "balanced"
SOFTNESS = 1.0  # the painting's anti-aliasing ramp, pixels at the output size
INITS = ("none", "agent")
# float32 images of the last stage the optimiser holds per pixel (target, canvas, its gradient,
# the flat base, S, G, Adam's view of them): what a painting at long side L costs, L x L at most
BYTES_PER_PIXEL = 64
DEFAULT_INIT = "none"


def is_grey(image: torch.Tensor) -> bool:
    """[3, H, W] with its channels equal to within half a uint8 level."""
    return bool((image.amax(0) - image.amin(0)).max() <= 0.5 / 255)


def check_exact_options(strokes, long_side, preset, frames, mode, nu, init, batch_size, n_images, masks):
    """Every option of paint_exact, checked before any model or image is read (PaintError)."""
    if strokes < 1:
        raise PaintError(f"strokes must be >= 1, got {strokes}")
    if not 8 <= long_side <= 16384:
        raise PaintError(f"size must be in [8, 16384], got {long_side}")
    try:
        check_painting_fits(long_side)
    except OverBudget as exc:
        raise PaintError(str(exc)) from None
    if preset not in PRESETS:
        raise PaintError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if frames not in ("step", "stroke", "none"):
        raise PaintError(f"frames must be 'step', 'stroke' or 'none', got {frames!r}")
    if mode not in ("sg", "baseline"):
        raise PaintError(f"mode must be 'sg' or 'baseline', got {mode!r}")
    if not nu >= 0:
        raise PaintError(f"nu must be >= 0, got {nu}")
    if nu > 0 and mode != "sg":
        raise PaintError("the focus term (nu > 0) needs mode 'sg' (G lives inside S)")
    if init not in INITS:
        raise PaintError(f"init must be one of {INITS}, got {init!r}")
    if batch_size < 1:
        raise PaintError(f"batch_size must be >= 1, got {batch_size}")
    if masks is not None and len(masks) != n_images:
        raise PaintError(f"masks: {len(masks)} given for {n_images} images")
    if masks is not None and mode != "sg" and any(m is not None for m in masks):
        raise PaintError("masks apply to mode 'sg'")


def check_painting_fits(long_side: int):
    """OverBudget when painting one image at `long_side` (a square, the worst case) may not fit."""
    check_fits(BYTES_PER_PIXEL * long_side * long_side, f"painting at {long_side} px", "choose a smaller --size")


def agent_strokes(models, targets, mask, focus, steps=None):
    """The agent's painting of targets [B, 3, h, w] (squeezed to its square canvas) as strokes to
    start from: ([B, M, 13], layer [M] bool or None). mask / focus [B, 1, h, w] (sg: its S and G)."""
    from sgfast.paint.agent_painter import paint_batch
    from sgfast.paint.photo_semantics import detail_map

    size, meta = models.size, models.meta
    steps = int(meta["max_step"] if steps is None else steps)
    sq = resize_square(targets, size).to(models.device)
    sem = None
    if models.mode == "sg":
        s = on_uint8_levels(resize_square(mask, size))
        g = on_uint8_levels(resize_square(focus if focus is not None else detail_map(targets) * (mask > 0.5), size))
        sem = [(s[j], mask_box(s[j, 0].cpu())[None], g[j]) for j in range(len(sq))]
    with torch.no_grad():
        _, _, _, actions, _, _ = paint_batch(models, sq, sem, steps, "none", min_gain=None)
    k = meta["strokes_bg"] + meta["strokes_fg"]
    strokes = torch.stack(actions, 1).reshape(len(sq), steps * k, STROKE_PARAMS).to(targets)
    layer = None
    if models.mode == "sg":
        layer = (torch.arange(k) >= meta["strokes_bg"]).repeat(steps)
        if bool((mask >= 1).all()):  # no background (S = 1): gated by 1 - S its strokes would paint black
            layer[:] = True
    return strokes.clamp(0, 1), layer


def paint_exact(images, strokes=DEFAULT_STROKES, long_side=DEFAULT_LONG_SIDE, preset=DEFAULT_PRESET, device="cpu",
                ops="fused", frames="step", progress=False, seed=0, mode="sg", masks=None, guides=None, nu=0.0,
                init="none", models=None, batch_size=8):
    """PaintResults (canvas [3, h, w] with max(h, w) = long_side) of `images` (paths, arrays,
    tensors as paint() takes). frames "step": one progress frame per stage; "none": none.
    masks: per image a --mask (path / array) or None; guides: photo_semantics.Guides (None: the
    weight-free defaults); nu: the focus term's weight; init "agent" needs `models` (the agent's
    weights.Models) and starts from its strokes (they count in `strokes`)."""
    images = as_image_list(images)
    check_exact_options(strokes, long_side, preset, frames, mode, nu, init, batch_size, len(images), masks)
    if init == "agent" and models is None:
        raise PaintError("init 'agent' needs the agent's models")
    try:
        render_strokes = get_ops(ops).render_strokes
    except (RuntimeError, ValueError) as exc:
        raise PaintError(f"--ops: {exc}") from None
    guides = guides or Guides()
    device = torch.device(device)
    results, loaded = load_images(images, max_side=2 * long_side, mode=mode, keep_aspect=True)
    # the images, at their painting's shape, with their guidance; an unreadable mask fails its image
    prepared = []
    for i, name, img in loaded:
        h, w = long_side_shape(img.shape[0], img.shape[1], long_side)
        photo = torch.from_numpy(img).permute(2, 0, 1)[None].to(device)
        target = resize_to(photo, h, w)
        s = g = None
        if mode == "sg":
            try:
                s, g = photo_guidance(target, guides, None if masks is None else masks[i], need_focus=nu > 0)
            except (OSError, ValueError) as exc:
                results[i] = PaintResult(name=name, error=f"mask: {exc}", mode=mode)
                continue
        prepared.append((i, name, target, s, g))
    batches = same_shape_batches(prepared, batch_size)
    bar = None
    if progress and batches:
        from tqdm import tqdm

        total = sum(len(stage_shapes(*b[0][2].shape[-2:], long_side)) for b in batches) * PRESETS[preset].iters
        bar = tqdm(total=total, desc=f"paint (exact, {mode})", unit="it", dynamic_ncols=True)
    for batch in batches:
        target = torch.cat([t for _, _, t, _, _ in batch])
        mask = torch.cat([s for *_, s, _ in batch]) if mode == "sg" else None
        focus = torch.cat([g for *_, g in batch]) if nu > 0 else None
        init_strokes = init_layer = None
        if init == "agent":
            init_strokes, init_layer = agent_strokes(models, target, mask, focus)
            if init_strokes.shape[1] > strokes:
                raise PaintError(f"the agent paints {init_strokes.shape[1]} strokes, more than --strokes {strokes}")
        if bar:
            bar.set_postfix_str(", ".join(name for _, name, *_ in batch)[:40])
        params, background, layer = optimize_exact(
            target, strokes, render_strokes, long_side=long_side, preset=preset, init=init_strokes, seed=seed,
            on_iteration=(lambda *_: bar.update(1)) if bar else None, mask=mask, focus=focus, nu=nu,
            init_layer=init_layer)
        have = 0 if init_strokes is None else init_strokes.shape[1]
        for j, (i, name, tgt, s, g) in enumerate(batch):
            results[i] = exact_result(name, tgt, params[j:j + 1], background[j:j + 1], layer, s, g, mode, have,
                                      frames, render_strokes)
    if bar:
        bar.close()
    return results


def same_shape_batches(prepared, batch_size):
    """Batches of the same (h, w), at most batch_size each, in the order the shapes first appear."""
    groups = {}
    for item in prepared:
        groups.setdefault(tuple(item[2].shape[-2:]), []).append(item)
    return [g[s:s + batch_size] for g in groups.values() for s in range(0, len(g), batch_size)]


@torch.no_grad()
def exact_result(name, target, params, background, layer, mask, focus, mode, have, frames, render_strokes):
    """One painted image as a PaintResult: params [1, N, 13], background [1, 3], target [1, 3, h, w],
    mask / focus [1, 1, h, w] (sg) or None; `have` strokes came from the initialisation."""
    h, w = target.shape[-2:]
    n = params.shape[1]
    params, background = params.clone(), background.clone()
    if is_grey(target[0]):  # a grey photo stays grey
        params[..., SHAPE_PARAMS:] = params[..., SHAPE_PARAMS:].mean(-1, keepdim=True)
        background[:] = background.mean(-1, keepdim=True)
    gates = {"mask": mask, "layer": layer} if mode == "sg" else {}
    canvas = render_painting(params, background, h, w, render_strokes, SOFTNESS, **gates)
    counts = stroke_counts(n - have, len(stage_shapes(h, w, max(h, w))))
    ends = [have + sum(counts[:k + 1]) for k in range(len(counts))]
    keep = []
    if frames != "none":  # the flat fill, the agent's strokes (if any), then the painting after each stage
        flat = background.view(3, 1, 1).expand(3, h, w)
        keep = [to_u8_hwc(flat)]
        for e in ([have] if have else []) + ends[:-1]:
            part = {"mask": mask, "layer": layer[:e]} if mode == "sg" else {}
            keep.append(to_u8_hwc(render_painting(params[:, :e], background, h, w, render_strokes, SOFTNESS,
                                                  **part)[0]))
        keep.append(to_u8_hwc(canvas[0]))
    steps = [0] * have + [1 + k for k, c in enumerate(counts) for _ in range(c)]
    common = dict(name=name, target=target[0].cpu(), canvas=canvas[0].cpu(), strokes=params[0].double().cpu().numpy(),
                  steps=steps, frames=keep, mode=mode, background=tuple(float(c) for c in background[0]),
                  softness=SOFTNESS)
    if mode != "sg":
        return PaintResult(layers=["all"] * n, mask_ids=[None] * n, **common)
    blank = torch.zeros_like(background)
    layers = [None, None]
    for fg in (True, False):  # each layer's strokes alone on a blank canvas
        sel = layer == fg
        layers[fg] = render_painting(params[:, sel], blank, h, w, render_strokes, SOFTNESS, mask=mask,
                                     layer=layer[sel])[0].cpu()
    return PaintResult(layers=["fg" if f else "bg" for f in layer.tolist()], mask_ids=[0] * n,
                       fg_layer=layers[True], bg_layer=layers[False], masks=mask[0].cpu(),
                       boxes=mask_box(mask[0, 0].cpu())[None], gbp=None if focus is None else focus[0].cpu(),
                       **common)
