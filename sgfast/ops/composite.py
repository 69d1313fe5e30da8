"""Bi-level compositing: paint K strokes onto a canvas in one fused pass (paper Eq. 3-4).

    for k = 0..K-1:  C <- C * (1 - alpha_k) + alpha_k * color_k * m_k

with m_k = 1 without a mask, S (the foreground mask) for a foreground stroke (layer[k] true) and
1 - S for a background one. A mask given without a layer makes every stroke a foreground stroke;
a layer given without a mask has no effect (every m_k = 1). The fused backward recomputes the
intermediate canvases per pixel instead of storing K of them. Gradients flow to canvas, alpha and
color; the mask is a constant (a mask that requires grad is refused: pass mask.detach()).
See docs/ops/composite.md.
"""
import torch

from sgfast.memory import check_fits
from sgfast.ops._ext import HAS_EXT, not_differentiable, require_ext

__all__ = ["composite", "composite_frames"]

_FLOAT = (torch.float32, torch.float64)


def _check_tensor(name, t, dim, shape):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"sgfast.composite: argument '{name}' must be a tensor {shape}, got {type(t).__name__}")
    if t.dim() != dim:
        raise ValueError(f"sgfast.composite: argument '{name}': expected a {dim}-d tensor {shape}, "
                         f"got shape {tuple(t.shape)}")


def _prepare(canvas, alpha, color, mask, layer):
    """Checks the arguments (errors name the argument); returns them contiguous, layer as a bool tensor."""
    _check_tensor("canvas", canvas, 4, "[B, 3, H, W]")
    _check_tensor("alpha", alpha, 4, "[B, K, H, W]")
    _check_tensor("color", color, 3, "[B, K, 3]")
    if canvas.dtype not in _FLOAT:
        raise TypeError(f"sgfast.composite: argument 'canvas': expected float32 or float64, got {canvas.dtype}")
    b, c, h, w = canvas.shape
    if c != 3:
        raise ValueError(f"sgfast.composite: argument 'canvas': expected 3 channels [B, 3, H, W], "
                         f"got shape {tuple(canvas.shape)}")
    k = alpha.shape[1]
    if alpha.shape[0] != b or alpha.shape[2:] != (h, w):
        raise ValueError(f"sgfast.composite: argument 'alpha': expected [B, K, H, W] = [{b}, K, {h}, {w}] "
                         f"to match canvas, got {tuple(alpha.shape)}")
    if tuple(color.shape) != (b, k, 3):
        raise ValueError(f"sgfast.composite: argument 'color': expected [B, K, 3] = [{b}, {k}, 3], "
                         f"got {tuple(color.shape)}")
    named = [("alpha", alpha), ("color", color)]
    if mask is not None:
        _check_tensor("mask", mask, 4, "[B, 1, H, W]")
        if tuple(mask.shape) != (b, 1, h, w):
            raise ValueError(f"sgfast.composite: argument 'mask': expected [B, 1, H, W] = [{b}, 1, {h}, {w}], "
                             f"got {tuple(mask.shape)}")
        if mask.requires_grad and torch.is_grad_enabled():
            raise ValueError("sgfast.composite: argument 'mask': the mask is not differentiable; "
                             "pass mask.detach()")
        named.append(("mask", mask))
    for name, t in named:
        if t.dtype != canvas.dtype:
            raise TypeError(f"sgfast.composite: argument '{name}': expected dtype {canvas.dtype} "
                            f"(the canvas dtype), got {t.dtype}")
        if t.device != canvas.device:
            raise ValueError(f"sgfast.composite: argument '{name}': expected device {canvas.device} "
                             f"(the canvas device), got {t.device}")
    if layer is not None:
        if not isinstance(layer, torch.Tensor):
            layer = torch.tensor(list(layer), dtype=torch.bool, device=canvas.device)
        if layer.dtype != torch.bool:
            raise TypeError(f"sgfast.composite: argument 'layer': expected dtype torch.bool "
                            f"(True = foreground stroke), got {layer.dtype}")
        if tuple(layer.shape) != (k,):
            raise ValueError(f"sgfast.composite: argument 'layer': expected shape [K] = [{k}], "
                             f"got {tuple(layer.shape)}")
        if layer.device != canvas.device:
            raise ValueError(f"sgfast.composite: argument 'layer': expected device {canvas.device} "
                             f"(the canvas device), got {layer.device}")
        layer = layer.contiguous()
    if mask is not None:
        mask = mask.contiguous()
    return canvas.contiguous(), alpha.contiguous(), color.contiguous(), mask, layer


def composite(canvas, alpha, color, mask=None, layer=None):
    """Paints K strokes onto the canvas in order; returns the new canvas [B, 3, H, W].

    Args:
        canvas: [B, 3, H, W] float32/float64.
        alpha: [B, K, H, W] stroke densities in [0, 1], same dtype and device.
        color: [B, K, 3] stroke colours.
        mask: optional [B, 1, H, W] foreground probability S (not differentiable).
        layer: optional [K] bool (tensor or sequence), True = foreground stroke (gated by S),
            False = background stroke (gated by 1 - S). With a mask and no layer every stroke is
            foreground; without a mask the layer has no effect.
    """
    canvas, alpha, color, mask, layer = _prepare(canvas, alpha, color, mask, layer)
    require_ext(canvas)
    return torch.ops.sgfast.composite(canvas, alpha, color, mask, layer)


def composite_frames(canvas, alpha, color, mask=None, layer=None):
    """Every intermediate canvas [B, K, 3, H, W] (frame k = canvas after stroke k), for videos.

    Forward only (no gradient). Same arguments as composite; frames[:, -1] equals composite(...).
    """
    canvas, alpha, color, mask, layer = _prepare(canvas, alpha, color, mask, layer)
    if canvas.device.type == "cpu" and not torch.compiler.is_compiling():  # [B, K, 3, H, W], up front
        check_fits(alpha.shape[0] * alpha.shape[1] * canvas.shape[1:].numel() * canvas.element_size(),
                   f"composite_frames of {alpha.shape[1]} strokes", "composite fewer strokes per call")
    require_ext(canvas)
    return torch.ops.sgfast.composite_frames(canvas, alpha, color, mask, layer)


if HAS_EXT:

    @torch.library.register_fake("sgfast::composite")
    def _composite_fake(canvas, alpha, color, mask, layer):
        return torch.empty_like(canvas, memory_format=torch.contiguous_format)

    @torch.library.register_fake("sgfast::composite_frames")
    def _composite_frames_fake(canvas, alpha, color, mask, layer):
        b, _, h, w = canvas.shape
        return canvas.new_empty((b, alpha.shape[1], 3, h, w))

    @torch.library.register_fake("sgfast::_composite_backward")
    def _composite_backward_fake(grad_out, canvas, alpha, color, mask, layer):
        return (torch.empty_like(canvas, memory_format=torch.contiguous_format),
                torch.empty_like(alpha, memory_format=torch.contiguous_format),
                torch.empty_like(color, memory_format=torch.contiguous_format))

    def _setup_context(ctx, inputs, output):
        canvas, alpha, color, mask, layer = inputs
        ctx.save_for_backward(canvas, alpha, color, mask, layer)

    def _backward(ctx, grad_out):
        canvas, alpha, color, mask, layer = ctx.saved_tensors
        grad_canvas, grad_alpha, grad_color = torch.ops.sgfast._composite_backward(
            grad_out, canvas, alpha, color, mask, layer)
        need = ctx.needs_input_grad
        return (grad_canvas if need[0] else None, grad_alpha if need[1] else None,
                grad_color if need[2] else None, None, None)

    torch.library.register_autograd("sgfast::composite", _backward, setup_context=_setup_context)
    not_differentiable("_composite_backward", "double backward through composite is not supported (its "
                       "backward is not differentiable); use sgfast.reference.composite for higher-order gradients")
    not_differentiable("composite_frames", "composite_frames is forward only (progress frames); differentiate "
                       "through composite")
