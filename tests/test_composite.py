"""sgfast.ops.composite / composite_frames against the eager reference (sgfast.reference)."""
import pytest
import torch

import sgfast.ops as ops
import sgfast.reference as ref
from conftest import needs_cuda, needs_ext

pytestmark = needs_ext

DTYPES = [torch.float32, torch.float64]
# (B, K, H, W): B = 1, K = 1, non-square, a single row, K > 16 (the backward's recompute groups).
SHAPES = [(1, 1, 5, 7), (2, 5, 8, 8), (3, 4, 1, 13), (2, 19, 6, 5), (2, 33, 3, 4)]


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def make_inputs(b, k, h, w, dtype=torch.float32, mask="soft", layer="mixed", device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    canvas = torch.rand(b, 3, h, w, generator=g, dtype=dtype)
    alpha = torch.rand(b, k, h, w, generator=g, dtype=dtype)
    color = torch.rand(b, k, 3, generator=g, dtype=dtype)
    m = {"none": None, "zeros": torch.zeros(b, 1, h, w, dtype=dtype), "ones": torch.ones(b, 1, h, w, dtype=dtype),
         "soft": torch.rand(b, 1, h, w, generator=g, dtype=dtype)}[mask]
    lay = None if layer == "none" else torch.rand(k, generator=g) > 0.5
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return move(canvas), move(alpha), move(color), move(m), move(lay)


def run_both(canvas, alpha, color, mask, layer, fn_ops=ops.composite, fn_ref=ref.composite):
    """Forward and backward (random upstream gradient) of the op and of the reference."""
    outs, grads = [], []
    upstream = None
    for fn in (fn_ops, fn_ref):
        leaves = [t.detach().clone().requires_grad_() for t in (canvas, alpha, color)]
        out = fn(*leaves, mask, layer)
        if upstream is None:
            upstream = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1)).to(out.device)
        out.backward(upstream)
        outs.append(out.detach())
        grads.append([t.grad for t in leaves])
    return outs, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("none", "mixed"), ("zeros", "mixed"), ("ones", "mixed"),
                                        ("soft", "mixed"), ("soft", "none")])
def test_matches_reference(dtype, shape, mask, layer):
    inputs = make_inputs(*shape, dtype=dtype, mask=mask, layer=layer)
    (out, out_ref), (grads, grads_ref) = run_both(*inputs)
    torch.testing.assert_close(out, out_ref, **tol(dtype))
    for name, g, g_ref in zip(("canvas", "alpha", "color"), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **tol(dtype), msg=lambda m: f"grad {name}: {m}")


def test_layer_semantics():
    # Without a mask the layer does nothing; with a mask and no layer every stroke is foreground.
    canvas, alpha, color, mask, layer = make_inputs(2, 4, 6, 5)
    torch.testing.assert_close(ops.composite(canvas, alpha, color, None, layer), ref.composite(canvas, alpha, color))
    all_fg = torch.ones(4, dtype=torch.bool)
    torch.testing.assert_close(ops.composite(canvas, alpha, color, mask), ops.composite(canvas, alpha, color, mask, all_fg))
    # A background stroke with S = 1 (or a foreground one with S = 0) only erases towards black.
    ones = torch.ones_like(mask)
    bg = torch.zeros(4, dtype=torch.bool)
    expected = canvas * torch.prod(1 - alpha, dim=1, keepdim=True)
    torch.testing.assert_close(ops.composite(canvas, alpha, color, ones, bg), expected)
    # A layer given as a Python sequence is accepted.
    torch.testing.assert_close(ops.composite(canvas, alpha, color, mask, layer.tolist()),
                               ops.composite(canvas, alpha, color, mask, layer))


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    b, k, h, w = 2, 5, 6, 9
    g = torch.Generator().manual_seed(3)
    canvas = torch.rand(b, h, w, 3, generator=g, dtype=dtype).permute(0, 3, 1, 2)  # channels-last view
    alpha = torch.rand(b, 2 * k, h, w, generator=g, dtype=dtype)[:, ::2]  # strided slice
    color = torch.rand(b, 3, k, generator=g, dtype=dtype).transpose(1, 2)  # transposed
    mask = torch.rand(b, 1, h, 2 * w, generator=g, dtype=dtype)[..., ::2]
    layer = torch.tensor([True, False] * 5)[::2]  # [T, T, T, T, T] as a strided view
    assert not any(t.is_contiguous() for t in (canvas, alpha, color, mask, layer))
    (out, out_ref), (grads, grads_ref) = run_both(canvas, alpha, color, mask, layer)
    torch.testing.assert_close(out, out_ref, **tol(dtype))
    for g_, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g_, g_ref, **tol(dtype))


def test_empty_batch_and_no_strokes():
    canvas, alpha, color, mask, layer = make_inputs(0, 3, 4, 5)
    (out, out_ref), (grads, grads_ref) = run_both(canvas, alpha, color, mask, layer)
    assert out.shape == (0, 3, 4, 5) and all(g.shape == r.shape for g, r in zip(grads, grads_ref))
    assert ops.composite_frames(canvas, alpha, color, mask, layer).shape == (0, 3, 3, 4, 5)
    # K = 0: the canvas passes through, its gradient too.
    canvas, alpha, color, mask, layer = make_inputs(2, 0, 4, 5, layer="none")
    (out, out_ref), (grads, grads_ref) = run_both(canvas, alpha, color, mask, layer)
    torch.testing.assert_close(out, canvas)
    torch.testing.assert_close(grads[0], grads_ref[0])
    assert ops.composite_frames(canvas, alpha, color, mask).shape == (2, 0, 3, 4, 5)


@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_gradcheck(mask, layer):
    canvas, alpha, color, m, lay = make_inputs(2, 3, 3, 4, dtype=torch.float64, mask=mask, layer=layer)
    leaves = [t.requires_grad_() for t in (canvas, alpha, color)]
    assert torch.autograd.gradcheck(lambda c, a, col: ops.composite(c, a, col, m, lay), leaves)


def test_gradcheck_many_strokes():
    # K > 16: the backward recomputes group start canvases and suffix products.
    canvas, alpha, color, m, lay = make_inputs(1, 18, 2, 3, dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (canvas, alpha, color)]
    assert torch.autograd.gradcheck(lambda c, a, col: ops.composite(c, a, col, m, lay), leaves)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_opcheck(requires_grad, mask, layer):
    canvas, alpha, color, m, lay = make_inputs(2, 3, 4, 5, dtype=torch.float64, mask=mask, layer=layer)
    for t in (canvas, alpha, color):
        t.requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.sgfast.composite.default, (canvas, alpha, color, m, lay))
    if not requires_grad:
        torch.library.opcheck(torch.ops.sgfast.composite_frames.default, (canvas, alpha, color, m, lay))
        grad_out = torch.rand_like(canvas)
        torch.library.opcheck(torch.ops.sgfast._composite_backward.default, (grad_out, canvas, alpha, color, m, lay))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_frames(dtype, mask, layer):
    inputs = make_inputs(2, 6, 5, 7, dtype=dtype, mask=mask, layer=layer)
    frames = ops.composite_frames(*inputs)
    torch.testing.assert_close(frames, ref.composite_frames(*inputs), **tol(dtype))
    # The last frame is composite itself, bit for bit (same kernel math).
    assert torch.equal(frames[:, -1], ops.composite(*inputs))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_fullgraph(backend):
    # aot_eager traces the fake kernels and the autograd formula; inductor (slow: C++ codegen)
    # also compiles the surrounding ops.
    canvas, alpha, color, mask, layer = make_inputs(2, 5, 6, 7)

    def step(c, a, col):
        return (ops.composite(c, a.sigmoid(), col, mask, layer) ** 2).sum()

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    results = []
    for fn in (compiled, step):
        leaves = [t.detach().clone().requires_grad_() for t in (canvas, alpha, color)]
        loss = fn(*leaves)
        loss.backward()
        results.append([loss.detach()] + [t.grad for t in leaves])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


_SIMD_CHECK = """
import torch, sgfast.ops as ops, sgfast.reference as ref
from test_composite import make_inputs, run_both, tol
for dtype in (torch.float32, torch.float64):
    for shape in ((2, 5, 9, 13), (1, 18, 5, 7)):
        (out, out_ref), (grads, grads_ref) = run_both(*make_inputs(*shape, dtype=dtype))
        torch.testing.assert_close(out, out_ref, **tol(dtype))
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, **tol(dtype))
"""


@pytest.mark.parametrize("simd", ["avx2", "base"])
def test_narrower_cpu_simd_levels(simd):
    # The CPU kernel picks its SIMD width once per process; check the narrower ones in a subprocess.
    import os
    import subprocess
    import sys

    env = dict(os.environ, SGFAST_CPU_SIMD=simd, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _SIMD_CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _bad_cases():
    ok = make_inputs(2, 3, 4, 5)
    c, a, col, m, lay = ok
    return [
        ("canvas", (c[0], a, col, m, lay)),  # wrong rank
        ("canvas", (torch.rand(2, 4, 4, 5), a, col, m, lay)),  # 4 channels
        ("canvas", (c.to(torch.int32), a, col, m, lay)),  # dtype
        ("alpha", (c, a[1:], col, m, lay)),  # batch
        ("alpha", (c, a[..., :4], col, m, lay)),  # width
        ("alpha", (c, a.double(), col, m, lay)),  # dtype
        ("color", (c, a, col[:, :2], m, lay)),  # K
        ("color", (c, a, col[..., :2], m, lay)),  # 2 channels
        ("color", (c, a, col.double(), m, lay)),
        ("mask", (c, a, col, m[:, 0], lay)),  # rank
        ("mask", (c, a, col, torch.rand(2, 2, 4, 5), lay)),  # 2 channels
        ("mask", (c, a, col, m.double(), lay)),
        ("layer", (c, a, col, m, lay.float())),  # not bool
        ("layer", (c, a, col, m, lay[:2])),  # length
        ("layer", (c, a, col, m, torch.ones(1, 3, dtype=torch.bool))),  # rank
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_inputs_name_the_argument(case):
    name, args = _bad_cases()[case]
    with pytest.raises((ValueError, TypeError, RuntimeError), match=f"'{name}'"):
        ops.composite(*args)
    # The C++ entry points check too (direct torch.ops calls); the rank of a layer is the same test.
    with pytest.raises(RuntimeError, match=f"'{name}'"):
        torch.ops.sgfast.composite(*args)
    with pytest.raises(RuntimeError, match=f"'{name}'"):
        torch.ops.sgfast._composite_backward(torch.rand(2, 3, 4, 5), *args)


def test_bad_grad_out_and_mask_requiring_grad():
    c, a, col, m, lay = make_inputs(2, 3, 4, 5)
    with pytest.raises(RuntimeError, match="'grad_out'"):
        torch.ops.sgfast._composite_backward(torch.rand(2, 3, 4, 4), c, a, col, m, lay)
    with pytest.raises(ValueError, match="'mask'.*detach"):
        ops.composite(c, a, col, m.requires_grad_(), lay)
    with torch.no_grad():
        ops.composite(c, a, col, m, lay)  # fine without autograd


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 33, 47), (3, 19, 8, 9), (1, 3, 70, 70)])
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_cuda_matches_cpu(dtype, shape, mask, layer):
    inputs = make_inputs(*shape, dtype=dtype, mask=mask, layer=layer)
    cuda_inputs = [None if t is None else t.cuda() for t in inputs]
    (out, _), (grads, _) = run_both(*inputs)
    (out_cuda, _), (grads_cuda, _) = run_both(*cuda_inputs)
    torch.testing.assert_close(out_cuda.cpu(), out, **tol(dtype))
    for g, g_cuda in zip(grads, grads_cuda):
        torch.testing.assert_close(g_cuda.cpu(), g, **tol(dtype))
    torch.testing.assert_close(ops.composite_frames(*cuda_inputs).cpu(), ops.composite_frames(*inputs), **tol(dtype))


@needs_cuda
def test_cuda_backward_deterministic():
    inputs = [None if t is None else t.cuda() for t in make_inputs(4, 20, 64, 96)]
    grad_out = torch.randn(4, 3, 64, 96, device="cuda")
    first = torch.ops.sgfast._composite_backward(grad_out, *inputs)
    second = torch.ops.sgfast._composite_backward(grad_out, *inputs)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@needs_cuda
def test_cuda_mixed_devices_name_the_argument():
    c, a, col, m, lay = make_inputs(2, 3, 4, 5)
    with pytest.raises(ValueError, match="'alpha'"):
        ops.composite(c.cuda(), a, col.cuda(), m.cuda(), lay.cuda())
    with pytest.raises(ValueError, match="'layer'"):
        ops.composite(c.cuda(), a.cuda(), col.cuda(), m.cuda(), lay)
    with pytest.raises(RuntimeError, match="'mask'"):
        torch.ops.sgfast.composite(c.cuda(), a.cuda(), col.cuda(), m, lay.cuda())
