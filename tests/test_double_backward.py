"""Double backward through the fused ops raises a clear error instead of a wrong number (the autograd
fallback gave 0.0 or None), and the forward-only ops refuse to be differentiated; single backward
is unchanged. The references (plain autograd) give the higher-order gradients."""
import pytest
import torch

import sgfast
import sgfast.ops as ops
import sgfast.reference as ref

pytestmark = pytest.mark.skipif(not sgfast.HAS_EXT, reason="extension not built")


def _composite_inputs():
    g = torch.Generator().manual_seed(0)
    canvas = torch.rand(1, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(1, 2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    color = torch.rand(1, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    return canvas, alpha, color


def test_composite_double_backward_raises_and_single_backward_matches():
    canvas, alpha, color = _composite_inputs()
    out = ops.composite(canvas, alpha, color)
    (g,) = torch.autograd.grad((out ** 2).sum(), alpha, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward through composite"):
        g.sum().backward()
    (want,) = torch.autograd.grad((ref.composite(canvas, alpha, color) ** 2).sum(), alpha)
    (got,) = torch.autograd.grad((ops.composite(canvas, alpha, color) ** 2).sum(), alpha)
    assert torch.allclose(got, want)


def test_focus_double_backward_raises():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    canvas = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64, requires_grad=True)
    gbp = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    boxes = torch.tensor([[0.1, 0.1, 0.6, 0.6], [0.2, 0.3, 0.5, 0.4]], dtype=torch.float64)
    d = ops.focus_distance(target, canvas, gbp, boxes, 8)
    (gc,) = torch.autograd.grad(d.sum(), canvas, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward through focus"):
        (gc ** 2).sum().backward()


@pytest.mark.parametrize("which", ["rasterize_strokes", "composite_frames"])
def test_forward_only_ops_refuse_a_backward(which):
    canvas, alpha, color = _composite_inputs()
    if which == "rasterize_strokes":
        params = torch.rand(3, 10, dtype=torch.float64, requires_grad=True)
        out = ops.rasterize_strokes(params, 8, "exact", 2)
    else:
        out = ops.composite_frames(canvas, alpha, color)
    with pytest.raises(RuntimeError, match="forward only"):
        out.sum().backward()


def test_reference_gives_the_second_order_gradient():
    canvas, alpha, color = _composite_inputs()
    (g,) = torch.autograd.grad((ref.composite(canvas, alpha, color) ** 2).sum(), alpha, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), color)
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0
