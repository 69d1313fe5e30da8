"""`sgfast prepare` and PreparedDataset: every record equals a recomputation from the models and
the loader; the file is memory-mapped, read by index and batch; bad files give clear errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli_usage import usage_error
from sgfast.cli import main
from sgfast.data.prepared import MAGIC, PreparedDataset, read_header
from sgfast.io import save_weights_fp16
from sgfast.models.expert import Expert, ExpertConfig
from sgfast.models.gbp import gbp_maps
from sgfast.models.segmenter import Segmenter, SegmenterConfig, predict

SIZE = 32


# Tiny models: one thread is fastest (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sgfast.data.synthetic_birds import write_birds_dataset
    root = tmp_path_factory.mktemp("prep")
    data = root / "birds"
    write_birds_dataset(data, 10, size=SIZE, seed=11, num_classes=3, test_fraction=0.3, progress=False)
    torch.manual_seed(0)
    seg = Segmenter(SegmenterConfig(size=SIZE, widths=(8, 12))).eval()
    exp = Expert(ExpertConfig(num_classes=3, crop=16, widths=(8, 12))).eval()
    # Shift the BN statistics away from the identity so the models are not trivially symmetric.
    for m in list(seg.modules()) + list(exp.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
    seg_w, exp_w = root / "seg.pt", root / "exp.pt"
    save_weights_fp16(seg_w, seg.state_dict(), {"kind": "segmenter", "config": seg.config.to_dict()})
    save_weights_fp16(exp_w, exp.state_dict(), {"kind": "expert", "config": exp.config.to_dict(),
                                                "image_size": SIZE})
    return root, str(data), str(seg_w), str(exp_w)


def _prepare(setup, out, *extra):
    root, data, seg_w, exp_w = setup
    return main(["prepare", data, "--segmenter", seg_w, "--expert", exp_w, "--size", str(SIZE),
                 "--out", str(out), "--no-progress", "--batch-size", "4", *extra])


def _loader_items(data):
    from sgfast.data.cub_split import open_split
    items = []
    for split in ("train", "test"):
        ds = open_split(data, split, SIZE)
        items += [(split, ds[i]) for i in range(len(ds))]
    return items


def test_prepare_predicted_records_match_recomputation(setup, tmp_path):
    from sgfast.models.expert import load_expert
    from sgfast.models.segmenter import load_segmenter
    root, data, seg_w, exp_w = setup
    out = tmp_path / "p.sgprep"
    assert _prepare(setup, out) == 0
    ds = PreparedDataset(out)
    items = _loader_items(data)
    assert len(ds) == len(items) == 10
    assert ds.header["ground_truth"] is False and ds.size == SIZE and ds.num_classes == 3
    seg, _ = load_segmenter(seg_w)
    exp, _ = load_expert(exp_w)
    images = torch.stack([it["image"] for _, it in items])
    masks, boxes = predict(seg, images)
    maps, pred = gbp_maps(exp, images, masks, boxes)
    for i, (split, it) in enumerate(items):
        r = ds[i]
        assert r["index"] == i and r["label"] == it["label"] and bool(r["train"]) == (split == "train")
        assert r["image_id"] == it["image_id"] and r["pred_label"] == pred[i]
        torch.testing.assert_close(r["image"], images[i], atol=1 / 255, rtol=0)
        torch.testing.assert_close(r["mask"], masks[i], atol=1 / 255, rtol=0)
        torch.testing.assert_close(r["gbp"], maps[i], atol=1 / 255, rtol=0)
        torch.testing.assert_close(r["box"], boxes[i])
    assert ds[0]["gbp"].dtype == torch.float32 and ds[0]["gbp"].max() <= 1


def test_ground_truth_mode_and_batch_access(setup, tmp_path):
    out = tmp_path / "gt.sgprep"
    root, data, _, exp_w = setup
    assert main(["prepare", data, "--expert", exp_w, "--ground-truth", "--size", str(SIZE),
                 "--out", str(out), "--no-progress"]) == 0
    ds = PreparedDataset(out)
    items = _loader_items(data)
    assert ds.header["ground_truth"] is True and ds.header["segmenter"] is None
    for i, (_, it) in enumerate(items):
        torch.testing.assert_close(ds[i]["mask"], it["mask"], atol=1 / 255, rtol=0)
        torch.testing.assert_close(ds[i]["box"], it["box"])
        assert (ds[i]["gbp"][it["mask"] <= 0.5]).abs().max() == 0  # G lives inside the mask
    b = ds.batch([7, 2, 2, -1])
    assert b["image"].shape == (4, 3, SIZE, SIZE) and b["mask"].shape == (4, 1, SIZE, SIZE)
    for j, i in enumerate([7, 2, 2, 9]):
        for k in ("image", "mask", "gbp", "box", "label", "image_id"):
            torch.testing.assert_close(b[k][j], ds[i][k])
    u8 = PreparedDataset(out, uint8=True)
    assert u8[3]["image"].dtype == torch.uint8
    torch.testing.assert_close(u8[3]["image"].float() / 255, ds[3]["image"])
    train, test = PreparedDataset(out, split="train"), PreparedDataset(out, split="test")
    assert len(train) + len(test) == len(ds) and len(test) > 0
    assert bool(test[0]["train"]) is False and all(bool(train[i]["train"]) for i in range(len(train)))
    assert isinstance(ds.records, np.memmap)  # read lazily, not loaded
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds.batch([0, 99])
    # The torch DataLoader collates it.
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["gbp"].shape == (3, 1, SIZE, SIZE)


def test_bad_files_and_weights_give_clear_errors(setup, tmp_path, capsys):
    root, data, seg_w, exp_w = setup
    usage_error(capsys, ["prepare", data, "--segmenter", tmp_path / "none.pt", "--expert", exp_w,
                         "--out", tmp_path / "x"], "weights file not found")
    usage_error(capsys, ["prepare", data, "--expert", exp_w, "--out", tmp_path / "x"], "--segmenter W is required")
    usage_error(capsys, ["prepare", data, "--segmenter", exp_w, "--expert", exp_w, "--out", tmp_path / "x"],
                "not a segmenter")
    usage_error(capsys, ["prepare", data, "--segmenter", seg_w, "--expert", seg_w, "--out", tmp_path / "x"],
                "not an expert")
    usage_error(capsys, ["prepare", tmp_path / "nodata", "--segmenter", seg_w, "--expert", exp_w,
                         "--out", tmp_path / "x"], "dataset folder not found")
    assert not (tmp_path / "x").exists()
    bad = tmp_path / "bad.sgprep"
    bad.write_bytes(b"hello world, not prepared")
    with pytest.raises(ValueError, match="bad magic"):
        PreparedDataset(bad)
    with pytest.raises(FileNotFoundError):
        PreparedDataset(tmp_path / "missing.sgprep")
    good = tmp_path / "good.sgprep"
    assert _prepare(setup, good, "--split", "test") == 0
    blob = good.read_bytes()
    assert blob[:8] == MAGIC
    header, offset = read_header(good)
    assert offset % 64 == 0
    trunc = tmp_path / "trunc.sgprep"
    trunc.write_bytes(blob[:-100])
    with pytest.raises(ValueError, match="truncated"):
        PreparedDataset(trunc)
    with pytest.raises(ValueError, match="split"):
        PreparedDataset(good, split="val")
