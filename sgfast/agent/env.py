"""The batched painting environment and the painting step shared with the DDPG update.

State of one environment: the canvas (uint8 between steps), the step t, and the target's dataset
index and flip bit (the target I, soft mask S, box and GBP map G are read from the data source).
A step renders the action's K strokes and composites them in order: in `sg` mode the first
`strokes_bg` strokes are background strokes (colour gated by 1 - S) and the rest foreground strokes
(gated by S), paper Eq. 3-4; in `baseline` mode no mask is used. Two painters do this with the same
call, painter(canvas, action, mask), for the env step and the DDPG update alike: Painter (the
neural renderer, then composite) and ExactPainter (`render_strokes`: the exact renderer fused with
compositing, no renderer weights; `train-agent --renderer exact`).

The canvas is requantised to uint8 after every step, as the baseline does (its replay memory holds
uint8 states); sgfast rounds to nearest where the baseline truncates (truncation darkens the
canvas by 0.5/255 per step on average).
"""
from __future__ import annotations

import math

import torch

from sgfast.strokes import STROKE_PARAMS, as_strokes, paint_neural

MODES = ("sg", "baseline")
RENDERERS = ("neural", "exact")  # what paints the strokes: Painter, ExactPainter


def coord_channels(size: int, device) -> torch.Tensor:
    """[1, 2, S, S]: row index / (S - 1) and column index / (S - 1) (the baseline's CoordConv)."""
    r = torch.arange(size, device=device, dtype=torch.float32) / max(size - 1, 1)
    rows = r.view(size, 1).expand(size, size)
    cols = r.view(1, size).expand(size, size)
    return torch.stack([rows, cols]).unsqueeze(0)


def actor_input(canvas, targets, t_frac, coords, mode):
    """[canvas, I, t/T, coords (, S, G)]: 9 channels in baseline mode, 11 in sg mode."""
    b, _, h, w = canvas.shape
    parts = [canvas, targets["image"], t_frac.view(b, 1, 1, 1).expand(b, 1, h, w), coords.expand(b, 2, h, w)]
    if mode == "sg":
        parts += [targets["mask"], targets["gbp"]]
    return torch.cat(parts, 1)


def critic_input(canvas0, canvas1, targets, t_frac, coords, mode):
    """[C_t, C_t+1, I, (t+1)/T, coords (, S, G)]: 12 channels in baseline mode, 14 in sg mode."""
    b, _, h, w = canvas0.shape
    parts = [canvas0, canvas1, targets["image"], t_frac.view(b, 1, 1, 1).expand(b, 1, h, w),
             coords.expand(b, 2, h, w)]
    if mode == "sg":
        parts += [targets["mask"], targets["gbp"]]
    return torch.cat(parts, 1)


def actor_channels(mode):
    return 11 if mode == "sg" else 9


def critic_channels(mode):
    return 14 if mode == "sg" else 12


class _StrokePainter:
    """What both painters share: the mode, the bg/fg layer gates and the argument checks."""

    kind = None

    def __init__(self, mode, strokes_bg, size):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.strokes_bg, self.size = mode, strokes_bg, size
        self._layers = {}

    def layer(self, k, device):
        key = (k, str(device))
        if key not in self._layers:  # background strokes first, then foreground strokes
            self._layers[key] = torch.arange(k, device=device) >= self.strokes_bg
        return self._layers[key]

    def _strokes(self, canvas, action):
        b, _, h, w = canvas.shape
        if h != self.size or w != self.size:
            raise ValueError(f"canvas is {h}x{w} but the renderer paints {self.size}x{self.size}")
        if action.dim() != 2 or action.shape[0] != b or action.shape[1] % STROKE_PARAMS:
            raise ValueError(f"action must be [B={b}, K*{STROKE_PARAMS}], got {tuple(action.shape)}")
        return as_strokes(action)


class Painter(_StrokePainter):
    """C_{t+1} = paint(C_t, action): renderer + composite, differentiable in canvas and action."""

    kind = "neural"

    def __init__(self, renderer, ops, mode, strokes_bg):
        super().__init__(mode, strokes_bg, renderer.config.size)
        self.renderer, self.ops = renderer, ops

    def __call__(self, canvas, action, mask=None):
        strokes = self._strokes(canvas, action)
        if self.mode == "sg":
            return paint_neural(self.renderer, self.ops.composite, canvas, strokes, mask,
                                self.layer(strokes.shape[1], canvas.device))
        return paint_neural(self.renderer, self.ops.composite, canvas, strokes)


def check_softness(softness) -> float:
    """softness as a float (pixels), or ValueError: render_strokes takes a finite number > 0."""
    try:
        s = float(softness)
    except (TypeError, ValueError):
        raise ValueError(f"softness must be a finite number of pixels > 0, got {softness!r}") from None
    if isinstance(softness, bool) or not (s > 0 and math.isfinite(s)):
        raise ValueError(f"softness must be a finite number of pixels > 0, got {softness!r}")
    return s


def render_strokes_op(ops):
    """(render_strokes of the Ops backend, where it comes from).

    ops.render_strokes once the backend resolves it; until then the fused op for `fused` ops when
    sgfast.ops has it and the built extension registers it, else the eager reference (which is then
    what runs: the second item says so)."""
    fn = getattr(ops, "render_strokes", None)
    if fn is not None:
        return fn, f"sgfast.backend ({ops.name})"
    if getattr(ops, "name", None) == "fused":
        try:
            from sgfast.ops import render_strokes as fused

            torch.ops.sgfast.render_strokes  # noqa: B018 -- registered by this build of the extension?
            return fused, "sgfast.ops"
        except (ImportError, AttributeError, RuntimeError):
            pass
    from sgfast.reference import render_strokes as eager

    return eager, "sgfast.reference"


class ExactPainter(_StrokePainter):
    """C_{t+1} = render_strokes(C_t, strokes, S, layer, softness): the exact renderer fused with
    compositing (the same bg/fg gates as Painter), differentiable in canvas and action; no renderer
    weights. softness: the anti-aliasing ramp in pixels."""

    kind = "exact"

    def __init__(self, ops, mode, strokes_bg, size, softness=1.0):
        super().__init__(mode, strokes_bg, int(size))
        self.ops, self.softness = ops, check_softness(softness)
        self.render, self.source = render_strokes_op(ops)

    def __call__(self, canvas, action, mask=None):
        strokes = self._strokes(canvas, action)
        if self.mode == "sg":
            return self.render(canvas, strokes, mask, self.layer(strokes.shape[1], canvas.device), self.softness)
        return self.render(canvas, strokes, None, None, self.softness)


def to_uint8(canvas: torch.Tensor) -> torch.Tensor:
    return (canvas * 255).round_().clamp_(0, 255).to(torch.uint8)


class PaintEnv:
    """`batch` environments painting targets drawn from `ids_pool` of `data`: uniformly, or in
    proportion to `weights` (one per id, e.g. an instance's share of its image's instance pixels:
    paper Sec. 5 draws one instance per episode in proportion to its pixel count)."""

    def __init__(self, data, painter, max_step, batch, ids_pool, generator, augment=True, weights=None):
        if batch < 1 or max_step < 1:
            raise ValueError(f"PaintEnv: batch and max_step must be >= 1, got {batch}, {max_step}")
        if len(ids_pool) == 0:
            raise ValueError("PaintEnv: no images to paint (empty id pool)")
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
            if weights.shape != (len(ids_pool),) or not bool(torch.isfinite(weights).all()) \
                    or bool((weights < 0).any()) or float(weights.sum()) <= 0:
                raise ValueError(f"PaintEnv: weights must be {len(ids_pool)} finite non-negative numbers, not all 0")
        self.data, self.painter, self.max_step, self.batch = data, painter, max_step, batch
        self.ids_pool, self.gen, self.augment, self.weights = ids_pool, generator, augment, weights
        self.device = data.device
        size = painter.size
        self.canvas = torch.zeros(batch, 3, size, size, dtype=torch.uint8, device=self.device)
        self.t = 0
        self.ids = self.flip = self.targets = None

    def reset(self, ids=None):
        """Start new episodes: black canvases, random targets (random horizontal flips if augmenting)."""
        if ids is None:
            pick = (torch.randint(len(self.ids_pool), (self.batch,), generator=self.gen) if self.weights is None
                    else torch.multinomial(self.weights, self.batch, replacement=True, generator=self.gen))
            ids = self.ids_pool[pick.to(self.ids_pool.device)]
        self.ids = ids.to(self.device)
        if self.augment:
            self.flip = (torch.rand(self.batch, generator=self.gen) < 0.5).to(self.device)
        else:
            self.flip = torch.zeros(self.batch, dtype=torch.bool, device=self.device)
        self.targets = self.data.batch(self.ids, self.flip)
        self.canvas.zero_()
        self.t = 0

    @torch.no_grad()
    def step(self, action):
        """Paint one action bundle; returns (canvas before, canvas after, done) as uint8."""
        if self.targets is None:
            raise RuntimeError("PaintEnv.step before reset")
        before = self.canvas.clone()
        after = self.painter(before.float() / 255, action, self.targets["mask"])
        self.canvas = to_uint8(after)
        self.t += 1
        return before, self.canvas, self.t >= self.max_step
