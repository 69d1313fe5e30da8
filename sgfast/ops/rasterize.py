"""`rasterize_strokes`: quadratic Bezier brush strokes -> alpha maps (forward only).

Contract: docs/ops/rasterize.md.
"""
import torch

from sgfast.op_args import MAX_SIZE, MAX_SUPERSAMPLE, MODES, check_args, check_values  # noqa: F401
from sgfast.memory import check_fits
from sgfast.ops._ext import not_differentiable, require_ext

def rasterize_strokes(params: torch.Tensor, size: int, mode: str = "ltp", supersample: int = 4) -> torch.Tensor:
    """Renders N strokes to alpha maps [N, size, size] (0 = untouched), dtype of `params`.

    params: [N, 10] float32/float64 in [0, 1]: (x0, y0, x1, y1, x2, y2, z0, z2, w0, w2), x = rows, the
      control point (x1, y1) relative to the endpoints, z = radius, w = opacity at the ends.
    mode: "ltp" reproduces the Learning-to-Paint label generator exactly (1 - draw(f, size), 1e-6);
      "exact" renders the continuous stroke, anti-aliased by supersample x supersample samples per
      pixel (supersample is ignored in "ltp" mode).
    Any device the extension was built for; non-contiguous input is accepted. On CUDA one host sync
    per call (the value check and the size of the circle table).
    """
    size, mode, supersample = check_args(params, size, mode, supersample)
    # On CUDA the op checks the values itself, in its one host sync (the min, max and largest radius
    # it needs anyway): checking here too would add two more syncs per call.
    if params.device.type == "cpu" and not torch.compiler.is_compiling():
        check_values(params)
        # the [N, size, size] output is refused up front when it cannot fit (sgfast.memory)
        check_fits(params.shape[0] * size * size * params.element_size(),
                   f"rasterize_strokes of {params.shape[0]} strokes at {size} px",
                   "rasterize fewer strokes per call or at a smaller size")
    require_ext(params)
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

    not_differentiable("rasterize_strokes", "rasterize_strokes is forward only (labels and re-rendering); "
                       "differentiate through render_strokes")


_register_fake()
