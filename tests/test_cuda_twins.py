"""The CUDA kernels' arithmetic, checked on the CPU.

aligned_crop's and focus's CUDA kernels are thin loops around per-element functions in
csrc/kernels/crop.h; csrc/cpu/emulate_cuda.cpp runs the same functions on the CPU, over the CUDA
grid and in the CUDA reduction order (torch.ops.sgfast._cuda_twin_*). So without a GPU these tests
check what the device computes: positions in double (float32 positions were off by ~5e-5 px at
1024 px), sums in double, non-finite inputs where the CPU kernels have them, images beyond grid.y's
65,535, and the launch grids (torch.ops.sgfast._cuda_launch_grid: the grids the launchers use).
On a GPU, tests/test_cuda_kernels.py runs the kernels themselves against the CPU.
"""
import pytest
import torch

import sgfast
from conftest import needs_ext
from tests.test_crop import random_boxes

pytestmark = needs_ext

ops = torch.ops.sgfast
TOL = {torch.float32: dict(atol=2e-6, rtol=2e-5), torch.float64: dict(atol=1e-12, rtol=1e-11)}


def close(twin, cpu, dtype):
    torch.testing.assert_close(twin, cpu, equal_nan=True, **TOL[dtype])


def crop_inputs(B, C, H, W, dtype, seed, mask=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, H, W, generator=gen, dtype=dtype)
    m = torch.rand(B, 1, H, W, generator=gen, dtype=dtype) if mask else None
    return x, random_boxes(B, dtype, "cpu", gen), m, gen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_crop_twin_matches_cpu(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(3, 40, (2,), generator=gen))
    h, w = (int(v) for v in torch.randint(1, 45, (2,), generator=gen))  # minified and magnified boxes
    x, boxes, m, gen = crop_inputs([1, 5, 3, 7][seed], 3, H, W, dtype, seed)
    for mask in (None, m):
        close(ops._cuda_twin_aligned_crop(x, boxes, h, w, mask), ops.aligned_crop(x, boxes, h, w, mask), dtype)
        g = torch.randn(x.shape[0], 3, h, w, generator=gen, dtype=dtype)
        close(ops._cuda_twin_aligned_crop_backward(g, boxes, mask, H, W),
              ops._aligned_crop_backward(g, boxes, mask, H, W), dtype)


def focus_inputs(B, C, H, W, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    target, c0, c1 = (torch.rand(B, C, H, W, generator=gen, dtype=dtype) for _ in range(3))
    gbp = torch.rand(B, 1, H, W, generator=gen, dtype=dtype)
    return target, c0, c1, gbp, random_boxes(B, dtype, "cpu", gen), gen


def check_focus(target, c0, c1, gbp, boxes, h, w, gen):
    dtype = target.dtype
    close(ops._cuda_twin_focus(target, c0, c1, gbp, boxes, h, w), ops.focus_reward(target, c0, c1, gbp, boxes, h, w),
          dtype)
    close(ops._cuda_twin_focus(target, c0, None, gbp, boxes, h, w), ops.focus_distance(target, c0, gbp, boxes, h, w),
          dtype)
    go = torch.randn(target.shape[0], generator=gen, dtype=dtype)
    g0, g1 = ops._focus_reward_backward(go, target, c0, c1, gbp, boxes, h, w)
    close(ops._cuda_twin_focus_backward(go, target, c0, gbp, boxes, h, w, -2.0), g0, dtype)
    close(ops._cuda_twin_focus_backward(go, target, c1, gbp, boxes, h, w, 2.0), g1, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_focus_twin_matches_cpu(dtype, seed):
    g = torch.Generator().manual_seed(50 + seed)
    H, W = (int(v) for v in torch.randint(4, 40, (2,), generator=g))
    h, w = (int(v) for v in torch.randint(1, 40, (2,), generator=g))
    target, c0, c1, gbp, boxes, gen = focus_inputs([1, 5, 6][seed], 3, H, W, dtype, seed)
    check_focus(target, c0, c1, gbp, boxes, h, w, gen)


# --- item 2/3: positions and sums in double ----------------------------------------------------------

@pytest.mark.parametrize("side", [1024, 1536])
def test_float32_at_1024_px_and_above_has_float32_error_only(side):
    """float32 data, the position math in double: the CUDA twin is within float32 rounding of the
    float64 result; positions computed in float32 (the eager reference's grid, as the old kernels)
    miss it by far more, and by more than test_crop's float32 tolerance."""
    gen = torch.Generator().manual_seed(side)
    x64 = torch.rand(2, 1, side, side, generator=gen, dtype=torch.float64)
    boxes64 = torch.tensor([[0.013, 0.021, 0.9137, 0.8771], [-0.05, 0.1, 0.61, 0.77]], dtype=torch.float64)
    x32, boxes32 = x64.float(), boxes64.float()
    truth = ops.aligned_crop(x32.double(), boxes32.double(), side, side, None)  # float32 inputs, exact math
    twin = ops._cuda_twin_aligned_crop(x32, boxes32, side, side, None)
    err_twin = (twin.double() - truth).abs().max().item()
    err_float_positions = (sgfast.reference.aligned_crop(x32, boxes32, side).double() - truth).abs().max().item()
    assert err_twin < 1e-6
    assert err_float_positions > 2e-5 > err_twin  # test_crop's float32 atol lies between them
    torch.testing.assert_close(twin, ops.aligned_crop(x32, boxes32, side, side, None), atol=1e-6, rtol=0)
    # The backward's index ranges come from touch_range in double: every tap is found.
    g = torch.rand(2, 1, side, side, generator=gen)
    twin_g = ops._cuda_twin_aligned_crop_backward(g, boxes32, None, side, side)
    truth_g = ops._aligned_crop_backward(g.double(), boxes32.double(), None, side, side)
    assert (twin_g.double() - truth_g).abs().max().item() < 1e-5


def test_focus_sums_in_double_at_1024_px():
    target, c0, c1, gbp, boxes, gen = focus_inputs(2, 3, 1024, 1024, torch.float32, 9)
    truth = ops.focus_reward(*(t.double() for t in (target, c0, c1, gbp, boxes)), 1024, 1024)
    twin = ops._cuda_twin_focus(target, c0, c1, gbp, boxes, 1024, 1024)
    cpu = ops.focus_reward(target, c0, c1, gbp, boxes, 1024, 1024)
    torch.testing.assert_close(twin, cpu, atol=0, rtol=2e-6)
    torch.testing.assert_close(twin.double(), truth, atol=0, rtol=1e-5)


# --- item 9: non-finite inputs where the CPU kernels have them --------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_data_under_a_zero_mask_as_the_cpu(dtype, bad):
    x, boxes, m, gen = crop_inputs(4, 2, 17, 19, dtype, 5)
    boxes[0] = torch.tensor([0.3, 0.3, 0.3, 0.3], dtype=dtype)  # reads part of the image only
    holes = torch.rand(4, 1, 17, 19, generator=gen) < 0.15
    x = x.masked_fill(holes.expand_as(x), bad)
    m = m.masked_fill(holes, 0.0)
    for h, w in ((9, 7), (40, 33)):  # minified and magnified
        cpu = ops.aligned_crop(x, boxes, h, w, m)
        assert cpu.isnan().any()  # x * 0 = NaN: the CPU does not hide bad data under the mask
        close(ops._cuda_twin_aligned_crop(x, boxes, h, w, m), cpu, dtype)
        # Backward: a non-finite gradient under a zero mask, and a non-finite mask outside what the
        # box reads (the CPU leaves those pixels 0 without reading the mask).
        g = torch.randn(4, 2, h, w, generator=gen, dtype=dtype)
        g[:, :, ::3, ::4] = bad
        m2 = m.clone()
        m2[0, 0, :2, :2] = bad
        cpu_g = ops._aligned_crop_backward(g, boxes, m2, 17, 19)
        assert cpu_g.isnan().any() and cpu_g[0, :, :2, :2].eq(0).all()
        close(ops._cuda_twin_aligned_crop_backward(g, boxes, m2, 17, 19), cpu_g, dtype)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_canvas_under_zero_gbp_as_the_cpu(bad):
    target, c0, c1, gbp, boxes, gen = focus_inputs(3, 3, 15, 18, torch.float64, 4)
    holes = torch.rand(3, 1, 15, 18, generator=gen) < 0.1
    c0 = c0.masked_fill(holes.expand_as(c0), bad)
    gbp = gbp.masked_fill(holes, 0.0)
    assert not ops.focus_reward(target, c0, c1, gbp, boxes, 7, 8).isfinite().all()  # 0 * inf is not hidden
    check_focus(target, c0, c1, gbp, boxes, 7, 8, gen)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_box_gives_nan_for_its_image(bad):
    """The wrappers and the CPU forward kernels refuse non-finite boxes (reading a CPU tensor is free);
    on CUDA that check would be a host sync per call, so the CUDA kernels (their CPU twins here) give
    NaN for the image instead, as does the crop backward kernel."""
    x, boxes, m, gen = crop_inputs(3, 2, 12, 13, torch.float64, 8)
    boxes[1, 2] = bad
    target, c0, c1, gbp, _, _ = focus_inputs(3, 2, 12, 13, torch.float64, 8)
    g = torch.randn(3, 2, 5, 6, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="'boxes'"):
        ops.aligned_crop(x, boxes, 5, 6, m)
    with pytest.raises(ValueError, match="'boxes'"):
        ops.focus_reward(target, c0, c1, gbp, boxes, 5, 6)
    out = ops._cuda_twin_aligned_crop(x, boxes, 5, 6, m)
    assert out[1].isnan().all() and out[[0, 2]].isfinite().all()
    for run in (ops._aligned_crop_backward, ops._cuda_twin_aligned_crop_backward):
        gx = run(g, boxes, None, 12, 13)
        assert gx[1].isnan().any() and gx[[0, 2]].isfinite().all()
    out = ops._cuda_twin_focus(target, c0, c1, gbp, boxes, 5, 6)
    assert out[1].isnan() and out[[0, 2]].isfinite().all()
    with pytest.raises(ValueError, match="'boxes'"):
        sgfast.ops.aligned_crop(x, boxes, 5)


# --- items 1 and 10: launch limits -------------------------------------------------------------------

def test_focus_loops_over_images_beyond_grid_y():
    """70,000 images: grid.y is capped at 65,535 and the kernel's image loop does the rest."""
    B = 70_000
    assert ops._cuda_launch_grid("focus_partials", [B, 2, 3]) == [1, 65_535, 1]
    target, c0, c1, gbp, boxes, gen = focus_inputs(B, 1, 3, 3, torch.float32, 1)
    twin = ops._cuda_twin_focus(target, c0, c1, gbp, boxes, 2, 3)
    torch.testing.assert_close(twin, ops.focus_reward(target, c0, c1, gbp, boxes, 2, 3), atol=1e-6, rtol=1e-5)
    assert twin.isfinite().all()  # every image written (the twin starts from NaN)
    x, _, _, _ = crop_inputs(B, 1, 3, 3, torch.float32, 2, mask=False)
    close(ops._cuda_twin_aligned_crop(x, boxes, 2, 2, None), ops.aligned_crop(x, boxes, 2, 2, None), torch.float32)


@pytest.mark.parametrize("kernel, sizes", [
    ("focus_partials", [70_000, 1024, 1024]), ("focus_partials", [10**9, 8, 8]),
    ("composite_backward", [70_000, 128, 128]), ("composite_backward", [10**9, 1024, 1024]),
    ("rasterize_ltp", [70_000, 16_384]), ("rasterize_ltp", [10**9, 16_384]),
    ("stride", [2**40]), ("stride", [0]),
])
def test_launch_grids_stay_within_the_limits(kernel, sizes):
    x, y, fits = ops._cuda_launch_grid(kernel, sizes)
    assert fits == 1 and 1 <= x <= 2**31 - 1 and 1 <= y <= 65_535


def test_the_limit_check_refuses_a_grid_over_the_limits():
    """The check every launcher makes before narrowing its 64-bit grid to dim3 (cuda_utils.cuh:
    to_dim3): a grid of (blocks, images) without the image loop is refused at 70,000 images."""
    assert ops._cuda_launch_grid("naive_images", [1, 70_000])[2] == 0
    assert ops._cuda_launch_grid("naive_images", [2**31, 1])[2] == 0
    assert ops._cuda_launch_grid("naive_images", [2**31 - 1, 65_535])[2] == 1
