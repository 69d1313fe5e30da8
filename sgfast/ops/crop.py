"""`aligned_crop`: the neural-alignment crop Omega (paper Eq. 8-10, 21) as one fused op.

Contract: docs/ops/aligned_crop.md. Equal to sgfast.reference.aligned_crop (affine_grid +
grid_sample, align_corners=False, bilinear, zeros padding).
"""
import torch

from sgfast.ops._ext import HAS_EXT, require_ext
from sgfast.op_args import crop_size

_FLOATS = (torch.float32, torch.float64)


def _err(op, name, msg, exc=ValueError):
    return exc(f"sgfast.{op}: argument '{name}': {msg}")


def check_image(op, t, name, like=None, channels=None):
    """A [B, C, H, W] float32/float64 tensor; with `like`, same batch, size, dtype and device."""
    if not isinstance(t, torch.Tensor):
        raise _err(op, name, f"expected a torch.Tensor, got {type(t).__name__}", TypeError)
    if t.dim() != 4:
        raise _err(op, name, f"expected a 4-d tensor [B, C, H, W], got shape {list(t.shape)}")
    if like is None:
        if t.dtype not in _FLOATS:
            raise _err(op, name, f"expected float32 or float64, got {t.dtype}", TypeError)
        if t.shape[2] < 1 or t.shape[3] < 1:
            raise _err(op, name, f"expected H, W >= 1, got shape {list(t.shape)}")
        return
    if t.device != like.device:
        raise _err(op, name, f"expected device {like.device} (like the first image), got {t.device}")
    if t.dtype != like.dtype:
        raise _err(op, name, f"expected dtype {like.dtype} (like the first image), got {t.dtype}", TypeError)
    c = like.shape[1] if channels is None else channels
    want = [like.shape[0], c, like.shape[2], like.shape[3]]
    if list(t.shape) != want:
        raise _err(op, name, f"expected shape {want}, got {list(t.shape)}")


def check_boxes(op, boxes, like):
    """boxes [B, 4] float on the image's device, finite; returns them in the image's dtype.

    Finiteness is checked for CPU tensors only (a free read there). On CUDA it would be a host sync
    on every call (12 per DDPG update), so the kernels take care of it instead: a non-finite box
    gives NaN outputs and gradients for its image (kernels/crop.h: box_tap). Skipped while
    torch.compile traces, where values are unknown.
    """
    if not isinstance(boxes, torch.Tensor):
        raise _err(op, "boxes", f"expected a torch.Tensor, got {type(boxes).__name__}", TypeError)
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != like.shape[0]:
        raise _err(op, "boxes", f"expected shape [{like.shape[0]}, 4] (x, y, w, h), got {list(boxes.shape)}")
    if not boxes.is_floating_point():
        raise _err(op, "boxes", f"expected a floating dtype, got {boxes.dtype}", TypeError)
    if boxes.device != like.device:
        raise _err(op, "boxes", f"expected device {like.device} (like the image), got {boxes.device}")
    _refuse_nonfinite_on_cpu(op, boxes)
    return boxes.to(like.dtype)


def _refuse_nonfinite_on_cpu(op, boxes):
    """ValueError for NaN/inf boxes on the CPU, where reading them is free (tests/test_host_syncs.py
    allows this function's read for CPU tensors and checks it reads nothing on other devices)."""
    if (boxes.device.type == "cpu" and boxes.numel() and not torch.compiler.is_compiling()
            and not bool(torch.isfinite(boxes).all())):
        raise _err(op, "boxes", "contains NaN or inf")


def aligned_crop(x: torch.Tensor, boxes: torch.Tensor, size, mask: torch.Tensor = None) -> torch.Tensor:
    """Crops box b of image b and resamples it to `size`: x [B, C, H, W] -> [B, C, h, w].

    boxes: [B, 4] = (x, y, w, h) normalised to [0, 1], x horizontal (column), as in the paper's
      Eq. 21 and torch's affine_grid; boxes may reach outside the image (zeros padding).
    size: int or (h, w).
    mask: optional [B, 1, H, W]; the op crops x * mask (the authors crop X * S) without forming it.
    Stack several images that share a box along C to crop them in one call with one set of weights.
    Differentiable in x and mask (not in boxes). float32/float64, CPU or CUDA, any strides.
    """
    op = "aligned_crop"
    out_h, out_w = crop_size(size)
    check_image(op, x, "x")
    boxes = check_boxes(op, boxes, x)
    if mask is not None:
        if isinstance(mask, torch.Tensor) and mask.dtype != x.dtype and (mask.dtype == torch.bool or mask.is_floating_point()):
            mask = mask.to(x.dtype)
        check_image(op, mask, "mask", like=x, channels=1)
    require_ext(x)
    return torch.ops.sgfast.aligned_crop(x, boxes, out_h, out_w, mask)


if HAS_EXT:

    @torch.library.register_fake("sgfast::aligned_crop")
    def _(x, boxes, out_h, out_w, mask):
        torch._check(x.dim() == 4, lambda: "x must be [B, C, H, W]")
        return x.new_empty((x.shape[0], x.shape[1], out_h, out_w))

    @torch.library.register_fake("sgfast::_aligned_crop_backward")
    def _(grad_out, boxes, mask, in_h, in_w):
        return grad_out.new_empty((grad_out.shape[0], grad_out.shape[1], in_h, in_w))

    def _setup_context(ctx, inputs, output):
        x, boxes, out_h, out_w, mask = inputs
        ctx.in_hw = (x.shape[2], x.shape[3])
        # x is only needed for the mask's gradient.
        ctx.save_for_backward(boxes, mask, x if ctx.needs_input_grad[4] else None)

    def _backward(ctx, grad):
        boxes, mask, x = ctx.saved_tensors
        in_h, in_w = ctx.in_hw
        grad_x = grad_mask = None
        if ctx.needs_input_grad[4]:
            # d/dmask sum_c x_c * crop^T(g)_c: one unmasked crop^T serves both gradients.
            g_src = torch.ops.sgfast._aligned_crop_backward(grad, boxes, None, in_h, in_w)
            grad_mask = (g_src * x).sum(1, keepdim=True)
            grad_x = g_src * mask if ctx.needs_input_grad[0] else None
        elif ctx.needs_input_grad[0]:
            grad_x = torch.ops.sgfast._aligned_crop_backward(grad, boxes, mask, in_h, in_w)
        return grad_x, None, None, None, grad_mask

    torch.library.register_autograd("sgfast::aligned_crop", _backward, setup_context=_setup_context)

    # The backward is the adjoint crop^T, linear in grad_out: its own derivative is the crop again
    # (double backward, e.g. gradient penalties through a crop).
    def _setup_context_bwd(ctx, inputs, output):
        grad_out, boxes, mask, in_h, in_w = inputs
        ctx.out_hw = (grad_out.shape[2], grad_out.shape[3])
        ctx.save_for_backward(boxes, mask)

    def _backward_bwd(ctx, gg):
        boxes, mask = ctx.saved_tensors
        out_h, out_w = ctx.out_hw
        g = torch.ops.sgfast.aligned_crop(gg, boxes, out_h, out_w, mask) if ctx.needs_input_grad[0] else None
        return g, None, None, None, None

    torch.library.register_autograd("sgfast::_aligned_crop_backward", _backward_bwd, setup_context=_setup_context_bwd)
