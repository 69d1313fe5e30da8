"""focus_distance / focus_reward against their eager references: values, gradients, errors, compile."""
import pytest
import torch

import sgfast
from sgfast import reference
from tests.conftest import needs_cuda, needs_ext
from tests.test_crop import random_boxes

pytestmark = needs_ext

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-10, rtol=1e-9)}


def make_inputs(B, C, H, W, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    target, c0, c1 = (torch.rand(B, C, H, W, generator=gen, dtype=dtype).to(device) for _ in range(3))
    gbp = torch.rand(B, 1, H, W, generator=gen, dtype=dtype).to(device)
    return target, c0, c1, gbp, random_boxes(B, dtype, device, gen)


def check_against_reference(name, differentiable, gbp, boxes, size, seed=0):
    """Op `name` of sgfast.ops vs sgfast.reference: values, and gradients of every differentiable input."""
    dtype = differentiable[0].dtype
    a = [t.detach().clone().requires_grad_() for t in differentiable]
    b = [t.detach().clone().requires_grad_() for t in differentiable]
    out = getattr(sgfast.ops, name)(*a, gbp, boxes, size)
    ref = getattr(reference, name)(*b, gbp, boxes, size)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(out.device)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    for u, v in zip(a, b):
        torch.testing.assert_close(u.grad, v.grad, **TOL[dtype])


def check_reward(target, c0, c1, gbp, boxes, size, seed=0):
    check_against_reference("focus_reward", (target, c0, c1), gbp, boxes, size, seed)


def check_distance(target, canvas, gbp, boxes, size, seed=0):
    check_against_reference("focus_distance", (target, canvas), gbp, boxes, size, seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_matches_reference_random_shapes(device, dtype, seed):
    gen = torch.Generator().manual_seed(100 + seed)
    B = [1, 5, 6][seed]
    H, W = (int(v) for v in torch.randint(4, 40, (2,), generator=gen))
    h, w = (int(v) for v in torch.randint(1, 25, (2,), generator=gen))
    target, c0, c1, gbp, boxes = make_inputs(B, 3, H, W, dtype, device, seed)
    check_distance(target, c0, gbp, boxes, (h, w), seed)
    check_reward(target, c0, c1, gbp, boxes, (h, w), seed)


def test_zero_gbp_gives_zero(device):
    """An all-zero guidance map: L = 0 (the 1e-8 keeps the division finite) and zero gradients."""
    target, c0, c1, gbp, boxes = make_inputs(3, 3, 12, 12, torch.float64, device)
    gbp = torch.zeros_like(gbp)
    check_reward(target, c0, c1, gbp, boxes, 7)
    assert sgfast.ops.focus_distance(target, c0, gbp, boxes, 7).abs().max() == 0


def test_reward_is_difference_of_distances(device):
    target, c0, c1, gbp, boxes = make_inputs(4, 3, 20, 16, torch.float64, device)
    r = sgfast.ops.focus_reward(target, c0, c1, gbp, boxes, 9)
    d = sgfast.ops.focus_distance(target, c0, gbp, boxes, 9) - sgfast.ops.focus_distance(target, c1, gbp, boxes, 9)
    torch.testing.assert_close(r, d)


def test_non_contiguous_and_other_channel_counts(device):
    target, c0, c1, gbp, boxes = make_inputs(3, 4, 14, 18, torch.float64, device)
    nc = lambda t: t.transpose(2, 3).contiguous().transpose(2, 3)  # noqa: E731 - same values, other strides
    assert not nc(target).is_contiguous()
    check_reward(nc(target), nc(c0), c1, nc(gbp), boxes, (5, 8))
    check_distance(target, nc(c0), gbp, boxes, 6)


def test_empty_batch(device):
    target, c0, c1, gbp, boxes = make_inputs(0, 3, 8, 8, torch.float32, device)
    c0.requires_grad_()
    out = sgfast.ops.focus_reward(target, c0, c1, gbp, boxes, 4)
    assert out.shape == (0,)
    out.sum().backward()
    assert c0.grad.shape == c0.shape
    assert sgfast.ops.focus_distance(target, c0, gbp, boxes, 4).shape == (0,)


def test_gradcheck():
    target, c0, c1, gbp, boxes = make_inputs(2, 3, 7, 6, torch.float64, "cpu")
    boxes = torch.tensor([[0.1, -0.1, 0.7, 0.9], [0.3, 0.2, 0.31, 0.5]], dtype=torch.float64)
    args = [t.requires_grad_() for t in (target, c0, c1)]
    torch.autograd.gradcheck(lambda i, a, b: sgfast.ops.focus_reward(i, a, b, gbp, boxes, (4, 5)), args)
    torch.autograd.gradcheck(lambda i, a: sgfast.ops.focus_distance(i, a, gbp, boxes, 3), args[:2])


def test_opcheck():
    target, c0, c1, gbp, boxes = make_inputs(2, 3, 8, 9, torch.float32, "cpu")
    c0.requires_grad_()
    c1.requires_grad_()
    torch.library.opcheck(torch.ops.sgfast.focus_distance.default, (target, c0, gbp, boxes, 5, 6))
    torch.library.opcheck(torch.ops.sgfast.focus_reward.default, (target, c0, c1, gbp, boxes, 5, 6))
    go = torch.rand(2)
    c0, c1 = c0.detach(), c1.detach()
    torch.library.opcheck(torch.ops.sgfast._focus_distance_backward.default, (go, target, c0, gbp, boxes, 5, 6))
    torch.library.opcheck(torch.ops.sgfast._focus_reward_backward.default, (go, target, c0, c1, gbp, boxes, 5, 6))


def test_torch_compile_forward_backward():
    target, c0, c1, gbp, boxes = make_inputs(3, 3, 16, 16, torch.float64, "cpu")

    def f(reward, a, b):
        return (reward(target, a, b, gbp, boxes, 9) * torch.arange(3.0, dtype=a.dtype)).sum()

    a = [t.clone().requires_grad_() for t in (c0, c1)]
    b = [t.clone().requires_grad_() for t in (c0, c1)]
    compiled = torch.compile(lambda x, y: f(sgfast.ops.focus_reward, x, y), fullgraph=True, backend="aot_eager")
    compiled(*a).backward()
    f(reference.focus_reward, *b).backward()
    for u, v in zip(a, b):
        torch.testing.assert_close(u.grad, v.grad)


def test_deterministic(device, deterministic):
    target, c0, c1, gbp, boxes = make_inputs(4, 3, 32, 32, torch.float32, device)

    def run():
        a, b = c0.clone().requires_grad_(), c1.clone().requires_grad_()
        r = sgfast.ops.focus_reward(target, a, b, gbp, boxes, 17)
        r.sum().backward()
        return r, a.grad, b.grad

    for u, v in zip(run(), run()):
        assert torch.equal(u, v)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_matches_cuda(dtype):
    inputs = make_inputs(5, 3, 33, 27, dtype, "cpu", seed=7)
    outs = []
    for dev in ("cpu", "cuda"):
        target, c0, c1, gbp, boxes = (t.to(dev) for t in inputs)
        a, b = c0.clone().requires_grad_(), c1.clone().requires_grad_()
        r = sgfast.ops.focus_reward(target, a, b, gbp, boxes, (13, 18))
        r.sum().backward()
        outs.append([r.cpu(), a.grad.cpu(), b.grad.cpu()])
    for u, v in zip(*outs):
        torch.testing.assert_close(v, u, **TOL[dtype])


@pytest.mark.parametrize(
    "mutate, name",
    [
        (lambda a: a.update(target=a["target"][0]), "target"),
        (lambda a: a.update(target=a["target"].half()), "target"),
        (lambda a: a.update(canvas0=a["canvas0"][:1]), "canvas0"),
        (lambda a: a.update(canvas1=a["canvas1"].double()), "canvas1"),
        (lambda a: a.update(canvas1=a["canvas1"][:, :2]), "canvas1"),
        (lambda a: a.update(gbp=a["gbp"].expand(2, 3, 8, 8)), "gbp"),
        (lambda a: a.update(gbp=a["gbp"][:, :, :4]), "gbp"),
        (lambda a: a.update(boxes=a["boxes"][:1]), "boxes"),
        (lambda a: a.update(boxes=a["boxes"] * float("nan")), "boxes"),
        (lambda a: a.update(boxes=torch.rand(2, 4, device="meta")), "boxes"),
        (lambda a: a.update(size=0), "size"),
    ],
)
def test_bad_input_names_argument(mutate, name):
    args = dict(target=torch.rand(2, 3, 8, 8), canvas0=torch.rand(2, 3, 8, 8), canvas1=torch.rand(2, 3, 8, 8),
                gbp=torch.rand(2, 1, 8, 8), boxes=torch.rand(2, 4), size=4)
    mutate(args)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=f"'{name}'"):
        sgfast.ops.focus_reward(**args)
    if name != "canvas1":
        dist_args = {("canvas" if k == "canvas0" else k): v for k, v in args.items() if k != "canvas1"}
        want = "canvas" if name == "canvas0" else name
        with pytest.raises((ValueError, TypeError, RuntimeError), match=f"'{want}'"):
            sgfast.ops.focus_distance(**dist_args)
