"""Multi-object scenes: 2-4 foreground objects (synthetic birds and flat shapes) on the cluttered
backgrounds of the birds, each with its own visible-instance mask and box (docs/data.md).

For the multi-instance inference path (paper Eq. 16). Deterministic for (seed, image id).
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from . import synthetic_birds as sb

SHAPES = ["star", "triangle", "square", "disc", "cross"]
NUM_BIRD_CLASSES = sb.DEFAULT_CLASSES


def scene_classes():
    """[(class_id, name)]: the bird classes first, then the shapes."""
    birds = [(cid, f"bird.{name}") for cid, name, _ in sb.class_table(NUM_BIRD_CLASSES)]
    return birds + [(NUM_BIRD_CLASSES + 1 + i, f"shape.{s}") for i, s in enumerate(SHAPES)]


def _shape_polygon(kind, rng):
    """A shape of radius about 1 (local units), centred at 0."""
    if kind == "star":
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.55))
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if kind == "triangle":
        t = np.array([0, 2, 4]) * np.pi / 3 - np.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "square":
        return np.array([[-0.75, -0.75], [0.75, -0.75], [0.75, 0.75], [-0.75, 0.75]])
    if kind == "disc":
        return sb._ellipse(0, 0, 0.85, 0.85 * rng.uniform(0.7, 1.0), 0, 32)
    if kind == "cross":
        a, b = 0.9, 0.3
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                         [-b, b], [-a, b], [-a, -b], [-b, -b]])
    raise ValueError(f"unknown shape {kind!r}")


def render_scene(rng, size, min_objects=2, max_objects=4, min_visible=0.5, tries=20):
    """(image uint8 RGB [S, S, 3], instance map uint8 [S, S] (0 = background, k = instance k),
    part map uint8 [S, S] (birds' parts, sb.PARTS), [class_id per instance]).
    Objects are drawn in order (later ones occlude earlier ones); a layout where some object keeps
    less than `min_visible` of its area is drawn again."""
    if not 1 <= min_objects <= max_objects <= 255:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 255, got {min_objects}, {max_objects}")
    image0 = sb.draw_background(rng, size)
    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(tries):
        image = image0.copy()
        instances = np.zeros((size, size), np.uint8)
        parts = np.zeros((size, size), np.uint8)
        classes, areas = [], []
        for k in range(1, n + 1):
            tmp = np.zeros((size, size), np.uint8)
            if rng.random() < 0.65:
                cid = int(rng.integers(1, NUM_BIRD_CLASSES + 1))
                bird = sb.sample_bird(rng, cid, NUM_BIRD_CLASSES)
                center, scale, angle, flip = sb.sample_pose(rng, bird, size, fill=rng.uniform(0.25, 0.6))
                sb.draw_bird(image, tmp, bird, center, scale, angle, flip)
            else:
                si = int(rng.integers(len(SHAPES)))
                cid = NUM_BIRD_CLASSES + 1 + si
                r = size * rng.uniform(0.08, 0.2)
                a = np.radians(rng.uniform(0, 360))
                c, s = np.cos(a), np.sin(a)
                poly = _shape_polygon(SHAPES[si], rng) @ np.array([[c, s], [-s, c]]) * r
                poly += rng.uniform(r + 1, size - r - 1, 2)
                color = sb._random_color(rng, (0.5, 1.0), (0.5, 1.0))
                sb._fill(image, poly, color, True)
                sb._fill(tmp, poly, 255, False)
            drawn = tmp > 0
            instances[drawn] = k
            parts[drawn] = 0
            if cid <= NUM_BIRD_CLASSES:
                parts[drawn] = tmp[drawn]
            classes.append(cid)
            areas.append(int(drawn.sum()))
        visible = np.bincount(instances.ravel(), minlength=n + 1)[1:]
        if all(v >= min_visible * a and v > 0 for v, a in zip(visible, areas)):
            break
    else:
        raise RuntimeError(f"no layout with every object at least {min_visible:.0%} visible in {tries} tries")
    image = np.clip(image + rng.normal(0, rng.uniform(1, 4), image.shape), 0, 255).astype(np.uint8)
    return image, instances, parts, classes


def _make_one(job):
    out, image_id, size, seed, min_objects, max_objects, test_fraction = job
    rng = sb.image_rng(seed, image_id)
    image, instances, parts, classes = render_scene(rng, size, min_objects, max_objects)
    is_train = int(rng.random() >= test_fraction)
    name = f"scene_{image_id:06d}"
    paths = {"images": (os.path.join(out, "images", name + ".jpg"), image[:, :, ::-1]),
             "segmentations": (os.path.join(out, "segmentations", name + ".png"), (instances > 0).astype(np.uint8) * 255),
             "part_masks": (os.path.join(out, "part_masks", name + ".png"), parts)}
    rows = []
    for k, cid in enumerate(classes, 1):
        m = instances == k
        paths[f"inst{k}"] = (os.path.join(out, "instances", f"{name}_{k}.png"), m.astype(np.uint8) * 255)
        rows.append((k, sb.mask_box(m), cid))
    for path, arr in paths.values():
        params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.endswith(".jpg") else []
        if not cv2.imwrite(path, arr, params):
            raise OSError(f"cannot write {path}")
    return image_id, f"{name}.jpg", is_train, rows


def write_scenes_dataset(out, num, size=128, seed=0, min_objects=2, max_objects=4, test_fraction=0.2,
                         workers=1, progress=True, overwrite=False):
    """Write `num` scenes to `out` (layout: docs/data.md). Index files are written last."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    if not 1 <= min_objects <= max_objects <= 255:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 255, got {min_objects}, {max_objects}")
    out = os.fspath(out)
    sb.prepare_output(out, overwrite, "sgfast.data.synthetic_scenes",
                      ["images", "instances", "segmentations", "part_masks"])
    for sub in ("images", "instances", "segmentations", "part_masks"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name in ("images.txt", "instances.txt", "classes.txt", "train_test_split.txt", "dataset.json"):
        if os.path.exists(os.path.join(out, name)):
            os.unlink(os.path.join(out, name))
    jobs = [(out, i, size, seed, min_objects, max_objects, test_fraction) for i in range(1, num + 1)]
    records = sb.run_jobs(_make_one, jobs, workers, progress, "scenes", chunksize=32)
    w = sb._write_text
    w(os.path.join(out, "classes.txt"), [f"{cid} {name}" for cid, name in scene_classes()])
    w(os.path.join(out, "part_masks.txt"),
      [f"{i} {p} {int(p in sb.DISTINGUISHING_PARTS)}" for i, p in enumerate(sb.PARTS)])
    w(os.path.join(out, "dataset.json"), [json.dumps(dict(
        generator="sgfast.data.synthetic_scenes", version=sb.GENERATOR_VERSION, num=num, size=size, seed=seed,
        min_objects=min_objects, max_objects=max_objects, test_fraction=test_fraction), indent=1)])
    w(os.path.join(out, "train_test_split.txt"), [f"{r[0]} {r[2]}" for r in records])
    w(os.path.join(out, "instances.txt"),
      [f"{r[0]} {k} {b[0]:.1f} {b[1]:.1f} {b[2]:.1f} {b[3]:.1f} {cid}" for r in records for k, b, cid in r[3]])
    w(os.path.join(out, "images.txt"), [f"{r[0]} {r[1]}" for r in records])
    return records
