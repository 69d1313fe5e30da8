"""`sgfast paint --method exact` and paint(method="exact"): the image's shape kept at long side
--size, the painting better than a flat fill, strokes.json re-rendered by `sgfast render` to the
painting, grey photos painted grey, options that do not apply refused. Tiny sizes with the eager
reference op (and the fused one where this build has it)."""
import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

from sgfast import cli
from sgfast.paint import PaintError, paint


def _fused_built():
    try:
        import sgfast

        from sgfast.ops.render_strokes import render_strokes  # noqa: F401

        torch.ops.sgfast.render_strokes  # noqa: B018
        return sgfast.HAS_EXT
    except (ImportError, AttributeError, RuntimeError):
        return False


OPS = ["eager"] + (["fused"] if _fused_built() else [])


def _photo(h=30, w=60, grey=False):
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([xx, yy, 1 - xx], -1)
    img[h // 4:h // 2, w // 3:w // 2] = (0.9, 0.1, 0.2)
    if grey:
        img = np.repeat(img.mean(-1, keepdims=True), 3, -1)
    return (img * 255).round().astype(np.uint8)


@pytest.mark.parametrize("ops", OPS)
def test_api_keeps_the_shape_and_beats_the_flat_fill(ops):
    photo = _photo()
    size = 16 if ops == "eager" else 64
    (r,) = paint([photo], method="exact", size=size, strokes=6 if ops == "eager" else 60, ops=ops)
    assert r.ok and r.mode == "exact" and r.exact
    assert tuple(r.canvas.shape) == (3, size // 2, size) and tuple(r.target.shape) == (3, size // 2, size)
    assert r.strokes.shape[1] == 13 and ((r.strokes >= 0) & (r.strokes <= 1)).all()
    flat = float(((r.target - r.target.mean((1, 2), keepdim=True)) ** 2).mean())
    l2 = float(((r.canvas - r.target) ** 2).mean())
    assert 10 * math.log10(flat / l2) > 2, (flat, l2)
    assert len(r.frames) >= 2 and r.frames[-1].shape == (size // 2, size, 3)


def test_grey_photo_is_painted_grey():
    (r,) = paint([_photo(grey=True)], method="exact", size=12, strokes=4, ops="eager")
    assert torch.equal(r.canvas[0], r.canvas[1]) and torch.equal(r.canvas[1], r.canvas[2])
    assert np.allclose(r.strokes[:, 10], r.strokes[:, 11]) and np.allclose(r.strokes[:, 11], r.strokes[:, 12])


def test_api_refuses_what_does_not_apply():
    with pytest.raises(PaintError, match="preset"):
        paint([_photo()], method="exact", preset="slowest", ops="eager")
    with pytest.raises(PaintError, match="divide"):
        paint([_photo()], method="exact", divide=2, ops="eager")
    with pytest.raises(PaintError, match="size and preset"):
        paint([_photo()], method="agent", size=64)


def test_cli_writes_a_painting_that_strokes_json_redraws(tmp_path, capsys):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), cv2.cvtColor(_photo(24, 36), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert cli.main(["paint", str(image), "--method", "exact", "--size", "18", "--strokes", "6", "--ops", "eager",
                     "--no-progress", "--out", str(out)]) == 0
    folder = out / "photo"
    painting = cv2.imread(str(folder / "painting.png"))
    assert painting.shape == (12, 18, 3)
    for name in ("target.png", "strokes.json", "strokes.svg", "progress.gif", "progress.mp4"):
        assert (folder / name).is_file(), name
    doc = json.loads((folder / "strokes.json").read_text())
    assert doc["renderer"] == "render_strokes" and (doc["height"], doc["width"]) == (12, 18)
    assert 'width="18" height="12"' in (folder / "strokes.svg").read_text()
    redrawn = tmp_path / "redrawn.png"
    assert cli.main(["render", str(folder / "strokes.json"), "--size", "18", "--ops", "eager",
                     "--out", str(redrawn)]) == 0
    again = cv2.imread(str(redrawn)).astype(float)
    mse = ((again - painting.astype(float)) ** 2).mean()
    assert mse == 0 or 10 * math.log10(255 ** 2 / mse) >= 35
    big = tmp_path / "big.png"
    assert cli.main(["render", str(folder / "strokes.json"), "--size", "36", "--ops", "eager",
                     "--out", str(big)]) == 0
    assert cv2.imread(str(big)).shape == (24, 36, 3)


@pytest.mark.parametrize("extra,message", [
    (["--mode", "baseline"], "--mode is ignored with --method exact"),
    (["--iters", "5"], "--iters is ignored with --method exact"),
    (["--supersample", "2"], "--supersample is ignored with --method exact"),
])
def test_cli_refuses_options_exact_ignores(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", "x.jpg", "--method", "exact", "--out", str(tmp_path / "o")] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err


def test_cli_refuses_preset_without_exact(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", "x.jpg", "--preset", "fast", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "--preset is ignored without --method exact" in err[0], err
