"""Ψ: shapes, box geometry against hand computations, a loss that learns, CLI training + resume."""
import os

import pytest
import torch

from cli_usage import usage_error
from sgfast.cli import main
from sgfast.io import load_checkpoint, save_weights_fp16
from sgfast.models.segmenter import (Segmenter, SegmenterConfig, aggregate_box, box_iou,
                                     box_to_corners, load_segmenter, mask_iou, predict,
                                     segmenter_loss)

SMALL = SegmenterConfig(size=32, widths=(8, 12, 16))


# Tiny models: one thread is fastest (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    from sgfast.data.synthetic_birds import write_birds_dataset
    root = tmp_path_factory.mktemp("birds")
    write_birds_dataset(root, 24, size=64, seed=3, num_classes=4, test_fraction=0.25, progress=False)
    return str(root)


def test_forward_shapes_and_box_range():
    torch.manual_seed(0)
    m = Segmenter(SMALL).eval()
    out = m(torch.rand(3, 3, 32, 32))
    assert out["mask_logits"].shape == (3, 1, 32, 32)
    assert out["corners"].shape == (3, 4, 32, 32)
    b = out["box"]
    assert b.shape == (3, 4)
    assert (b >= 0).all() and (b[:, 2:] >= 0).all()
    assert (b[:, 0] + b[:, 2] <= 1 + 1e-6).all() and (b[:, 1] + b[:, 3] <= 1 + 1e-6).all()
    # Fully convolutional: another size (divisible by the stride) works too.
    assert m(torch.rand(1, 3, 48, 48))["mask_logits"].shape == (1, 1, 48, 48)


def test_input_scale_folds_sub_pixels_into_channels():
    """input_scale=2: a 64 px image gives 32 px outputs, and the first conv sees exactly the
    pixel_unshuffled image (checked against a copy whose first conv is applied by hand)."""
    torch.manual_seed(2)
    cfg = SegmenterConfig(size=32, widths=(8, 12, 16), input_scale=2)
    assert cfg.input_size == 64 and SegmenterConfig.from_dict(cfg.to_dict()) == cfg
    m = Segmenter(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    out = m(x)
    assert out["mask_logits"].shape == (2, 1, 32, 32) and out["corners"].shape == (2, 4, 32, 32)
    conv = m.down[0][0]
    assert conv.in_channels == 12
    folded = torch.nn.functional.pixel_unshuffle((x - 0.5) / 0.25, 2)
    seen = []
    h = conv.register_forward_hook(lambda mod, inp, o: seen.append(inp[0]))
    m(x)
    h.remove()
    torch.testing.assert_close(seen[0], folded)
    with pytest.raises(ValueError, match="divisible by 8"):
        m(torch.rand(1, 3, 36, 36))  # 36 % (2 * stride 4) != 0
    with pytest.raises(ValueError, match="input_scale"):
        Segmenter(SegmenterConfig(size=32, widths=(8, 12), input_scale=0))
    prob, box = predict(m, torch.rand(2, 3, 50, 50))  # resized to 64, mask back at 50
    assert prob.shape == (2, 1, 50, 50) and box.shape == (2, 4)


def test_thin_top_uses_one_conv_at_full_resolution_and_roundtrips(tmp_path):
    """thin_top: the first down block and the last up block have one conv (the others two); the
    flag travels in the weights' meta, and files without it (older ones) load as thin_top=False."""
    cfg = SegmenterConfig(size=32, widths=(8, 12, 16), thin_top=True)
    m = Segmenter(cfg).eval()
    convs = lambda block: sum(isinstance(l, torch.nn.Conv2d) for l in block)
    assert [convs(b) for b in m.down] == [1, 2, 2] and [convs(b) for b in m.up] == [2, 1]
    assert m(torch.rand(1, 3, 32, 32))["mask_logits"].shape == (1, 1, 32, 32)
    w = tmp_path / "thin.pt"
    save_weights_fp16(w, m.state_dict(), {"kind": "segmenter", "config": cfg.to_dict()})
    assert load_segmenter(w)[0].config == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "thin_top"}
    assert SegmenterConfig.from_dict(old).thin_top is False
    # Weights whose config does not describe them (thin weights, config without the flag), and a
    # config from a newer version, fail with a message naming the file / the field.
    save_weights_fp16(tmp_path / "mismatch.pt", m.state_dict(), {"kind": "segmenter", "config": old})
    with pytest.raises(ValueError, match="mismatch.pt.*do not match"):
        load_segmenter(tmp_path / "mismatch.pt")
    save_weights_fp16(tmp_path / "newer.pt", m.state_dict(),
                      {"kind": "segmenter", "config": {**cfg.to_dict(), "attention": 2}})
    with pytest.raises(ValueError, match="unknown fields.*attention"):
        load_segmenter(tmp_path / "newer.pt")


def test_box_level_reads_a_coarser_level_and_upsamples_the_corners():
    """box_level=1: the box head sees the 16x16 decoder level of a 32-px input; the full-size
    corners are its per-pixel corners (offsets + that level's pixel centres) upsampled."""
    from sgfast.models.segmenter import pixel_centres
    torch.manual_seed(4)
    cfg = SegmenterConfig(size=32, widths=(8, 12, 16), box_level=1)
    assert SegmenterConfig.from_dict(cfg.to_dict()) == cfg
    m = Segmenter(cfg).eval()
    assert m.box_head[0].in_channels == 12 + 2
    seen = []
    h = m.box_head.register_forward_hook(lambda mod, inp, o: seen.append(o))
    out = m(torch.rand(2, 3, 32, 32))
    h.remove()
    assert seen[0].shape == (2, 4, 16, 16) and out["corners"].shape == (2, 4, 32, 32)
    u, v = pixel_centres(16, 16, "cpu")
    want = torch.nn.functional.interpolate(seen[0] + torch.cat([u, v, u, v], 1), size=(32, 32),
                                           mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["corners"], want)
    torch.testing.assert_close(out["box"], aggregate_box(want, torch.sigmoid(out["mask_logits"])))
    with pytest.raises(ValueError, match="box_level"):
        Segmenter(SegmenterConfig(size=32, widths=(8, 12, 16), box_level=3))


def test_bad_inputs_are_named():
    m = Segmenter(SMALL)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        m(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match="2 levels"):
        Segmenter(SegmenterConfig(widths=(8,)))


def test_aggregate_box_is_the_confident_pixels_weighted_mean():
    torch.manual_seed(1)
    corners = torch.rand(2, 4, 5, 5) * 0.5
    corners[:, 2:] += 0.5  # x2 >= x1, y2 >= y1
    prob = torch.rand(2, 1, 5, 5)
    got = aggregate_box(corners, prob)
    for b in range(2):
        w = prob[b, 0] * (prob[b, 0] > 0.5)
        c = [(corners[b, k] * w).sum() / w.sum() for k in range(4)]
        want = torch.stack([c[0], c[1], c[2] - c[0], c[3] - c[1]])
        torch.testing.assert_close(got[b], want)
    # No confident pixel: falls back to all pixels instead of dividing by zero.
    got0 = aggregate_box(corners, torch.full((2, 1, 5, 5), 0.1))
    assert torch.isfinite(got0).all()
    torch.testing.assert_close(got0[:, 0], corners[:, 0].mean((1, 2)), atol=1e-5, rtol=1e-5)


def test_box_iou_and_mask_iou_against_hand_values():
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 0.2, 0.2]])
    b = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
    # first: intersection 0.25^2, union 2 * 0.25 - 0.0625
    want = torch.tensor([0.0625 / (0.5 - 0.0625), 1.0, 0.0])
    torch.testing.assert_close(box_iou(a, b), want)
    assert box_to_corners(a)[0].tolist() == [0.0, 0.0, 0.5, 0.5]
    p = torch.zeros(2, 1, 4, 4)
    t = torch.zeros(2, 1, 4, 4)
    p[0, 0, :2, :2] = 0.9  # 4 pixels
    t[0, 0, :2, :] = 1.0   # 8 pixels, 4 shared
    torch.testing.assert_close(mask_iou(p, t), torch.tensor([0.5, 1.0]))  # empty vs empty = 1


def test_training_fits_a_box_and_mask():
    """A few dozen Adam steps on squares: the loss drops and the box approaches the truth."""
    torch.manual_seed(0)
    n = 8
    x = torch.rand(n, 3, 32, 32) * 0.3
    mask = torch.zeros(n, 1, 32, 32)
    boxes = torch.zeros(n, 4)
    for i in range(n):
        r, c, s = 2 + 2 * i, 4 + i, 8 + i
        x[i, :, r:r + s, c:c + s] += 0.6
        mask[i, 0, r:r + s, c:c + s] = 1
        boxes[i] = torch.tensor([c / 32, r / 32, s / 32, s / 32])
    m = Segmenter(SMALL)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    first = None
    for _ in range(60):
        loss, _ = segmenter_loss(m(x), mask, boxes)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        out = m(x)
    assert loss.item() < 0.3 * first
    assert mask_iou(torch.sigmoid(out["mask_logits"]), mask).mean() > 0.8
    assert box_iou(out["box"], boxes).mean() > 0.6


def test_predict_resizes_to_the_requested_size():
    m = Segmenter(SMALL).eval()
    prob, box = predict(m, torch.rand(2, 3, 64, 64))
    assert prob.shape == (2, 1, 64, 64) and box.shape == (2, 4)
    prob, _ = predict(m, torch.rand(2, 3, 64, 64), out_size=16)
    assert prob.shape == (2, 1, 16, 16) and 0 <= prob.min() and prob.max() <= 1


def test_weights_roundtrip_and_wrong_files(tmp_path):
    m = Segmenter(SMALL).eval()
    w = tmp_path / "seg.pt"
    save_weights_fp16(w, m.state_dict(), {"kind": "segmenter", "config": SMALL.to_dict()})
    m2, meta = load_segmenter(w)
    assert m2.config == SMALL
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(m2(x)["mask_logits"], m(x)["mask_logits"], atol=2e-2, rtol=2e-2)
    save_weights_fp16(tmp_path / "other.pt", m.state_dict(), {"kind": "expert"})
    with pytest.raises(ValueError, match="not a segmenter"):
        load_segmenter(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_segmenter(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read"):
        load_segmenter(tmp_path / "junk.pt")


def _argv(birds, out, *extra):
    return ["train-segmenter", birds, "--size", "32", "--widths", "8,12,16", "--batch-size", "4",
            "--out", str(out), "--no-progress", "--no-tensorboard", "--ckpt-every", "2", *extra]


def _cli(birds, out, *extra):
    return main(_argv(birds, out, *extra))


def test_cli_trains_exports_and_resumes_exactly(birds, tmp_path):
    w = tmp_path / "seg.pt"
    with_tb = [a for a in _argv(birds, tmp_path / "a", "--steps", "4", "--export", str(w))
               if a != "--no-tensorboard"]
    assert main(with_tb + ["--log-dir", str(tmp_path / "tb")]) == 0
    model, meta = load_segmenter(w)
    assert meta["test_metrics"]["test_images"] > 0
    assert 0 <= meta["test_metrics"]["mask_iou"] <= 1 and 0 <= meta["test_metrics"]["box_iou"] <= 1
    assert os.listdir(tmp_path / "tb")
    # 2 steps, then resume to 4: same weights as the uninterrupted run.
    assert _cli(birds, tmp_path / "b", "--steps", "2") == 0
    assert _cli(birds, tmp_path / "b", "--steps", "4", "--resume") == 0
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], msg=k)


def test_cli_input_scale(birds, tmp_path):
    w = tmp_path / "seg2.pt"
    assert _cli(birds, tmp_path / "c", "--size", "16", "--input-scale", "2", "--steps", "2",
                "--export", str(w)) == 0
    model, meta = load_segmenter(w)
    assert model.config.input_scale == 2 and model.config.input_size == 32
    assert 0 <= meta["test_metrics"]["mask_iou"] <= 1


def test_cli_thin_top_and_box_level(birds, tmp_path):
    w = tmp_path / "thin.pt"
    assert _cli(birds, tmp_path / "d", "--thin-top", "--box-level", "1", "--steps", "2",
                "--export", str(w)) == 0
    model, meta = load_segmenter(w)
    assert model.config.thin_top and meta["config"]["thin_top"] is True
    assert model.config.box_level == 1 and meta["config"]["box_level"] == 1


def test_cli_init_starts_from_weights_at_a_new_size(birds, tmp_path, capsys):
    """--init W --size S: W's widths and options, the new size, and W's weights as the start
    (one step at a negligible learning rate leaves them in place)."""
    w = tmp_path / "w16.pt"
    assert _cli(birds, tmp_path / "e", "--size", "16", "--thin-top", "--steps", "2",
                "--export", str(w)) == 0
    assert _cli(birds, tmp_path / "f", "--size", "32", "--widths", "5,5", "--init", str(w),
                "--steps", "1", "--lr", "1e-12", "--export", str(tmp_path / "w32.pt")) == 0
    start, _ = load_segmenter(w)
    tuned, meta = load_segmenter(tmp_path / "w32.pt")
    assert tuned.config == SegmenterConfig(size=32, widths=(8, 12, 16), thin_top=True)
    assert meta["init"] == str(w)
    for k, v in start.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[k], v, atol=1e-3, rtol=0, msg=k)
    usage_error(capsys, _argv(birds, tmp_path / "g", "--steps", "1", "--init", str(tmp_path / "missing.pt")),
                "--init .*missing.pt")


def test_cli_errors(birds, tmp_path, capsys):
    """A user's mistake: one line "sgfast train-segmenter: error: ...", exit status 2."""
    usage_error(capsys, ["train-segmenter", str(tmp_path / "nope"), "--out", str(tmp_path), "--no-progress"],
                "dataset folder not found")
    usage_error(capsys, _argv(birds, tmp_path, "--size", "30", "--steps", "1"), "divisible")
    usage_error(capsys, _argv(birds, tmp_path, "--input-scale", "0", "--steps", "1"), "--input-scale")
    usage_error(capsys, _argv(birds, tmp_path, "--box-level", "3", "--steps", "1"), "--box-level")
    usage_error(capsys, _argv(birds, tmp_path, "--steps", "0"), "--steps must be >= 1, got 0")
    usage_error(capsys, _argv(birds, tmp_path, "--widths", "8,x"), "--widths must be comma-separated integers")
    usage_error(capsys, ["train-segmenter", "--out", str(tmp_path)], "DATASET is required.*--config smoke")
    usage_error(capsys, ["train-segmenter", "--out", str(tmp_path), "--resume", birds],
                "put DATASET before --resume")
    usage_error(capsys, _argv(birds, tmp_path / "none", "--steps", "1", "--resume"), "no checkpoint at")
    save_weights_fp16(tmp_path / "w.pt", {}, {"kind": "segmenter"})
    usage_error(capsys, _argv(birds, tmp_path, "--steps", "1", "--resume", str(tmp_path / "w.pt")),
                "not a segmenter training checkpoint")


class _ContentStub(torch.nn.Module):
    """A stand-in for Ψ whose mask is its input's first channel and whose box is the bounding box
    of its second channel: the zoomed pass must then give back the image's own mask and box."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config

    def forward(self, x):
        p = x[:, :1].clamp(1e-4, 1 - 1e-4)
        return {"mask_logits": torch.log(p / (1 - p)), "box": _bbox(x[:, 1:2])}


def _bbox(m):
    """Bounding boxes (x, y, w, h) of the pixels > 0.5 of masks [B, 1, H, W]."""
    h, w = m.shape[-2:]
    out = []
    for k in range(m.shape[0]):
        ys, xs = torch.nonzero(m[k, 0] > 0.5, as_tuple=True)
        out.append(torch.tensor([xs.min() / w, ys.min() / h, (xs.max() + 1 - xs.min()) / w,
                                 (ys.max() + 1 - ys.min()) / h]))
    return torch.stack(out)


def _blobs(side):
    """Two images: a small rectangle mid-image, and one touching the bottom-left corner. Channel 0
    of the first also has a far-away speck (not in channel 1, so not in the stub's box)."""
    img = torch.zeros(2, 3, side, side)
    s = side / 128
    img[0, :, int(40 * s):int(50 * s), int(60 * s):int(75 * s)] = 1
    img[1, :, int(100 * s):, :int(30 * s)] = 1
    img[0, 0, int(5 * s):int(9 * s), int(110 * s):int(114 * s)] = 1
    return img


@pytest.mark.parametrize("side", [128, 64, 256])
def test_zoom_pass_maps_the_window_back_where_it_came_from(side):
    """Pass 2 sees the window around pass 1's box; with a network that returns its input, the
    probability warped back equals the image's mask (to within the edge pixels of a bilinear round
    trip) and the box mapped back is the true box to within a pixel. Inputs at the network's size,
    below it (cropped from the caller's pixels) and above it (cropped from the resize)."""
    from sgfast.models.segmenter import two_pass
    cfg = SegmenterConfig(size=128, widths=(8, 16), refine_margin=1.5, refine_min_side=0.25)
    stub = _ContentStub(cfg)
    img = _blobs(side)
    prob, box, windows, prob1, box1 = two_pass(stub, img, (side, side), 1.5, 0.25)
    truth = img[:, :1] > 0.5
    # The windows hold pass 1's boxes and lie inside the image.
    c1 = box_to_corners(box1)
    assert (windows[:, :2] <= c1[:, :2] + 1e-6).all()
    assert (windows[:, :2] + windows[:, 2:] >= c1[:, 2:] - 1e-6).all()
    assert (windows[:, :2] >= -1e-6).all() and (windows[:, :2] + windows[:, 2:] <= 1 + 1e-6).all()
    # The speck lies outside the first window: pass 1's probability stays there.
    yx = int(6 * side / 128), int(111 * side / 128)
    assert yx[1] / side > windows[0, 0] + windows[0, 2]
    wrong = ((prob > 0.5) != truth).flatten(1).sum(1)
    outline = 4 * truth.float().flatten(1).sum(1) ** 0.5
    assert (wrong <= 0.1 * outline).all(), (wrong, outline)
    assert (box - _bbox(img[:, 1:2])).abs().max() <= 1.0 / min(side, 128) + 1e-5
    # "zero" clears the outside instead; inside the window both agree.
    zero, *_ = two_pass(stub, img, (side, side), 1.5, 0.25, outside="zero")
    assert prob[0, 0, yx[0], yx[1]] > 0.5 and zero[0, 0, yx[0], yx[1]] == 0
    torch.testing.assert_close(zero[1], prob[1], atol=2e-4, rtol=0)  # the stub clamps to 1e-4


def test_zoom_windows_against_hand_values():
    from sgfast.models.segmenter import image_box_to_window, window_box_to_image, zoom_windows
    boxes = torch.tensor([[0.4, 0.4, 0.2, 0.1],     # side 0.3, centred on (0.5, 0.45)
                          [0.45, 0.45, 0.05, 0.05],  # 0.075 < min side 0.25
                          [0.0, 0.8, 0.3, 0.2],     # side 0.45, shifted inside the image
                          [0.0, 0.0, 1.0, 0.9]])    # side capped at 1
    w = zoom_windows(boxes, 1.5, 0.25)
    want = torch.tensor([[0.35, 0.3, 0.3], [0.35, 0.35, 0.25], [0.0, 0.55, 0.45], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(w, want)
    torch.testing.assert_close(window_box_to_image(image_box_to_window(boxes, w), w), boxes)
    with pytest.raises(ValueError, match="refine_margin"):
        Segmenter(SegmenterConfig(size=32, widths=(8, 12), refine_margin=0.5))


def test_zoom_config_roundtrips_and_old_files_predict_in_one_pass(tmp_path):
    """refine_margin travels in the weights; a config without it (older files) loads with the
    zoomed pass off, and predict then is exactly one pass; on, predict gives pass 2's output."""
    from sgfast.models.segmenter import two_pass
    torch.manual_seed(5)
    cfg = SegmenterConfig(size=32, widths=(8, 12, 16), refine_margin=1.5, refine_min_side=0.3)
    m = Segmenter(cfg).eval()
    w = tmp_path / "zoom.pt"
    save_weights_fp16(w, m.state_dict(), {"kind": "segmenter", "config": cfg.to_dict()})
    m2, _ = load_segmenter(w)
    assert m2.config == cfg
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith("refine")}
    save_weights_fp16(tmp_path / "old.pt", m.state_dict(), {"kind": "segmenter", "config": old})
    m_old, _ = load_segmenter(tmp_path / "old.pt")
    assert m_old.config.refine_margin == 0
    x = torch.rand(2, 3, 32, 32)
    prob, box = predict(m_old, x)
    with torch.no_grad():
        out = m_old(x)
    torch.testing.assert_close(prob, torch.sigmoid(out["mask_logits"]))
    torch.testing.assert_close(box, out["box"])
    prob2, box2 = predict(m2, x)
    with torch.no_grad():
        want_p, want_b, *_ = two_pass(m2, x, (32, 32), 1.5, 0.3)
    torch.testing.assert_close(prob2, want_p)
    torch.testing.assert_close(box2, want_b)
    assert not torch.allclose(box2, box, atol=1e-3)  # the second pass did change something


def test_zoom_batch_crops_image_mask_and_box_together():
    """The training windows: the crop's mask has the bounding box the returned box says, and the
    image crop is the same window as the mask crop (an image equal to its mask stays equal)."""
    from sgfast.train.segmenter import zoom_batch
    img = _blobs(128)
    img[0, 0, :10] = 0  # drop the speck: one object per image, as in the dataset
    mask = img[:, :1].clone()
    boxes = _bbox(mask)
    g = torch.Generator().manual_seed(0)
    zx, zm, zb = zoom_batch(img, mask, boxes, 1.5, 0.25, 0.1, generator=g)
    assert zx.shape == img.shape and zm.shape == mask.shape
    torch.testing.assert_close(zx[:, :1], zm)
    got = _bbox(zm)
    assert (got - zb).abs().max() <= 1.5 / 128, (got, zb)
    # Jitter 0, margin 1.5: the box fills 1/1.5 of the window's side (the first image; the second
    # touches the corner and its window is shifted, not centred).
    _, _, zb0 = zoom_batch(img, mask, boxes, 1.5, 0.01, 0.0, generator=g)
    assert abs(zb0[0, 2:].max().item() - 1 / 1.5) < 0.1 / 1.5 + 1e-6


def test_cli_zoom_pass_trains_with_mixed_batches(birds, tmp_path, capsys):
    w = tmp_path / "zoom.pt"
    assert _cli(birds, tmp_path / "z", "--zoom-pass", "1.5", "--zoom-fraction", "0.5", "--steps",
                "2", "--export", str(w)) == 0
    model, meta = load_segmenter(w)
    assert model.config.refine_margin == 1.5 and meta["config"]["refine_margin"] == 1.5
    assert meta["zoom_fraction"] == 0.5 and 0 <= meta["test_metrics"]["mask_iou"] <= 1
    usage_error(capsys, _argv(birds, tmp_path, "--zoom-pass", "0.5", "--steps", "1"), "--zoom-pass")
    usage_error(capsys, _argv(birds, tmp_path, "--zoom-pass", "1.5", "--zoom-fraction", "2", "--steps", "1"),
                "--zoom-fraction")


def test_flip_average_is_the_mean_of_both_mirror_predictions_and_roundtrips(tmp_path):
    """flip_average: predict is the mean of the image's and its mirror image's (flipped back)
    predictions, so mirroring the input mirrors the output exactly; the flag travels in the file
    and older files load with it off."""
    from dataclasses import replace

    from sgfast.data.boxes import mirror_boxes
    from sgfast.models.segmenter import two_pass
    torch.manual_seed(6)
    cfg = SegmenterConfig(size=32, widths=(8, 12, 16), refine_margin=1.5, flip_average=True)
    m = Segmenter(cfg).eval()
    x = torch.rand(2, 3, 32, 32)
    prob, box = predict(m, x)
    with torch.no_grad():
        p1, b1, *_ = two_pass(m, x, (32, 32), 1.5, 0.25)
        p2, b2, *_ = two_pass(m, x.flip(-1), (32, 32), 1.5, 0.25)
    torch.testing.assert_close(prob, (p1 + p2.flip(-1)) / 2)
    torch.testing.assert_close(box, (b1 + mirror_boxes(b2)) / 2)
    prob_m, box_m = predict(m, x.flip(-1))
    torch.testing.assert_close(prob_m, prob.flip(-1))
    torch.testing.assert_close(box_m, mirror_boxes(box))
    m.config = replace(cfg, flip_average=False)  # without it the network is not symmetric
    assert not torch.allclose(predict(m, x.flip(-1))[0], predict(m, x)[0].flip(-1), atol=1e-4)
    w = tmp_path / "flip.pt"
    save_weights_fp16(w, m.state_dict(), {"kind": "segmenter", "config": cfg.to_dict()})
    assert load_segmenter(w)[0].config.flip_average is True
    old = {k: v for k, v in cfg.to_dict().items() if k != "flip_average"}
    assert SegmenterConfig.from_dict(old).flip_average is False


def test_cli_flip_average_is_stored(birds, tmp_path):
    w = tmp_path / "flip.pt"
    assert _cli(birds, tmp_path / "fl", "--flip-average", "--steps", "1", "--export", str(w)) == 0
    assert load_segmenter(w)[0].config.flip_average is True
