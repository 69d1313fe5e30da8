"""`sgfast demo` (the README's first command, `make demo`): paints the bundled birds and scenes with
both shipped agents and writes every image's outputs and the side-by-side image."""
import glob
import json
import os

import pytest

from cli_usage import usage_error
from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "sgfast", "assets", "samples")


def _names(kind):
    pattern = ("birds", "images", "*", "*.jpg") if kind == "birds" else ("scenes", "images", "*.jpg")
    return [os.path.splitext(os.path.basename(p))[0] for p in sorted(glob.glob(os.path.join(SAMPLES, *pattern)))]


def test_demo_paints_the_bundled_birds_and_scenes(tmp_path, capsys):
    from sgfast.data.imageio import read_image_rgb

    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    birds, scenes = _names("birds"), _names("scenes")
    assert len(birds) >= 2 and len(scenes) >= 2
    for mode in ("baseline", "sg"):
        for name in birds + scenes:
            folder = out / mode / name
            for f in ("painting.png", "target.png", "progress.gif", "strokes.json", "strokes.svg"):
                assert (folder / f).is_file(), (mode, name, f)
    side = read_image_rgb(str(out / "side_by_side.png"))
    size = json.loads((out / "sg" / birds[0] / "strokes.json").read_text())["canvas_size"]
    assert side.shape == ((len(birds) + len(scenes)) * 4 * size, 4 * 4 * size, 3)
    # sg paints each scene with its instance masks, and every instance gets fg strokes
    for name in scenes:
        inst = glob.glob(os.path.join(SAMPLES, "scenes", "instances", name + "_*.png"))
        doc = json.loads((out / "sg" / name / "strokes.json").read_text())
        assert doc["masks"] == [f"mask_{i}.png" for i in range(len(inst))]
        assert {s["mask"] for s in doc["strokes"] if s["layer"] == "fg"} == set(range(len(inst))), name
    printed = capsys.readouterr().out
    assert all(f"demo: {name}:" in printed for name in birds + scenes)


def test_demo_without_scenes(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--scenes", ""]) == 0
    assert sorted(p.name for p in (out / "sg").iterdir()) == sorted(_names("birds"))


def test_demo_with_a_folder_that_is_not_a_scenes_data_set(tmp_path, capsys):
    usage_error(capsys, ["demo", "--out", tmp_path / "demo", "--scenes", tmp_path / "nope"], "--scenes")
    assert not (tmp_path / "demo").exists()
