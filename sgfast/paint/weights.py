"""The models a painting needs (actor, renderer, Ψ, expert) and the ops backend: the shipped
defaults and loading, with errors that name the option and the file. An agent trained with the
exact renderer (`train-agent --renderer exact`) needs no renderer weights: its strokes are rendered
by render_strokes (ExactStrokeRenderer)."""
from __future__ import annotations

import dataclasses
import os
import types

import torch

from sgfast.paint.result import PaintError
from sgfast.resources import shipped_weights
from sgfast.strokes import COLOR_PARAMS, SHAPE_PARAMS

DEFAULT_ACTOR = {"sg": shipped_weights("agent_sg_tiny.pt"),
                 "baseline": shipped_weights("agent_baseline_tiny.pt")}
DEFAULT_RENDERER = shipped_weights("renderer_tiny.pt")
DEFAULT_SEGMENTER = shipped_weights("segmenter_tiny.pt")
DEFAULT_EXPERT = shipped_weights("expert_tiny.pt")


class ExactStrokeRenderer(torch.nn.Module):
    """The neural renderer's interface on render_strokes: shape numbers [N, 10] -> alpha maps
    [N, S, S], `config.size` = S. Each stroke is rendered alone, white, onto a black canvas
    (0 (1 - alpha) + alpha 1 = alpha) at the agent's softness, so compositing these maps in order
    with composite's gates paints what render_strokes painted in training."""

    def __init__(self, ops, size, softness):
        from sgfast.agent.env import check_softness, render_strokes_op

        super().__init__()
        self.config = types.SimpleNamespace(size=int(size))
        self.softness = check_softness(softness)
        self.render, self.source = render_strokes_op(ops)

    def forward(self, shapes):
        n, size = shapes.shape[0], self.config.size
        white = shapes.new_ones((n, 1, COLOR_PARAMS))
        canvas = shapes.new_zeros((n, 3, size, size))
        return self.render(canvas, torch.cat([shapes.view(n, 1, SHAPE_PARAMS), white], 2), None, None,
                           self.softness)[:, 0]


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
    from sgfast.backend import get_ops
    from sgfast.agent.export import actor_renderer, load_actor
    from sgfast.models.renderer import load_renderer

    if mode not in ("sg", "baseline"):
        raise PaintError(f"mode must be 'sg' or 'baseline', got {mode!r}")
    device = torch.device(device)
    if ops == "fused" and device.type == "cuda":  # before any weights move there: say how to rebuild
        from sgfast.ops._ext import require_cuda_kernels

        try:
            require_cuda_kernels(device)
        except RuntimeError as exc:
            raise PaintError(f"--ops: {exc}") from None

    def load(option, fn, path):
        if not os.path.isfile(path):
            raise PaintError(f"{option}: weights file not found: {path}")
        try:
            return fn(path)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise PaintError(f"{option}: cannot load {path}: {exc}") from None

    actor_path = actor or DEFAULT_ACTOR[mode]
    net, meta = load("--actor", lambda p: load_actor(p, device), actor_path)
    if meta.get("mode") != mode:
        raise PaintError(f"--actor: {actor_path} is a {meta.get('mode')!r} agent but --mode is {mode!r}")
    if actor_renderer(meta) == "exact":  # render_strokes paints its strokes (made below, with the ops)
        if renderer is not None:
            raise PaintError(f"--renderer: {actor_path} was trained with the exact renderer (render_strokes) "
                             "and paints without renderer weights; leave --renderer out")
        rend = None
    else:
        rend = load("--renderer", lambda p: load_renderer(p, device), renderer or DEFAULT_RENDERER)
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
            seg, _ = load("--segmenter", load_segmenter, segmenter or DEFAULT_SEGMENTER)
            seg.to(device)
        exp, exp_meta = load("--expert", load_expert, expert or DEFAULT_EXPERT)
        exp.to(device)
    try:
        backend = get_ops(ops, mode)
    except (RuntimeError, ValueError) as exc:
        raise PaintError(f"--ops: {exc}") from None
    if rend is None:
        rend = ExactStrokeRenderer(backend, meta["size"], meta["softness"])
    return Models(net, meta, rend, seg, exp, exp_meta, backend, device, mode)
