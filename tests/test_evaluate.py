"""sgfast evaluate: the metrics against direct numpy definitions, the CLI end to end on a tiny
synthetic birds set (its L2 equals painting the same images through the paint API), bad input."""
import csv
import os

import numpy as np
import pytest
import torch

from cli_usage import usage_error
from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SG = os.path.join(ROOT, "sgfast", "weights", "agent_sg_tiny.pt")
BASE = os.path.join(ROOT, "sgfast", "weights", "agent_baseline_tiny.pt")


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    from sgfast.data.synthetic_birds import write_birds_dataset

    out = tmp_path_factory.mktemp("birds")
    write_birds_dataset(str(out), 12, size=64, seed=3, test_fraction=0.5, min_scale=0.4, progress=False)
    return str(out)


def test_image_metrics_match_numpy():
    from sgfast.evaluate import image_metrics

    g = torch.Generator().manual_seed(0)
    t, c = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 3, 8, 8, generator=g)
    mask = torch.rand(3, 1, 8, 8, generator=g)
    parts = (torch.rand(3, 1, 8, 8, generator=g) > 0.8).float()
    parts[2] = 0  # an image without distinguishing parts: NaN, not 0
    m = image_metrics(t, c, mask, parts)
    tn, cn, mn, pn = t.numpy(), c.numpy(), mask.numpy(), parts.numpy()
    for i in range(3):
        sq = (tn[i] - cn[i]) ** 2
        assert m["l2"][i] == pytest.approx(sq.mean(), rel=1e-5)
        assert m["psnr"][i] == pytest.approx(-10 * np.log10(sq.mean()), rel=1e-5)
        assert m["fg_l2"][i] == pytest.approx((sq * mn[i]).sum() / (3 * mn[i].sum()), rel=1e-4)
        if pn[i].sum():
            sel = np.broadcast_to(pn[i] > 0, sq.shape)
            assert m["parts_l2"][i] == pytest.approx(sq[sel].mean(), rel=1e-4)
    assert torch.isnan(m["parts_l2"][2])


def test_segmentation_metrics_perfect_and_inverted():
    from sgfast.evaluate import segmentation_metrics

    from sgfast.models.segmenter import SegmenterConfig

    class Fixed(torch.nn.Module):  # a "Ψ" that returns given logits
        config = SegmenterConfig(size=8)

        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return {"mask_logits": self.logits, "box": torch.zeros(x.shape[0], 4)}

    true = torch.zeros(2, 1, 8, 8)
    true[:, :, 2:6, 2:6] = 1
    logits = (true * 2 - 1) * 10
    m = segmentation_metrics(Fixed(logits), torch.rand(2, 3, 8, 8), true)
    assert torch.allclose(m["psi_acc"], torch.ones(2)) and torch.allclose(m["psi_iou"], torch.ones(2))
    m = segmentation_metrics(Fixed(-logits), torch.rand(2, 3, 8, 8), true)
    assert torch.allclose(m["psi_acc"], torch.zeros(2)) and torch.allclose(m["psi_iou"], torch.zeros(2))


def _read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_cli_table_equals_paint_api(birds, tmp_path):
    out = tmp_path / "ev"
    rc = cli.main(["evaluate", birds, "--actor", SG, "--baseline-actor", BASE, "--steps", "2", "--num", "4",
                   "--out", str(out), "--grid", "2", "--threads", "1", "--no-progress"])
    assert rc == 0
    rows = {r["agent"]: r for r in _read_csv(out / "evaluate.csv")}
    assert set(rows) >= {"agent_sg_tiny", "agent_baseline_tiny", "target (reference)"}
    # Equal stroke counts: 2 steps of the agent with the larger bundle, the other one as many strokes.
    from sgfast.agent.export import load_actor

    per_step = {p: m["strokes_bg"] + m["strokes_fg"] for p in (SG, BASE) for m in [load_actor(p)[1]]}
    k = max(per_step.values())
    assert rows["agent_sg_tiny"]["strokes"] == rows["agent_baseline_tiny"]["strokes"] == str(2 * k)
    assert float(rows["target (reference)"]["l2"]) == 0
    md = (out / "evaluate.md").read_text()
    assert md.count("\n") == 2 + len(rows)
    # Oracle: paint the same 4 test images with the baseline through the paint API.
    from sgfast.data import CUB200
    from sgfast.paint import paint

    ds = CUB200(birds, split="test", size=128)
    res = paint([ds[i]["image"] for i in range(4)], mode="baseline", method="agent", steps=2 * k // per_step[BASE],
                actor=BASE, frames="none")
    l2 = np.mean([float(((r.canvas - r.target) ** 2).mean()) for r in res])
    assert float(rows["agent_baseline_tiny"]["l2"]) == pytest.approx(l2, rel=1e-4)
    from sgfast.data.imageio import read_image_rgb

    grid = read_image_rgb(str(out / "grid.png"))
    assert grid.shape == (2 * 64, 3 * 64, 3)  # 2 images x (target, baseline, sg)


def test_cli_rerender_scores_the_exact_rerender_of_the_strokes(birds, tmp_path):
    out = tmp_path / "ev"
    assert cli.main(["evaluate", birds, "--actor", BASE, "--steps", "2", "--num", "3", "--rerender",
                     "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    row = {r["agent"]: r for r in _read_csv(out / "evaluate.csv")}["agent_baseline_tiny"]
    # Oracle: the same paintings' strokes re-rendered exactly, against the agent's own canvas.
    from sgfast.data import CUB200
    from sgfast.paint import paint
    from sgfast.paint.rerender import result_exact

    ds = CUB200(birds, split="test", size=128)
    res = paint([ds[i]["image"] for i in range(3)], mode="baseline", method="agent", steps=2, actor=BASE,
                frames="none")
    exact = np.mean([float(((result_exact(r, 64) - r.target) ** 2).mean()) for r in res])
    canvas = np.mean([float(((r.canvas - r.target) ** 2).mean()) for r in res])
    assert float(row["l2"]) == pytest.approx(exact, rel=1e-4)
    # The agent's canvas (a neural renderer's approximation, or render_strokes' 1-px ramp) is not the
    # supersampled exact re-render: the flag changes what is scored.
    assert abs(exact - canvas) > 1e-6


def test_cli_bad_inputs(birds, tmp_path, capsys):
    usage_error(capsys, ["evaluate", tmp_path / "nope", "--actor", SG, "--out", tmp_path / "o"], "DATASET")
    usage_error(capsys, ["evaluate", birds, "--optimize", "--rerender", "--out", tmp_path / "o"], "--rerender")
    usage_error(capsys, ["evaluate", birds, "--actor", tmp_path / "missing.pt", "--out", tmp_path / "o"], "not found")
