"""render_strokes: the eager reference (sgfast.reference) and the fused op (sgfast.ops) against it,
forward and backward; the limit softness -> 0 against rasterize_strokes(mode="exact"); bad input."""
import pytest
import torch

import sgfast
import sgfast.reference as ref
from conftest import needs_ext

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


def test_mask_requiring_grad_refused():
    c, s, m, lay = make_inputs(1, 2, 4, 4)
    with pytest.raises(ValueError, match="'mask'.*detach"):
        ref.render_strokes(c, s, m.requires_grad_(), lay)
