"""Argument checks and sizes shared by the fused ops (sgfast.ops) and their eager references
(sgfast.reference): one contract, checked the same way by both, without either package importing
the other."""
import numbers

import torch

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


def crop_size(size):
    """`size` (an int or an (h, w) pair) -> (h, w); raises ValueError naming 'size'."""
    if isinstance(size, bool):
        raise TypeError(f"sgfast: argument 'size': expected an int or an (h, w) pair, got {size!r}")
    if isinstance(size, int):
        pair = (size, size)
    elif isinstance(size, (tuple, list, torch.Size)) and len(size) == 2:
        pair = tuple(size)
    else:
        raise TypeError(f"sgfast: argument 'size': expected an int or an (h, w) pair, got {size!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"sgfast: argument 'size': expected integers, got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"sgfast: argument 'size': expected a crop size >= 1, got {size!r}")
    return int(pair[0]), int(pair[1])
