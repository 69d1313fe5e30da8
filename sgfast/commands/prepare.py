"""`sgfast prepare`: compute S (soft mask), the box and G (GBP map) of every image into one file.

Predicted masks and boxes by default (Ψ, as the paper does); true ones with --ground-truth. The
expert always runs on the masked box crop (authors' preprocess.py). Images are read at
max(--size, the expert's training image size) so the expert sees the detail it was trained on;
image, mask and map are then resized to the canvas --size. Output format: docs/prepared.md
(sgfast.data.prepared; read it with PreparedDataset).
"""
from __future__ import annotations

import os
import sys
import time

import torch

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import at_least, check_threads, reason, refuse_ignored, writable_file
from sgfast.data.prepared import FORMAT_VERSION, header_bytes, record_dtype, to_records
from sgfast.io import atomic_path


def configure(parser):
    parser.add_argument("dataset", help="dataset folder in the CUB-200-2011 layout")
    parser.add_argument("--segmenter", default=None, metavar="W",
                        help="Ψ weights (train-segmenter --export); needed unless --ground-truth")
    parser.add_argument("--expert", required=True, metavar="W",
                        help="expert weights (train-expert --export)")
    parser.add_argument("--size", type=int, default=128, help="canvas side (default 128)")
    parser.add_argument("--ground-truth", action="store_true",
                        help="use the dataset's true masks and boxes instead of Ψ's predictions")
    parser.add_argument("--instances", action="store_true",
                        help="one record per instance of a multi-instance dataset (make-dataset scenes, "
                             "Virtual KITTI 2): its true mask and box and G of it, for training on one "
                             "instance per episode (paper Sec. 5); implies true masks")
    parser.add_argument("--split", choices=["all", "train", "test"], default="all",
                        help="which images (default all; each record says its split)")
    parser.add_argument("--out", required=True, help="output file (e.g. birds128.sgprep)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="at most N images per split")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads, >= 1")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--no-progress", action="store_true")


def open_instance_split(dataset_dir, split, size):
    """A split of a multi-instance dataset at `size`: `make-dataset scenes` (instances.txt) or
    Virtual KITTI 2 (SceneXX folders; no test split: everything is "train", and training holds out
    a fraction of the images). Items carry image_id. UsageError for anything else."""
    from sgfast.data import DatasetFormatError, ImageReadError
    from sgfast.data.datasets import SyntheticScenes, VirtualKitti2

    if not os.path.isdir(dataset_dir):
        raise UsageError(f"dataset folder not found: {dataset_dir}")
    try:
        if os.path.isfile(os.path.join(dataset_dir, "instances.txt")):
            ds = SyntheticScenes(dataset_dir, split=split, size=size)
        elif any(name.startswith("Scene") for name in os.listdir(dataset_dir)):
            ds = VirtualKitti2(dataset_dir, size=size)
            if split == "test":
                ds.records, ds.ids = [], []
        else:
            raise UsageError(f"--instances needs a multi-instance dataset (make-dataset scenes, Virtual KITTI 2); "
                             f"{dataset_dir} has neither instances.txt nor SceneXX folders")
    except (DatasetFormatError, ImageReadError) as exc:
        raise UsageError(f"{dataset_dir}: {reason(exc)}") from None
    return ImageIds(ds)


class ImageIds(torch.utils.data.Dataset):
    """A dataset whose items also carry their image id (the dataset's, or the position)."""

    def __init__(self, ds):
        self.ds, self.records, self.max_instances = ds, ds.records, ds.max_instances
        self.ids = list(getattr(ds, "ids", None) or range(len(ds)))
        self.class_names = list(getattr(ds, "classes", []))
        self.num_classes = len(self.class_names)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        item = self.ds[i]
        item["image_id"] = int(self.ids[i])
        return item


@reports_errors("prepare")
def run(args):
    from sgfast.data.tensor_images import resize_square
    from sgfast.models.expert import load_expert
    from sgfast.models.gbp import gbp_maps
    from sgfast.device import pick_device
    from sgfast.data.cub_split import open_split
    from sgfast.data import ImageReadError

    check_threads(args.threads)
    at_least("size", args.size, 8)
    at_least("batch_size", args.batch_size, 1)
    at_least("limit", args.limit, 1)
    if args.ground_truth or args.instances:
        refuse_ignored(args, ["segmenter"], "with --ground-truth or --instances (the true masks and boxes are used)")
    elif not args.segmenter:
        raise UsageError("--segmenter W is required (or pass --ground-truth)")
    device = pick_device(args.device)
    for flag, path in (("--segmenter", args.segmenter), ("--expert", args.expert)):
        if path and not os.path.isfile(path):
            raise UsageError(f"{flag}: weights file not found: {path}")
    if not os.path.isdir(args.dataset):
        raise UsageError(f"dataset folder not found: {args.dataset}")
    writable_file("--out", args.out)
    try:
        expert, expert_meta = load_expert(args.expert)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--expert: {reason(exc)}") from None
    expert.to(device)
    segmenter, seg_meta = None, {}
    if not (args.ground_truth or args.instances):
        from sgfast.models.segmenter import load_segmenter, predict
        try:
            segmenter, seg_meta = load_segmenter(args.segmenter)
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"--segmenter: {reason(exc)}") from None
        segmenter.to(device)

    src = max(args.size, int(expert_meta.get("image_size", args.size)))
    splits = ["train", "test"] if args.split == "all" else [args.split]
    if args.instances:
        sets = [(s, ds) for s in splits if len(ds := open_instance_split(args.dataset, s, src))]
        if not sets:
            raise UsageError(f"{args.dataset}: no images in split {args.split}")
    else:
        sets = [(s, open_split(args.dataset, s, src)) for s in splits]
    counts = [len(ds) if args.limit is None else min(args.limit, len(ds)) for _, ds in sets]
    # records: one per image, or one per instance (the dataset lists them, no image is read to count)
    count = sum(counts) if not args.instances else sum(
        min(len(r.instances), ds.max_instances) for (_, ds), n in zip(sets, counts) for r in ds.records[:n])
    first = sets[0][1]
    class_names = list(getattr(first, "class_names", []))
    header = {
        "format": "sgfast-prepared", "version": FORMAT_VERSION, "count": count, "size": args.size,
        "dtype": record_dtype(args.size).descr, "ground_truth": bool(args.ground_truth or args.instances),
        "instances": bool(args.instances),
        "dataset": os.path.abspath(args.dataset), "source_size": src,
        "class_names": class_names,
        "num_classes": int(getattr(first, "num_classes", len(class_names))),
        "segmenter": None if (args.ground_truth or args.instances) else {
            "path": os.path.abspath(args.segmenter), "config": seg_meta.get("config"),
            "test_metrics": seg_meta.get("test_metrics")},
        "expert": {"path": os.path.abspath(args.expert), "config": expert_meta.get("config"),
                   "test_metrics": expert_meta.get("test_metrics")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(counts), desc="prepare", unit="img", dynamic_ncols=True)
    agree = 0
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            f.write(header_bytes(header))
            for (split, ds), n in zip(sets, counts):
                for s in range(0, n, args.batch_size):
                    try:
                        items = [ds[i] for i in range(s, min(n, s + args.batch_size))]
                    except ImageReadError as exc:  # nothing is written: the output appears only when complete
                        raise UsageError(f"{args.dataset}: {reason(exc)}") from None
                    if args.instances:  # one row per instance: the image repeated with each instance
                        items = [dict(image=it["image"], mask=it["instance_masks"][k][None],
                                      box=it["instance_boxes"][k], label=it["instance_labels"][k],
                                      image_id=it["image_id"])
                                 for it in items for k in range(int(it["num_instances"]))]
                        if not items:
                            continue
                    images = torch.stack([it["image"] for it in items]).to(device)
                    labels = [int(it["label"]) for it in items]
                    ids = [int(it["image_id"]) for it in items]
                    if args.ground_truth or args.instances:
                        masks = torch.stack([it["mask"] for it in items]).to(device)
                        boxes = torch.stack([it["box"] for it in items]).to(device).float()
                    else:
                        masks, boxes = predict(segmenter, images)
                    maps, pred = gbp_maps(expert, images, masks, boxes)
                    agree += sum(int(p) == l for p, l in zip(pred.tolist(), labels))
                    rec = to_records(args.size, resize_square(images, args.size), resize_square(masks, args.size),
                                     resize_square(maps, args.size), boxes, labels, pred.tolist(), ids,
                                     [split == "train"] * len(items))
                    f.write(rec.tobytes())
                    if bar:
                        bar.update(len(items) if not args.instances else len({it["image_id"] for it in items}))
    if bar:
        bar.close()
    what = f"{count} instances of {sum(counts)} images" if args.instances else f"{count} images"
    print(f"wrote {args.out}: {what} at {args.size}x{args.size} "
          f"({'true' if args.ground_truth or args.instances else 'predicted'} masks and boxes); "
          f"expert accuracy on these inputs {agree / max(count, 1):.4f}", file=sys.stderr)
    return 0
