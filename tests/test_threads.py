"""The CPU kernels split work with at::parallel_for (OpenMP). Every op must give bitwise the same
forward and backward results whatever the thread count: each output element is owned by one work
item and summed in a fixed order, never reduced across threads."""
import pytest
import torch

import sgfast.ops as ops
from conftest import needs_ext

pytestmark = needs_ext

THREADS = (1, 2, 3)  # 3 > cores here: a different split of the same work


def _rand(*shape, gen):
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


def _boxes(B, gen):
    xy = _rand(B, 2, gen=gen) * 0.5
    return torch.cat([xy, 0.2 + _rand(B, 2, gen=gen) * 0.5], 1)


def _forward_backward(fn, differentiable, *rest):
    leaves = [t.detach().clone().requires_grad_() for t in differentiable]
    out = fn(*leaves, *rest)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    grads = torch.autograd.grad(out, leaves, upstream)
    return [out.detach(), *grads]


def _cases():
    gen = torch.Generator().manual_seed(0)
    B, H, W, K = 3, 70, 70, 4
    # 70 x 70 = 4900 pixels: two CPU tiles per image in composite, so its colour gradient is a
    # multi-tile sum (summed per tile, then over tiles in a fixed order).
    canvas, alpha, color = _rand(B, 3, H, W, gen=gen), _rand(B, K, H, W, gen=gen), _rand(B, K, 3, gen=gen)
    mask, layer = _rand(B, 1, H, W, gen=gen), torch.tensor([False, True, False, True])
    x, boxes = _rand(B, 4, H, W, gen=gen), _boxes(B, gen)
    target, c0, c1 = (_rand(B, 3, H, W, gen=gen) for _ in range(3))
    gbp = _rand(B, 1, H, W, gen=gen)
    params = torch.rand(37, 10, generator=gen)
    return {
        "composite": lambda: _forward_backward(ops.composite, (canvas, alpha, color), mask, layer),
        "aligned_crop": lambda: _forward_backward(ops.aligned_crop, (x,), boxes, 17, mask),
        "aligned_crop_magnified": lambda: _forward_backward(ops.aligned_crop, (x,), boxes, 64, mask),
        "focus_distance": lambda: _forward_backward(
            lambda t, c: ops.focus_distance(t, c, gbp, boxes, 19), (target, c0)),
        "focus_reward": lambda: _forward_backward(
            lambda a, b: ops.focus_reward(target, a, b, gbp, boxes, 19), (c0, c1)),
        "rasterize_ltp": lambda: [ops.rasterize_strokes(params, 64, "ltp")],
        "rasterize_exact": lambda: [ops.rasterize_strokes(params[:6], 32, "exact", 2)],
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_same_result_for_any_thread_count(case):
    run = _cases()[case]  # the same inputs for every thread count
    prev = torch.get_num_threads()
    try:
        results = []
        for n in THREADS:
            torch.set_num_threads(n)
            results.append(run())
    finally:
        torch.set_num_threads(prev)
    for n, other in zip(THREADS[1:], results[1:]):
        for a, b in zip(results[0], other):
            assert torch.equal(a, b), f"{case}: {n} threads differ from 1 thread"
