"""`focus_distance` and `focus_reward`: the guided-backprop focus terms (paper Eq. 13-15), fused.

    L(C) = ||Z_G * (Z_I - Z_C)||_F^2 / (||Z_G||_F + 1e-8),   Z_* = aligned_crop(*, boxes, size)
    focus_reward = L(C0) - L(C1)

Computed in one pass over the crop without materialising it. Contract: docs/ops/focus.md;
equal to sgfast.reference.focus_distance / focus_reward.
"""
import torch

from sgfast.ops._ext import HAS_EXT, not_differentiable, require_ext
from sgfast.ops.crop import check_boxes, check_image
from sgfast.op_args import crop_size


def _check(op, target, canvases, gbp, boxes, size):
    out_h, out_w = crop_size(size)
    check_image(op, target, "target")
    for name, c in canvases:
        check_image(op, c, name, like=target)
    check_image(op, gbp, "gbp", like=target, channels=1)
    boxes = check_boxes(op, boxes, target)
    require_ext(target)
    return boxes, out_h, out_w


def focus_distance(target, canvas, gbp, boxes, size) -> torch.Tensor:
    """L per image -> [B].

    target, canvas: [B, C, H, W]; gbp: [B, 1, H, W] (the guided-backprop map, broadcast over C);
    boxes: [B, 4] (x, y, w, h) normalised, x horizontal; size: int or (h, w) of the crop.
    Differentiable in canvas and target (not in gbp or boxes).
    """
    boxes, out_h, out_w = _check("focus_distance", target, [("canvas", canvas)], gbp, boxes, size)
    return torch.ops.sgfast.focus_distance(target, canvas, gbp, boxes, out_h, out_w)


def focus_reward(target, canvas0, canvas1, gbp, boxes, size) -> torch.Tensor:
    """r_focus = L(canvas0) - L(canvas1) per image -> [B] (Eq. 15), in one pass.

    Differentiable in canvas0, canvas1 and target (not in gbp or boxes).
    """
    boxes, out_h, out_w = _check("focus_reward", target, [("canvas0", canvas0), ("canvas1", canvas1)], gbp, boxes,
                                 size)
    return torch.ops.sgfast.focus_reward(target, canvas0, canvas1, gbp, boxes, out_h, out_w)


if HAS_EXT:

    @torch.library.register_fake("sgfast::focus_distance")
    def _(target, canvas, gbp, boxes, out_h, out_w):
        return target.new_empty((target.shape[0],))

    @torch.library.register_fake("sgfast::focus_reward")
    def _(target, canvas0, canvas1, gbp, boxes, out_h, out_w):
        return target.new_empty((target.shape[0],))

    @torch.library.register_fake("sgfast::_focus_distance_backward")
    def _(grad_out, target, canvas, gbp, boxes, out_h, out_w):
        return torch.empty_like(canvas, memory_format=torch.contiguous_format)

    @torch.library.register_fake("sgfast::_focus_reward_backward")
    def _(grad_out, target, canvas0, canvas1, gbp, boxes, out_h, out_w):
        return (torch.empty_like(canvas0, memory_format=torch.contiguous_format),
                torch.empty_like(canvas1, memory_format=torch.contiguous_format))

    def _setup_distance(ctx, inputs, output):
        target, canvas, gbp, boxes, out_h, out_w = inputs
        ctx.size = (out_h, out_w)
        ctx.save_for_backward(target, canvas, gbp, boxes)

    def _backward_distance(ctx, grad):
        target, canvas, gbp, boxes = ctx.saved_tensors
        grad_target = grad_canvas = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            g = torch.ops.sgfast._focus_distance_backward(grad, target, canvas, gbp, boxes, *ctx.size)
            # L depends on target - canvas only.
            grad_canvas = g if ctx.needs_input_grad[1] else None
            grad_target = -g if ctx.needs_input_grad[0] else None
        return grad_target, grad_canvas, None, None, None, None

    torch.library.register_autograd("sgfast::focus_distance", _backward_distance, setup_context=_setup_distance)

    def _setup_reward(ctx, inputs, output):
        target, canvas0, canvas1, gbp, boxes, out_h, out_w = inputs
        ctx.size = (out_h, out_w)
        ctx.save_for_backward(target, canvas0, canvas1, gbp, boxes)

    def _backward_reward(ctx, grad):
        target, canvas0, canvas1, gbp, boxes = ctx.saved_tensors
        need_t, need0, need1 = ctx.needs_input_grad[:3]
        if not (need_t or need0 or need1):
            return (None,) * 7
        if need_t or (need0 and need1):
            g0, g1 = torch.ops.sgfast._focus_reward_backward(grad, target, canvas0, canvas1, gbp, boxes, *ctx.size)
        elif need0:  # one canvas only (e.g. the actor's loss, through C_t+1): one crop backward, not two
            g0, g1 = torch.ops.sgfast._focus_distance_backward(grad, target, canvas0, gbp, boxes, *ctx.size), None
        else:  # d(-L(C1))/dC1 = dL(C1)/dC1 at -grad: the same numbers as the reward backward's g1
            g0, g1 = None, torch.ops.sgfast._focus_distance_backward(-grad, target, canvas1, gbp, boxes, *ctx.size)
        grad_target = -(g0 + g1) if need_t else None
        return (grad_target, g0 if need0 else None, g1 if need1 else None, None, None, None, None)

    torch.library.register_autograd("sgfast::focus_reward", _backward_reward, setup_context=_setup_reward)
    for _op in ("_focus_distance_backward", "_focus_reward_backward"):
        not_differentiable(_op, "double backward through focus_distance / focus_reward is not supported (their "
                           "backward is not differentiable); use sgfast.reference for higher-order gradients")
