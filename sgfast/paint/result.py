"""What painting returns: one PaintResult per image, and PaintError for a set-up problem."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch


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
    # method "exact" (sgfast/paint/exact_painter.py): the canvas is [3, H, W] at the image's shape,
    # painted onto a flat `background` by render_strokes with this `softness` (pixels)
    background: tuple | None = None
    softness: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exact(self) -> bool:
        """Painted by render_strokes (method "exact"): re-renders at any size, the image's shape."""
        return self.softness is not None

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
