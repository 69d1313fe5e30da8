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


# --- render_strokes ---------------------------------------------------------------------------------

RENDER_STROKE_PARAMS = 13  # the 10 shape numbers of rasterize_strokes, then RGB


def _render_error(kind, name, message):
    return kind(f"sgfast.render_strokes: argument '{name}': {message}")


def _render_tensor(name, t, dim, shape):
    if not isinstance(t, torch.Tensor):
        raise _render_error(TypeError, name, f"expected a tensor {shape}, got {type(t).__name__}")
    if t.dim() != dim:
        raise _render_error(ValueError, name, f"expected a {dim}-d tensor {shape}, got shape {tuple(t.shape)}")


def check_render_args(canvas, strokes, mask, layer, softness):
    """Checks render_strokes' arguments (shared by sgfast.ops and sgfast.reference); every error names the
    argument. Returns (layer as a bool tensor on the canvas' device or None, softness as a float).
    Stroke values are checked by check_render_values."""
    _render_tensor("canvas", canvas, 4, "[B, 3, H, W]")
    if canvas.dtype not in (torch.float32, torch.float64):
        raise _render_error(TypeError, "canvas", f"expected float32 or float64, got {canvas.dtype}")
    b, c, h, w = canvas.shape
    if c != 3:
        raise _render_error(ValueError, "canvas", f"expected 3 channels [B, 3, H, W], got shape {tuple(canvas.shape)}")
    _render_tensor("strokes", strokes, 3, "[B, N, 13]")
    if strokes.shape[0] != b or strokes.shape[2] != RENDER_STROKE_PARAMS:
        raise _render_error(ValueError, "strokes", f"expected [B, N, 13] = [{b}, N, 13] (10 shape numbers, then "
                            f"RGB), got {tuple(strokes.shape)}")
    n = strokes.shape[1]
    named = [("strokes", strokes)]
    if mask is not None:
        _render_tensor("mask", mask, 4, "[B, 1, H, W]")
        if tuple(mask.shape) != (b, 1, h, w):
            raise _render_error(ValueError, "mask", f"expected [B, 1, H, W] = [{b}, 1, {h}, {w}], got "
                                f"{tuple(mask.shape)}")
        if mask.requires_grad and torch.is_grad_enabled():
            raise _render_error(ValueError, "mask", "the mask is not differentiable; pass mask.detach()")
        named.append(("mask", mask))
    for name, t in named:
        if t.dtype != canvas.dtype:
            raise _render_error(TypeError, name, f"expected dtype {canvas.dtype} (the canvas dtype), got {t.dtype}")
        if t.device != canvas.device:
            raise _render_error(ValueError, name, f"expected device {canvas.device} (the canvas device), got "
                                f"{t.device}")
    if layer is not None:
        if not isinstance(layer, torch.Tensor):
            layer = torch.tensor(list(layer), dtype=torch.bool, device=canvas.device)
        if layer.dtype != torch.bool:
            raise _render_error(TypeError, "layer", f"expected dtype torch.bool (True = foreground stroke), got "
                                f"{layer.dtype}")
        if tuple(layer.shape) != (n,):
            raise _render_error(ValueError, "layer", f"expected shape [N] = [{n}], got {tuple(layer.shape)}")
        if layer.device != canvas.device:
            raise _render_error(ValueError, "layer", f"expected device {canvas.device} (the canvas device), got "
                                f"{layer.device}")
    if isinstance(softness, bool) or not isinstance(softness, numbers.Real):
        raise _render_error(TypeError, "softness", f"expected a number of pixels > 0, got {softness!r}")
    softness = float(softness)
    if not (softness > 0 and softness < float("inf")):
        raise _render_error(ValueError, "softness", f"expected a finite number of pixels > 0, got {softness}")
    return layer, softness


def check_render_values(strokes):
    """Refuses NaN/inf and stroke numbers outside [0, 1] (not clamped, as rasterize_strokes). Two host
    syncs on CUDA: the fused op's wrapper calls it for CPU tensors only, where reading is free (its
    CUDA kernel checks the same in the one sync it makes anyway); the eager reference everywhere."""
    if strokes.numel() == 0:
        return
    strokes = strokes.detach()  # (isfinite would record a graph)
    if not bool(torch.isfinite(strokes).all()):
        raise _render_error(ValueError, "strokes", "contains NaN or inf")
    if not bool(((strokes >= 0) & (strokes <= 1)).all()):
        lo, hi = float(strokes.min()), float(strokes.max())
        raise _render_error(ValueError, "strokes", f"values must lie in [0, 1] (they are not clamped), got min {lo}, "
                            f"max {hi}")
