"""Painting with a trained agent: `sgfast.paint.paint(images, ...)` and `sgfast paint`.

Per image: read it, get the soft foreground mask S and box (Ψ, or given masks / boxes), the
guided-backprop map G (the expert), then run the actor for `steps` steps; each step renders its K
strokes with the neural renderer and composites them (sg mode: the first strokes_bg strokes are
background strokes gated by 1 - S, the rest foreground strokes gated by S; Eq. 3-4). As in training
(sgfast.agent.env) the canvas is requantised to uint8 after every step. Images are painted together
in batches; one image's result does not depend on the others in its batch (the actor runs in eval
mode).

Multiple instances (paper Sec. 5, Eq. 16): with instance masks S_1..S_n, every step paints the
instance u = argmax_i ||S_i (I - C_t)||_F of each image, leaving out instances whose painting has
stopped lowering their error (min_gain, sgfast/instances.py): its mask, box and G become the step's.

The painting is what the agent's neural renderer produced at the agent's canvas size; `render_exact`
re-renders the same strokes with rasterize_strokes(mode="exact") + composite at any size.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
import torch.nn.functional as F

from sgfast.resources import shipped_weights
from sgfast.instances import DEFAULT_MIN_GAIN, InstancePicker, check_min_gain, stroke_gates

DEFAULT_ACTOR = {"sg": shipped_weights("agent_sg_tiny.pt"),
                 "baseline": shipped_weights("agent_baseline_tiny.pt")}
DEFAULT_RENDERER = shipped_weights("renderer_tiny.pt")
DEFAULT_SEGMENTER = shipped_weights("segmenter_tiny.pt")
BG_GATES = ("union", "chosen")  # what background strokes keep off with several instances
DEFAULT_EXPERT = shipped_weights("expert_tiny.pt")


class PaintError(RuntimeError):
    """A problem with the painting's set-up (weights, options): nothing can be painted."""


@dataclasses.dataclass
class PaintResult:
    """One painted image. Tensors on the CPU, float in [0, 1], canvas side S (the agent's)."""

    name: str
    error: str | None = None                 # set when this image could not be painted
    target: torch.Tensor | None = None       # [3, S, S]
    canvas: torch.Tensor | None = None       # [3, S, S] the painting
    fg_layer: torch.Tensor | None = None     # [3, S, S] foreground strokes alone on a blank canvas
    bg_layer: torch.Tensor | None = None     # [3, S, S] background strokes alone on a blank canvas
    masks: torch.Tensor | None = None        # [M, S, S] S (M = 1) or the instance masks
    boxes: torch.Tensor | None = None        # [M, 4]
    gbp: torch.Tensor | None = None          # [M, S, S]
    strokes: np.ndarray | None = None        # [N, 13] in painting order
    layers: list = dataclasses.field(default_factory=list)    # "fg" / "bg" / "all" per stroke
    mask_ids: list = dataclasses.field(default_factory=list)  # gate of each stroke: index into
    #   gate_masks (the instance masks, then the union when bg strokes kept off every instance) or None
    steps: list = dataclasses.field(default_factory=list)     # step of each stroke
    frames: list = dataclasses.field(default_factory=list)    # uint8 [S, S, 3] progress frames
    mode: str = "sg"

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def size(self) -> int:
        return int(self.canvas.shape[-1])

    @property
    def painted_instances(self) -> set:
        """The instances (indices into masks) that foreground strokes painted; empty in baseline mode."""
        return {u for u, layer in zip(self.mask_ids, self.layers) if layer == "fg"}

    @property
    def union_gated(self) -> bool:
        """bg_gate "union" with several instances: the bg strokes are gated by 1 - (their union)."""
        return self.masks is not None and self.masks.shape[0] > 1 and self.masks.shape[0] in self.mask_ids

    @property
    def gate_masks(self) -> torch.Tensor | None:
        """The masks mask_ids index: the instance masks, then their union if bg strokes used it."""
        if not self.union_gated:
            return self.masks
        return torch.cat([self.masks, self.masks.amax(0, keepdim=True)])


@dataclasses.dataclass
class Models:
    actor: torch.nn.Module
    meta: dict
    renderer: torch.nn.Module
    segmenter: torch.nn.Module | None
    expert: torch.nn.Module | None
    expert_meta: dict
    ops: object
    device: torch.device
    mode: str

    @property
    def size(self) -> int:
        return int(self.meta["size"])


def load_models(mode="sg", actor=None, renderer=None, segmenter=None, expert=None, device="cpu",
                ops="fused", need_segmenter=True):
    """Load the weights (defaults: the shipped tiny ones). Errors name the option and the file."""
    from sgfast.agent.backend import get_ops
    from sgfast.agent.export import load_actor
    from sgfast.models.renderer import load_renderer

    if mode not in ("sg", "baseline"):
        raise PaintError(f"mode must be 'sg' or 'baseline', got {mode!r}")
    device = torch.device(device)

    def _load(option, fn, path):
        if not os.path.isfile(path):
            raise PaintError(f"{option}: weights file not found: {path}")
        try:
            return fn(path)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise PaintError(f"{option}: cannot load {path}: {exc}") from None

    actor_path = actor or DEFAULT_ACTOR[mode]
    net, meta = _load("--actor", lambda p: load_actor(p, device), actor_path)
    if meta.get("mode") != mode:
        raise PaintError(f"--actor: {actor_path} is a {meta.get('mode')!r} agent but --mode is {mode!r}")
    rend = _load("--renderer", lambda p: load_renderer(p, device), renderer or DEFAULT_RENDERER)
    if rend.config.size != meta["size"]:
        raise PaintError(f"--renderer: the renderer paints {rend.config.size}x{rend.config.size} but the "
                         f"agent's canvas is {meta['size']}x{meta['size']} (weights of another config)")
    for p in rend.parameters():
        p.requires_grad_(False)
    seg = exp = None
    exp_meta = {}
    if mode == "sg":
        from sgfast.models.expert import load_expert
        from sgfast.models.segmenter import load_segmenter

        # The default Ψ is optional (it may not be shipped): images with given masks need none.
        if need_segmenter and (segmenter or os.path.isfile(DEFAULT_SEGMENTER)):
            seg, _ = _load("--segmenter", load_segmenter, segmenter or DEFAULT_SEGMENTER)
            seg.to(device)
        exp, exp_meta = _load("--expert", load_expert, expert or DEFAULT_EXPERT)
        exp.to(device)
    try:
        backend = get_ops(ops, mode)
    except (RuntimeError, ValueError) as exc:
        raise PaintError(f"--ops: {exc}") from None
    return Models(net, meta, rend, seg, exp, exp_meta, backend, device, mode)


# --------------------------------------------------------------------------- inputs

# Sides longer than this are area-reduced when an image is read, so a huge photo is never held as
# float. paint() passes twice the largest size it resizes to; this default (for callers that pass
# none, e.g. the optimisation painter) is more than any canvas here.
DEFAULT_MAX_SIDE = 2048


def _as_image(item, max_side=DEFAULT_MAX_SIDE):
    """(name, float32 RGB [H, W, 3] in [0, 1]) from a path, a numpy array or a tensor.

    Arrays: [H, W], [H, W, C] or [C, H, W] with C = 1 (grey, replicated), 3 (RGB) or 4 (RGBA, alpha
    dropped, as for files); uint8, uint16 (/ 65535), bool or float (clipped to [0, 1], NaN refused).
    Sides longer than max_side are area-reduced (see sgfast.data.imageio.shrink_sides).
    """
    from sgfast.data.imageio import read_image_rgb, shrink_sides

    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        return os.path.splitext(os.path.basename(path))[0], read_image_rgb(path, max_side)
    arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # channels first
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image arrays must be [H, W], [H, W, C] or [C, H, W] with C in 1, 3, 4; got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"empty image array {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        if arr.dtype.itemsize < 4 or arr.dtype.itemsize > 8:  # cv2.resize takes float32/64 only
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("image array has NaN or infinite values")
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image arrays must be uint8, uint16, bool or float, got {arr.dtype}")
    arr = shrink_sides(np.ascontiguousarray(arr[:, :, :3]), max_side)
    if arr.ndim == 2:  # cv2.resize drops a single channel
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return None, arr.astype(np.float32) / 255
    if arr.dtype == np.uint16:
        return None, arr.astype(np.float32) / 65535
    return None, np.clip(arr.astype(np.float32), 0, 1)


def _as_mask(item, max_side=DEFAULT_MAX_SIDE):
    """float32 [H, W] in [0, 1] from a path or an array; sides over max_side area-reduced."""
    from sgfast.data.imageio import read_mask, shrink_sides

    if isinstance(item, (str, os.PathLike)):
        return read_mask(os.fspath(item), max_side)
    arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
    arr = arr.squeeze()
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"masks must be [H, W], got {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("mask array has NaN or infinite values")
    return np.clip(shrink_sides(arr, max_side), 0, 1)


def read_box(item):
    """(x, y, w, h) normalised, x horizontal: a sequence of 4 numbers or a text file holding them."""
    if isinstance(item, (str, os.PathLike)):
        with open(item, encoding="utf-8") as fh:
            vals = [float(v) for v in fh.read().replace(",", " ").split()]
    else:
        vals = [float(v) for v in item]
    if len(vals) != 4 or not all(0 <= v <= 1 for v in vals) or vals[2] <= 0 or vals[3] <= 0:
        raise ValueError(f"a box is 4 numbers x y w h normalised to [0, 1] (w, h > 0), got {vals}")
    return torch.tensor(vals, dtype=torch.float32)


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Bounding box (x, y, w, h) normalised of mask > 0.5 [H, W]; the whole image when empty."""
    h, w = mask.shape
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return torch.tensor([0.0, 0.0, 1.0, 1.0])
    return torch.tensor([xs.min() / w, ys.min() / h, (xs.max() + 1 - xs.min()) / w,
                         (ys.max() + 1 - ys.min()) / h], dtype=torch.float32)


def _resize(x, size):
    """[B, C, H, W] -> [B, C, size, size]; area-like (antialiased) when shrinking."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=x.shape[-1] > size or x.shape[-2] > size).clamp(0, 1)


@torch.no_grad()
def semantics(models: Models, images, masks=None, boxes=None, instances=None):
    """S, boxes and G at the canvas size for a list of float RGB [H, W, 3] images.

    Returns per image (masks [M, S, S], boxes [M, 4], gbp [M, S, S]); M = number of instances
    (1 without instance masks). Following `sgfast prepare`, Ψ and the expert see the image at
    max(canvas, the expert's training size).
    """
    return [r[0] for r in _semantics(models, images, masks, boxes, instances, (models.size,))]


def _semantics(models: Models, images, masks, boxes, instances, sizes):
    """semantics() with the maps at each of `sizes` (per image a list of triples, one per size):
    Ψ and the expert run once, the maps are resized from their working size."""
    from sgfast.models.gbp import gbp_maps

    size = models.size
    src = max(size, int(models.expert_meta.get("image_size", size)))
    read_side = 2 * max(src, *sizes)
    out = []
    for i, img in enumerate(images):
        x = _resize(torch.from_numpy(img).permute(2, 0, 1)[None].to(models.device), src)
        inst = instances[i] if instances is not None else None
        if inst:
            m = torch.stack([torch.from_numpy(_as_mask(p, read_side)) for p in inst])[:, None].to(models.device)
            m = _resize(m, src)
            b = torch.stack([mask_box(mm[0].cpu()) for mm in m]).to(models.device)
        else:
            given = masks[i] if masks is not None else None
            if given is not None:
                m = _resize(torch.from_numpy(_as_mask(given, read_side))[None, None].to(models.device), src)
            elif models.segmenter is None:
                raise PaintError("no foreground mask: pass --mask files or segmenter weights (--segmenter)")
            else:
                from sgfast.models.segmenter import predict

                m, b_pred = predict(models.segmenter, x)
            box = boxes[i] if boxes is not None else None
            if box is not None:
                b = read_box(box)[None].to(models.device)
            elif given is not None:
                b = mask_box(m[0, 0].cpu())[None].to(models.device)
            else:
                b = b_pred
        g, _ = gbp_maps(models.expert, x.expand(m.shape[0], -1, -1, -1), m, b)
        # uint8 steps, as the agent saw them in training and as mask.png stores them (so an
        # exported painting re-renders identically from its files)
        q = lambda t, n: (_resize(t, n)[:, 0] * 255).round() / 255  # noqa: E731
        out.append([(q(m, n).cpu(), b.float().cpu(), q(g, n).cpu()) for n in sizes])
    return out


# --------------------------------------------------------------------------- painting

def _to_u8_image(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def _paint_batch(models: Models, targets, sem, steps, frames_per, canvas0=None, t0=0, layers0=None,
                 bg_gate="chosen", min_gain=DEFAULT_MIN_GAIN):
    """Paint one batch. targets [B, 3, S, S]; sem: per image (masks [M,S,S], boxes, gbp).
    canvas0, layers0 = (fg, bg), t0: continue a painting (--divide). bg_gate: what the background
    strokes keep off with several instances: "union" (every instance) or "chosen" (only the step's).
    min_gain: the instance choice's rule on top of Eq. 16 (sgfast/instances.py)."""
    from sgfast.agent.env import actor_input, coord_channels, to_uint8

    dev, mode, size = models.device, models.mode, models.size
    meta = models.meta
    b = targets.shape[0]
    k = meta["strokes_bg"] + meta["strokes_fg"]
    bg = meta["strokes_bg"] if mode == "sg" else k
    layer = torch.arange(k, device=dev) >= bg if mode == "sg" else None  # bg strokes first, then fg
    coords = coord_channels(size, dev)
    targets = targets.to(dev)
    canvas = torch.zeros(b, 3, size, size, device=dev) if canvas0 is None else canvas0.to(dev)  # --divide
    fg_layer, bg_layer = ((torch.zeros_like(canvas), torch.zeros_like(canvas)) if layers0 is None
                          else (layers0[0].to(dev), layers0[1].to(dev)))
    all_masks = [s[0].to(dev) for s in sem] if mode == "sg" else None
    all_gbp = [s[2].to(dev) for s in sem] if mode == "sg" else None
    # Several instances and "union": the background strokes keep off all of them, so an instance
    # that is not the step's is not painted in the background's colours (docs/painting.md).
    union = (torch.stack([m.amax(0) for m in all_masks])[:, None]
             if mode == "sg" and bg_gate == "union" and any(m.shape[0] > 1 for m in all_masks) else None)
    picker = InstancePicker(targets, all_masks, min_gain) if mode == "sg" else None
    actions, chosen, frames = [], [], [[_to_u8_image(canvas[i])] for i in range(b)]
    frames_op = _frames_op(models.ops.name)
    for t in range(steps):
        if mode == "sg":
            u = picker.pick(canvas)  # Eq. 16 (+ min_gain), from this step's canvas
            mask = torch.stack([all_masks[i][u[i]] for i in range(b)])[:, None]
            gbp = torch.stack([all_gbp[i][u[i]] for i in range(b)])[:, None]
            chosen.append(u.cpu())
            obs = {"image": targets, "mask": mask, "gbp": gbp}
            bg_mask = mask if union is None else union
        else:
            mask = bg_mask = None
            obs = {"image": targets}
        t_frac = torch.full((b,), (t0 + t) / meta["max_step"], device=dev)
        action = models.actor(actor_input(canvas, obs, t_frac, coords, mode))
        actions.append(action.cpu())
        a = action.view(b, k, 13)
        alpha = models.renderer(a.reshape(b * k, 13)[:, :10]).view(b, k, size, size)
        color = a[..., 10:].contiguous()
        # Composite arguments (alpha, color, mask, layer) of the strokes in runs sharing one mask:
        # all K under S_u (Eq. 3-4 in one pass), or with the union the bg strokes under it (Eq. 3)
        # and then the fg strokes under S_u (Eq. 4). The bg and fg runs also paint the layers.
        if mode == "sg":
            bg_run = (alpha[:, :bg].contiguous(), color[:, :bg].contiguous(), bg_mask, layer[:bg])
            fg_run = (alpha[:, bg:].contiguous(), color[:, bg:].contiguous(), mask, layer[bg:])
        runs = [(alpha, color, mask, layer)] if bg_mask is mask else [bg_run, fg_run]
        if frames_per == "stroke":
            fr, c = [], canvas
            for run in runs:
                fr.append(frames_op(c, *run))
                c = fr[-1][:, -1].contiguous()
            fr = torch.cat(fr, 1)
        c = canvas
        for run in runs:
            c = models.ops.composite(c, *run)
        canvas = to_uint8(c).float() / 255
        if mode == "sg":
            bg_layer = models.ops.composite(bg_layer, *bg_run)
            fg_layer = models.ops.composite(fg_layer, *fg_run)
        else:
            bg_layer = canvas
        for i in range(b):
            if frames_per == "stroke":
                frames[i].extend(_to_u8_image(fr[i, j]) for j in range(k - 1))
            if frames_per != "none":
                frames[i].append(_to_u8_image(canvas[i]))
    return canvas.cpu(), fg_layer.cpu(), bg_layer.cpu(), actions, chosen, frames


def _frames_op(ops_name):
    """composite_frames of the chosen backend (sgfast.agent.backend.Ops does not carry it)."""
    if ops_name == "fused":
        from sgfast.ops import composite_frames
    else:
        from sgfast.reference import composite_frames
    return composite_frames


def paint(images, mode="sg", steps=None, actor=None, renderer=None, segmenter=None, expert=None,
          masks=None, boxes=None, instances=None, device="cpu", ops="fused", batch_size=8,
          frames="step", progress=False, models=None, method="agent", strokes=100, iters=200, lr=0.1, nu=0.0, divide=1,
          bg_gate="chosen", min_gain=DEFAULT_MIN_GAIN):
    """Paint `images` (paths, [H, W, 3] arrays or [3, H, W] tensors). Returns one PaintResult per
    image, in order; an image that cannot be read gets a result with `.error` set and the others are
    still painted. Set-up problems (weights, options) raise PaintError.

    masks / boxes: per-image soft masks (path or array) and boxes (x y w h normalised; path or 4
    numbers), None entries mean "predict with Ψ" (a box defaults to the mask's bounding box when a
    mask is given). instances: per-image lists of instance masks (Eq. 16); bg_gate: what their
    background strokes keep off, "chosen" (the step's instance) or "union" (all); min_gain: an
    instance whose painting lowered its error by less than this fraction of its lowest so far is
    left out of Eq. 16 from then on (None: plain Eq. 16; sgfast/instances.py). frames: "step",
    "stroke" or "none" (progress frames kept in the results). steps defaults to the agent's episode.
    method "optimize": no agent; `strokes` strokes optimised by Adam (`iters`, `lr`, focus weight `nu`),
    see sgfast/optimize_painter.py. divide D > 1: grid refinement, the painting is D x the canvas
    (sgfast/divide_painter.py).
    """
    if method == "optimize" and divide != 1:
        raise PaintError(f"divide applies to method 'agent' (got divide={divide} with method 'optimize')")
    if method == "optimize":
        from sgfast.optimize_painter import paint_optimize
        return paint_optimize(images, strokes, iters, lr, nu, renderer, segmenter, expert, masks, boxes, device,
                              ops, batch_size, frames, progress=progress)
    if method != "agent":
        raise PaintError(f"method must be 'agent' or 'optimize', got {method!r}")
    if not 1 <= divide <= 16:
        raise PaintError(f"divide must be in [1, 16], got {divide}")
    if bg_gate not in BG_GATES:
        raise PaintError(f"bg_gate must be one of {BG_GATES}, got {bg_gate!r}")
    try:
        check_min_gain(min_gain)
    except ValueError as exc:
        raise PaintError(str(exc)) from None
    if isinstance(images, (str, os.PathLike, np.ndarray, torch.Tensor)) and not (
            isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4):
        images = [images]
    images = list(images)
    for name, seq in (("masks", masks), ("boxes", boxes), ("instances", instances)):
        if seq is not None and len(seq) != len(images):
            raise PaintError(f"{name}: {len(seq)} given for {len(images)} images")
    if batch_size < 1:
        raise PaintError(f"batch_size must be >= 1, got {batch_size}")
    if frames not in ("step", "stroke", "none"):
        raise PaintError(f"frames must be 'step', 'stroke' or 'none', got {frames!r}")
    # Ψ is needed for the images with neither a mask nor instance masks (unreadable paths aside).
    need_seg = mode == "sg" and any(
        not ((masks is not None and masks[i] is not None) or (instances is not None and instances[i]))
        and not (isinstance(images[i], (str, os.PathLike)) and not os.path.isfile(images[i]))
        for i in range(len(images)))
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
    results = [None] * len(images)
    loaded = []  # (index, name, float image)
    for i, item in enumerate(images):
        default = f"image_{i:04d}"
        try:
            name, img = _as_image(item, read_side)
            loaded.append((i, name or default, img))
        except (OSError, ValueError) as exc:
            nm = os.path.splitext(os.path.basename(os.fspath(item)))[0] if isinstance(item, (str, os.PathLike)) else default
            results[i] = PaintResult(name=nm, error=str(exc), mode=mode)
    bar = None
    if progress and loaded:
        from tqdm import tqdm
        bar = tqdm(total=len(loaded), desc=f"paint ({mode})", unit="img", dynamic_ncols=True)
    k = models.meta["strokes_bg"] + models.meta["strokes_fg"]
    for s in range(0, len(loaded), batch_size):
        chunk = loaded[s:s + batch_size]
        ok_chunk, sem, sem_hi = [], [], []
        for (i, name, img) in chunk:
            try:
                if mode == "sg":  # S, box, G at the canvas size (and at D x it for --divide)
                    maps = _semantics(models, [img], None if masks is None else [masks[i]],
                                      None if boxes is None else [boxes[i]],
                                      None if instances is None else [instances[i]],
                                      (models.size, divide * models.size) if divide > 1 else (models.size,))[0]
                    sem.append(maps[0])
                    sem_hi.append(maps[-1])
                else:
                    sem.append(None)
                    sem_hi.append(None)
                ok_chunk.append((i, name, img))
            except (OSError, ValueError) as exc:
                results[i] = PaintResult(name=name, error=f"mask/box: {exc}", mode=mode)
        if not ok_chunk:
            continue
        targets = torch.cat([_resize(torch.from_numpy(img).permute(2, 0, 1)[None], models.size)
                             for _, _, img in ok_chunk])
        if divide > 1:  # grid refinement (sgfast/divide_painter.py)
            from sgfast.divide_painter import paint_divided
            hi = torch.cat([_resize(torch.from_numpy(img).permute(2, 0, 1)[None], divide * models.size)
                            for _, _, img in ok_chunk])
            painted = paint_divided(models, targets, hi, steps, frames, divide, sem, sem_hi, bg_gate, min_gain)
            for j, (i, name, _) in enumerate(ok_chunk):
                p = painted[j]
                n = len(p["strokes"])
                m, bx, g = sem_hi[j] if mode == "sg" else (None, None, None)
                results[i] = PaintResult(
                    name=name, target=hi[j], canvas=p["canvas"], fg_layer=p["fg"], bg_layer=p["bg"], masks=m,
                    boxes=bx, gbp=g, strokes=p["strokes"],
                    layers=p["layers"] if mode == "sg" else ["all"] * n,
                    mask_ids=p["mask_ids"] if mode == "sg" else [None] * n, steps=p["steps"],
                    frames=p["frames"] if frames != "none" else [], mode=mode)
            if bar:
                bar.update(len(chunk))
            continue
        canvas, fg, bgl, actions, chosen, fr = _paint_batch(models, targets, sem, steps, frames, bg_gate=bg_gate,
                                                           min_gain=min_gain)
        for j, (i, name, _) in enumerate(ok_chunk):
            strokes = torch.stack([a[j] for a in actions]).view(steps * k, 13).double().numpy()
            if mode == "sg":
                layers = (["bg"] * models.meta["strokes_bg"] + ["fg"] * models.meta["strokes_fg"]) * steps
                m, bx, g = sem[j]
                mask_ids = stroke_gates([int(chosen[t][j]) for t in range(steps)], models.meta["strokes_bg"],
                                        models.meta["strokes_fg"], m.shape[0], bg_gate)
            else:
                layers, mask_ids = ["all"] * (steps * k), [None] * (steps * k)
                m = bx = g = None
            results[i] = PaintResult(
                name=name, target=targets[j], canvas=canvas[j], fg_layer=fg[j] if mode == "sg" else None,
                bg_layer=bgl[j] if mode == "sg" else None, masks=m, boxes=bx, gbp=g, strokes=strokes,
                layers=layers, mask_ids=mask_ids, steps=[t for t in range(steps) for _ in range(k)],
                frames=fr[j] if frames != "none" else [], mode=mode)
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return results


# --------------------------------------------------------------------------- exact re-render

@torch.no_grad()
def render_exact(strokes, layers, mask_ids, masks, size, supersample=4, background=(0.0, 0.0, 0.0),
                 device="cpu", chunk=16):
    """Re-render strokes [N, 13] exactly at `size` (rasterize_strokes mode "exact" + composite).

    masks: list of [h, w] soft masks (any size, resized bilinearly to `size`), gating stroke i by
    masks[mask_ids[i]] (fg) or 1 - it (bg). Returns [3, size, size] float. Strokes are composited in
    chunks of consecutive strokes with the same gate, which is the same as one pass (composite is
    sequential).
    """
    from sgfast.ops import composite, rasterize_strokes

    strokes = torch.as_tensor(np.asarray(strokes), dtype=torch.float32, device=device).view(-1, 13)
    canvas = torch.tensor(background, dtype=torch.float32, device=device).view(1, 3, 1, 1).expand(
        1, 3, size, size).contiguous()
    gates = [None if m is None else _resize(torch.as_tensor(np.asarray(m), dtype=torch.float32, device=device)
                                            [None, None], size) for m in masks]
    n = strokes.shape[0]
    s = 0
    while s < n:
        e = s + 1
        while e < n and e - s < chunk and mask_ids[e] == mask_ids[s]:
            e += 1
        p = strokes[s:e]
        alpha = rasterize_strokes(p[:, :10].contiguous(), size, "exact", supersample)[None]
        color = p[None, :, 10:].contiguous()
        if mask_ids[s] is None:
            canvas = composite(canvas, alpha, color)
        else:
            layer = torch.tensor([layers[j] == "fg" for j in range(s, e)], device=device)
            canvas = composite(canvas, alpha, color, gates[mask_ids[s]], layer)
        s = e
    return canvas[0].cpu()


def result_exact(result: PaintResult, size, supersample=4, device="cpu"):
    masks = [] if result.masks is None else [m.numpy() for m in result.gate_masks]
    return render_exact(result.strokes, result.layers, result.mask_ids, masks, size, supersample, device=device)
