"""sgfast paint / render: the CLI end to end on the bundled samples, the Python API, batching, the
exports (PNG, GIF, SVG, JSON round trip) and bad inputs. Short episodes (--steps 3) keep it fast."""
import glob
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from cli_usage import usage_error
from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIRDS = os.path.join(ROOT, "sgfast", "assets", "samples", "birds")
SCENES = os.path.join(ROOT, "sgfast", "assets", "samples", "scenes")
IMAGES = sorted(glob.glob(os.path.join(BIRDS, "images", "*", "*.jpg")))[:2]
MASKS = [p.replace(os.sep + "images" + os.sep, os.sep + "segmentations" + os.sep)[:-4] + ".png" for p in IMAGES]


def _read_rgb(path):
    from sgfast.data.imageio import read_image_rgb

    return read_image_rgb(path)


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    out = tmp_path_factory.mktemp("paint")
    rc = cli.main(["paint", "--method", "agent", *IMAGES, "--mask", *MASKS, "--out", str(out), "--steps", "3",
                   "--size", "96", "--frames", "stroke", "--no-progress", "--threads", "1"])
    return rc, out


def test_cli_writes_every_output(painted):
    from sgfast.agent.export import load_actor
    from sgfast.paint import DEFAULT_ACTOR

    rc, out = painted
    meta = load_actor(DEFAULT_ACTOR["sg"])[1]  # the shipped agent's bundle (its weights' meta)
    kb, kf = meta["strokes_bg"], meta["strokes_fg"]
    assert rc == 0
    for img in IMAGES:
        folder = out / os.path.splitext(os.path.basename(img))[0]
        for name in ("painting.png", "target.png", "fg.png", "bg.png", "mask.png", "painting_96.png"):
            arr = _read_rgb(str(folder / name))
            assert arr.shape[:2] == ((96, 96) if name == "painting_96.png" else (64, 64))
        gif = (folder / "progress.gif").read_bytes()
        assert gif[:6] == b"GIF89a" and gif[-1:] == b";"
        assert (folder / "progress.mp4").is_file()  # the GIF and the MP4: tests/test_outputs.py
        doc = json.loads((folder / "strokes.json").read_text())
        assert doc["canvas_size"] == 64 and len(doc["strokes"]) == 3 * (kb + kf)
        assert [s["layer"] for s in doc["strokes"][:kb + kf]] == ["bg"] * kb + ["fg"] * kf
        root = ET.parse(str(folder / "strokes.svg")).getroot()
        paths = [e for e in root.iter() if e.tag.endswith("path")]
        assert len(paths) == len(doc["strokes"])
        assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temp folders left


def test_render_roundtrip_equals_exact_rerender(painted, tmp_path):
    _, out = painted
    folder = out / os.path.splitext(os.path.basename(IMAGES[0]))[0]
    target = tmp_path / "r.png"
    assert cli.main(["render", str(folder / "strokes.json"), "--size", "96", "--out", str(target)]) == 0
    np.testing.assert_array_equal(_read_rgb(str(target)), _read_rgb(str(folder / "painting_96.png")))


def test_exact_rerender_is_close_to_the_painting():
    """The exact rasterizer and the neural renderer paint nearly the same picture from the strokes."""
    from sgfast.paint import paint, result_exact

    (r,) = paint(IMAGES[:1], masks=MASKS[:1], method="agent", steps=3, frames="none")
    exact = result_exact(r, r.size)
    assert float((exact - r.canvas).abs().mean()) < 0.1  # the renderer is an approximation
    # and an empty (black) canvas is much further away: the comparison can fail
    assert float((exact - r.canvas).abs().mean()) < 0.5 * float(r.canvas.abs().mean())


def test_api_batch_equals_one_at_a_time():
    from sgfast.paint import paint

    batched = paint(IMAGES, masks=MASKS, method="agent", steps=3, batch_size=2, frames="none")
    single = paint(IMAGES, masks=MASKS, method="agent", steps=3, batch_size=1, frames="none")
    for a, b in zip(batched, single):
        # Batched convolutions may round differently in the last float bit, which can flip a uint8
        # step of the canvas; the strokes must agree closely.
        assert np.abs(a.strokes - b.strokes).max() < 1e-3
        assert float((a.canvas - b.canvas).abs().mean()) < 1e-3


def test_api_eager_ops_match_fused():
    from sgfast.paint import paint

    fused = paint(IMAGES[:1], masks=MASKS[:1], method="agent", steps=2, frames="none")[0]
    eager = paint(IMAGES[:1], masks=MASKS[:1], method="agent", steps=2, frames="none", ops="eager")[0]
    assert np.abs(fused.strokes - eager.strokes).max() < 1e-3


def test_baseline_mode_api():
    from sgfast.paint import paint

    (r,) = paint(IMAGES[:1], mode="baseline", method="agent", steps=2, frames="step")
    assert r.ok and r.fg_layer is None and set(r.layers) == {"all"}
    assert len(r.frames) == 3 and r.strokes.shape == (10, 13)


def test_instances_follow_eq16():
    """Plain Eq. 16 (min_gain=None) on a bundled scene: at every step the painted instance is
    argmax_i ||S_i (I - C_t)||_F, recomputed here from the step's canvas (the progress frames). The
    default rule on top of it: tests/test_multi_instance.py."""
    from sgfast.paint import paint

    img = os.path.join(SCENES, "images", "scene_000002.jpg")
    inst = sorted(glob.glob(os.path.join(SCENES, "instances", "scene_000002_*.png")))
    assert len(inst) == 3
    steps = 4
    (r,) = paint([img], instances=[inst], method="agent", steps=steps, frames="step", min_gain=None)
    assert r.masks.shape[0] == 3 and len(r.frames) == steps + 1
    k = len(r.strokes) // steps
    for t in range(steps):
        canvas = torch.from_numpy(r.frames[t]).permute(2, 0, 1).float() / 255
        err = (r.masks[:, None] * (r.target - canvas)).flatten(1).norm(dim=1)
        assert r.mask_ids[t * k] == int(err.argmax())
        assert set(r.mask_ids[t * k:(t + 1) * k]) == {int(err.argmax())}


def test_corrupt_image_among_good_ones(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(open(IMAGES[0], "rb").read()[:300])
    out = tmp_path / "out"
    rc = cli.main(["paint", "--method", "agent", IMAGES[0], str(bad), "--mask", MASKS[0], MASKS[0],
                   "--out", str(out), "--steps", "1", "--no-video", "--no-progress"])
    assert rc == 1
    assert "bad" in capsys.readouterr().err
    assert (out / os.path.splitext(os.path.basename(IMAGES[0]))[0] / "painting.png").is_file()
    assert not (out / "bad").exists()


def test_missing_weights_message(tmp_path, capsys):
    usage_error(capsys, ["paint", "--method", "agent", IMAGES[0], "--mask", MASKS[0], "--out", tmp_path,
                         "--actor", tmp_path / "nope.pt", "--no-progress"], "--actor")


def test_wrong_kind_of_weights(tmp_path, capsys):
    usage_error(capsys, ["paint", "--method", "agent", IMAGES[0], "--mask", MASKS[0], "--out", tmp_path,
                         "--actor", os.path.join(ROOT, "sgfast", "weights", "agent_baseline_tiny.pt"), "--no-progress"],
                "baseline")


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    usage_error(capsys, ["paint", IMAGES[0], "--mask", MASKS[0], "--out", blocker / "sub", "--no-progress"], "--out")


def test_render_bad_file(tmp_path, capsys):
    bad = tmp_path / "s.json"
    bad.write_text("{\"strokes\": []}")
    usage_error(capsys, ["render", bad, "--out", tmp_path / "x.png"], "not an sgfast stroke file")
    usage_error(capsys, ["render", bad, "--out", tmp_path / "x.png", "--threads", "0"], "--threads must be >= 1")
