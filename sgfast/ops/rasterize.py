"""`rasterize_strokes`: quadratic Bezier brush strokes -> alpha maps (forward only).

Contract: docs/ops/rasterize.md (and DESIGN.md, "The fused ops", item 1).
"""
import numbers

import torch

from sgfast.ops._ext import require_ext

MODES = ("ltp", "exact")
MAX_SIZE = 16384
MAX_SUPERSAMPLE = 64


def _check_int(value, name, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"sgfast.rasterize_strokes: argument '{name}' must be an int, got {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"sgfast.rasterize_strokes: argument '{name}' must be in [{lo}, {hi}], got {value}")
    return value


def check_args(params, size, mode, supersample):
    """Validates the arguments (shared with the eager reference); returns (size, mode, supersample)."""
    if not isinstance(params, torch.Tensor):
        raise TypeError(f"sgfast.rasterize_strokes: argument 'params' must be a torch.Tensor, got {type(params).__name__}")
    if params.dim() != 2 or params.shape[1] != 10:
        raise ValueError(f"sgfast.rasterize_strokes: argument 'params' must have shape [N, 10] "
                         f"(x0, y0, x1, y1, x2, y2, z0, z2, w0, w2), got {list(params.shape)}")
    if params.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"sgfast.rasterize_strokes: argument 'params' must be float32 or float64, got {params.dtype}")
    size = _check_int(size, "size", 1, MAX_SIZE)
    if mode not in MODES:
        raise ValueError(f"sgfast.rasterize_strokes: argument 'mode' must be one of {MODES}, got {mode!r}")
    supersample = _check_int(supersample, "supersample", 1, MAX_SUPERSAMPLE)
    return size, mode, supersample


def check_values(params):
    """Refuses NaN/inf and values outside [0, 1] (they are not clamped: a value out of range is a bug
    upstream, e.g. an actor without its sigmoid, and clamping would hide it). One device sync on CUDA."""
    if params.numel() == 0:
        return
    if not bool(torch.isfinite(params).all()):
        raise ValueError("sgfast.rasterize_strokes: argument 'params' contains NaN or inf")
    if not bool(((params >= 0) & (params <= 1)).all()):
        lo, hi = float(params.min()), float(params.max())
        raise ValueError(f"sgfast.rasterize_strokes: argument 'params' must lie in [0, 1] (values are not clamped), "
                         f"got min {lo}, max {hi}")


def rasterize_strokes(params: torch.Tensor, size: int, mode: str = "ltp", supersample: int = 4) -> torch.Tensor:
    """Renders N strokes to alpha maps [N, size, size] (0 = untouched), dtype of `params`.

    params: [N, 10] float32/float64 in [0, 1]: (x0, y0, x1, y1, x2, y2, z0, z2, w0, w2), x = rows, the
      control point (x1, y1) relative to the endpoints, z = radius, w = opacity at the ends.
    mode: "ltp" reproduces the Learning-to-Paint label generator exactly (1 - draw(f, size), 1e-6);
      "exact" renders the continuous stroke, anti-aliased by supersample x supersample samples per
      pixel (supersample is ignored in "ltp" mode).
    Any device the extension was built for; non-contiguous input is accepted.
    """
    size, mode, supersample = check_args(params, size, mode, supersample)
    if not torch.compiler.is_compiling():
        check_values(params)
    require_ext()
    return torch.ops.sgfast.rasterize_strokes(params, size, mode, supersample)


def _register_fake():
    try:
        torch.ops.sgfast.rasterize_strokes
    except (AttributeError, RuntimeError):  # extension not built: nothing to register
        return

    @torch.library.register_fake("sgfast::rasterize_strokes")
    def _(params, size, mode, supersample):
        torch._check(params.dim() == 2 and params.shape[1] == 10, lambda: "params must be [N, 10]")
        return params.new_empty((params.shape[0], size, size))


_register_fake()
