"""Expert and guided backprop: crops against slices, the guided rule against a hand-computed
network, map properties, and (with the shipped expert) concentration on the distinguishing parts."""
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from cli_usage import usage_error
from sgfast.cli import main
from sgfast.io import load_checkpoint, save_weights_fp16
from sgfast.models.expert import (Expert, ExpertConfig, crop_boxes, expert_input, load_expert,
                                  paste_boxes)
from sgfast.models.gbp import (gbp_maps, guided_gradients, guided_relus, normalise_map,
                               part_concentration)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_EXPERT = os.path.join(ROOT, "sgfast", "weights", "expert_tiny.pt")
SMALL = ExpertConfig(num_classes=5, crop=16, widths=(8, 12))


# Tiny models: one thread is fastest (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    from sgfast.data.synthetic_birds import write_birds_dataset
    root = tmp_path_factory.mktemp("birds")
    write_birds_dataset(root, 24, size=64, seed=5, num_classes=4, test_fraction=0.25, progress=False)
    return str(root)


def test_expert_shapes_and_relu_modules():
    m = Expert(SMALL)
    assert m(torch.rand(2, 3, 16, 16)).shape == (2, 5)
    assert m(torch.rand(1, 3, 24, 24)).shape == (1, 5)  # global pooling: any crop size
    relus = [x for x in m.modules() if isinstance(x, nn.ReLU)]
    assert len(relus) == 2 * len(SMALL.widths) and not any(r.inplace for r in relus)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m(torch.rand(2, 16, 16))


def test_crop_is_the_box_slice_and_paste_inverts_it():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    # Pixel-aligned boxes whose side equals the crop size: bilinear sampling hits pixel centres.
    boxes = torch.tensor([[4 / 32, 8 / 32, 8 / 32, 8 / 32], [20 / 32, 0.0, 8 / 32, 8 / 32]])
    crops = crop_boxes(x, boxes, 8)
    torch.testing.assert_close(crops[0], x[0, :, 8:16, 4:12])
    torch.testing.assert_close(crops[1], x[1, :, 0:8, 20:28])
    back = paste_boxes(crops, boxes, 32)
    torch.testing.assert_close(back[0, :, 8:16, 4:12], x[0, :, 8:16, 4:12])
    assert back[0, :, :, :4].abs().max() == 0 and back[0, :, :8].abs().max() == 0
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:12] = 1
    torch.testing.assert_close(expert_input(x, m, boxes, 8), crop_boxes(x * m, boxes, 8))
    with pytest.raises(ValueError, match="boxes must be"):
        crop_boxes(x, boxes[:1], 8)


class Tiny(nn.Module):
    def __init__(self, w1, w2):
        super().__init__()
        self.fc1 = nn.Linear(w1.shape[1], w1.shape[0], bias=False)
        self.fc2 = nn.Linear(w2.shape[1], w2.shape[0], bias=False)
        self.fc1.weight.data.copy_(w1)
        self.fc2.weight.data.copy_(w2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def test_guided_rule_matches_a_hand_computed_network():
    """score = w2[c] . relu(W1 x): guided grad = W1^T (relu'(W1 x) * max(w2[c], 0))."""
    w1 = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 1.0], [2.0, 1.0, -1.0], [0.5, 0.5, 0.5]])
    w2 = torch.tensor([[1.0, -3.0, 2.0, -1.0], [-1.0, 1.0, 1.0, 1.0]])
    x = torch.tensor([[1.0, 0.5, 2.0]])
    net = Tiny(w1, w2)
    grad, target = guided_gradients(net, x)
    h = w1 @ x[0]
    logits = w2 @ torch.relu(h)
    c = int(logits.argmax())
    assert int(target) == c
    want = w1.T @ ((h > 0).float() * w2[c].clamp(min=0))
    torch.testing.assert_close(grad[0], want)
    plain = w1.T @ ((h > 0).float() * w2[c])
    assert not torch.allclose(want, plain)  # the example exercises the clamp
    # The modules are restored: ordinary autograd afterwards gives the plain gradient.
    xr = x.clone().requires_grad_(True)
    net(xr)[0, c].backward()
    torch.testing.assert_close(xr.grad[0], plain)
    # An explicit target class is honoured.
    g1, t1 = guided_gradients(net, x, torch.tensor([1 - c]))
    torch.testing.assert_close(g1[0], w1.T @ ((h > 0).float() * w2[1 - c].clamp(min=0)))


def test_guided_relus_needs_relu_modules():
    with pytest.raises(ValueError, match="nn.ReLU"):
        with guided_relus(nn.Linear(2, 2)):
            pass


def test_normalise_map_matches_numpy_percentile():
    torch.manual_seed(0)
    g = torch.rand(3, 1, 8, 8) ** 3
    g[2] = 0.25  # a flat map becomes zero, not NaN
    got = normalise_map(g)
    for b in range(2):
        a = g[b].numpy().ravel()
        lo, hi = a.min(), np.percentile(a, 99)
        want = np.clip((a - lo) / (hi - lo), 0, 1).reshape(1, 8, 8)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-5, atol=1e-6)
    assert got[2].abs().max() == 0


def test_gbp_maps_properties():
    torch.manual_seed(0)
    expert = Expert(SMALL)
    images = torch.rand(5, 3, 32, 32)
    masks = torch.zeros(5, 1, 32, 32)
    masks[:, :, 6:26, 4:20] = 1
    boxes = torch.tensor([[4 / 32, 6 / 32, 16 / 32, 20 / 32]]).repeat(5, 1)
    maps, pred = gbp_maps(expert, images, masks, boxes, batch_size=2)
    assert maps.shape == (5, 1, 32, 32) and pred.shape == (5,)
    assert (maps >= 0).all() and (maps <= 1).all()
    assert maps[masks == 0].abs().max() == 0
    assert maps.sum() > 0
    assert expert.training  # mode restored
    # Same as one batch of everything (batching does not change the maps).
    maps2, _ = gbp_maps(expert, images, masks, boxes, batch_size=64)
    torch.testing.assert_close(maps, maps2)
    e_maps, e_pred = gbp_maps(expert, images[:0], masks[:0], boxes[:0])
    assert e_maps.shape == (0, 1, 32, 32) and e_pred.shape == (0,)
    with pytest.raises(ValueError, match="masks"):
        gbp_maps(expert, images, masks[:, :, :16], boxes)


def test_part_concentration_oracle():
    fg = torch.zeros(1, 1, 10, 10)
    fg[..., :5, :] = 1                   # 50 foreground pixels
    parts = torch.zeros_like(fg)
    parts[..., 0, :5] = 1                # 5 of them are parts (10 % of the area)
    maps = torch.zeros_like(fg)
    maps[..., 0, :5] = 1.0               # 5 mass on parts
    maps[..., 3, :5] = 1.0               # 5 mass elsewhere -> 50 % of the mass
    assert part_concentration(maps, fg, parts) == pytest.approx(5.0)


def test_expert_cli_trains_exports_and_resumes(birds, tmp_path, capsys):
    def argv(out, *extra):
        return ["train-expert", birds, "--image-size", "32", "--crop", "16", "--widths", "8,12",
                "--batch-size", "4", "--out", str(out), "--no-progress", "--no-tensorboard",
                "--gbp-images", "4", *extra]

    def cli(out, *extra):
        return main(argv(out, *extra))

    w = tmp_path / "e.pt"
    assert cli(tmp_path / "a", "--steps", "4", "--export", str(w)) == 0
    model, meta = load_expert(w)
    assert model.config.num_classes == 4 and len(model.config.class_names) == 4
    assert 0 <= meta["test_metrics"]["accuracy"] <= 1
    assert "gbp_part_concentration" in meta["test_metrics"]
    assert cli(tmp_path / "b", "--steps", "2") == 0
    assert cli(tmp_path / "b", "--steps", "4", "--resume") == 0
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], msg=k)
    save_weights_fp16(tmp_path / "seg.pt", {}, {"kind": "segmenter"})
    with pytest.raises(ValueError, match="not an expert"):
        load_expert(tmp_path / "seg.pt")
    usage_error(capsys, argv(tmp_path / "c", "--box-jitter", "0.7"), r"--box-jitter must be in \[0, 0.5\)")
    # --init: same weights to start from, new crop; --widths on the command line is ignored.
    assert cli(tmp_path / "d", "--steps", "1", "--lr", "1e-12", "--crop", "24", "--widths", "5,5",
               "--init", str(w), "--export", str(tmp_path / "d.pt")) == 0
    tuned, _ = load_expert(tmp_path / "d.pt")
    assert tuned.config.crop == 24 and tuned.config.widths == model.config.widths
    for k, v in model.state_dict().items():
        if v.is_floating_point() and "running" not in k:  # BatchNorm statistics move in train mode
            torch.testing.assert_close(tuned.state_dict()[k], v, atol=1e-3, rtol=0, msg=k)
    usage_error(capsys, argv(tmp_path / "e", "--steps", "1", "--init", str(tmp_path / "seg.pt")),
                "--init .*not an expert")
    usage_error(capsys, argv(tmp_path / "e", "--steps", "1", "--segmenter", str(tmp_path / "none.pt")),
                "--segmenter .*none.pt")


def test_gaussian_blur_matches_a_2d_convolution():
    """Per-image separable blur against a direct 2-D convolution with the outer-product kernel
    (replicate padding); sigma 0 leaves the image unchanged."""
    import math

    from sgfast.train.expert import gaussian_blur
    torch.manual_seed(3)
    x = torch.rand(3, 3, 12, 10, dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.7, 1.3], dtype=torch.float64)
    y = gaussian_blur(x, sigma)
    r = math.ceil(3 * 1.3)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    torch.testing.assert_close(y[0], x[0])
    for i in (1, 2):
        k1 = torch.exp(-0.5 * (t / sigma[i]) ** 2)
        k2 = torch.outer(k1, k1) / k1.sum() ** 2
        ref = torch.nn.functional.conv2d(
            torch.nn.functional.pad(x[i:i + 1], (r, r, r, r), mode="replicate").transpose(0, 1),
            k2.view(1, 1, *k2.shape)).transpose(0, 1)
        torch.testing.assert_close(y[i:i + 1], ref)
    assert gaussian_blur(x, torch.zeros(3, dtype=torch.float64)) is x


def test_expert_cli_blur_is_recorded_and_checked(birds, tmp_path, capsys):
    def argv(out, *extra):
        return ["train-expert", birds, "--image-size", "32", "--crop", "16", "--widths", "8,12",
                "--batch-size", "4", "--out", str(out), "--no-progress", "--no-tensorboard",
                "--gbp-images", "0", *extra]

    def cli(out, *extra):
        return main(argv(out, *extra))

    w = tmp_path / "blur.pt"
    assert cli(tmp_path / "a", "--steps", "2", "--blur", "0.5", "--blur-sigma", "0.5,1",
               "--export", str(w)) == 0
    _, meta = load_expert(w)
    assert meta["blur"] == 0.5 and meta["blur_sigma"] == [0.5, 1.0]
    usage_error(capsys, argv(tmp_path / "b", "--steps", "1", "--blur", "1.5"), "--blur must")
    usage_error(capsys, argv(tmp_path / "b", "--steps", "1", "--blur-sigma", "2,1"), "--blur-sigma")


def _shipped_concentration(tmp_path):
    from sgfast.data.synthetic_birds import write_birds_dataset
    from sgfast.train.semantic_common import load_split

    expert, meta = load_expert(SHIPPED_EXPERT)
    size = int(meta.get("image_size", 128))
    # Fresh birds (a seed the expert never saw), 4 per class.
    write_birds_dataset(tmp_path, 96, size=size, seed=987, test_fraction=1.0, progress=False)
    data = load_split(str(tmp_path), "test", size, parts=True, progress=False)
    x = data["images"].float() / 255
    m = data["masks"].float() / 255
    maps, pred = gbp_maps(expert, x, m, data["boxes"])
    assert (pred == data["labels"]).float().mean() >= 0.9  # the expert works on these birds
    return part_concentration(maps, m, data["parts"].float() / 255)


@pytest.mark.skipif(not os.path.exists(SHIPPED_EXPERT), reason="sgfast/weights/expert_tiny.pt not shipped")
def test_shipped_expert_maps_concentrate_on_distinguishing_parts(tmp_path):
    """The paper's premise for G: it highlights the small parts that tell classes apart. A map
    spread like the foreground area scores 1; the shipped expert must clearly beat that."""
    ratio = _shipped_concentration(tmp_path)
    assert ratio >= 3.0, f"GBP mass on the distinguishing parts is only {ratio:.2f}x their area share"


@pytest.mark.skipif(not os.path.exists(SHIPPED_EXPERT), reason="sgfast/weights/expert_tiny.pt not shipped")
def test_shipped_expert_meets_the_5x_concentration_goal(tmp_path):
    """The 5x goal, on 96 birds the expert never saw (5.8x on the whole test split, README)."""
    ratio = _shipped_concentration(tmp_path)
    assert ratio >= 5.0, f"GBP mass on the distinguishing parts is only {ratio:.2f}x their area share"
