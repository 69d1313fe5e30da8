"""Procedural "birds" in the CUB-200-2011 layout, with per-part masks.

A bird is a body (ellipse), a head (circle), a wing, a tail and legs, plus small *distinguishing*
parts: beak (shape and colour), eye ring, crest, wing bar and breast spot. A class is one fixed
combination of those small parts; everything else (body / head / wing colours, proportions, pose,
position, scale, background) is drawn at random for every image, so that only the small parts tell
the classes apart: the features the focus reward is about.

Reusable pieces:
  - `CLASSES`, `class_table(num_classes)`: the classes and their part attributes.
  - `sample_bird(rng, class_id)`: random per-image appearance of a bird of one class.
  - `draw_bird(image, labels, bird, center, scale, angle, flip)`: rasterise it onto an RGB canvas
    and a part-label map (used by the scenes generator too).
  - `render_bird_image(rng, size, class_id)`: one complete sample (image, mask, parts, box).
  - `write_birds_dataset(out, num, size, seed, ...)`: the whole dataset on disk (docs/data.md).

Everything is deterministic for (seed, image id): each image draws from its own generator
`np.random.default_rng([seed, image_id])`, so images can be made in parallel in any order.
"""
from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

GENERATOR_VERSION = 2  # 2: the wing bar is a narrow stripe (was a band 2.75x as wide)

# Part label values of the part maps (0 = background). Later entries are drawn on top.
PARTS = ["background", "body", "head", "wing", "tail", "legs", "eye", "beak", "eye_ring",
         "crest", "wing_bar", "breast_spot"]
PART_INDEX = {name: i for i, name in enumerate(PARTS)}
# The parts that tell the classes apart.
DISTINGUISHING_PARTS = ["beak", "eye_ring", "crest", "wing_bar", "breast_spot"]

# Class factors, in order of significance (the last factor changes slowest, so the first 24
# classes never have a breast spot). Colours are RGB.
BEAKS = [  # (name, length, half width at the base, hooked, colour)
    ("cone_yellow", 0.34, 0.13, False, (250, 205, 20)),
    ("dagger_black", 0.55, 0.075, False, (20, 20, 20)),
    ("hook_red", 0.38, 0.11, True, (215, 25, 30)),
]
FACTORS = [
    ("beak", [b[0] for b in BEAKS]),
    ("crest", ["none", "crest"]),
    ("eye_ring", ["none", "white"]),
    ("wing_bar", ["none", "white"]),
    ("breast_spot", ["none", "yellow"]),
]
MAX_CLASSES = int(np.prod([len(v) for _, v in FACTORS]))
DEFAULT_CLASSES = 24

CREST_COLOR = (235, 90, 20)
EYE_RING_COLOR = (250, 250, 250)
WING_BAR_COLOR = (250, 250, 245)
BREAST_SPOT_COLOR = (255, 225, 0)
WING_BAR_SPAN = (0.0, 0.16)  # a narrow stripe across the wing, in half-axis units along its major axis


def _class_attributes(class_index):
    """Mixed-radix decoding of a 0-based class index into factor values."""
    attrs = {}
    for name, values in FACTORS:
        attrs[name] = values[class_index % len(values)]
        class_index //= len(values)
    return attrs


def class_table(num_classes=DEFAULT_CLASSES):
    """[(class_id 1-based, class name, attributes dict)] for the first `num_classes` classes."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [2, {MAX_CLASSES}], got {num_classes}")
    table = []
    for i in range(num_classes):
        a = _class_attributes(i)
        words = [a["beak"].replace("_", "-") + "-beak"]
        words += [k.replace("_", "-") for k in ("crest", "eye_ring", "wing_bar", "breast_spot")
                  if a[k] != "none"]
        name = "_".join(w.capitalize() for w in words)
        table.append((i + 1, name, a))
    return table


CLASSES = class_table(MAX_CLASSES)


# ----------------------------------------------------------------------------------------------
# Geometry: a bird in local units, facing +x, y pointing down; about 2.6 units long.

def _ellipse(cx, cy, ax, ay, angle_deg=0.0, n=36):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = ax * np.cos(t), ay * np.sin(t)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _band_in_ellipse(cx, cy, ax, ay, angle_deg, u0, u1, n=10):
    """The part of an ellipse between u0 <= u <= u1 along its major axis (a wing bar)."""
    u = np.linspace(u0, u1, n)
    v = ay * np.sqrt(np.clip(1 - (u / ax) ** 2, 0, 1))
    pts = np.concatenate([np.stack([u, -v], 1), np.stack([u[::-1], v[::-1]], 1)])
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return np.stack([cx + c * pts[:, 0] - s * pts[:, 1], cy + s * pts[:, 0] + c * pts[:, 1]], 1)


def _random_color(rng, s_range=(0.15, 0.75), v_range=(0.3, 0.75)):
    """A muted random RGB colour (saturated part colours stay distinct from it)."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*s_range) * 255,
                      rng.uniform(*v_range) * 255]]], np.float32)
    return tuple(float(c) for c in cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0])


def _jitter(rng, color, amount=18):
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in color)


@dataclasses.dataclass
class Bird:
    """One bird's appearance: [(part name, polygon [K, 2] in local units, RGB colour)] in
    drawing order, plus its class."""
    class_id: int
    attributes: dict
    shapes: list


def sample_bird(rng, class_id, num_classes=MAX_CLASSES):
    """Random appearance of a bird of class `class_id` (1-based)."""
    if not 1 <= class_id <= num_classes:
        raise ValueError(f"class_id must be in [1, {num_classes}], got {class_id}")
    attrs = _class_attributes(class_id - 1)
    body_c = _random_color(rng)
    head_c = body_c if rng.random() < 0.5 else _random_color(rng)
    dark = rng.uniform(0.55, 0.85)
    wing_c = tuple(c * dark for c in body_c) if rng.random() < 0.6 else _random_color(rng)
    tail_c = wing_c if rng.random() < 0.7 else _random_color(rng)
    leg_c = (rng.uniform(40, 200),) * 3 if rng.random() < 0.5 else (190, 120, 60)

    # Class-independent proportions.
    bx, by = 0.62 * rng.uniform(0.9, 1.1), 0.36 * rng.uniform(0.9, 1.12)
    body_tilt = rng.uniform(-18, 0)
    hr = 0.27 * rng.uniform(0.92, 1.08)
    hx, hy = 0.6 + rng.uniform(-0.04, 0.06), -0.36 + rng.uniform(-0.06, 0.04)
    tail_len = rng.uniform(0.55, 0.75)
    tail_spread = rng.uniform(0.15, 0.3)
    wx, wy, wa = -0.1 + rng.uniform(-0.05, 0.05), -0.03, rng.uniform(5, 15)
    wax, way = 0.5 * rng.uniform(0.9, 1.1), 0.2 * rng.uniform(0.9, 1.1)

    shapes = []
    tail_root = np.array([-0.45, 0.02])
    tip = tail_root + np.array([-tail_len, -0.1])
    shapes.append(("tail", np.array([tail_root + (0.05, -0.12), tip + (0, -tail_spread),
                                     tip + (-0.05, tail_spread * 0.4), tail_root + (0.05, 0.14)]),
                   tail_c))
    for dx in (-0.1, 0.12):  # legs: thin quads below the body
        x0 = dx + rng.uniform(-0.03, 0.03)
        shapes.append(("legs", np.array([[x0 - 0.025, 0.2], [x0 + 0.025, 0.2],
                                         [x0 + 0.045, by + 0.32], [x0 - 0.005, by + 0.32]]), leg_c))
    shapes.append(("body", _ellipse(0, 0, bx, by, body_tilt), body_c))
    if attrs["breast_spot"] != "none":
        shapes.append(("breast_spot", _ellipse(bx * 0.52, by * 0.3, 0.15, 0.13, 0, 20),
                       _jitter(rng, BREAST_SPOT_COLOR)))
    shapes.append(("wing", _ellipse(wx, wy, wax, way, wa), wing_c))
    if attrs["wing_bar"] != "none":
        shapes.append(("wing_bar", _band_in_ellipse(wx, wy, wax, way, wa, WING_BAR_SPAN[0] * wax,
                                                    WING_BAR_SPAN[1] * wax), _jitter(rng, WING_BAR_COLOR)))
    if attrs["crest"] != "none":
        # Three spikes rising from the top of the head (drawn before the head, which hides the base).
        base = hy - hr * 0.5
        h = rng.uniform(0.38, 0.46)
        pts = [(hx - hr * 0.8, base + 0.05)]
        for k, dx in enumerate((-0.55, -0.1, 0.35)):
            pts += [(hx + dx * hr - 0.12, base - h * (0.75 + 0.12 * k)), (hx + dx * hr + 0.08, base - 0.02)]
        pts += [(hx + hr * 0.6, base + 0.05)]
        shapes.append(("crest", np.array(pts), _jitter(rng, CREST_COLOR)))
    shapes.append(("head", _ellipse(hx, hy, hr, hr), head_c))
    name, length, half, hooked, beak_c = next(b for b in BEAKS if b[0] == attrs["beak"])
    bx0 = hx + hr * 0.8
    if hooked:
        beak = np.array([(bx0, hy - half), (bx0 + length * 0.75, hy - half * 0.6),
                         (bx0 + length, hy + half * 0.3), (bx0 + length * 0.85, hy + half * 1.4),
                         (bx0 + length * 0.7, hy + half * 0.6), (bx0, hy + half)])
    else:
        beak = np.array([(bx0, hy - half), (bx0 + length, hy + half * 0.25), (bx0, hy + half)])
    shapes.append(("beak", beak, _jitter(rng, beak_c, 12)))
    ex, ey = hx + hr * 0.3, hy - hr * 0.2
    if attrs["eye_ring"] != "none":
        shapes.append(("eye_ring", _ellipse(ex, ey, 0.135, 0.135, 0, 20), _jitter(rng, EYE_RING_COLOR, 8)))
    shapes.append(("eye", _ellipse(ex, ey, 0.065, 0.065, 0, 12), (10, 10, 10)))
    return Bird(class_id=class_id, attributes=attrs, shapes=shapes)


def _transform(points, center, scale, angle_deg, flip):
    pts = points * np.array([-1.0 if flip else 1.0, 1.0])
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    x = c * pts[:, 0] - s * pts[:, 1]
    y = s * pts[:, 0] + c * pts[:, 1]
    return np.stack([x * scale + center[0], y * scale + center[1]], 1)


def bird_extent(bird, scale, angle_deg, flip):
    """(xmin, ymin, xmax, ymax) of the transformed bird around centre (0, 0), in pixels."""
    pts = np.concatenate([_transform(p, (0.0, 0.0), scale, angle_deg, flip) for _, p, _ in bird.shapes])
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


_SHIFT = 4  # fixed-point bits for cv2.fillPoly: sub-pixel vertex positions


def _fill(canvas, pts, color, antialias):
    p = np.round((pts - 0.5) * (1 << _SHIFT)).astype(np.int32)  # pixel centres at i + 0.5
    cv2.fillPoly(canvas, [p], color, cv2.LINE_AA if antialias else cv2.LINE_8, _SHIFT)


def draw_bird(image, labels, bird, center, scale, angle_deg=0.0, flip=False, label_offset=0):
    """Draw `bird` onto `image` (uint8 RGB [H, W, 3], anti-aliased) and `labels` (uint8 [H, W]:
    part index + label_offset, nearest) in place. `center` is (x, y) in pixels, `scale` pixels per
    local unit, `angle_deg` a rotation, `flip` makes the bird face left."""
    for part, pts, color in bird.shapes:
        q = _transform(pts, center, scale, angle_deg, flip)
        _fill(image, q, tuple(float(c) for c in color), True)
        if labels is not None:
            _fill(labels, q, PART_INDEX[part] + label_offset, False)


# ----------------------------------------------------------------------------------------------
# Backgrounds

def _smooth_noise(rng, size, cells, channels):
    grid = rng.uniform(-1, 1, (cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return out.reshape(size, size, channels)


def draw_background(rng, size):
    """Textured, cluttered background: a two-colour gradient, smooth and fine noise, leaves,
    branches and random shapes. uint8 RGB [size, size, 3]."""
    c0 = np.array(_random_color(rng, (0.1, 0.6), (0.35, 0.95)), np.float32)
    c1 = np.array(_random_color(rng, (0.1, 0.6), (0.2, 0.8)), np.float32)
    a = np.radians(rng.uniform(0, 360))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = np.clip(0.5 + (np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)), 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    img += _smooth_noise(rng, size, int(rng.integers(3, 8)), 3) * rng.uniform(10, 35)
    img += _smooth_noise(rng, size, max(size // 4, 2), 1) * rng.uniform(4, 14)
    img = np.clip(img, 0, 255).astype(np.uint8)

    def pt():
        return rng.uniform(-0.1, 1.1, 2) * size
    for _ in range(int(rng.integers(0, 4))):  # branches
        color = _random_color(rng, (0.3, 0.7), (0.2, 0.5))
        p0, p1 = pt(), pt()
        thick = max(1, int(size * rng.uniform(0.01, 0.04)))
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), color, thick, cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 16))):  # leaves: pointed ellipses in greens / browns / yellows
        hsv = np.array([[[rng.uniform(15, 75), rng.uniform(80, 230), rng.uniform(60, 220)]]], np.uint8)
        color = tuple(float(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
        r = size * rng.uniform(0.02, 0.1)
        leaf = _ellipse(0, 0, r, r * rng.uniform(0.25, 0.5), rng.uniform(0, 180), 16)
        _fill(img, leaf + pt(), color, True)
    for _ in range(int(rng.integers(0, 4))):  # random polygons / discs of any colour
        color = _random_color(rng, (0.0, 1.0), (0.1, 1.0))
        r = size * rng.uniform(0.02, 0.08)
        n = int(rng.integers(3, 8))
        poly = _ellipse(0, 0, r, r * rng.uniform(0.5, 1), rng.uniform(0, 180), n)
        _fill(img, poly + pt(), color, True)
    return img


# ----------------------------------------------------------------------------------------------
# One sample

@dataclasses.dataclass
class BirdSample:
    image: np.ndarray      # uint8 RGB [S, S, 3]
    mask: np.ndarray       # uint8 {0, 1} [S, S]
    parts: np.ndarray      # uint8 part index [S, S] (PARTS)
    box: tuple             # (x, y, w, h) in pixels, CUB convention (x, y = top-left pixel)
    class_id: int          # 1-based
    attributes: dict


def mask_box(mask):
    """CUB-style box of a binary mask: (x, y, w, h) floats in pixels; None for an empty mask."""
    rows, cols = np.any(mask, 1), np.any(mask, 0)
    if not rows.any():
        return None
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return (float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1))


def sample_pose(rng, bird, size, min_scale=0.1, max_scale=0.95, fill=None):
    """A random pose (center, scale, angle, flip) that keeps the whole bird inside the image.
    The bird's nominal length (2.6 units) is `fill` of the image side; by default `fill` has most
    mass between 0.3 and 0.9 and a tail down to `min_scale` (see docs/data.md)."""
    if fill is None:
        fill = min_scale + (max_scale - min_scale) * rng.random() ** 0.7
    angle = rng.uniform(-35, 35)
    flip = bool(rng.random() < 0.5)
    scale = fill * size / 2.6
    x0, y0, x1, y1 = bird_extent(bird, scale, angle, flip)
    margin = 1.0
    # Shrink when the rotated bird would not fit (large fill).
    k = min(1.0, (size - 2 * margin) / max(x1 - x0, 1e-6), (size - 2 * margin) / max(y1 - y0, 1e-6))
    scale, x0, y0, x1, y1 = scale * k, x0 * k, y0 * k, x1 * k, y1 * k
    cx = rng.uniform(margin - x0, size - margin - x1)
    cy = rng.uniform(margin - y0, size - margin - y1)
    return (cx, cy), scale, angle, flip


def render_bird_image(rng, size, class_id, num_classes=MAX_CLASSES, min_scale=0.1, max_scale=0.95,
                      noise=True):
    """A complete sample: background, one bird of `class_id`, its mask, part map and box."""
    bird = sample_bird(rng, class_id, num_classes)
    image = draw_background(rng, size)
    if rng.random() < 0.4:  # a perch branch behind the bird, like many CUB photos
        color = _random_color(rng, (0.3, 0.7), (0.15, 0.45))
        y = rng.uniform(0.3, 1.0) * size
        cv2.line(image, (0, int(y)), (size - 1, int(y + rng.uniform(-0.3, 0.3) * size)), color,
                 max(1, int(size * rng.uniform(0.015, 0.04))), cv2.LINE_AA)
    labels = np.zeros((size, size), np.uint8)
    center, scale, angle, flip = sample_pose(rng, bird, size, min_scale, max_scale)
    draw_bird(image, labels, bird, center, scale, angle, flip)
    if noise:
        image = np.clip(image + rng.normal(0, rng.uniform(1, 5), image.shape), 0, 255).astype(np.uint8)
    mask = (labels > 0).astype(np.uint8)
    return BirdSample(image=image, mask=mask, parts=labels, box=mask_box(mask), class_id=class_id,
                      attributes=bird.attributes)


# ----------------------------------------------------------------------------------------------
# The dataset on disk

def image_rng(seed, image_id):
    """The generator of one image: independent of every other image, so order does not matter."""
    return np.random.default_rng([int(seed), int(image_id)])


def class_of(image_id, num_classes):
    """Classes round-robin over the ids: every prefix of the dataset is balanced."""
    return (image_id - 1) % num_classes + 1


def _write_png(path, array):
    if not cv2.imwrite(path, array):
        raise OSError(f"cannot write {path}")


def _make_one(job):
    """Render and write one image; returns its index lines' fields. Runs in worker processes."""
    out, image_id, num, size, seed, num_classes, test_fraction, min_scale, max_scale, table = job
    rng = image_rng(seed, image_id)
    class_id = class_of(image_id, num_classes)
    s = render_bird_image(rng, size, class_id, num_classes, min_scale, max_scale)
    is_train = int(rng.random() >= test_fraction)
    class_dir = f"{class_id:03d}.{table[class_id - 1][1]}"
    stem = f"{table[class_id - 1][1]}_{image_id:06d}"
    rel = f"{class_dir}/{stem}"
    for sub in ("images", "segmentations", "part_masks"):
        os.makedirs(os.path.join(out, sub, class_dir), exist_ok=True)
    if not cv2.imwrite(os.path.join(out, "images", rel + ".jpg"), s.image[:, :, ::-1],
                       [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise OSError(f"cannot write {os.path.join(out, 'images', rel + '.jpg')}")
    _write_png(os.path.join(out, "segmentations", rel + ".png"), s.mask * 255)
    _write_png(os.path.join(out, "part_masks", rel + ".png"), s.parts)
    return image_id, rel + ".jpg", class_id, is_train, s.box, s.attributes


def _write_text(path, lines):
    """Atomic text write: index files never exist half-written."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def prepare_output(out, overwrite, generator, folders):
    """Refuse to write over a dataset unless `overwrite`; when overwriting one that this generator
    made (dataset.json says so), remove its image folders so no stale files remain."""
    if os.path.exists(os.path.join(out, "images.txt")) and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset (images.txt); pass overwrite=True / --force")
    meta_path = os.path.join(out, "dataset.json")
    if overwrite and os.path.exists(meta_path):
        try:
            with open(meta_path) as f:
                ours = json.load(f).get("generator") == generator
        except (OSError, ValueError):
            ours = False
        if ours:
            import shutil
            for sub in folders:
                shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)


INDEX_FILES = ["classes.txt", "images.txt", "image_class_labels.txt", "train_test_split.txt",
               "bounding_boxes.txt"]



def run_jobs(fn, jobs, workers, progress, desc, chunksize):
    """fn over jobs (in worker processes when workers > 1) with a progress bar; the results sorted
    by their first field (the image id), so the output does not depend on the number of workers."""
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc=desc, unit="img")
    records = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(fn, jobs, chunksize=chunksize):
                records.append(r)
                bar and bar.update(1)
    else:
        for j in jobs:
            records.append(fn(j))
            bar and bar.update(1)
    bar and bar.close()
    records.sort(key=lambda r: r[0])
    return records

def write_birds_dataset(out, num, size=128, seed=0, num_classes=DEFAULT_CLASSES, test_fraction=0.2,
                        min_scale=0.1, max_scale=0.95, workers=1, progress=True, overwrite=False):
    """Write `num` synthetic birds of `size` x `size` pixels to `out` in the CUB-200-2011 layout
    plus part masks (docs/data.md). Index files are written last, so an interrupted run leaves no
    index that points at missing images. Returns the list of per-image records."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if not 0 <= test_fraction <= 1:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    table = class_table(num_classes)
    out = os.fspath(out)
    prepare_output(out, overwrite, "sgfast.data.synthetic_birds", ["images", "segmentations", "part_masks"])
    for name in INDEX_FILES + ["part_masks.txt", "class_attributes.txt", "dataset.json"]:
        if os.path.exists(os.path.join(out, name)):
            os.unlink(os.path.join(out, name))  # the old index must not survive a failed rewrite
    jobs = [(out, i, num, size, seed, num_classes, test_fraction, min_scale, max_scale, table)
            for i in range(1, num + 1)]
    records = run_jobs(_make_one, jobs, workers, progress, "birds", chunksize=64)

    _write_text(os.path.join(out, "part_masks.txt"),
                [f"{i} {p} {int(p in DISTINGUISHING_PARTS)}" for i, p in enumerate(PARTS)])
    _write_text(os.path.join(out, "class_attributes.txt"),
                ["class_id " + " ".join(n for n, _ in FACTORS)]
                + [f"{cid} " + " ".join(a[n] for n, _ in FACTORS) for cid, _, a in table])
    meta = dict(generator="sgfast.data.synthetic_birds", version=GENERATOR_VERSION, num=num, size=size,
                seed=seed, num_classes=num_classes, test_fraction=test_fraction, min_scale=min_scale,
                max_scale=max_scale, parts=PARTS, distinguishing_parts=DISTINGUISHING_PARTS)
    _write_text(os.path.join(out, "dataset.json"), [json.dumps(meta, indent=1)])
    _write_text(os.path.join(out, "classes.txt"), [f"{cid:d} {cid:03d}.{name}" for cid, name, _ in table])
    _write_text(os.path.join(out, "image_class_labels.txt"), [f"{r[0]} {r[2]}" for r in records])
    _write_text(os.path.join(out, "train_test_split.txt"), [f"{r[0]} {r[3]}" for r in records])
    _write_text(os.path.join(out, "bounding_boxes.txt"),
                [f"{r[0]} {r[4][0]:.1f} {r[4][1]:.1f} {r[4][2]:.1f} {r[4][3]:.1f}" for r in records])
    # images.txt last: its presence marks a complete dataset.
    _write_text(os.path.join(out, "images.txt"), [f"{r[0]} {r[1]}" for r in records])
    return records


__all__ = ["PARTS", "PART_INDEX", "DISTINGUISHING_PARTS", "FACTORS", "MAX_CLASSES", "DEFAULT_CLASSES",
           "CLASSES", "class_table", "Bird", "sample_bird", "draw_bird", "bird_extent", "draw_background",
           "BirdSample", "mask_box", "sample_pose", "render_bird_image", "image_rng", "class_of",
           "write_birds_dataset"]
