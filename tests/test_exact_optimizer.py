"""Coarse-to-fine stroke optimisation through the exact renderer (sgfast/paint/exact_optimizer.py):
the stage plan, where new strokes go, and that optimising lowers the error below the flat fill,
with the eager reference op (tiny sizes) and, where built, the fused one."""
import math

import pytest
import torch

from sgfast.paint.exact_optimizer import (Preset, optimize_exact, place_strokes, render_painting, stage_shapes,
                                          stroke_counts)
from sgfast.reference import render_strokes as eager_render


def _fused():
    try:
        import sgfast

        if not sgfast.HAS_EXT:
            return None
        from sgfast.ops.render_strokes import render_strokes

        torch.ops.sgfast.render_strokes  # noqa: B018  (registered by this build)
        return render_strokes
    except (ImportError, AttributeError, RuntimeError):
        return None


def test_stages_keep_the_aspect_and_double_up_to_the_long_side():
    shapes = stage_shapes(300, 400, 512)
    assert shapes == [(48, 64), (96, 128), (192, 256), (384, 512)]
    assert stage_shapes(400, 300, 100) == [(64, 48), (100, 75)]
    assert stage_shapes(30, 40, 40) == [(30, 40)]


def test_stroke_counts_add_up_and_grow_with_the_stage():
    counts = stroke_counts(1000, 4)
    assert sum(counts) == 1000 and counts == sorted(counts)
    assert stroke_counts(3, 1) == [3]


def test_new_strokes_go_where_the_error_is_and_take_its_colour():
    target = torch.zeros(1, 3, 32, 48)
    target[:, :, 20:, 30:] = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1)  # the only error: one corner
    fresh = place_strokes(target, torch.zeros_like(target), 50, 2.0, torch.Generator().manual_seed(0))
    assert fresh.shape == (1, 50, 13) and bool(((fresh >= 0) & (fresh <= 1)).all())
    rows = (fresh[0, :, 0] * 255 + 0.5) / 256 * 32
    cols = (fresh[0, :, 1] * 255 + 0.5) / 256 * 48
    assert bool((rows > 17).all()) and bool((cols > 27).all())
    assert float(fresh[0, :, 10].mean()) > 0.4  # red from the corner (blurred at its border)


@pytest.mark.parametrize("which", ["eager", "fused"])
def test_optimising_lowers_the_error_well_below_the_flat_fill(which):
    render = eager_render if which == "eager" else _fused()
    if render is None:
        pytest.skip("fused render_strokes not built")
    gen = torch.Generator().manual_seed(1)
    h, w = 14, 18
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    target = torch.stack([xx, yy, 1 - xx]).unsqueeze(0) * 0.8
    target[:, :, 4:10, 5:13] = torch.rand(3, generator=gen).view(1, 3, 1, 1)
    target = target.to(torch.float64 if which == "eager" else torch.float32)
    flat = float(((target - target.mean((2, 3), keepdim=True)) ** 2).mean())
    losses = []
    strokes, background, _ = optimize_exact(target, 8, render, preset=Preset("test", iters=20, lr=0.08, stroke_px=3.0),
                                         on_iteration=lambda s, i, loss: losses.append(loss))
    assert strokes.shape == (1, 8, 13) and bool(((strokes >= 0) & (strokes <= 1)).all())
    painting = render_painting(strokes, background, h, w, render)
    l2 = float(((painting - target) ** 2).mean())
    assert 10 * math.log10(flat / l2) > 3, (flat, l2)
    assert losses[-1] < losses[0]


def test_initial_strokes_stay_first_and_bad_budgets_are_refused():
    target = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    init = torch.rand(1, 2, 13, dtype=torch.float64)
    strokes, _, _ = optimize_exact(target, 3, eager_render, preset=Preset("t", iters=0, lr=0.1, stroke_px=2.0),
                                init=init)
    assert strokes.shape == (1, 3, 13)
    assert torch.allclose(strokes[:, :2], init.clamp(1e-4, 1 - 1e-4), atol=1e-6)  # no iterations: unchanged
    with pytest.raises(ValueError, match="budget"):
        optimize_exact(target, 1, eager_render, init=init)
    with pytest.raises(ValueError, match="strokes must be >= 1"):
        optimize_exact(target, 0, eager_render)


def _blob_target(h=16, w=20):
    """A red disc (the object, S = 1 on it) on a blue-green gradient."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h, dtype=torch.float64),
                            torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij")
    target = torch.stack([0.1 + 0 * xx, 0.3 + 0.5 * xx, 0.8 - 0.5 * yy])[None]
    mask = (((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.08).to(torch.float64)[None, None]
    target = target * (1 - mask) + torch.tensor([0.9, 0.1, 0.1], dtype=torch.float64).view(1, 3, 1, 1) * mask
    return target, mask


def test_a_mask_splits_strokes_into_gated_background_and_foreground_layers():
    target, mask = _blob_target()
    strokes, background, layer = optimize_exact(target, 12, eager_render, mask=mask,
                                                preset=Preset("t", iters=15, lr=0.08, stroke_px=3.0))
    assert layer.dtype == torch.bool and layer.shape == (12,)
    assert 0 < int(layer.sum()) < 12  # error on both sides of S: both layers get strokes
    # gates as in composite (Eq. 3-4): a stroke's colour is multiplied by its gate, so fg strokes add
    # no colour outside S (they can only cover the canvas there) and bg strokes none inside it
    fg_only = render_painting(strokes[:, layer], background, 16, 20, eager_render, mask=mask, layer=layer[layer])
    flat = background.view(1, 3, 1, 1).expand(1, 3, 16, 20)
    assert bool((fg_only * (1 - mask) <= flat * (1 - mask) + 1e-12).all())
    bg_only = render_painting(strokes[:, ~layer], background, 16, 20, eager_render, mask=mask, layer=layer[~layer])
    assert bool((bg_only * mask <= flat * mask + 1e-12).all())
    assert not torch.allclose(fg_only * mask, flat * mask) and not torch.allclose(bg_only * (1 - mask), flat * (1 - mask))
    # without a mask: no layers
    assert optimize_exact(target, 2, eager_render, preset=Preset("t", iters=1, lr=0.1, stroke_px=2.0))[2] is None


def test_the_focus_term_pulls_the_error_down_where_g_is():
    target, mask = _blob_target()
    focus = mask.clone()  # all the focus on the disc
    preset = Preset("t", iters=25, lr=0.08, stroke_px=3.0)
    fg_err = []
    for nu in (0.0, 20.0):
        strokes, background, layer = optimize_exact(target, 6, eager_render, mask=torch.ones_like(mask), focus=focus,
                                                    nu=nu, preset=preset, seed=3)
        painting = render_painting(strokes, background, 16, 20, eager_render, mask=torch.ones_like(mask), layer=layer)
        fg_err.append(float((((painting - target) ** 2) * mask).sum() / mask.sum()))
    assert fg_err[1] < fg_err[0], fg_err
    with pytest.raises(ValueError, match="focus map"):
        optimize_exact(target, 2, eager_render, nu=1.0)
