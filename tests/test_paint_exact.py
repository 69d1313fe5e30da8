"""`sgfast paint --method exact` and paint(method="exact"): the image's shape kept at long side
--size, the painting better than a flat fill, strokes.json re-rendered by `sgfast render` to the
painting (with its mask and layers in mode sg), grey photos painted grey, the guidance (a mask's
fg/bg layers, the focus term, the weight-free defaults), the agent's strokes as the start,
same-shape images painted together, options that do not apply refused. Tiny sizes with the eager
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
    assert r.ok and r.mode == "sg" and r.exact
    assert set(r.layers) == {"fg"} and float(r.masks.min()) == 1.0  # no mask: the whole image is foreground
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
    with pytest.raises(PaintError, match="size, preset and init"):
        paint([_photo()], method="agent", size=64)
    with pytest.raises(PaintError, match="instances applies to method 'agent'"):
        paint([_photo()], method="exact", instances=[["a.png"]], ops="eager")
    with pytest.raises(PaintError, match="focus term"):
        paint([_photo()], method="exact", mode="baseline", nu=1.0, ops="eager")
    with pytest.raises(PaintError, match="init must be"):
        paint([_photo()], method="exact", init="random", ops="eager")
    for option, owner in (({"bg_gate": "union"}, "agent"), ({"min_gain": None}, "agent"),
                          ({"iters": 50}, "optimize"), ({"lr": 0.5}, "optimize")):
        with pytest.raises(PaintError, match=f"{next(iter(option))} applies to method '{owner}'"):
            paint([_photo()], method="exact", ops="eager", **option)


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
    (["--steps", "3"], "--steps is ignored with --method exact"),
    (["--mode", "baseline", "--nu", "1"], "--nu is ignored with --mode baseline"),
    (["--actor", "a.pt"], "--actor is ignored with --method exact unless --init agent"),
    (["--iters", "5"], "--iters is ignored with --method exact"),
    (["--supersample", "2"], "--supersample is ignored with --method exact"),
])
def test_cli_refuses_options_exact_ignores(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", "x.jpg", "--method", "exact", "--out", str(tmp_path / "o")] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err


def test_cli_refuses_preset_without_exact_and_sizes_over_the_memory_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SGFAST_MEMORY_BUDGET", "1G")
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", "x.jpg", "--method", "agent", "--preset", "fast", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "--preset is ignored without --method exact" in err[0], err
    with pytest.raises(SystemExit):
        cli.main(["paint", "x.jpg", "--size", "16384", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "over the memory budget" in err[0] and "--size" in err[0], err


def _mask(h=30, w=60):
    m = np.zeros((h, w), np.uint8)
    m[h // 4:h // 2, w // 3:w // 2] = 255  # the red block of _photo
    return m


def test_a_mask_gives_fg_and_bg_layers_that_strokes_json_redraws(tmp_path):
    photo_path, mask_path = tmp_path / "p.png", tmp_path / "m.png"
    cv2.imwrite(str(photo_path), cv2.cvtColor(_photo(24, 36), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(mask_path), _mask(24, 36))
    out = tmp_path / "out"
    assert cli.main(["paint", str(photo_path), "--method", "exact", "--size", "36", "--strokes", "10", "--ops", "eager",
                     "--mask", str(mask_path), "--nu", "2", "--no-progress", "--no-video", "--out", str(out)]) == 0
    folder = out / "p"
    doc = json.loads((folder / "strokes.json").read_text())
    layers = {s["layer"] for s in doc["strokes"]}
    assert layers == {"fg", "bg"} and doc["masks"] == ["mask.png"]
    assert np.array_equal(cv2.imread(str(folder / "mask.png"), cv2.IMREAD_GRAYSCALE), _mask(24, 36))
    for name in ("fg.png", "bg.png"):
        assert cv2.imread(str(folder / name)).shape == (24, 36, 3)
    redrawn = tmp_path / "redrawn.png"
    assert cli.main(["render", str(folder / "strokes.json"), "--size", "36", "--ops", "eager",
                     "--out", str(redrawn)]) == 0
    painting = cv2.imread(str(folder / "painting.png")).astype(float)
    mse = ((cv2.imread(str(redrawn)).astype(float) - painting) ** 2).mean()
    assert mse == 0 or 10 * math.log10(255 ** 2 / mse) >= 35


def test_baseline_mode_has_no_gates():
    (r,) = paint([_photo()], method="exact", mode="baseline", size=16, strokes=4, ops="eager", frames="none")
    assert r.mode == "baseline" and set(r.layers) == {"all"} and r.masks is None and r.fg_layer is None


def test_same_shape_images_are_painted_together_like_alone():
    from sgfast.paint.exact_painter import same_shape_batches

    a, b, c = _photo(), _photo()[:, ::-1].copy(), _photo(20, 20)
    kw = dict(method="exact", size=16, strokes=4, ops="eager", frames="none")
    together = paint([a, c, b], batch_size=8, **kw)
    assert [tuple(r.canvas.shape) for r in together] == [(3, 8, 16), (3, 16, 16), (3, 8, 16)]
    batches = same_shape_batches([(0, "a", torch.zeros(1, 3, 8, 16), None, None),
                                  (1, "c", torch.zeros(1, 3, 16, 16), None, None),
                                  (2, "b", torch.zeros(1, 3, 8, 16), None, None)], 8)
    assert [[item[1] for item in batch] for batch in batches] == [["a", "b"], ["c"]]
    for r in together:  # each painting beats its flat fill
        flat = float(((r.target - r.target.mean((1, 2), keepdim=True)) ** 2).mean())
        assert float(((r.canvas - r.target) ** 2).mean()) < flat


def test_the_agent_strokes_start_the_painting():
    from sgfast.paint.weights import load_models

    models = load_models("sg", device="cpu", ops="eager", need_segmenter=False)
    steps, k = int(models.meta["max_step"]), models.meta["strokes_bg"] + models.meta["strokes_fg"]
    total = steps * k + 5
    (r,) = paint([_photo()], method="exact", size=16, strokes=total, ops="eager", init="agent", models=models)
    assert r.ok and r.strokes.shape == (total, 13)
    assert r.steps[:steps * k] == [0] * (steps * k) and min(r.steps[steps * k:]) >= 1
    assert len(r.frames) == 3  # the flat fill, the agent's strokes, the one stage at 16 px
    with pytest.raises(PaintError, match="the agent paints"):
        paint([_photo()], method="exact", size=16, strokes=3, ops="eager", init="agent", models=models)


def test_weight_free_focus_map_follows_detail_and_stays_inside_s():
    from sgfast.paint.photo_semantics import Guides, detail_map, photo_guidance

    img = torch.from_numpy(_photo()).permute(2, 0, 1)[None].float() / 255
    g = detail_map(img)
    assert g.shape == (1, 1, 30, 60) and float(g.max()) <= 1 and float(g.min()) >= 0
    # the block's edges are where the detail is: G there beats G in the smooth gradient
    assert float(g[0, 0, 5:17, 18:32].max()) == 1.0 and float(g[0, 0, 20:28, 35:55].mean()) < 0.6
    s, g2 = photo_guidance(img, Guides(), _mask(), need_focus=True)
    assert torch.equal(s[0, 0] > 0.5, torch.from_numpy(_mask() > 127))
    assert float(g2[s < 0.5].abs().max()) == 0


def test_torchvision_outputs_become_a_foreground_mask():
    """The plumbing of `--segmenter torchvision:NAME` on outputs shaped as torchvision's models give
    them (a segmentation dict, a detection list), without torchvision."""
    from sgfast.paint.photo_semantics import segmentation_foreground

    logits = torch.zeros(1, 21, 4, 4)
    logits[0, 0, :2] = 10.0   # top half background
    logits[0, 15, 2:] = 10.0  # bottom half a person
    s = segmentation_foreground({"out": logits}, 8, 8)
    assert s.shape == (1, 1, 8, 8) and float(s[0, 0, 0].max()) < 0.01 and float(s[0, 0, 7].min()) > 0.99
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, :4], masks[1, 0, 4:] = 1.0, 1.0
    det = [{"masks": masks, "scores": torch.tensor([0.9, 0.2])}, {"masks": masks[:0], "scores": torch.zeros(0)}]
    s = segmentation_foreground(det, 8, 8)
    assert s.shape == (2, 1, 8, 8) and float(s[0, 0, :4].min()) == 1 and float(s[0, 0, 4:].max()) == 0
    assert float(s[1].max()) == 0  # nothing found: no foreground


def test_torchvision_models_load_random_weights_when_torchvision_imports():
    tv = pytest.importorskip("torchvision", reason="torchvision is optional")  # noqa: F841
    from sgfast.paint.photo_semantics import classifier_focus, torchvision_model

    model, kind = torchvision_model("--expert", "resnet18", "cpu", pretrained=False)
    assert kind == "classification"
    g = classifier_focus(model, torch.rand(1, 3, 64, 48))
    assert g.shape == (1, 1, 64, 48)


def test_missing_hub_weights_are_an_error_not_a_download(monkeypatch, tmp_path):
    pytest.importorskip("torchvision", reason="torchvision is optional")
    from sgfast.paint.photo_semantics import load_guides

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PaintError, match="torch hub cache"):
        load_guides(expert="torchvision:resnet18")


def test_unknown_guide_sources_are_refused():
    from sgfast.paint.photo_semantics import load_guides

    with pytest.raises(PaintError, match="weights file not found"):
        load_guides(segmenter="no_such.pt")
