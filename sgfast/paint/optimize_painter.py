"""Agent-free painting by direct optimisation (`sgfast paint --method optimize`).

The direct approach of "Neural Painters" (seed 004): N strokes' 13 parameters are free variables,
p = sigmoid(logits) keeps them in [0, 1], and Adam minimises

    L = mean (I - C)^2  [+ nu * focus_distance(I, C, G, box)]      (the focus term: paper Eq. 14)

where C composites the N strokes, rendered by the frozen neural renderer, onto a black canvas in
order with sgfast.ops.composite (its fused backward recomputes the intermediate canvases, so all
N strokes go in one call). The images of a batch are independent: each has its own parameters and
the loss is a sum of per-image losses, and Adam's update is per parameter.

Initialisation: stroke positions uniform over the canvas, colours taken from the target at the
stroke's start point, widths small-to-medium, opacities high; the logits are those of these values.
"""
from __future__ import annotations

import torch

import os

from sgfast import metrics
from sgfast.backend import Ops, get_ops
from sgfast.data.tensor_images import resize_square, to_u8_hwc
from sgfast.paint.inputs import as_image_list, load_images
from sgfast.paint.result import PaintError, PaintResult
from sgfast.paint.semantics import semantics
from sgfast.paint.weights import DEFAULT_EXPERT, DEFAULT_RENDERER, DEFAULT_SEGMENTER, Models
from sgfast.strokes import SHAPE_PARAMS, STROKE_PARAMS, colors, neural_alpha, paint_neural


def _logit(p):
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


def init_strokes(targets, n, generator=None):
    """Initial parameters [B, n, 13] in (0, 1) for targets [B, 3, S, S] (see the module doc)."""
    b, _, s, _ = targets.shape
    dev = targets.device
    u = lambda *shape: torch.rand(*shape, generator=generator).to(dev)  # noqa: E731
    p = torch.empty(b, n, STROKE_PARAMS, device=dev)
    p[..., 0:6] = u(b, n, 6)                      # x0 y0 x1 y1 x2 y2
    p[..., 6:8] = 0.7 + 0.3 * u(b, n, 2)          # z0 z2: mostly opaque
    p[..., 8:10] = 0.05 + 0.3 * u(b, n, 2)        # w0 w2
    # colour of the target under the start point (x = rows, as the renderer's convention)
    rows = (p[..., 0] * (s - 1)).round().long()
    cols = (p[..., 1] * (s - 1)).round().long()
    idx = (rows * s + cols)[:, None, :].expand(b, 3, n)
    p[..., SHAPE_PARAMS:] = targets.flatten(2).gather(2, idx).transpose(1, 2)
    return p


def render(renderer, params, canvas0, composite, mask=None, layer=None):
    """Composite strokes params [B, N, 13] (in [0, 1]) onto canvas0 [B, 3, S, S]."""
    return paint_neural(renderer, composite, canvas0, params, mask, layer)


def optimize_strokes(targets, renderer, n_strokes, iters=200, lr=0.1, nu=0.0, gbp=None, boxes=None,
                     seed=0, ops="fused", init=None, history=None):
    """Optimise n_strokes strokes per image against targets [B, 3, S, S] (float in [0, 1]).

    Returns (params [B, N, 13] in [0, 1], final canvas [B, 3, S, S]). gbp [B, 1, S, S] and boxes
    [B, 4] enable the focus term (weight nu). history: an optional list receiving the mean L2 per
    iteration (iteration 0 = the initial strokes).
    """
    if n_strokes < 1:
        raise PaintError(f"--strokes must be >= 1, got {n_strokes}")
    if iters < 0:
        raise PaintError(f"--iters must be >= 0, got {iters}")
    if not lr > 0:
        raise PaintError(f"--lr must be > 0, got {lr}")
    if nu and (gbp is None or boxes is None):
        raise PaintError("the focus term (nu > 0) needs GBP maps and boxes")
    ops = ops if isinstance(ops, Ops) else get_ops(ops)
    composite, focus_distance = ops.composite, ops.focus_distance
    s = targets.shape[-1]
    if getattr(getattr(renderer, "config", None), "size", s) != s:
        raise PaintError(f"--renderer paints {renderer.config.size} px but the targets are {s} px")
    targets = targets.detach()
    gen = torch.Generator().manual_seed(seed)
    start = init if init is not None else init_strokes(targets, n_strokes, gen)
    logits = _logit(start).detach().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    canvas0 = torch.zeros_like(targets)
    for p in renderer.parameters():
        p.requires_grad_(False)
    for it in range(iters + 1):
        with torch.enable_grad():
            params = torch.sigmoid(logits)
            canvas = render(renderer, params, canvas0, composite)
            per_image = metrics.l2(targets, canvas)
            if history is not None:
                history.append(float(per_image.detach().mean()))
            if it == iters:
                break
            loss = per_image.sum()
            if nu:
                loss = loss + nu * focus_distance(targets, canvas, gbp, boxes, s).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
    return torch.sigmoid(logits).detach(), canvas.detach().clamp(0, 1)


def batch_painter(renderer_path=None, iters=200, lr=0.1, device="cpu"):
    """fn(targets, strokes) -> canvases, for sgfast.evaluate's extra painters."""
    from sgfast.models.renderer import load_renderer

    rend = load_renderer(renderer_path or DEFAULT_RENDERER, device)

    def fn(targets, strokes):
        return optimize_strokes(targets.to(device), rend, strokes, iters, lr)[1]
    return fn


def paint_optimize(images, strokes=100, iters=200, lr=0.1, nu=0.0, renderer=None, segmenter=None,
                   expert=None, masks=None, boxes=None, device="cpu", ops="fused", batch_size=8,
                   frames="step", strokes_per_step=5, seed=0, progress=False):
    """sgfast.paint.paint's twin for method="optimize": PaintResults with mode "optimize" (plain
    strokes, layer "all"), `strokes_per_step` strokes counted as one step for the progress frames.
    nu > 0 adds the focus term, with G from the expert on Ψ's (or the given) masks."""
    from sgfast.models.renderer import load_renderer

    try:
        backend = get_ops(ops)
    except (RuntimeError, ValueError) as exc:
        raise PaintError(f"--ops: {exc}") from None
    device = torch.device(device)
    path = renderer or DEFAULT_RENDERER
    try:
        rend = load_renderer(path, device)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise PaintError(f"--renderer: cannot load {path}: {exc}") from None
    size = rend.config.size
    models = None
    if nu:
        from sgfast.models.expert import load_expert
        from sgfast.models.segmenter import load_segmenter

        for opt, p in (("--expert", expert or DEFAULT_EXPERT), ("--segmenter", segmenter or DEFAULT_SEGMENTER)):
            if not os.path.isfile(p):
                raise PaintError(f"{opt}: weights file not found: {p} (needed by the focus term, --nu)")
        seg, _ = load_segmenter(segmenter or DEFAULT_SEGMENTER)
        exp, exp_meta = load_expert(expert or DEFAULT_EXPERT)
        models = Models(None, {"size": size}, rend, seg.to(device), exp.to(device), exp_meta, backend, device, "sg")
    if frames not in ("step", "stroke", "none"):
        raise PaintError(f"frames must be 'step', 'stroke' or 'none', got {frames!r}")
    results, loaded = load_images(as_image_list(images), mode="optimize")
    bar = None
    if progress and loaded:
        from tqdm import tqdm
        bar = tqdm(total=len(loaded), desc="paint (optimize)", unit="img", dynamic_ncols=True)
    for s in range(0, len(loaded), batch_size):
        chunk = loaded[s:s + batch_size]
        targets = torch.cat([resize_square(torch.from_numpy(img).permute(2, 0, 1)[None], size)
                             for _, _, img in chunk]).to(device)
        gbp = bx = None
        if nu:
            sem = [semantics(models, [img], None if masks is None else [masks[i]],
                             None if boxes is None else [boxes[i]])[0] for i, _, img in chunk]
            gbp = torch.stack([g[:1] for _, _, g in sem]).to(device)
            bx = torch.cat([b[:1] for _, b, _ in sem]).to(device)
        params, canvas = optimize_strokes(targets, rend, strokes, iters, lr, nu, gbp, bx, seed + s, backend)
        with torch.no_grad():
            if frames != "none":
                fr = backend.composite_frames(torch.zeros_like(targets), neural_alpha(rend, params), colors(params))
        for j, (i, name, _) in enumerate(chunk):
            keep = []
            if frames != "none":
                every = 1 if frames == "stroke" else strokes_per_step
                keep = [to_u8_hwc(torch.zeros(3, size, size))] + [
                    to_u8_hwc(fr[j, t]) for t in range(strokes) if (t + 1) % every == 0 or t == strokes - 1]
            results[i] = PaintResult(
                name=name, target=targets[j].cpu(), canvas=canvas[j].cpu(), strokes=params[j].double().cpu().numpy(),
                layers=["all"] * strokes, mask_ids=[None] * strokes,
                steps=[t // strokes_per_step for t in range(strokes)], frames=keep, mode="optimize")
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return results
