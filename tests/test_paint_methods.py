"""sgfast paint --method optimize and --divide D: the optimiser lowers L2 well below its start, the
focus term lowers the focus distance, the CLI writes the usual files; grid refinement gives a
D*S painting no worse than the undivided one, and its patch helpers invert each other (sg mode with
--divide: tests/test_divide.py)."""
import glob
import json
import os

import pytest
import torch

from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = sorted(glob.glob(os.path.join(ROOT, "sgfast", "assets", "samples", "birds", "images", "*", "*.jpg")))[:2]
RENDERER = os.path.join(ROOT, "sgfast", "weights", "renderer_tiny.pt")


def _targets():
    from sgfast.data.imageio import read_image_rgb
    from sgfast.data.tensor_images import resize_square

    return torch.cat([resize_square(torch.from_numpy(read_image_rgb(p)).permute(2, 0, 1)[None], 64) for p in IMAGES])


def test_optimize_lowers_l2_well_below_the_start():
    from sgfast.models.renderer import load_renderer
    from sgfast.paint.optimize_painter import optimize_strokes

    torch.set_num_threads(1)
    t = _targets()
    hist = []
    params, canvas = optimize_strokes(t, load_renderer(RENDERER), 20, iters=40, history=hist)
    assert params.shape == (2, 20, 13) and 0 <= params.min() and params.max() <= 1
    assert hist[-1] < 0.5 * hist[0]
    assert float(((canvas - t) ** 2).mean()) == pytest.approx(hist[-1], rel=1e-4)


def test_optimize_focus_term_lowers_focus_distance():
    from sgfast.models.renderer import load_renderer
    from sgfast.ops import focus_distance
    from sgfast.paint.optimize_painter import init_strokes, optimize_strokes, render
    from sgfast.ops import composite

    t = _targets()[:1]
    g = torch.zeros(1, 1, 64, 64)
    g[..., 20:40, 20:40] = 1
    box = torch.tensor([[0.25, 0.25, 0.5, 0.5]])
    rend = load_renderer(RENDERER)
    init = init_strokes(t, 10, torch.Generator().manual_seed(1))
    start = render(rend, init, torch.zeros_like(t), composite)
    _, plain = optimize_strokes(t, rend, 10, iters=20, init=init)
    _, focus = optimize_strokes(t, rend, 10, iters=20, init=init, nu=100.0, gbp=g, boxes=box)
    fd = lambda c: float(focus_distance(t, c.detach(), g, box, 64))  # noqa: E731
    assert fd(focus) < fd(start) and fd(focus) < fd(plain)


def test_cli_optimize_writes_outputs(tmp_path):
    out = tmp_path / "o"
    rc = cli.main(["paint", IMAGES[0], "--method", "optimize", "--strokes", "10", "--iters", "5", "--out", str(out),
                   "--threads", "1", "--no-progress"])
    assert rc == 0
    folder = out / os.path.splitext(os.path.basename(IMAGES[0]))[0]
    for name in ("painting.png", "target.png", "strokes.json", "strokes.svg", "progress.gif"):
        assert (folder / name).is_file(), name
    doc = json.loads((folder / "strokes.json").read_text())
    assert doc["mode"] == "optimize" and len(doc["strokes"]) == 10
    rc = cli.main(["render", str(folder / "strokes.json"), "--size", "32", "--out", str(tmp_path / "r.png")])
    assert rc == 0


def test_patches_roundtrip_and_seams():
    from sgfast.paint.divide_painter import from_patches, smooth_seams, to_patches

    x = torch.rand(2, 3, 12, 12)
    p = to_patches(x, 3)
    assert p.shape == (18, 3, 4, 4) and torch.equal(p[1 * 9 + 1 * 3 + 2], x[1, :, 4:8, 8:12])
    assert torch.equal(from_patches(p, 3), x)
    y = smooth_seams(x, 3)
    assert torch.equal(y[..., :2, :2], x[..., :2, :2])  # away from the seams: untouched
    manual = x[0, :, 2:5, 2:5].mean((1, 2))                # pixel (3, 3) lies on a seam band
    assert torch.allclose(y[0, :, 3, 3], manual)


def test_divide_output_size_and_l2_not_worse():
    from sgfast.data.tensor_images import resize_square
    from sgfast.paint import paint

    torch.set_num_threads(1)
    one = paint(IMAGES, mode="baseline", method="agent", steps=6, frames="none")
    two = paint(IMAGES, mode="baseline", method="agent", steps=6, divide=2, frames="step")
    for a, b in zip(one, two):
        assert b.canvas.shape == (3, 128, 128) and b.target.shape == (3, 128, 128)
        assert len(b.strokes) == 3 * 5 + 3 * 4 * 5 and b.frames[0].shape == (128, 128, 3)
        up = resize_square(a.canvas[None], 128)[0]
        assert float(((b.canvas - b.target) ** 2).mean()) <= float(((up - b.target) ** 2).mean()) + 1e-3


def test_divide_out_of_range():
    from sgfast.paint import PaintError, paint

    for d in (0, 17):
        with pytest.raises(PaintError, match="divide"):
            paint(IMAGES[:1], mode="baseline", method="agent", steps=2, divide=d)
