"""render_strokes: the eager reference (sgfast.reference) and the fused op (sgfast.ops) against it,
forward and backward; the limit softness -> 0 against rasterize_strokes(mode="exact"); bad input."""
import os
import subprocess
import sys

import pytest
import torch

import sgfast
import sgfast.ops as ops
import sgfast.reference as ref
from conftest import needs_cuda, needs_ext

DTYPES = [torch.float32, torch.float64]


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-7, atol=1e-7)


def random_strokes(b, n, dtype=torch.float64, seed=0, constant_opacity=False, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    s = lo + (hi - lo) * torch.rand(b, n, 13, generator=g, dtype=torch.float64)
    if constant_opacity:
        s[..., 9] = s[..., 8]
    return s.to(dtype)


def special_strokes(dtype=torch.float64):
    """[1, 12, 13]: straight, curved, self-overlapping (radius above the radius of curvature), zero and
    full radius, a point (all control points equal), strokes along and at the corners of the canvas."""
    rows = [
        [0.2, 0.2, 0.5, 0.5, 0.8, 0.7, 0.3, 0.3, 0.9, 0.9],   # straight (middle point on the chord)
        [0.1, 0.2, 1.0, 0.0, 0.9, 0.8, 0.2, 0.4, 0.3, 1.0],   # curved, varying radius and opacity
        [0.2, 0.2, 1.0, 0.0, 0.8, 0.8, 1.0, 1.0, 1.0, 0.2],   # L-shaped and fat: overlaps itself
        [0.3, 0.7, 0.0, 1.0, 0.7, 0.2, 0.0, 0.0, 1.0, 1.0],   # zero radius (1/256 of the side)
        [0.5, 0.5, 0.3, 0.7, 0.6, 0.4, 1.0, 1.0, 0.6, 0.6],   # full radius, short
        [0.4, 0.6, 0.5, 0.5, 0.4, 0.6, 0.5, 0.5, 0.7, 0.7],   # a point, constant radius
        [0.6, 0.3, 0.2, 0.9, 0.6, 0.3, 0.2, 0.9, 0.1, 0.8],   # a point, varying radius
        [0.0, 0.0, 0.5, 0.5, 0.0, 1.0, 0.8, 0.8, 0.8, 0.8],   # along the top border, half outside
        [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 1.0],   # along the bottom border
        [0.0, 1.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0, 0.9, 0.9],   # fat disc in a corner
        [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.05, 0.6, 0.2, 0.9],  # corner to corner, curved
        [0.9, 0.1, 0.5, 0.5, 0.1, 0.9, 0.3, 0.0, 0.5, 0.5],   # straight, tapering to zero
    ]
    g = torch.Generator().manual_seed(99)
    shapes = torch.tensor(rows, dtype=torch.float64)
    colors = torch.rand(len(rows), 3, generator=g, dtype=torch.float64)
    return torch.cat([shapes, colors], 1)[None].to(dtype)


def make_inputs(b, n, h, w, dtype=torch.float64, mask="soft", layer="mixed", seed=0, constant_opacity=False):
    g = torch.Generator().manual_seed(seed + 1000)
    canvas = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64).to(dtype)
    strokes = random_strokes(b, n, dtype, seed, constant_opacity)
    m = {"none": None, "soft": torch.rand(b, 1, h, w, generator=g, dtype=torch.float64).to(dtype)}[mask]
    lay = None if layer == "none" else torch.rand(n, generator=g) > 0.5
    return canvas, strokes, m, lay


# --- the reference -------------------------------------------------------------------------------

def alpha_maps(strokes, h, w, softness, **kw):
    """Each stroke alone, white on black: its alpha [B, N, H, W] (the reference, per stroke)."""
    b, n, _ = strokes.shape
    out = []
    for k in range(n):
        one = strokes[:, k:k + 1].clone()
        one[..., 10:] = 1
        out.append(ref.render_strokes(strokes.new_zeros(b, 3, h, w), one, softness=softness, **kw)[:, :1])
    return torch.cat(out, 1) if out else strokes.new_zeros(b, 0, h, w)


@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed"), ("soft", "none"), ("none", "mixed")])
def test_reference_is_composite_of_its_alphas(mask, layer):
    # Compositing is composite's: gates, order, layer semantics.
    canvas, strokes, m, lay = make_inputs(2, 4, 9, 11, mask=mask, layer=layer, seed=1)
    alpha = alpha_maps(strokes, 9, 11, 1.5)
    want = ref.composite(canvas, alpha, strokes[..., 10:].contiguous(), m, lay)
    torch.testing.assert_close(ref.render_strokes(canvas, strokes, m, lay, 1.5), want, rtol=1e-12, atol=1e-12)


@needs_ext
@pytest.mark.parametrize("size,seed", [(17, 2), (32, 3)])
def test_reference_sharp_limit_is_rasterize_exact(size, seed):
    # softness -> 0 with constant opacity: alpha = rasterize_strokes(mode="exact", supersample=1).
    strokes = torch.cat([random_strokes(1, 10, seed=seed, constant_opacity=True), special_strokes()], 1)
    strokes[..., 9] = strokes[..., 8]
    alpha = alpha_maps(strokes, size, size, 1e-9)[0]
    want = sgfast.ops.rasterize_strokes(strokes[0, :, :10], size, "exact", 1)
    torch.testing.assert_close(alpha, want, rtol=0, atol=1e-9)


def test_reference_refinement_converges():
    # Few samples + Newton polish = many samples + Newton polish.
    strokes = torch.cat([random_strokes(1, 6, seed=4), special_strokes()], 1)
    coarse = alpha_maps(strokes, 12, 10, 2.0, t_samples=33)
    fine = alpha_maps(strokes, 12, 10, 2.0, t_samples=2049)
    # The self-overlapping stroke may pick another of two near-equal maxima with 33 samples.
    close = (coarse - fine).abs() <= 1e-9
    assert close.float().mean() > 0.995
    # Without the polish the sampled t^ is off by up to half a sample.
    unpolished = alpha_maps(strokes, 12, 10, 2.0, t_samples=2049, refine=False)
    assert (unpolished - fine).abs().max() < 5e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_gradcheck(seed):
    # Constant opacity: alpha then depends on t^ only through s, whose gradient is the envelope one.
    canvas, strokes, m, lay = make_inputs(1, 2, 5, 6, seed=seed, constant_opacity=True)
    canvas.requires_grad_()
    strokes.requires_grad_()
    assert torch.autograd.gradcheck(lambda c, s: ref.render_strokes(c, s, m, lay, 3.0, t_samples=65), (canvas, strokes),
                                   fast_mode=True)


def test_reference_empty():
    canvas = torch.rand(2, 3, 4, 5)
    out = ref.render_strokes(canvas, torch.rand(2, 0, 13))
    torch.testing.assert_close(out, canvas)
    assert ref.render_strokes(torch.rand(0, 3, 4, 5), torch.rand(0, 3, 13)).shape == (0, 3, 4, 5)


# --- the fused op against the reference ----------------------------------------------------------

def run(fn, canvas, strokes, mask, layer, softness, upstream=None, **kw):
    """Forward and backward (a random upstream gradient) of fn: (out, grad canvas, grad strokes)."""
    c = canvas.detach().clone().requires_grad_()
    s = strokes.detach().clone().requires_grad_()
    out = fn(c, s, mask, layer, softness, **kw)
    if upstream is None:
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    out.backward(upstream.to(out.dtype))
    return out.detach(), c.grad, s.grad


def ref_run(canvas, strokes, mask, layer, softness, t_samples=1025):
    """The reference in float64 (with the centre-line threshold of the input's dtype)."""
    d = lambda t: None if t is None or t.dtype == torch.bool else t.double()  # noqa: E731
    return run(ref.render_strokes, canvas.double(), strokes.double(), d(mask), layer, softness, t_samples=t_samples,
               eps_dtype=canvas.dtype)


def assert_matches(got, want, dtype, names=("out", "grad canvas", "grad strokes")):
    for name, g, w in zip(names, got, want):
        # float32 stroke gradients are sums over many pixels of terms in pixel units.
        t = dict(rtol=1e-3, atol=1e-3) if dtype == torch.float32 and name == "grad strokes" else tol(dtype)
        torch.testing.assert_close(g.double(), w, **t, msg=lambda m: f"{name}: {m}")


# (B, N, H, W): B = 1, N = 1, non-square, more than one tile (16 x 16) each way, a single row/column.
SHAPES = [(1, 1, 9, 12), (2, 5, 20, 23), (1, 7, 40, 33), (3, 3, 1, 17), (2, 4, 18, 1)]


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed"), ("soft", "none")])
def test_matches_reference(dtype, shape, mask, layer):
    canvas, strokes, m, lay = make_inputs(*shape, dtype=dtype, mask=mask, layer=layer, seed=sum(shape))
    assert_matches(run(ops.render_strokes, canvas, strokes, m, lay, 1.5), ref_run(canvas, strokes, m, lay, 1.5),
                   dtype)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("softness", [0.5, 1.0, 4.0])
def test_special_strokes_match_reference(dtype, softness):
    # Straight, curved, self-overlapping, zero and full radius, points, along the borders.
    strokes = special_strokes(dtype)
    canvas = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype)
    assert_matches(run(ops.render_strokes, canvas, strokes, None, None, softness),
                   ref_run(canvas, strokes, None, None, softness, t_samples=2049), dtype)


@needs_ext
@pytest.mark.parametrize("seed", [11])
def test_many_strokes_over_many_tiles(seed):
    # 30 small and large strokes on 50 x 66: binning, piece culling and long tile lists.
    g = torch.Generator().manual_seed(seed)
    strokes = torch.rand(2, 30, 13, generator=g, dtype=torch.float64)
    strokes[:, ::2, 6:8] *= 0.1  # half of them thin
    canvas = torch.rand(2, 3, 50, 66, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 1, 50, 66, generator=g, dtype=torch.float64)
    layer = torch.rand(30, generator=g) > 0.3
    assert_matches(run(ops.render_strokes, canvas, strokes, mask, layer, 1.0),
                   ref_run(canvas, strokes, mask, layer, 1.0, t_samples=129), torch.float64)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    b, n, h, w = 2, 4, 13, 19
    g = torch.Generator().manual_seed(3)
    canvas = torch.rand(b, h, w, 3, generator=g, dtype=torch.float64).to(dtype).permute(0, 3, 1, 2)
    strokes = torch.rand(b, 13, n, generator=g, dtype=torch.float64).to(dtype).transpose(1, 2)
    mask = torch.rand(b, 1, h, 2 * w, generator=g, dtype=torch.float64).to(dtype)[..., ::2]
    layer = torch.tensor([True, False] * n)[::2]
    assert not any(t.is_contiguous() for t in (canvas, strokes, mask, layer))
    assert_matches(run(ops.render_strokes, canvas, strokes, mask, layer, 2.0),
                   ref_run(canvas, strokes, mask, layer, 2.0), dtype)


@needs_ext
def test_empty_batch_and_no_strokes():
    canvas, strokes, m, lay = make_inputs(0, 3, 4, 5)
    out, gc, gs = run(ops.render_strokes, canvas, strokes, m, lay, 1.0)
    assert out.shape == (0, 3, 4, 5) and gc.shape == canvas.shape and gs.shape == strokes.shape
    canvas, strokes, m, _ = make_inputs(2, 0, 4, 5)
    out, gc, gs = run(ops.render_strokes, canvas, strokes, m, None, 1.0)
    torch.testing.assert_close(out, canvas)
    assert gs.shape == (2, 0, 13)
    torch.testing.assert_close(gc, torch.randn(out.shape, generator=torch.Generator().manual_seed(7),
                                               dtype=torch.float64))


@needs_ext
@pytest.mark.parametrize("size,seed", [(17, 2), (48, 3)])
def test_sharp_limit_is_rasterize_exact(size, seed):
    # softness -> 0 with constant opacity: alpha equals rasterize_strokes(mode="exact", supersample=1).
    strokes = torch.cat([random_strokes(1, 10, seed=seed), special_strokes()], 1)
    strokes[..., 9] = strokes[..., 8]
    strokes[..., 10:] = 1
    n = strokes.shape[1]
    want = ops.rasterize_strokes(strokes[0, :, :10], size, "exact", 1)
    for k in range(n):
        alpha = ops.render_strokes(torch.zeros(1, 3, size, size, dtype=torch.float64), strokes[:, k:k + 1],
                                   softness=1e-9)[0, 0]
        torch.testing.assert_close(alpha, want[k], rtol=0, atol=1e-9, msg=lambda m: f"stroke {k}: {m}")


@needs_ext
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_gradcheck(mask, layer):
    # Constant opacity (w(t^) holds t^ fixed, which finite differences do not) and a wide ramp.
    canvas, strokes, m, lay = make_inputs(1, 3, 7, 6, mask=mask, layer=layer, seed=4, constant_opacity=True)
    canvas.requires_grad_()
    strokes.requires_grad_()
    assert torch.autograd.gradcheck(lambda c, s: ops.render_strokes(c, s, m, lay, 3.0), (canvas, strokes))


@needs_ext
@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_opcheck(requires_grad, mask, layer):
    canvas, strokes, m, lay = make_inputs(2, 3, 9, 7, mask=mask, layer=layer, seed=8)
    canvas.requires_grad_(requires_grad)
    strokes.requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.sgfast.render_strokes.default, (canvas, strokes, m, lay, 1.5))
    if not requires_grad:
        torch.library.opcheck(torch.ops.sgfast._render_strokes_backward.default,
                              (torch.rand_like(canvas), canvas, strokes, m, lay, 1.5))


@needs_ext
def test_torch_compile_fullgraph():
    canvas, strokes, m, lay = make_inputs(2, 4, 12, 10, dtype=torch.float32, seed=9)

    def step(c, s):
        return (ops.render_strokes(c, s.clamp(0, 1), m, lay, 2.0) ** 2).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (compiled, step):
        c, s = canvas.clone().requires_grad_(), strokes.clone().requires_grad_()
        loss = fn(c, s)
        loss.backward()
        results.append((loss.detach(), c.grad, s.grad))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_same_for_any_thread_count(dtype):
    canvas, strokes, m, lay = make_inputs(3, 12, 50, 45, dtype=dtype, seed=12)
    prev = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(run(ops.render_strokes, canvas, strokes, m, lay, 1.0))
    finally:
        torch.set_num_threads(prev)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@needs_ext
def test_backward_keeps_only_the_inputs():
    # Fused: autograd saves the inputs and nothing per stroke or per pixel (no [B, N, H, W] tensor).
    canvas, strokes, m, lay = make_inputs(2, 6, 24, 20, dtype=torch.float32, seed=14)
    c, s = canvas.clone().requires_grad_(), strokes.clone().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = ops.render_strokes(c, s, m, lay, 1.0)
    assert sum(t.numel() for t in saved) <= c.numel() + s.numel() + m.numel() + lay.numel()
    out.sum().backward()
    assert c.grad.shape == c.shape and s.grad.shape == s.shape


@needs_ext
def test_backends():
    from sgfast.backend import get_ops

    assert get_ops("fused").render_strokes is ops.render_strokes
    assert get_ops("eager").render_strokes is ref.render_strokes


_SIMD_CHECK = """
import torch, sgfast.ops as ops
from test_render_strokes import make_inputs, run, ref_run, assert_matches
for dtype in (torch.float32, torch.float64):
    canvas, strokes, m, lay = make_inputs(2, 6, 21, 35, dtype=dtype, seed=13)
    assert_matches(run(ops.render_strokes, canvas, strokes, m, lay, 1.5), ref_run(canvas, strokes, m, lay, 1.5), dtype)
"""


@needs_ext
def test_base_cpu_simd_level():
    # The CPU kernel picks its SIMD width once per process: check the base width in a subprocess.
    env = dict(os.environ, SGFAST_CPU_SIMD="base", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _SIMD_CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- bad input -----------------------------------------------------------------------------------

def _bad_cases():
    c, s, m, lay = make_inputs(2, 3, 4, 5, dtype=torch.float32)
    nan = s.clone()
    nan[1, 2, 4] = float("nan")
    big = s.clone()
    big[0, 0, 11] = 1.5
    neg = s.clone()
    neg[0, 1, 6] = -0.1
    return [
        ("canvas", (c[0], s, m, lay, 1.0)),                        # rank
        ("canvas", (torch.rand(2, 4, 4, 5), s, m, lay, 1.0)),      # 4 channels
        ("canvas", (c.to(torch.int32), s, m, lay, 1.0)),           # dtype
        ("strokes", (c, s[1:], m, lay, 1.0)),                      # batch
        ("strokes", (c, s[..., :10], m, lay, 1.0)),                # 10 numbers
        ("strokes", (c, s[0], m, lay, 1.0)),                       # rank
        ("strokes", (c, s.double(), m, lay, 1.0)),                 # dtype
        ("strokes", (c, nan, m, lay, 1.0)),                        # NaN
        ("strokes", (c, big, m, lay, 1.0)),                        # > 1
        ("strokes", (c, neg, m, lay, 1.0)),                        # < 0
        ("mask", (c, s, m[:, 0], lay, 1.0)),                       # rank
        ("mask", (c, s, torch.rand(2, 2, 4, 5), lay, 1.0)),        # 2 channels
        ("mask", (c, s, m.double(), lay, 1.0)),                    # dtype
        ("layer", (c, s, m, lay.float(), 1.0)),                    # not bool
        ("layer", (c, s, m, lay[:2], 1.0)),                        # length
        ("layer", (c, s, m, torch.ones(1, 3, dtype=torch.bool), 1.0)),  # rank
        ("softness", (c, s, m, lay, 0.0)),
        ("softness", (c, s, m, lay, -1.0)),
        ("softness", (c, s, m, lay, float("nan"))),
        ("softness", (c, s, m, lay, float("inf"))),
        ("softness", (c, s, m, lay, "1")),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_reference_refuses_bad_input(case):
    name, args = _bad_cases()[case]
    with pytest.raises((ValueError, TypeError), match=f"'{name}'"):
        ref.render_strokes(*args)


@needs_ext
@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_op_refuses_bad_input(case):
    name, args = _bad_cases()[case]
    with pytest.raises((ValueError, TypeError), match=f"'{name}'"):
        ops.render_strokes(*args)
    if name == "softness" and not isinstance(args[-1], float):
        return  # the schema's float refuses a string before the kernel sees it
    # The C++ entry points check too (direct torch.ops calls); bad stroke values are a ValueError
    # there as well (on CUDA the wrapper leaves that check to the op).
    raised = (RuntimeError, ValueError) if name == "strokes" else RuntimeError
    with pytest.raises(raised, match=f"'{name}'"):
        torch.ops.sgfast.render_strokes(*args)
    with pytest.raises(raised, match=f"'{name}'"):
        torch.ops.sgfast._render_strokes_backward(torch.rand(2, 3, 4, 5), *args)


@needs_ext
def test_bad_grad_out():
    c, s, m, lay = make_inputs(2, 3, 4, 5, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="'grad_out'"):
        torch.ops.sgfast._render_strokes_backward(torch.rand(2, 3, 4, 4), c, s, m, lay, 1.0)
    with pytest.raises(RuntimeError, match="'grad_out'"):
        torch.ops.sgfast._render_strokes_backward(torch.rand(2, 3, 4, 5).double(), c, s, m, lay, 1.0)


def test_mask_requiring_grad_refused():
    c, s, m, lay = make_inputs(1, 2, 4, 4)
    with pytest.raises(ValueError, match="'mask'.*detach"):
        ref.render_strokes(c, s, m.requires_grad_(), lay)


# --- CUDA (skipped without a GPU) ----------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 33, 47), (1, 40, 70, 64), (3, 1, 16, 16)])
@pytest.mark.parametrize("mask,layer", [("none", "none"), ("soft", "mixed")])
def test_cuda_matches_cpu(dtype, shape, mask, layer):
    inputs = make_inputs(*shape, dtype=dtype, mask=mask, layer=layer, seed=21)
    cuda = [None if t is None else t.cuda() for t in inputs]
    got = [t.cpu() for t in run(ops.render_strokes, *cuda, 1.5)]
    want = run(ops.render_strokes, *inputs, 1.5)
    for name, g, w in zip(("out", "grad canvas", "grad strokes"), got, want):
        t = dict(rtol=1e-3, atol=1e-3) if dtype == torch.float32 and name == "grad strokes" else tol(dtype)
        torch.testing.assert_close(g, w, **t, msg=lambda m: f"{name}: {m}")


@needs_cuda
def test_cuda_special_strokes_and_determinism():
    strokes = special_strokes().cuda()
    canvas = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(5), dtype=torch.float64).cuda()
    first = run(ops.render_strokes, canvas, strokes, None, None, 1.0)
    second = run(ops.render_strokes, canvas, strokes, None, None, 1.0)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    want = run(ops.render_strokes, canvas.cpu(), strokes.cpu(), None, None, 1.0)
    for g, w in zip(first, want):
        torch.testing.assert_close(g.cpu(), w, **tol(torch.float64))


@needs_cuda
def test_cuda_empty_and_bad_values():
    canvas = torch.rand(2, 3, 8, 8, device="cuda")
    torch.testing.assert_close(ops.render_strokes(canvas, torch.empty(2, 0, 13, device="cuda")), canvas)
    bad = torch.rand(2, 3, 13, device="cuda")
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'strokes'"):
        ops.render_strokes(canvas, bad)
    with pytest.raises(ValueError, match="'strokes'"):
        torch.ops.sgfast.render_strokes(canvas, bad, None, None, 1.0)
    with pytest.raises(ValueError, match="'strokes'"):
        ops.render_strokes(canvas, torch.rand(2, 3, 13))  # another device
