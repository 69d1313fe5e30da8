"""The CUDA kernels against the CPU kernels, on a GPU (`make gpu-check` runs these first).

Every op, forward and backward, float32 and float64, at small sizes and at 1024 px; non-contiguous
inputs; a side stream; 70,000-image batches (grid.y's limit is 65,535); each backward twice, bitwise.
Without a GPU these skip (tests/test_cuda_twins.py checks the same kernels' arithmetic on the CPU); on
a GPU with a CPU-only build of sgfast they fail, saying how to rebuild (tests/conftest.py).
"""
import pytest
import torch

import sgfast
from conftest import needs_cuda, needs_ext
from tests.test_crop import random_boxes

pytestmark = [needs_ext, needs_cuda]

ops = sgfast.ops
DTYPES = [torch.float32, torch.float64]


def close(cuda, cpu, dtype, scale=1.0):
    """CUDA vs CPU: the same arithmetic up to fused multiply-adds and summation order."""
    cuda = cuda.cpu()
    mag = max(1.0, float(cpu.abs().max())) if cpu.numel() else 1.0
    tol = (2e-5, 1e-4) if dtype == torch.float32 else (1e-10, 1e-9)
    torch.testing.assert_close(cuda, cpu, atol=tol[0] * mag * scale, rtol=tol[1] * scale, equal_nan=True)


def grads_of(fn, inputs, seed=0):
    """Output of fn(*inputs) and the gradients of the inputs for a fixed random upstream gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    return out.detach(), torch.autograd.grad(out, leaves, g)


def both(fn, inputs, others):
    """(CPU result, CUDA result) of grads_of, `others` moved along (None stays None)."""
    res = []
    for dev in ("cpu", "cuda"):
        mv = [t.to(dev) for t in inputs]
        ot = [None if o is None else (o.to(dev) if torch.is_tensor(o) else o) for o in others]
        res.append(grads_of(lambda *a: fn(*a, *ot), mv))
    return res


def check_both(fn, inputs, others, scale=1.0):
    (out, grads), (out_c, grads_c) = both(fn, inputs, others)
    dtype = inputs[0].dtype
    close(out_c, out, dtype, scale)
    for g, gc in zip(grads, grads_c):
        close(gc, g, dtype, scale)


# --- composite ---------------------------------------------------------------------------------------

def composite_inputs(B, K, H, W, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=dtype)  # noqa: E731
    return [r(B, 3, H, W), r(B, K, H, W), r(B, K, 3)], [r(B, 1, H, W), torch.rand(K, generator=g) > 0.4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 17, 23), (2, 20, 33, 40), (2, 37, 9, 9), (2, 5, 1024, 1024)])
def test_composite_cuda_matches_cpu(dtype, shape):
    inputs, (mask, layer) = composite_inputs(*shape, dtype)
    # grad_color sums over every pixel: its rounding grows with the image.
    check_both(ops.composite, inputs, [mask, layer], scale=10.0 if shape[2] >= 1024 else 1.0)
    frames_cpu = ops.composite_frames(*inputs, mask, layer)
    close(ops.composite_frames(*[t.cuda() for t in inputs], mask.cuda(), layer.cuda()), frames_cpu, dtype)


# --- aligned_crop --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3, 33, 27, 13, 18), (3, 2, 20, 24, 40, 31), (2, 1, 1024, 1024, 1024, 1024),
                                   (2, 3, 1536, 1536, 1024, 1024)])
def test_aligned_crop_cuda_matches_cpu(dtype, shape):
    B, C, H, W, h, w = shape
    g = torch.Generator().manual_seed(H + h)
    x = torch.rand(B, C, H, W, generator=g, dtype=dtype)
    mask = torch.rand(B, 1, H, W, generator=g, dtype=dtype)
    boxes = random_boxes(B, dtype, "cpu", g)
    check_both(ops.aligned_crop, [x], [boxes, (h, w), None])
    check_both(lambda a, b, s, m: ops.aligned_crop(a, b, s, m), [x], [boxes, (h, w), mask])
    if H <= 64:  # the mask's gradient too (one unmasked crop backward serves both)
        check_both(lambda a, m, b, s: ops.aligned_crop(a, b, s, m), [x, mask], [boxes, (h, w)])


# --- focus -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3, 33, 27, 13, 18), (4, 3, 16, 16, 40, 40), (2, 3, 1024, 1024, 1024, 1024)])
def test_focus_cuda_matches_cpu(dtype, shape):
    B, C, H, W, h, w = shape
    g = torch.Generator().manual_seed(H * 7 + h)
    target, c0, c1 = (torch.rand(B, C, H, W, generator=g, dtype=dtype) for _ in range(3))
    gbp = torch.rand(B, 1, H, W, generator=g, dtype=dtype)
    boxes = random_boxes(B, dtype, "cpu", g)
    check_both(lambda t, a, b, gb, bx, s: ops.focus_reward(t, a, b, gb, bx, s), [target, c0, c1], [gbp, boxes, (h, w)])
    check_both(lambda t, a, gb, bx, s: ops.focus_distance(t, a, gb, bx, s), [target, c0], [gbp, boxes, (h, w)])
    # One canvas needing its gradient (the actor's loss): the single-backward path.
    for need in (0, 1):
        res = []
        for dev in ("cpu", "cuda"):
            a, b = c0.to(dev).requires_grad_(need == 0), c1.to(dev).requires_grad_(need == 1)
            r = ops.focus_reward(target.to(dev), a, b, gbp.to(dev), boxes.to(dev), (h, w))
            res.append(torch.autograd.grad(r.sum(), [a if need == 0 else b])[0])
        close(res[1], res[0], dtype)


# --- rasterize_strokes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [16, 1024])
def test_rasterize_ltp_cuda_equals_cpu(size):
    params = torch.rand(40, 10, generator=torch.Generator().manual_seed(size))
    for dtype in DTYPES:
        p = params.to(dtype)
        torch.testing.assert_close(ops.rasterize_strokes(p.cuda(), size, "ltp").cpu(),
                                   ops.rasterize_strokes(p, size, "ltp"), rtol=0, atol=1e-6)


def test_rasterize_syncs_once_per_call():
    p = torch.rand(8, 10, device="cuda")
    ops.rasterize_strokes(p, 16)
    torch.cuda.synchronize()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            ops.rasterize_strokes(p, 16)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len([w for w in caught if "synchroniz" in str(w.message)]) == 1


# --- non-contiguous inputs, a side stream ----------------------------------------------------------

def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(3)
    base = torch.rand(3, 10, 14, 4, generator=g, dtype=torch.float64)
    x = base.permute(0, 3, 1, 2)[:, ::2]  # [3, 2, 10, 14], strided
    boxes = random_boxes(3, torch.float64, "cpu", g).t().contiguous().t()
    mask = torch.rand(3, 14, 10, 1, generator=g, dtype=torch.float64).permute(0, 3, 2, 1)
    assert not x.is_contiguous() and not boxes.is_contiguous() and not mask.is_contiguous()
    check_both(lambda a, b, s, m: ops.aligned_crop(a, b, s, m), [x], [boxes, (7, 6), mask])
    gbp = torch.rand(3, 10, 14, 1, generator=g, dtype=torch.float64).permute(0, 3, 1, 2)
    check_both(lambda t, a, b, gb, bx, s: ops.focus_reward(t, a, b, gb, bx, s), [x, x.flip(-1), x * 0.5],
               [gbp, boxes, 5])
    canvas = torch.rand(2, 20, 3, 8, generator=g, dtype=torch.float64).permute(0, 2, 3, 1)[..., :16]
    alpha = torch.rand(2, 8, 16, 4, generator=g, dtype=torch.float64).permute(0, 3, 1, 2)
    color = torch.rand(2, 3, 4, generator=g, dtype=torch.float64).transpose(1, 2)
    assert not canvas.is_contiguous() and not alpha.is_contiguous() and not color.is_contiguous()
    check_both(ops.composite, [canvas, alpha, color], [None, None])
    p = torch.rand(10, 20, generator=g)[:, ::2]
    torch.testing.assert_close(ops.rasterize_strokes(p.cuda(), 32).cpu(), ops.rasterize_strokes(p, 32), rtol=0, atol=1e-6)


def test_side_stream():
    """The kernels run on the current stream: on a side stream, with the inputs made there, the results
    equal the default stream's."""
    inputs, (mask, layer) = composite_inputs(4, 6, 64, 64, torch.float32, 5)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(4, 3, 64, 64, generator=g)
    boxes = random_boxes(4, torch.float32, "cpu", g)

    def run():
        cin = [t.cuda().requires_grad_() for t in inputs]
        out = ops.composite(*cin, mask.cuda(), layer.cuda())
        gc = torch.autograd.grad(out.square().sum(), cin)
        xc = x.cuda().requires_grad_()
        crop = ops.aligned_crop(xc, boxes.cuda(), 31, mask.cuda())
        r = ops.focus_reward(xc, xc * 0.5, xc * 0.25, mask.cuda(), boxes.cuda(), 17)
        gx = torch.autograd.grad(crop.square().sum() + r.sum(), [xc])
        p = ops.rasterize_strokes(torch.rand(6, 10, generator=g).cuda(), 32)
        return [out, *gc, crop, r, *gx, p]

    g.manual_seed(7)
    default = [t.detach().cpu() for t in run()]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    g.manual_seed(7)
    with torch.cuda.stream(side):
        res = run()
    torch.cuda.current_stream().wait_stream(side)
    for a, b in zip(default, res):
        assert torch.equal(a, b.detach().cpu())


# --- launch limits: 70,000 images ---------------------------------------------------------------------

def test_70000_image_batches():
    B = 70_000
    g = torch.Generator().manual_seed(8)
    inputs, (mask, layer) = composite_inputs(B, 3, 4, 4, torch.float32, 9)
    check_both(ops.composite, inputs, [mask, layer])
    x = torch.rand(B, 1, 4, 4, generator=g)
    boxes = random_boxes(B, torch.float32, "cpu", g)
    check_both(lambda a, b, s, m: ops.aligned_crop(a, b, s, m), [x], [boxes, 2, mask])
    check_both(lambda t, a, b, gb, bx, s: ops.focus_reward(t, a, b, gb, bx, s), [x, x.flip(-1), x * 0.5],
               [mask, boxes, 3])
    p = torch.rand(B, 10, generator=g)
    torch.testing.assert_close(ops.rasterize_strokes(p.cuda(), 8).cpu(), ops.rasterize_strokes(p, 8), rtol=0, atol=1e-6)


# --- every backward twice, bitwise ------------------------------------------------------------------

def test_backwards_are_bitwise_deterministic():
    g = torch.Generator().manual_seed(10)
    inputs, (mask, layer) = composite_inputs(6, 20, 96, 80, torch.float32, 11)
    x = torch.rand(6, 9, 96, 80, generator=g)
    boxes = random_boxes(6, torch.float32, "cpu", g)
    target, c0, c1 = (torch.rand(6, 3, 96, 80, generator=g) for _ in range(3))
    cases = [
        (ops.composite, inputs, [mask, layer]),
        (lambda a, b, s, m: ops.aligned_crop(a, b, s, m), [x], [boxes, (64, 50), mask]),
        (lambda t, a, b, gb, bx, s: ops.focus_reward(t, a, b, gb, bx, s), [target, c0, c1], [mask, boxes, 64]),
        (lambda t, a, gb, bx, s: ops.focus_distance(t, a, gb, bx, s), [target, c0], [mask, boxes, (40, 70)]),
    ]
    for fn, ins, others in cases:
        dev_in = [t.cuda() for t in ins]
        dev_ot = [o.cuda() if torch.is_tensor(o) else o for o in others]
        first = grads_of(lambda *a: fn(*a, *dev_ot), dev_in)
        second = grads_of(lambda *a: fn(*a, *dev_ot), dev_in)
        assert torch.equal(first[0], second[0])
        for u, v in zip(first[1], second[1]):
            assert torch.equal(u, v)
