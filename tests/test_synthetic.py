"""The procedural data sets: determinism, masks / parts / boxes consistency, variety, CLI."""
import filecmp
import os

import cv2
import numpy as np
import pytest

from cli_usage import usage_error
from sgfast import cli
from sgfast.data import CUB200, SyntheticScenes
from sgfast.data import synthetic_birds as sb
from sgfast.data import synthetic_scenes as ss


def _render(seed, image_id, size=64, class_id=1, **kw):
    return sb.render_bird_image(sb.image_rng(seed, image_id), size, class_id, **kw)


def test_render_is_deterministic_per_seed_and_id():
    a, b = _render(3, 7, class_id=5), _render(3, 7, class_id=5)
    for f in ("image", "mask", "parts"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.box == b.box
    c = _render(3, 8, class_id=5)
    assert not np.array_equal(a.image, c.image)
    d = _render(4, 7, class_id=5)
    assert not np.array_equal(a.image, d.image)


def test_classes_differ_only_in_distinguishing_parts():
    table = sb.class_table(sb.MAX_CLASSES)
    combos = {tuple(sorted(a.items())) for _, _, a in table}
    assert len(combos) == sb.MAX_CLASSES >= 20
    assert len({name for _, name, _ in table}) == sb.MAX_CLASSES
    assert set(table[0][2]) == {n for n, _ in sb.FACTORS}
    # Factors are exactly the distinguishing parts (the beak's shape and colour count as one).
    assert {n for n, _ in sb.FACTORS} == set(sb.DISTINGUISHING_PARTS)
    with pytest.raises(ValueError, match="num_classes"):
        sb.class_table(1)


@pytest.mark.parametrize("class_id", [1, 2, 3, 4, 6, 8, 13, 24, 41])
def test_parts_inside_mask_and_class_parts_visible_at_64px(class_id):
    attrs = sb.CLASSES[class_id - 1][2]
    for image_id in range(4):
        rng = sb.image_rng(11, image_id)
        bird = sb.sample_bird(rng, class_id)
        image = sb.draw_background(rng, 64)
        labels = np.zeros((64, 64), np.uint8)
        # A typical scale: the bird half the image long.
        center, scale, angle, flip = sb.sample_pose(rng, bird, 64, fill=0.5)
        sb.draw_bird(image, labels, bird, center, scale, angle, flip)
        mask = labels > 0
        assert mask.sum() > 100
        counts = np.bincount(labels.ravel(), minlength=len(sb.PARTS))
        for part in sb.DISTINGUISHING_PARTS:
            n = counts[sb.PART_INDEX[part]]
            if attrs[part] == "none":
                assert n == 0, (part, class_id)
            else:
                assert n >= 3, f"{part} of class {class_id} covers only {n} pixels at 64 px"
        # Every part pixel is a bird pixel, and the box is the mask's extent.
        s = _render(11, image_id, class_id=class_id)
        assert np.array_equal(s.parts > 0, s.mask.astype(bool))
        ys, xs = np.nonzero(s.mask)
        assert s.box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def test_scale_and_position_variety():
    size = 96
    sides, cx, cy = [], [], []
    for i in range(150):
        s = _render(0, i, size=size, class_id=1 + i % 24)
        x, y, w, h = s.box
        assert x >= 0 and y >= 0 and x + w <= size and y + h <= size
        sides.append(max(w, h) / size)
        cx.append((x + w / 2) / size)
        cy.append((y + h / 2) / size)
    sides = np.array(sides)
    assert sides.min() < 0.2 and sides.max() > 0.75, (sides.min(), sides.max())
    assert 0.15 < np.mean(sides < 0.35) < 0.7  # a spread, not all small or all large
    for c in (np.array(cx), np.array(cy)):
        assert c.min() < 0.3 and c.max() > 0.7


def _write(tmp_path, name, num=24, size=48, workers=1, **kw):
    out = tmp_path / name
    sb.write_birds_dataset(out, num, size, seed=5, num_classes=12, workers=workers, progress=False, **kw)
    return out


def test_dataset_on_disk_is_cub_layout_and_deterministic(tmp_path):
    a = _write(tmp_path, "a")
    b = _write(tmp_path, "b", workers=2)  # the output does not depend on the worker count
    cmp = filecmp.dircmp(a, b)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for sub in ("images", "segmentations", "part_masks"):
        for d in os.listdir(a / sub):
            _, mismatch, errors = filecmp.cmpfiles(a / sub / d, b / sub / d, os.listdir(a / sub / d), shallow=False)
            assert not mismatch and not errors
    ids = [int(l.split()[0]) for l in open(a / "images.txt")]
    assert ids == list(range(1, 25))
    labels = [int(l.split()[1]) for l in open(a / "image_class_labels.txt")]
    assert labels == [(i % 12) + 1 for i in range(24)]
    # Boxes in bounding_boxes.txt are the extents of the segmentation PNGs; parts lie in the mask.
    rel = dict(l.split() for l in open(a / "images.txt"))
    for line in open(a / "bounding_boxes.txt"):
        iid, x, y, w, h = line.split()
        stem = os.path.splitext(rel[iid])[0]
        seg = cv2.imread(str(a / "segmentations" / (stem + ".png")), cv2.IMREAD_UNCHANGED)
        parts = cv2.imread(str(a / "part_masks" / (stem + ".png")), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(seg)) <= {0, 255}
        assert np.array_equal(parts > 0, seg > 0)
        assert sb.mask_box(seg > 0) == (float(x), float(y), float(w), float(h))
    legend = [l.split() for l in open(a / "part_masks.txt")]
    assert [p for _, p, _ in legend] == sb.PARTS
    ds = CUB200(a, split="all", size=32)
    assert len(ds) == 24 and ds.has_parts and len(ds.classes) == 12
    s = ds[3]
    assert s["parts"].shape == (32, 32) and int(s["parts"].max()) < len(sb.PARTS)


def test_interrupted_run_leaves_no_index(tmp_path, monkeypatch):
    real = sb._make_one

    def failing(job):
        if job[1] == 5:
            raise KeyboardInterrupt
        return real(job)
    monkeypatch.setattr(sb, "_make_one", failing)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, "x")
    assert not (tmp_path / "x" / "images.txt").exists()
    assert not (tmp_path / "x" / "bounding_boxes.txt").exists()


def test_cli_birds_and_scenes(tmp_path, capsys):
    out = tmp_path / "birds"
    rc = cli.main(["make-dataset", "birds", "--out", str(out), "--num", "10", "--size", "32",
                   "--seed", "1", "--workers", "1", "--no-progress"])
    assert rc == 0 and "images/min" in capsys.readouterr().out
    assert len(CUB200(out, split="all", size=16)) == 10
    usage_error(capsys, ["make-dataset", "birds", "--out", out, "--num", "10", "--size", "32", "--no-progress"],
                "already holds a dataset.*--force")
    # --force replaces the dataset: no stale images of the bigger run stay behind.
    assert cli.main(["make-dataset", "birds", "--out", str(out), "--num", "3", "--size", "32", "--force",
                     "--workers", "1", "--no-progress"]) == 0
    assert sum(len(f) for _, _, f in os.walk(out / "images")) == 3
    usage_error(capsys, ["make-dataset", "birds", "--out", tmp_path / "z", "--num", "0", "--no-progress"],
                "--num must be >= 1, got 0")
    scenes = tmp_path / "scenes"
    rc = cli.main(["make-dataset", "scenes", "--out", str(scenes), "--num", "6", "--size", "64",
                   "--seed", "2", "--workers", "1", "--no-progress"])
    assert rc == 0
    assert len(SyntheticScenes(scenes, split="all", size=32)) == 6


def test_scenes_instances_are_disjoint_and_match_their_boxes(tmp_path):
    out = tmp_path / "scenes"
    ss.write_scenes_dataset(out, 8, 64, seed=3, min_objects=2, max_objects=4, progress=False)
    rows = [l.split() for l in open(out / "instances.txt")]
    per_image = {}
    for r in rows:
        per_image.setdefault(int(r[0]), []).append(r)
    assert sorted(per_image) == list(range(1, 9))
    n_classes = len(open(out / "classes.txt").readlines())
    for iid, rs in per_image.items():
        assert 2 <= len(rs) <= 4
        seg = cv2.imread(str(out / "segmentations" / f"scene_{iid:06d}.png"), cv2.IMREAD_UNCHANGED) > 0
        union = np.zeros_like(seg, np.int32)
        for r in rs:
            m = cv2.imread(str(out / "instances" / f"scene_{iid:06d}_{r[1]}.png"), cv2.IMREAD_UNCHANGED) > 0
            assert m.sum() > 0
            union += m
            assert sb.mask_box(m) == tuple(float(v) for v in r[2:6])
            assert 1 <= int(r[6]) <= n_classes
        assert union.max() == 1 and np.array_equal(union > 0, seg)
    a = ss.render_scene(sb.image_rng(1, 1), 64)
    b = ss.render_scene(sb.image_rng(1, 1), 64)
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]
    ds = SyntheticScenes(out, split="all", size=32, max_instances=4)
    s = ds[0]
    k = int(s["num_instances"])
    assert torch_allclose_union(s["instance_masks"][:k], s["mask"][0])


def torch_allclose_union(inst, mask):
    # Resized soft masks: the instances add up to the foreground mask (up to resampling).
    return float((inst.sum(0) - mask).abs().max()) < 1e-4
