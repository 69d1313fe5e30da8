"""What a stroke is, once: 13 numbers in [0, 1], the 10 shape numbers of `rasterize_strokes`
(x0, y0, x1, y1, x2, y2, z0, z2, w0, w2; x = rows, (x1, y1) relative to the endpoints, z the radius
and w the opacity at the ends) then the RGB colour; and the neural stroke pipeline "render K
strokes, then composite them in order" that the agent's environment, the agent's painting and the
optimisation painter all run."""
from __future__ import annotations

import torch

SHAPE_PARAMS = 10                      # the numbers rasterize_strokes and the renderer take
COLOR_PARAMS = 3                       # RGB
STROKE_PARAMS = SHAPE_PARAMS + COLOR_PARAMS  # 13: one stroke of an action or a strokes file


def shapes(strokes: torch.Tensor) -> torch.Tensor:
    """[..., 13] -> [..., 10] shape numbers."""
    return strokes[..., :SHAPE_PARAMS]


def colors(strokes: torch.Tensor) -> torch.Tensor:
    """[..., 13] -> [..., 3] RGB, contiguous (composite's colour argument)."""
    return strokes[..., SHAPE_PARAMS:].contiguous()


def as_strokes(action: torch.Tensor) -> torch.Tensor:
    """An action [B, K * 13] (or strokes [B, K, 13]) -> strokes [B, K, 13]; ValueError otherwise."""
    if action.dim() == 2 and action.shape[1] % STROKE_PARAMS == 0:
        return action.reshape(action.shape[0], -1, STROKE_PARAMS)
    if action.dim() == 3 and action.shape[2] == STROKE_PARAMS:
        return action
    raise ValueError(f"strokes must be [B, K*{STROKE_PARAMS}] or [B, K, {STROKE_PARAMS}], got {tuple(action.shape)}")


def neural_alpha(renderer, strokes: torch.Tensor) -> torch.Tensor:
    """The neural renderer's alpha maps of strokes [B, K, 13]: [B, K, S, S] (S = the renderer's side)."""
    b, k, _ = strokes.shape
    size = renderer.config.size
    return renderer(shapes(strokes).reshape(b * k, SHAPE_PARAMS)).view(b, k, size, size)


def paint_neural(renderer, composite, canvas, strokes, mask=None, layer=None):
    """Render strokes [B, K, 13] with the neural renderer and composite them onto canvas [B, 3, S, S]
    in order (mask/layer: composite's bi-level gates). Differentiable in canvas and strokes."""
    return composite(canvas, neural_alpha(renderer, strokes), colors(strokes), mask, layer)
