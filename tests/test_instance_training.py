"""Multi-instance training (paper Sec. 5): `sgfast prepare --instances` writes one record per
instance (its true mask and box, G of it, the image's id); the agent's data keeps an image's
instances on one side of the validation split and draws each instance in proportion to its share of
its image's instance pixels; train-agent runs on such a file with both renderers."""
import os

import numpy as np
import pytest
import torch

from sgfast import cli
from sgfast.agent import prepared_source
from sgfast.data.datasets import SyntheticScenes
from sgfast.data.prepared import PreparedDataset

EXPERT = os.path.join(os.path.dirname(__file__), "..", "sgfast", "weights", "expert_tiny.pt")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    assert cli.main(["make-dataset", "scenes", "--out", str(root / "sc"), "--num", "10", "--size", "48",
                     "--seed", "3"]) == 0
    out = root / "sc.sgprep"
    assert cli.main(["prepare", str(root / "sc"), "--instances", "--expert", EXPERT, "--size", "32",
                     "--out", str(out), "--no-progress"]) == 0
    return root / "sc", out


def test_prepare_writes_one_record_per_instance(scenes):
    folder, prepared = scenes
    ds = PreparedDataset(str(prepared))
    assert ds.header["instances"] is True and ds.header["ground_truth"] is True
    truth = {}
    for split in ("train", "test"):
        sc = SyntheticScenes(str(folder), split=split, size=32)
        for iid, rec in zip(sc.ids, sc.records):
            truth[iid] = len(rec.instances)
    assert len(ds) == sum(truth.values())
    rec = ds.batch(range(len(ds)))
    ids, counts = np.unique(rec["image_id"].numpy(), return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == truth
    # each record's mask is one instance, and the G of a record stays on its own mask (both were
    # resized from the source size, so compare where the mask is empty)
    mask = rec["mask"].float() / 255 if rec["mask"].dtype == torch.uint8 else rec["mask"]
    gbp = rec["gbp"].float() / 255 if rec["gbp"].dtype == torch.uint8 else rec["gbp"]
    assert float((gbp * (mask == 0)).max()) == 0 and float(gbp.max()) > 0
    first = int(ids[counts > 1][0])
    rows = torch.nonzero(rec["image_id"] == first).flatten()
    assert not torch.equal(mask[rows[0]], mask[rows[1]]) and torch.equal(rec["image"][rows[0]], rec["image"][rows[1]])


def test_instances_are_weighted_by_area_and_split_by_image(scenes):
    _, prepared = scenes
    images, masks, boxes, gbp, val_ids, weights = prepared_source.load(str(prepared), val_fraction=0.3, seed=1)
    ds = PreparedDataset(str(prepared))
    image_ids = ds.batch(range(len(ds)))["image_id"]
    for iid in image_ids.unique():
        rows = image_ids == iid
        assert abs(float(weights[rows].sum()) - 1) < 1e-9  # each image's instances share 1
        area = masks[rows].flatten(1).double().sum(1)
        assert torch.allclose(weights[rows], area / area.sum())
        in_val = torch.isin(torch.nonzero(rows).flatten(), val_ids)
        assert bool(in_val.all()) or not bool(in_val.any())  # an image's instances stay together


def test_the_env_draws_in_proportion_to_the_weights():
    from sgfast.agent.data import synthetic_data
    from sgfast.agent.env import PaintEnv

    data = synthetic_data(4, 16)
    pool = data.train_ids
    weights = torch.tensor([0.7, 0.2, 0.1, 0.0])[:len(pool)]

    class Painter:
        size = 16

    env = PaintEnv(data, Painter(), 1, 2000, pool, torch.Generator().manual_seed(0), weights=weights)
    env.reset()
    freq = torch.bincount(env.ids.cpu(), minlength=len(data)).double()[pool.cpu()] / 2000
    assert torch.allclose(freq, weights.double() / weights.sum(), atol=0.04), freq
    with pytest.raises(ValueError, match="weights"):
        PaintEnv(data, Painter(), 1, 2, pool, torch.Generator(), weights=torch.zeros(len(pool)))


@pytest.mark.parametrize("renderer", [["--renderer", "exact"], ["--renderer", "random"]])
def test_train_agent_runs_on_instances(scenes, tmp_path, renderer):
    _, prepared = scenes
    out = tmp_path / "run"
    assert cli.main(["train-agent", "--config", "smoke", "--data", str(prepared), "--out", str(out),
                     "--no-progress", "--ops", "eager", "--no-tensorboard", *renderer]) == 0
    assert os.path.isfile(out / "checkpoint.pt")


def test_prepare_instances_refuses_a_dataset_without_instances(tmp_path, capsys):
    birds = tmp_path / "birds"
    assert cli.main(["make-dataset", "birds", "--out", str(birds), "--num", "4", "--size", "32"]) == 0
    with pytest.raises(SystemExit) as exc:
        cli.main(["prepare", str(birds), "--instances", "--expert", EXPERT, "--out", str(tmp_path / "x.sgprep")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "--instances needs a multi-instance dataset" in err[-1], err
