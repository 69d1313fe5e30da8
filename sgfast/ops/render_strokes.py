"""`render_strokes`: the exact, differentiable stroke renderer fused with compositing.

    for each stroke k in order, at every pixel centre p (pixels):
        s(p)     = max over t in [0, 1] of R(t) - |p - B(t)|     (t^ = the largest maximiser)
        alpha(p) = clamp(0.5 + s(p) / softness, 0, 1) * w(t^)
        C        = C * (1 - alpha) + alpha * color_k * gate_k    (composite's recurrence and gates)

Geometry as rasterize_strokes(mode="exact"); strokes are binned to 16 x 16 tiles, no [B, N, H, W]
tensor exists, and the backward recomputes instead of storing canvases. Gradients flow to canvas and
all 13 stroke numbers (the envelope gradient at t^), not to the mask. Contract and cost:
docs/ops/render_strokes.md; eager twin: sgfast.reference.render_strokes.
"""
import torch

from sgfast.op_args import check_render_args, check_render_values
from sgfast.ops._ext import HAS_EXT, not_differentiable, require_ext

__all__ = ["render_strokes"]


def render_strokes(canvas, strokes, mask=None, layer=None, softness=1.0):
    """Paints strokes onto the canvas in order; returns the new canvas [B, 3, H, W].

    Args:
        canvas: [B, 3, H, W] float32/float64.
        strokes: [B, N, 13] in [0, 1], same dtype and device: the 10 shape numbers of rasterize_strokes
            (x0, y0, x1, y1, x2, y2, z0, z2, w0, w2; x = rows, (x1, y1) relative to the endpoints), then RGB.
        mask: optional [B, 1, H, W] foreground probability S (not differentiable).
        layer: optional [N] bool (tensor or sequence), True = foreground stroke (gated by S), False =
            background (1 - S), exactly as in composite.
        softness: width of the anti-aliasing ramp in pixels, > 0 (1 = box-filter-like edges; large
            values give smooth gradients for optimisation).
    """
    layer, softness = check_render_args(canvas, strokes, mask, layer, softness)
    # On CUDA the op checks the values itself, in the one host sync it makes anyway (the size of its
    # tile lists): checking here too would add two more syncs to every env step and update.
    if strokes.device.type == "cpu" and not torch.compiler.is_compiling():
        check_render_values(strokes)
    require_ext()
    mask = None if mask is None else mask.contiguous()
    layer = None if layer is None else layer.contiguous()
    return torch.ops.sgfast.render_strokes(canvas.contiguous(), strokes.contiguous(), mask, layer, softness)


def _registered():
    try:
        torch.ops.sgfast.render_strokes
        torch.ops.sgfast._render_strokes_backward
    except (AttributeError, RuntimeError):
        return False
    return True


if HAS_EXT and _registered():

    @torch.library.register_fake("sgfast::render_strokes")
    def _render_strokes_fake(canvas, strokes, mask, layer, softness):
        return torch.empty_like(canvas, memory_format=torch.contiguous_format)

    @torch.library.register_fake("sgfast::_render_strokes_backward")
    def _render_strokes_backward_fake(grad_out, canvas, strokes, mask, layer, softness):
        return (torch.empty_like(canvas, memory_format=torch.contiguous_format),
                torch.empty_like(strokes, memory_format=torch.contiguous_format))

    def _setup_context(ctx, inputs, output):
        canvas, strokes, mask, layer, softness = inputs
        ctx.save_for_backward(canvas, strokes, mask, layer)
        ctx.softness = softness

    def _backward(ctx, grad_out):
        canvas, strokes, mask, layer = ctx.saved_tensors
        grad_canvas, grad_strokes = torch.ops.sgfast._render_strokes_backward(
            grad_out, canvas, strokes, mask, layer, ctx.softness)
        need = ctx.needs_input_grad
        return (grad_canvas if need[0] else None, grad_strokes if need[1] else None, None, None, None)

    torch.library.register_autograd("sgfast::render_strokes", _backward, setup_context=_setup_context)
    not_differentiable("_render_strokes_backward", "double backward through render_strokes is not supported (its "
                       "backward is not differentiable); use sgfast.reference.render_strokes for higher-order "
                       "gradients")
