"""`sgfast.paint.paint(images, ...)`, the one entry point of painting (and of `sgfast paint`): it
checks the options, reads the images, computes the semantics and hands each batch to the painting
method: exact coarse-to-fine stroke optimisation at the image's own shape (exact_painter.py; the
default), the agent (agent_painter.py), the agent with grid refinement (divide_painter.py) or direct
stroke optimisation through the neural renderer (optimize_painter.py).

With method "agent", per image: read it, get the soft foreground mask S and box (Ψ, or given
masks / boxes), the guided-backprop map G (the expert), then run the actor for `steps` steps; each
step renders its K strokes with the neural renderer and composites them (sg mode: the first
strokes_bg strokes are background strokes gated by 1 - S, the rest foreground strokes gated by S;
Eq. 3-4). As in training (sgfast.agent.env) the canvas is requantised to uint8 after every step.
Images are painted together in batches; one image's result does not depend on the others in its
batch (the actor runs in eval mode).

Multiple instances (paper Sec. 5, Eq. 16): with instance masks S_1..S_n, every step paints the
instance u = argmax_i ||S_i (I - C_t)||_F of each image, leaving out instances whose painting has
stopped lowering their error (min_gain, instances.py): its mask, box and G become the step's.

The agent's painting is what its neural renderer produced at the agent's canvas size;
`render_exact` (rerender.py) re-renders the same strokes with rasterize_strokes(mode="exact") +
composite at any size.
"""
from __future__ import annotations

import os

import torch

from sgfast.data.tensor_images import resize_square
from sgfast.paint.agent_painter import paint_batch
from sgfast.paint.divide_painter import paint_divided
from sgfast.paint.exact_painter import DEFAULT_INIT, DEFAULT_LONG_SIDE, DEFAULT_PRESET, DEFAULT_STROKES, paint_exact
from sgfast.paint.inputs import as_image_list, load_images
from sgfast.paint.instances import DEFAULT_MIN_GAIN, check_min_gain, stroke_gates
from sgfast.paint.optimize_painter import paint_optimize
from sgfast.paint.photo_semantics import load_guides
from sgfast.paint.result import PaintError, PaintResult
from sgfast.paint.semantics import semantic_maps
from sgfast.paint.weights import DEFAULT_SEGMENTER, load_models
from sgfast.strokes import STROKE_PARAMS

BG_GATES = ("union", "chosen")  # what background strokes keep off with several instances


def paint(images, mode="sg", steps=None, actor=None, renderer=None, segmenter=None, expert=None,
          masks=None, boxes=None, instances=None, device="cpu", ops="fused", batch_size=8,
          frames="step", progress=False, models=None, method="exact", strokes=None, iters=200, lr=0.1, nu=0.0,
          divide=1, bg_gate="chosen", min_gain=DEFAULT_MIN_GAIN, size=None, preset=None, init=None):
    """Paint `images` (paths, [H, W, 3] arrays or [3, H, W] tensors). Returns one PaintResult per
    image, in order; an image that cannot be read gets a result with `.error` set and the others are
    still painted. Set-up problems (weights, options) raise PaintError.

    method: "exact" (the default; no agent, below), "agent" (the trained agent `actor` painting at its
    canvas size) or "optimize" (below). steps, divide, boxes, instances, bg_gate and min_gain are the
    agent's: pass method="agent" with them (method "exact" refuses them, and iters and lr, when set).
    masks / boxes: per-image soft masks (path or array) and boxes (x y w h normalised; path or 4
    numbers), None entries mean "predict with Ψ" (a box defaults to the mask's bounding box when a
    mask is given). instances: per-image lists of instance masks (Eq. 16); bg_gate: what their
    background strokes keep off, "chosen" (the step's instance) or "union" (all); min_gain: an
    instance whose painting lowered its error by less than this fraction of its lowest so far is
    left out of Eq. 16 from then on (None: plain Eq. 16; sgfast/paint/instances.py). frames: "step",
    "stroke" or "none" (progress frames kept in the results). steps defaults to the agent's episode.
    method "optimize": no agent; `strokes` strokes optimised by Adam (`iters`, `lr`, focus weight `nu`),
    see sgfast/paint/optimize_painter.py (default 100 strokes). divide D > 1: grid refinement, the
    painting is D x the canvas (sgfast/paint/divide_painter.py). method "exact": no agent, the image
    painted at its own shape with long side `size` (default 512) by `strokes` strokes (default 1000)
    optimised coarse to fine through the exact renderer, `preset` "fast", "balanced" (default) or
    "quality"; mode sg gates them by S (a mask, `segmenter`: Ψ weights or "torchvision:NAME", else
    the whole image) with the focus term weighted `nu` on G (`expert`: weights or
    "torchvision:NAME", else image detail); `init` "agent" starts from the agent's strokes
    (`actor`), "none" from a flat fill; images of one shape are painted `batch_size` at a time
    (sgfast/paint/exact_painter.py, photo_semantics.py).
    """
    if method == "exact":
        for name, value in (("divide", divide != 1), ("boxes", boxes is not None), ("instances", instances is not None),
                            ("steps", steps is not None)):
            if value:
                raise PaintError(f"{name} applies to method 'agent', not 'exact'")
        # Options of the other methods: refused when changed from their defaults rather than ignored.
        for name, value, default, owner in (("bg_gate", bg_gate, "chosen", "agent"),
                                            ("min_gain", min_gain, DEFAULT_MIN_GAIN, "agent"),
                                            ("iters", iters, 200, "optimize"), ("lr", lr, 0.1, "optimize")):
            if value != default:
                raise PaintError(f"{name} applies to method '{owner}', not 'exact'")
        init = DEFAULT_INIT if init is None else init
        guides = load_guides(segmenter, expert, device) if mode == "sg" else None
        if mode != "sg" and (segmenter or expert):
            raise PaintError("segmenter and expert apply to mode 'sg'")
        if init == "agent" and models is None:
            models = load_models(mode, actor, renderer, None, None, device, ops, need_segmenter=False)
        return paint_exact(images, DEFAULT_STROKES if strokes is None else strokes,
                           DEFAULT_LONG_SIDE if size is None else size, preset or DEFAULT_PRESET, device, ops,
                           frames, progress, mode=mode, masks=masks, guides=guides, nu=nu, init=init,
                           models=models, batch_size=batch_size)
    if size is not None or preset is not None or init is not None:
        raise PaintError("size, preset and init apply to method 'exact'")
    strokes = 100 if strokes is None else strokes
    if method == "optimize" and divide != 1:
        raise PaintError(f"divide applies to method 'agent' (got divide={divide} with method 'optimize')")
    if method == "optimize":
        return paint_optimize(images, strokes, iters, lr, nu, renderer, segmenter, expert, masks, boxes, device,
                              ops, batch_size, frames, progress=progress)
    if method != "agent":
        raise PaintError(f"method must be 'agent', 'optimize' or 'exact', got {method!r}")
    images = as_image_list(images)
    check_agent_options(len(images), masks, boxes, instances, batch_size, frames, divide, bg_gate, min_gain)
    need_seg = mode == "sg" and any(_needs_segmenter(images[i], i, masks, instances) for i in range(len(images)))
    if models is None:
        models = load_models(mode, actor, renderer, segmenter, expert, device, ops, need_segmenter=need_seg)
    elif models.meta.get("mode") != mode:  # e.g. baseline models painted with the default mode="sg"
        raise PaintError(f"models were loaded for mode {models.meta.get('mode')!r} but mode is {mode!r}")
    if need_seg and models.segmenter is None:
        raise PaintError(f"no foreground masks: Ψ weights not found ({DEFAULT_SEGMENTER}); pass --segmenter "
                         "weights, or --mask files for every image, or use --mode baseline")
    steps = int(models.meta["max_step"] if steps is None else steps)
    if steps < 1:
        raise PaintError(f"steps must be >= 1, got {steps}")
    # The largest size an image is resized to (Ψ and the expert's input, the canvas, D x the canvas);
    # reading at most twice that keeps the final antialiased resize an area average.
    read_side = 2 * max(models.size * divide, int(models.expert_meta.get("image_size", 0)))
    results, loaded = load_images(images, read_side, mode)
    bar = None
    if progress and loaded:
        from tqdm import tqdm
        bar = tqdm(total=len(loaded), desc=f"paint ({mode})", unit="img", dynamic_ncols=True)
    for s in range(0, len(loaded), batch_size):
        chunk = loaded[s:s + batch_size]
        ok_chunk, sem, sem_hi = _batch_semantics(models, chunk, masks, boxes, instances, divide, results)
        if ok_chunk:
            targets = _targets(ok_chunk, models.size)
            if divide > 1:  # grid refinement (divide_painter.py)
                hi = _targets(ok_chunk, divide * models.size)
                painted = paint_divided(models, targets, hi, steps, frames, divide, sem, sem_hi, bg_gate, min_gain)
                for j, (i, name, _) in enumerate(ok_chunk):
                    results[i] = _divided_result(models, name, hi[j], painted[j], sem_hi[j], frames)
            else:
                painted = paint_batch(models, targets, sem, steps, frames, bg_gate=bg_gate, min_gain=min_gain)
                for j, (i, name, _) in enumerate(ok_chunk):
                    results[i] = _agent_result(models, name, targets[j], painted, j, sem[j], steps, frames, bg_gate)
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return results


def check_agent_options(n_images, masks, boxes, instances, batch_size, frames, divide, bg_gate, min_gain):
    """The agent's options, checked before any model is loaded (PaintError naming the option)."""
    if not 1 <= divide <= 16:
        raise PaintError(f"divide must be in [1, 16], got {divide}")
    if bg_gate not in BG_GATES:
        raise PaintError(f"bg_gate must be one of {BG_GATES}, got {bg_gate!r}")
    try:
        check_min_gain(min_gain)
    except ValueError as exc:
        raise PaintError(str(exc)) from None
    for name, seq in (("masks", masks), ("boxes", boxes), ("instances", instances)):
        if seq is not None and len(seq) != n_images:
            raise PaintError(f"{name}: {len(seq)} given for {n_images} images")
    if batch_size < 1:
        raise PaintError(f"batch_size must be >= 1, got {batch_size}")
    if frames not in ("step", "stroke", "none"):
        raise PaintError(f"frames must be 'step', 'stroke' or 'none', got {frames!r}")


def _needs_segmenter(image, i, masks, instances):
    """Ψ is needed for an image with neither a mask nor instance masks (unreadable paths aside)."""
    given = (masks is not None and masks[i] is not None) or (instances is not None and instances[i])
    unreadable = isinstance(image, (str, os.PathLike)) and not os.path.isfile(image)
    return not given and not unreadable


def _targets(chunk, size):
    """The batch's images [B, 3, size, size]."""
    return torch.cat([resize_square(torch.from_numpy(img).permute(2, 0, 1)[None], size) for _, _, img in chunk])


def _batch_semantics(models, chunk, masks, boxes, instances, divide, results):
    """S, box, G of each image at the canvas size (sem) and at D x it (sem_hi; the same without
    --divide); None per image in baseline mode. An image whose mask or box cannot be read gets an
    error result and is left out: returns (the images kept, sem, sem_hi)."""
    ok_chunk, sem, sem_hi = [], [], []
    sizes = (models.size, divide * models.size) if divide > 1 else (models.size,)
    for (i, name, img) in chunk:
        try:
            if models.mode == "sg":
                maps = semantic_maps(models, [img], None if masks is None else [masks[i]],
                                     None if boxes is None else [boxes[i]],
                                     None if instances is None else [instances[i]], sizes)[0]
                sem.append(maps[0])
                sem_hi.append(maps[-1])
            else:
                sem.append(None)
                sem_hi.append(None)
            ok_chunk.append((i, name, img))
        except (OSError, ValueError) as exc:
            results[i] = PaintResult(name=name, error=f"mask/box: {exc}", mode=models.mode)
    return ok_chunk, sem, sem_hi


def _agent_result(models, name, target, painted, j, sem, steps, frames, bg_gate):
    """Image j of a paint_batch output as a PaintResult."""
    canvas, fg, bgl, actions, chosen, fr = painted
    sg = models.mode == "sg"
    kb, kf = models.meta["strokes_bg"], models.meta["strokes_fg"]
    k = kb + kf
    strokes = torch.stack([a[j] for a in actions]).view(steps * k, STROKE_PARAMS).double().numpy()
    if sg:
        layers = (["bg"] * kb + ["fg"] * kf) * steps
        m, bx, g = sem
        mask_ids = stroke_gates([int(chosen[t][j]) for t in range(steps)], kb, kf, m.shape[0], bg_gate)
    else:
        layers, mask_ids = ["all"] * (steps * k), [None] * (steps * k)
        m = bx = g = None
    return PaintResult(
        name=name, target=target, canvas=canvas[j], fg_layer=fg[j] if sg else None,
        bg_layer=bgl[j] if sg else None, masks=m, boxes=bx, gbp=g, strokes=strokes,
        layers=layers, mask_ids=mask_ids, steps=[t for t in range(steps) for _ in range(k)],
        frames=fr[j] if frames != "none" else [], mode=models.mode)


def _divided_result(models, name, target_hi, p, sem_hi, frames):
    """One image of a paint_divided output as a PaintResult (at D x the canvas)."""
    sg = models.mode == "sg"
    n = len(p["strokes"])
    m, bx, g = sem_hi if sg else (None, None, None)
    return PaintResult(
        name=name, target=target_hi, canvas=p["canvas"], fg_layer=p["fg"], bg_layer=p["bg"], masks=m,
        boxes=bx, gbp=g, strokes=p["strokes"], layers=p["layers"] if sg else ["all"] * n,
        mask_ids=p["mask_ids"] if sg else [None] * n, steps=p["steps"],
        frames=p["frames"] if frames != "none" else [], mode=models.mode)
