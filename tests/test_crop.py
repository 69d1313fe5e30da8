"""aligned_crop against its grid_sample reference: values, gradients, edge cases, errors, compile."""
import pytest
import torch

import sgfast
from sgfast import reference
from tests.conftest import needs_cuda, needs_ext

pytestmark = needs_ext

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-10, rtol=1e-9)}


def random_boxes(B, dtype=torch.float64, device="cpu", gen=None):
    """Boxes of every kind: inside, partly outside, degenerate (w or h ~ 0), larger than the image."""
    xy = torch.rand(B, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.3
    wh = torch.rand(B, 2, generator=gen, dtype=torch.float64) * 1.2 + 0.02
    boxes = torch.cat([xy, wh], 1)
    kinds = torch.arange(B) % 5
    boxes[kinds == 1, 2] = 1e-7  # degenerate width
    boxes[kinds == 2, 3] = 0.0  # zero height
    boxes[kinds == 3] = torch.tensor([0.1, 0.2, 0.5, 0.6], dtype=torch.float64)
    return boxes.to(device=device, dtype=dtype)


def compare(x, boxes, size, mask=None, seed=0):
    """Forward and backward of sgfast vs the reference on the same inputs."""
    xa = x.detach().clone().requires_grad_()
    xb = x.detach().clone().requires_grad_()
    out = sgfast.ops.aligned_crop(xa, boxes, size, mask)
    ref = reference.aligned_crop(xb, boxes, size, mask)
    tol = TOL[x.dtype]
    torch.testing.assert_close(out, ref, **tol)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype).to(x.device)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_random_shapes(device, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    B = [1, 5, 3, 7][seed]
    C = int(torch.randint(1, 5, (1,), generator=gen))
    H, W = (int(v) for v in torch.randint(3, 40, (2,), generator=gen))
    h, w = (int(v) for v in torch.randint(1, 30, (2,), generator=gen))  # odd and even, non-square
    x = torch.rand(B, C, H, W, generator=gen, dtype=dtype).to(device)
    boxes = random_boxes(B, dtype, device, gen)
    mask = (torch.rand(B, 1, H, W, generator=gen, dtype=dtype) > 0.3).to(dtype).to(device)
    compare(x, boxes, (h, w), seed=seed)
    compare(x, boxes, (h, w), mask, seed=seed)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_mask_all_zeros_and_ones(device, fill):
    x = torch.rand(2, 3, 16, 20, dtype=torch.float64, device=device)
    boxes = random_boxes(2, device=device)
    mask = torch.full((2, 1, 16, 20), fill, dtype=torch.float64, device=device)
    compare(x, boxes, 9, mask)
    out = sgfast.ops.aligned_crop(x, boxes, 9, mask)
    if fill == 0.0:
        assert out.abs().max() == 0
    else:
        torch.testing.assert_close(out, sgfast.ops.aligned_crop(x, boxes, 9))


def test_box_outside_image_is_zero(device):
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, device=device)
    boxes = torch.tensor([[2.0, 0.0, 0.5, 0.5], [-0.2, -3.0, 0.1, 0.1]], dtype=torch.float64, device=device)
    compare(x, boxes, 5)
    assert sgfast.ops.aligned_crop(x, boxes, 5).abs().max() == 0


def test_identity_box_resizes(device):
    """The whole-image box at the input size returns the image itself (pixel centres line up)."""
    x = torch.rand(2, 3, 12, 17, dtype=torch.float64, device=device)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2, dtype=torch.float64, device=device)
    torch.testing.assert_close(sgfast.ops.aligned_crop(x, boxes, (12, 17)), x)


def test_non_contiguous_inputs(device):
    base = torch.rand(3, 10, 14, 4, dtype=torch.float64, device=device)
    x = base.permute(0, 3, 1, 2)[:, ::2]  # [3, 2, 10, 14], strided
    boxes = random_boxes(3, device=device).t().contiguous().t()
    mask = torch.rand(3, 14, 10, 1, dtype=torch.float64, device=device).permute(0, 3, 2, 1)
    assert not x.is_contiguous() and not mask.is_contiguous()
    compare(x, boxes, (7, 6), mask)


def test_empty_batch(device):
    x = torch.rand(0, 3, 8, 8, device=device, requires_grad=True)
    out = sgfast.ops.aligned_crop(x, torch.zeros(0, 4, device=device), 5)
    assert out.shape == (0, 3, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_stacked_channels_equal_separate_crops(device):
    """One call on images stacked along C equals cropping each image on its own."""
    imgs = [torch.rand(4, 3, 20, 24, dtype=torch.float64, device=device) for _ in range(3)]
    boxes = random_boxes(4, device=device)
    mask = torch.rand(4, 1, 20, 24, dtype=torch.float64, device=device)
    stacked = sgfast.ops.aligned_crop(torch.cat(imgs, 1), boxes, 11, mask)
    separate = torch.cat([sgfast.ops.aligned_crop(i, boxes, 11, mask) for i in imgs], 1)
    torch.testing.assert_close(stacked, separate)


@pytest.mark.parametrize("box_side, size", [(0.2, (31, 29)), (0.9, (5, 7)), (0.5, (12, 3))])
def test_magnified_and_minified_boxes(device, box_side, size):
    """The CPU kernels take a different loop order when the box is magnified: cover both."""
    x = torch.rand(3, 4, 24, 26, dtype=torch.float64, device=device)
    boxes = torch.tensor([[0.1, 0.05, box_side, box_side]] * 3, dtype=torch.float64, device=device)
    boxes[1, :2] = -0.1
    mask = torch.rand(3, 1, 24, 26, dtype=torch.float64, device=device)
    compare(x, boxes, size, mask)
    compare(x, boxes, size)


def test_float32_boxes_with_float64_image(device):
    x = torch.rand(2, 1, 9, 9, dtype=torch.float64, device=device)
    boxes = random_boxes(2, torch.float32, device)
    torch.testing.assert_close(sgfast.ops.aligned_crop(x, boxes, 4), reference.aligned_crop(x, boxes, 4))


def test_gradcheck():
    x = torch.rand(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0.1, -0.1, 0.7, 0.9], [0.3, 0.2, 0.31, 0.5]], dtype=torch.float64)
    torch.autograd.gradcheck(lambda a, m: sgfast.ops.aligned_crop(a, boxes, (5, 4), m), (x, mask))
    torch.autograd.gradgradcheck(lambda a: sgfast.ops.aligned_crop(a, boxes, (5, 4), mask.detach()), (x,))


def test_mask_gradient_matches_reference():
    x = torch.rand(2, 3, 9, 8, dtype=torch.float64)
    m = torch.rand(2, 1, 9, 8, dtype=torch.float64)
    boxes = random_boxes(2)
    ma, mb = m.clone().requires_grad_(), m.clone().requires_grad_()
    g = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    (sgfast.ops.aligned_crop(x, boxes, (5, 6), ma) * g).sum().backward()
    (reference.aligned_crop(x, boxes, (5, 6), mb) * g).sum().backward()
    torch.testing.assert_close(ma.grad, mb.grad)


def test_opcheck():
    x = torch.rand(2, 3, 8, 9, requires_grad=True)
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [-0.1, 0.3, 0.8, 0.4]])
    mask = torch.rand(2, 1, 8, 9)
    torch.library.opcheck(torch.ops.sgfast.aligned_crop.default, (x, boxes, 5, 6, mask))
    torch.library.opcheck(torch.ops.sgfast.aligned_crop.default, (x, boxes, 5, 6, None))
    g = torch.rand(2, 3, 5, 6)
    torch.library.opcheck(torch.ops.sgfast._aligned_crop_backward.default, (g, boxes, mask, 8, 9))


def test_torch_compile_forward_backward():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    boxes = random_boxes(2)
    mask = torch.rand(2, 1, 16, 16, dtype=torch.float64)

    def f(crop, a):
        return (crop(a, boxes, 7, mask) ** 2).sum()

    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    compiled = torch.compile(lambda a: f(sgfast.ops.aligned_crop, a), fullgraph=True, backend="aot_eager")
    compiled(xa).backward()
    f(reference.aligned_crop, xb).backward()
    torch.testing.assert_close(xa.grad, xb.grad)


def test_backward_deterministic(device, deterministic):
    x = torch.rand(4, 9, 32, 32, device=device)
    boxes = random_boxes(4, torch.float32, device)
    g = torch.randn(4, 9, 17, 17, device=device)

    def grad():
        xx = x.clone().requires_grad_()
        (sgfast.ops.aligned_crop(xx, boxes, 17) * g).sum().backward()
        return xx.grad

    assert torch.equal(grad(), grad())


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_matches_cuda(dtype):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(5, 4, 33, 27, generator=gen, dtype=dtype)
    boxes = random_boxes(5, dtype, "cpu", gen)
    mask = torch.rand(5, 1, 33, 27, generator=gen, dtype=dtype)
    g = torch.randn(5, 4, 13, 18, generator=gen, dtype=dtype)
    outs, grads = [], []
    for dev in ("cpu", "cuda"):
        xx = x.to(dev).requires_grad_()
        out = sgfast.ops.aligned_crop(xx, boxes.to(dev), (13, 18), mask.to(dev))
        (out * g.to(dev)).sum().backward()
        outs.append(out.cpu())
        grads.append(xx.grad.cpu())
    torch.testing.assert_close(outs[1], outs[0], **TOL[dtype])
    torch.testing.assert_close(grads[1], grads[0], **TOL[dtype])


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda x, b, m: (x[0], b, 4, None), "x"),  # wrong rank
        (lambda x, b, m: (x.int(), b, 4, None), "x"),  # wrong dtype
        (lambda x, b, m: (x, b[:1], 4, None), "boxes"),  # mismatched batch
        (lambda x, b, m: (x, b[:, :3], 4, None), "boxes"),
        (lambda x, b, m: (x, b.int(), 4, None), "boxes"),
        (lambda x, b, m: (x, torch.full_like(b, float("nan")), 4, None), "boxes"),
        (lambda x, b, m: (x, torch.full_like(b, float("inf")), 4, None), "boxes"),
        (lambda x, b, m: (x, b, 0, None), "size"),
        (lambda x, b, m: (x, b, (3, -1), None), "size"),
        (lambda x, b, m: (x, b, (3, 4, 5), None), "size"),
        (lambda x, b, m: (x, b, 4, m[:, :, :3]), "mask"),
        (lambda x, b, m: (x, b, 4, m[:1]), "mask"),
        (lambda x, b, m: (x, b, 4, torch.rand(2, 2, 8, 8)), "mask"),
    ],
)
def test_bad_input_names_argument(make, name):
    x = torch.rand(2, 3, 8, 8)
    boxes = torch.rand(2, 4)
    mask = torch.rand(2, 1, 8, 8)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=f"'{name}'"):
        sgfast.ops.aligned_crop(*make(x, boxes, mask))


def test_mixed_devices_name_argument():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="'boxes'"):
        sgfast.ops.aligned_crop(x, torch.rand(2, 4, device="meta"), 4)


def test_direct_op_call_checks_in_cpp():
    with pytest.raises(RuntimeError, match="'boxes'"):
        torch.ops.sgfast.aligned_crop(torch.rand(2, 3, 8, 8), torch.rand(3, 4), 4, 4, None)
