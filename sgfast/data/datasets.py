"""Loaders of the real on-disk formats (and of the synthetic ones), with one sample interface.

Every dataset is a `torch.utils.data.Dataset` whose items are dicts (docs/data.md):

  image     float32 [3, S, S]  RGB in [0, 1], resized to the canvas size S (aspect not kept)
  mask      float32 [1, S, S]  foreground in [0, 1] (soft at resized edges); see `has_mask`
  box       float32 [4]        (x, y, w, h) normalised to [0, 1], x horizontal (column)
  label     int64              0-based class, -1 when unknown
  index     int64              position in the dataset
  has_mask  bool               False where the format has no masks: the mask is then the box
                               rectangle (or the whole image when there is no box either)
  flipped   bool               whether horizontal flip augmentation was applied
  parts     int64 [S, S]       part labels (synthetic birds only; sgfast.data.synthetic_birds.PARTS)
  instance_masks [M, S, S], instance_boxes [M, 4], instance_labels [M], num_instances
                               multi-instance datasets (VKITTI2, scenes): padded to M = max_instances,
                               largest first

Bad input raises an error naming the file: `DatasetFormatError` (a ValueError) for annotation
problems (malformed line, id listed twice, box outside the image, missing annotation),
`ImageReadError` (an OSError) for missing or unreadable images.
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np
import torch
from torch.utils.data import Dataset

from .boxes import mirror_boxes
from .imageio import ImageReadError, read_image_rgb, read_label_map, read_mask, resize

BOX_TOLERANCE = 1.0  # pixels: boxes may reach one pixel past the border (rounding), not more


class DatasetFormatError(ValueError):
    """An annotation file that does not follow its format."""


# ----------------------------------------------------------------------------------------------
# Shared machinery

class Record:
    """What one sample is made of. Boxes are in pixels (x, y, w, h), x, y the top-left corner."""
    __slots__ = ("image", "mask", "box", "label", "parts", "instances", "source")

    def __init__(self, image, mask=None, box=None, label=-1, parts=None, instances=None, source=""):
        self.image, self.mask, self.box, self.label = image, mask, box, label
        self.parts, self.instances, self.source = parts, instances, source
        # instances: [(mask source, box, label)], mask source = path or (label map path, value)


def _check_box(box, width, height, where):
    x, y, w, h = box
    if not (w > 0 and h > 0):
        raise DatasetFormatError(f"{where}: box {tuple(box)} has a non-positive size")
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise DatasetFormatError(f"{where}: box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) lies outside the "
                                 f"{width}x{height} image")
    x0, y0 = max(x, 0.0), max(y, 0.0)
    return (x0, y0, min(x + w, width) - x0, min(y + h, height) - y0)


def _normalise(box, width, height):
    x, y, w, h = box
    return np.array([x / width, y / height, w / width, h / height], np.float32)


class SampleDataset(Dataset):
    """Base class: `self.records` -> sample dicts at `size` x `size`, optional random flip."""
    has_masks = True
    has_parts = False
    max_instances = 0

    def __init__(self, size=128, flip=False):
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size, self.flip = int(size), bool(flip)
        self.records: list[Record] = []
        self.classes: list[str] = []

    def __len__(self):
        return len(self.records)

    def _mask(self, rec, h, w):
        if rec.mask is None:
            return None
        m = read_mask(rec.mask)
        if m.shape != (h, w):
            raise DatasetFormatError(f"mask {rec.mask} is {m.shape[1]}x{m.shape[0]} but its image "
                                     f"{rec.image} is {w}x{h}")
        return m

    def _instance(self, src, h, w, cache):
        if isinstance(src, tuple):  # (label map path, value)
            path, value = src
            if path not in cache:
                cache[path] = read_label_map(path)
            lm = cache[path]
            m = (lm == value).astype(np.float32)
        else:
            path, m = src, read_mask(src)
        if m.shape != (h, w):
            raise DatasetFormatError(f"instance mask {path} is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
        return m

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        rec = self.records[index]
        img = read_image_rgb(rec.image)
        h, w = img.shape[:2]
        mask = self._mask(rec, h, w)
        box = None if rec.box is None else _check_box(rec.box, w, h, rec.source or rec.image)
        has_mask = mask is not None
        if mask is None:
            mask = np.zeros((h, w), np.float32)
            if box is None:
                mask[:] = 1.0
            else:  # the box rectangle: the best stand-in where the format has no masks
                x, y, bw, bh = box
                mask[int(round(y)):int(round(y + bh)), int(round(x)):int(round(x + bw))] = 1.0
        if box is None:
            box = (0.0, 0.0, float(w), float(h))
        flipped = self.flip and bool(torch.rand(()) < 0.5)
        s = self.size
        out = {}
        img = resize(img, s, "image")
        mask = resize(mask, s, "mask")
        nbox = _normalise(box, w, h)
        if flipped:
            img, mask = img[:, ::-1], mask[:, ::-1]
            nbox = mirror_boxes(nbox)
        out["image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        out["mask"] = torch.from_numpy(np.ascontiguousarray(mask))[None]
        out["box"] = torch.from_numpy(nbox)
        out["label"] = torch.tensor(rec.label, dtype=torch.int64)
        out["index"] = torch.tensor(index, dtype=torch.int64)
        out["has_mask"] = torch.tensor(has_mask)
        out["flipped"] = torch.tensor(flipped)
        if self.has_parts:
            parts = read_label_map(rec.parts)
            if parts.shape != (h, w):
                raise DatasetFormatError(f"part map {rec.parts} is {parts.shape[1]}x{parts.shape[0]}, image {w}x{h}")
            parts = resize(parts, s, "labels")
            out["parts"] = torch.from_numpy(np.ascontiguousarray(parts[:, ::-1] if flipped else parts))
        if self.max_instances:
            m_out = torch.zeros(self.max_instances, s, s)
            b_out = torch.zeros(self.max_instances, 4)
            l_out = torch.full((self.max_instances,), -1, dtype=torch.int64)
            cache = {}
            for k, (src, ibox, ilabel) in enumerate(rec.instances[:self.max_instances]):
                m = resize(self._instance(src, h, w, cache), s, "mask")
                ib = _normalise(_check_box(ibox, w, h, rec.source), w, h)
                if flipped:
                    m = m[:, ::-1]
                    ib[0] = 1.0 - ib[0] - ib[2]
                m_out[k] = torch.from_numpy(np.ascontiguousarray(m))
                b_out[k] = torch.from_numpy(ib)
                l_out[k] = ilabel
            out["instance_masks"], out["instance_boxes"], out["instance_labels"] = m_out, b_out, l_out
            out["num_instances"] = torch.tensor(min(len(rec.instances), self.max_instances))
        return out

    def validate(self):
        """Read every sample once (raises on the first bad file); returns the count."""
        for i in range(len(self)):
            self[i]
        return len(self)


def _read_table(path, columns, kinds):
    """Parse a whitespace-separated text file with `columns` columns (the last may hold spaces
    when its kind is 'rest'). Returns a list of tuples; blank lines are skipped."""
    if not os.path.isfile(path):
        raise DatasetFormatError(f"annotation file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(None, columns - 1) if kinds[-1] == "rest" else line.split()
            if len(parts) != columns:
                raise DatasetFormatError(f"{path}:{n}: expected {columns} columns, got {len(parts)}: {line!r}")
            try:
                rows.append(tuple(int(p) if k == "int" else float(p) if k == "float" else p
                                  for p, k in zip(parts, kinds)))
            except ValueError:
                raise DatasetFormatError(f"{path}:{n}: cannot parse {line!r} as {' '.join(kinds)}") from None
    return rows


def _by_id(path, rows):
    """{id: rest of the row}; an id listed twice is an error naming the file."""
    table = {}
    for row in rows:
        if row[0] in table:
            raise DatasetFormatError(f"{path}: id {row[0]} is listed twice")
        table[row[0]] = row[1:] if len(row) > 2 else row[1]
    return table


def _require_files(paths, what):
    missing = [p for p in paths if p is not None and not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ImageReadError(f"{len(missing)} {what} file(s) not found: {', '.join(missing[:3])}{more}")


def _split_flag(split, is_train):
    if split == "all":
        return True
    return bool(is_train) == (split == "train")


def _check_split(split):
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")


# ----------------------------------------------------------------------------------------------
# CUB-200-2011 (and the synthetic birds, which use its layout)

class CUB200(SampleDataset):
    """CUB-200-2011 as distributed: root holds images.txt, image_class_labels.txt, classes.txt,
    train_test_split.txt, bounding_boxes.txt, images/ and segmentations/ (the separate
    segmentations download, unpacked into root). Boxes are CUB's pixel (x, y, w, h).

    `masks`: folder of masks mirroring images/ with .png names ('segmentations', or e.g.
    'segmentations_pred'; `mask_ext` their extension), or None for box-rectangle masks. `boxes_file`: e.g.
    'bounding_boxes_pred.txt' (same format). Part maps (part_masks/) are read when present
    (synthetic birds) unless parts=False."""

    def __init__(self, root, split="train", size=128, flip=False, masks="segmentations",
                 boxes_file="bounding_boxes.txt", parts=None, mask_ext=".png"):
        super().__init__(size, flip)
        _check_split(split)
        self.root = root = os.fspath(root)
        if not os.path.isdir(root):
            raise DatasetFormatError(f"CUB root folder not found: {root}")
        j = lambda *p: os.path.join(root, *p)  # noqa: E731
        images = _by_id(j("images.txt"), _read_table(j("images.txt"), 2, ("int", "rest")))
        labels = _by_id(j("image_class_labels.txt"), _read_table(j("image_class_labels.txt"), 2, ("int", "int")))
        splits = _by_id(j("train_test_split.txt"), _read_table(j("train_test_split.txt"), 2, ("int", "int")))
        boxes = None
        if boxes_file:
            boxes = _by_id(j(boxes_file), _read_table(j(boxes_file), 5, ("int", "float", "float", "float", "float")))
        classes = _by_id(j("classes.txt"), _read_table(j("classes.txt"), 2, ("int", "rest")))
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", splits),
                            (boxes_file, boxes)):
            if table is None:
                continue
            missing = sorted(set(images) - set(table))
            if missing:
                raise DatasetFormatError(f"{j(name)}: no entry for image id {missing[0]} "
                                         f"({len(missing)} id(s) missing)")
        for iid, cid in labels.items():
            if cid not in classes:
                raise DatasetFormatError(f"{j('image_class_labels.txt')}: image {iid} has class {cid}, "
                                         f"which classes.txt does not list")
        self.class_ids = sorted(classes)
        self.classes = [classes[c] for c in self.class_ids]
        label_of = {c: i for i, c in enumerate(self.class_ids)}  # CUB's 1..200 -> 0..199
        if parts is None:
            parts = os.path.isdir(j("part_masks"))
        self.has_parts = bool(parts)
        self.has_masks = masks is not None
        self.ids = []
        for iid in sorted(images):
            if not _split_flag(split, splits[iid]):
                continue
            rel = images[iid]
            stem = os.path.splitext(rel)[0]
            self.ids.append(iid)
            self.records.append(Record(
                image=j("images", rel),
                mask=j(masks, stem + mask_ext) if masks else None,
                box=tuple(boxes[iid]) if boxes else None,
                label=label_of[labels[iid]],
                parts=j("part_masks", stem + ".png") if parts else None,
                source=f"{j(boxes_file) if boxes_file else j('images.txt')} (image id {iid}, {rel})"))
        _require_files([r.image for r in self.records], "image")
        _require_files([r.mask for r in self.records], "mask")
        if self.has_parts:
            _require_files([r.parts for r in self.records], "part map")


# ----------------------------------------------------------------------------------------------
# Stanford Cars (devkit annotations)

def _loadmat(path):
    try:
        import scipy.io
    except ImportError:  # pragma: no cover - scipy is in requirements.txt
        raise ImportError("reading Stanford Cars .mat files needs scipy (pip install scipy)") from None
    if not os.path.isfile(path):
        raise DatasetFormatError(f"annotation file not found: {path}")
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except Exception as exc:
        raise DatasetFormatError(f"cannot read MATLAB file {path}: {exc}") from None


def _find(root, names):
    for name in names:
        p = os.path.join(root, name)
        if os.path.isfile(p):
            return p
    return os.path.join(root, names[0])


class StanfordCars(SampleDataset):
    """Stanford Cars-196: root holds cars_train/, cars_test/ (images) and the devkit
    (devkit/cars_train_annos.mat, devkit/cars_meta.mat) plus cars_test_annos_withlabels.mat (in
    root or devkit/). Boxes bbox_x1..bbox_y2 are 1-based inclusive pixel corners (MATLAB); class
    is 1-based. No masks: `mask` is the box rectangle and `has_mask` False."""
    has_masks = False

    def __init__(self, root, split="train", size=128, flip=False):
        super().__init__(size, flip)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.root = root = os.fspath(root)
        if split == "train":
            annos = _find(root, ["devkit/cars_train_annos.mat", "cars_train_annos.mat"])
        else:
            annos = _find(root, ["cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"])
        meta = _find(root, ["devkit/cars_meta.mat", "cars_meta.mat"])
        image_dir = os.path.join(root, f"cars_{split}")
        if os.path.isdir(os.path.join(image_dir, f"cars_{split}")):  # some archives nest the folder
            image_dir = os.path.join(image_dir, f"cars_{split}")
        m = _loadmat(meta)
        if "class_names" not in m:
            raise DatasetFormatError(f"{meta}: no 'class_names' variable")
        self.classes = [str(c) for c in np.atleast_1d(m["class_names"])]
        a = _loadmat(annos)
        if "annotations" not in a:
            raise DatasetFormatError(f"{annos}: no 'annotations' variable")
        ann = np.atleast_1d(a["annotations"])
        fields = ann.dtype.names or ()
        need = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
        lacking = [f for f in need if f not in fields]
        if lacking:
            raise DatasetFormatError(f"{annos}: annotations lack field(s) {', '.join(lacking)} "
                                     f"(has {', '.join(fields)})")
        seen = set()
        for n, e in enumerate(ann):
            fname = str(e["fname"])
            if fname in seen:
                raise DatasetFormatError(f"{annos}: image {fname} is listed twice")
            seen.add(fname)
            x1, y1, x2, y2 = (float(e[k]) for k in need[:4])
            cls = int(e["class"])
            if not 1 <= cls <= len(self.classes):
                raise DatasetFormatError(f"{annos}: {fname} has class {cls}, outside 1..{len(self.classes)}")
            self.records.append(Record(image=os.path.join(image_dir, fname), box=(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1),
                                       label=cls - 1, source=f"{annos} (annotation {n + 1}, {fname})"))
        _require_files([r.image for r in self.records], "image")


# ----------------------------------------------------------------------------------------------
# Virtual KITTI 2

class VirtualKitti2(SampleDataset):
    """Virtual KITTI 2: root/SceneXX/<variation>/frames/rgb/Camera_<c>/rgb_%05d.jpg, instance maps
    frames/instanceSegmentation/Camera_<c>/instancegt_%05d.png (value = trackID + 1, 0 =
    background), textgt/bbox.txt ("frame cameraID trackID left right top bottom number_pixels
    truncation_ratio occupancy_ratio isMoving", inclusive pixel bounds) and textgt/info.txt
    ("trackID label model color") for the labels. The foreground `mask` is all instances, `box`
    the largest instance's; the instances (largest first) fill instance_*."""

    def __init__(self, root, scenes=None, variation="clone", camera=0, size=128, flip=False,
                 max_instances=8, min_pixels=1):
        super().__init__(size, flip)
        self.root = root = os.fspath(root)
        self.max_instances = int(max_instances)
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {max_instances}")
        if scenes is None:
            scenes = sorted(d for d in os.listdir(root) if re.fullmatch(r"Scene\d+", d)) if os.path.isdir(root) else []
        if not scenes:
            raise DatasetFormatError(f"no SceneXX folders in {root}")
        scene_rows = {}
        labels = set()
        for scene in scenes:
            base = os.path.join(root, scene, variation)
            bbox_path = os.path.join(base, "textgt", "bbox.txt")
            rows = self._read_bbox(bbox_path)
            info_path = os.path.join(base, "textgt", "info.txt")
            info = self._read_info(info_path) if os.path.isfile(info_path) else {}
            labels.update(info.values())
            scene_rows[scene] = (base, bbox_path, rows, info)
        self.classes = sorted(labels) or ["object"]
        label_of = {c: i for i, c in enumerate(self.classes)}
        for scene in scenes:
            base, bbox_path, rows, info = scene_rows[scene]
            rgb_dir = os.path.join(base, "frames", "rgb", f"Camera_{camera}")
            frames = sorted(glob.glob(os.path.join(rgb_dir, "rgb_*.jpg")))
            if not frames:
                raise DatasetFormatError(f"no rgb_*.jpg frames in {rgb_dir}")
            for path in frames:
                frame = int(re.search(r"rgb_(\d+)\.jpg$", path).group(1))
                inst_path = os.path.join(base, "frames", "instanceSegmentation", f"Camera_{camera}",
                                         f"instancegt_{frame:05d}.png")
                objs = sorted((r for r in rows.get((frame, camera), []) if r[6] >= min_pixels),
                              key=lambda r: -r[6])
                instances = [((inst_path, r[0] + 1), (r[1], r[3], r[2] - r[1] + 1, r[4] - r[3] + 1),
                              label_of.get(info.get(r[0]), 0)) for r in objs]
                self.records.append(Record(
                    image=path, mask=inst_path, box=instances[0][1] if instances else None,
                    label=instances[0][2] if instances else -1, instances=instances,
                    source=f"{bbox_path} (frame {frame}, camera {camera})"))
        _require_files([r.image for r in self.records], "image")
        _require_files([r.mask for r in self.records], "instance map")

    @staticmethod
    def _read_bbox(path):
        if not os.path.isfile(path):
            raise DatasetFormatError(f"annotation file not found: {path}")
        out = {}
        with open(path) as f:
            header = f.readline().split()
            cols = ["frame", "cameraID", "trackID", "left", "right", "top", "bottom", "number_pixels"]
            if header[:len(cols)] != cols:
                raise DatasetFormatError(f"{path}: header {' '.join(header)!r} does not start with {' '.join(cols)!r}")
            for n, line in enumerate(f, 2):
                p = line.split()
                if not p:
                    continue
                if len(p) < len(cols):
                    raise DatasetFormatError(f"{path}:{n}: expected at least {len(cols)} columns: {line.strip()!r}")
                try:
                    frame, cam, track, left, right, top, bottom, npix = (int(float(v)) for v in p[:8])
                except ValueError:
                    raise DatasetFormatError(f"{path}:{n}: cannot parse {line.strip()!r}") from None
                lst = out.setdefault((frame, cam), [])
                if any(r[0] == track for r in lst):
                    raise DatasetFormatError(f"{path}:{n}: track {track} is listed twice for frame {frame}, camera {cam}")
                lst.append((track, left, right, top, bottom, 0, npix))
        # (track, left, right, top, bottom, _, pixels): index 6 = pixels
        return out

    @staticmethod
    def _read_info(path):
        info = {}
        with open(path) as f:
            f.readline()  # header: trackID label model color
            for n, line in enumerate(f, 2):
                p = line.split()
                if not p:
                    continue
                try:
                    track = int(p[0])
                except ValueError:
                    raise DatasetFormatError(f"{path}:{n}: cannot parse {line.strip()!r}") from None
                if track in info:
                    raise DatasetFormatError(f"{path}:{n}: track {track} is listed twice")
                info[track] = p[1] if len(p) > 1 else "object"
        return info

    def _mask(self, rec, h, w):
        lm = read_label_map(rec.mask)
        if lm.shape != (h, w):
            raise DatasetFormatError(f"instance map {rec.mask} is {lm.shape[1]}x{lm.shape[0]}, image {w}x{h}")
        return (lm > 0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Synthetic scenes (sgfast make-dataset scenes)

class SyntheticScenes(SampleDataset):
    """The multi-object scenes of `sgfast make-dataset scenes` (docs/data.md)."""

    def __init__(self, root, split="train", size=128, flip=False, max_instances=4):
        super().__init__(size, flip)
        _check_split(split)
        self.root = root = os.fspath(root)
        self.max_instances = int(max_instances)
        j = lambda *p: os.path.join(root, *p)  # noqa: E731
        images = _by_id(j("images.txt"), _read_table(j("images.txt"), 2, ("int", "rest")))
        splits = _by_id(j("train_test_split.txt"), _read_table(j("train_test_split.txt"), 2, ("int", "int")))
        classes = _by_id(j("classes.txt"), _read_table(j("classes.txt"), 2, ("int", "rest")))
        self.class_ids = sorted(classes)
        self.classes = [classes[c] for c in self.class_ids]
        label_of = {c: i for i, c in enumerate(self.class_ids)}
        inst = {}
        for row in _read_table(j("instances.txt"), 7, ("int", "int", "float", "float", "float", "float", "int")):
            iid, k = row[0], row[1]
            if iid not in images:
                raise DatasetFormatError(f"{j('instances.txt')}: image id {iid} is not in images.txt")
            lst = inst.setdefault(iid, {})
            if k in lst:
                raise DatasetFormatError(f"{j('instances.txt')}: instance {k} of image {iid} is listed twice")
            if row[6] not in label_of:
                raise DatasetFormatError(f"{j('instances.txt')}: class {row[6]} is not in classes.txt")
            lst[k] = (row[2:6], label_of[row[6]])
        self.ids = []
        for iid in sorted(images):
            if iid not in splits:
                raise DatasetFormatError(f"{j('train_test_split.txt')}: no entry for image id {iid}")
            if not _split_flag(split, splits[iid]):
                continue
            stem = os.path.splitext(images[iid])[0]
            items = sorted(inst.get(iid, {}).items(), key=lambda kv: -kv[1][0][2] * kv[1][0][3])
            instances = [(j("instances", f"{stem}_{k}.png"), tuple(b), lab) for k, (b, lab) in items]
            self.ids.append(iid)
            self.records.append(Record(
                image=j("images", images[iid]), mask=j("segmentations", stem + ".png"),
                box=instances[0][1] if instances else None, label=instances[0][2] if instances else -1,
                instances=instances, source=f"{j('instances.txt')} (image id {iid})"))
        _require_files([r.image for r in self.records], "image")
        _require_files([r.mask for r in self.records], "mask")
        _require_files([p for r in self.records for p, _, _ in r.instances], "instance mask")


# ----------------------------------------------------------------------------------------------
# A plain folder of images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolder(SampleDataset):
    """Every image under `root` (recursively, sorted). No annotations: label -1, the mask the
    whole image (has_mask False) and the box the whole image."""
    has_masks = False

    def __init__(self, root, size=128, flip=False, extensions=IMAGE_EXTENSIONS):
        super().__init__(size, flip)
        self.root = root = os.fspath(root)
        if not os.path.isdir(root):
            raise DatasetFormatError(f"image folder not found: {root}")
        paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                       if os.path.isfile(p) and p.lower().endswith(tuple(extensions)))
        if not paths:
            raise DatasetFormatError(f"no images ({', '.join(extensions)}) under {root}")
        self.records = [Record(image=p, source=p) for p in paths]


def to_tensors(dataset, keys=("image", "mask", "box", "label"), progress=False):
    """Read every sample once and stack `keys` into tensors (small data sets held in memory for
    fast training): {key: tensor [N, ...]}."""
    if len(dataset) == 0:
        raise ValueError("to_tensors: the dataset is empty")
    items = range(len(dataset))
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="loading", unit="img")
    cols = {k: [] for k in keys}
    for i in items:
        sample = dataset[i]
        for k in keys:
            if k not in sample:
                raise KeyError(f"to_tensors: samples have no {k!r} (keys: {', '.join(sample)})")
            cols[k].append(sample[k])
    return {k: torch.stack(v) for k, v in cols.items()}


def open_dataset(kind, root, **kwargs):
    """`kind` in cub / birds (same layout), cars, vkitti2, scenes, folder."""
    table = {"cub": CUB200, "birds": CUB200, "cars": StanfordCars, "vkitti2": VirtualKitti2,
             "scenes": SyntheticScenes, "folder": ImageFolder}
    if kind not in table:
        raise ValueError(f"unknown dataset kind {kind!r}; one of {', '.join(table)}")
    return table[kind](root, **kwargs)


__all__ = ["DatasetFormatError", "ImageReadError", "SampleDataset", "CUB200", "StanfordCars",
           "VirtualKitti2", "SyntheticScenes", "ImageFolder", "open_dataset", "to_tensors", "Record"]
