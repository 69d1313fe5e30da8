"""Shared machinery of `sgfast train-segmenter` and `sgfast train-expert`.

Both train on a dataset in the CUB-200-2011 layout (real CUB or `sgfast make-dataset birds`). The
split is decoded once into uint8 tensors held in memory (a few hundred MB at most for the sizes
these small models use), so an epoch costs no image decoding; flips and box jitter are applied to
the tensors.

Checkpoints (OUT/checkpoint.pt, written atomically, read without pickle) hold the model, the
optimizer, the step, the config and the sampling generator's state, and are only taken between
steps, so --resume continues the same stream of batches.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time

import torch

from sgfast.data.boxes import mirror_boxes, mirror_rows
from sgfast.io import load_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"


def add_common_args(parser, default_out, defaults):
    parser.add_argument("dataset", help="dataset folder in the CUB-200-2011 layout "
                        "(e.g. made by `sgfast make-dataset birds`)")
    parser.add_argument("--epochs", type=float, default=defaults["epochs"],
                        help=f"passes over the train split (default {defaults['epochs']}); --steps wins")
    parser.add_argument("--steps", type=int, default=None, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                        help=f"images per step (default {defaults['batch_size']})")
    parser.add_argument("--lr", type=float, default=defaults["lr"],
                        help=f"peak Adam learning rate, cosine-decayed (default {defaults['lr']})")
    parser.add_argument("--weight-decay", type=float, default=defaults.get("weight_decay", 0.0))
    parser.add_argument("--out", default=default_out,
                        help=f"folder for checkpoint.pt (default {default_out})")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="also write the final fp16 weights (with config and test metrics) here")
    parser.add_argument("--log-dir", default=None, help="TensorBoard folder (off by default)")
    parser.add_argument("--ckpt-every", type=int, default=200, help="checkpoint every N steps")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="evaluate on the test split every N steps (0 = only at the end)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="continue from OUT/checkpoint.pt (or CKPT)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batch order")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use at most N images per split (quick experiments and tests)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def conv_memory_format(device):
    """channels_last on CPU: oneDNN's NHWC convolutions are ~1.5x faster than NCHW for these small
    networks."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


class NoParts(Exception):
    """The dataset has no part masks."""


def distinguishing_labels(dataset_dir):
    """Part-map labels of the distinguishing parts, from part_masks.txt ("id name flag" lines)."""
    path = os.path.join(dataset_dir, "part_masks.txt")
    if not os.path.isfile(path):
        raise NoParts(path)
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    return [int(r[0]) for r in rows if len(r) >= 3 and r[2] == "1"]


class _Split(torch.utils.data.Dataset):
    """A CUB-layout split with the dataset's image id per item, and (parts=True) the part map
    turned into a [1, S, S] mask of the distinguishing parts."""

    def __init__(self, dataset_dir, split, size, parts):
        from sgfast.data import CUB200
        self.ds = CUB200(dataset_dir, split=split, size=size, parts=parts or None)
        self.distinguishing = distinguishing_labels(dataset_dir) if parts else None
        if parts and not self.ds.has_parts:
            raise NoParts(dataset_dir)
        self.class_names = list(self.ds.classes)
        self.num_classes = len(self.class_names)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = self.ds[i]
        item["image_id"] = int(self.ds.ids[i])
        if self.distinguishing is not None:
            lab = torch.as_tensor(item["parts"])
            item["parts"] = torch.isin(lab, torch.tensor(self.distinguishing, dtype=lab.dtype)).float()[None]
        return item


def open_split(dataset_dir, split, size, parts=False):
    """One split ("train", "test", "all") of a CUB-layout dataset (sgfast.data.CUB200) at size."""
    from sgfast.data import DatasetFormatError, ImageReadError
    if not os.path.isdir(dataset_dir):
        raise SystemExit(f"sgfast: dataset folder not found: {dataset_dir}")
    try:
        return _Split(dataset_dir, split, size, parts)
    except (DatasetFormatError, ImageReadError) as exc:
        raise SystemExit(f"sgfast: {exc}") from exc


def load_split(dataset_dir, split, size, limit=None, parts=False, progress=True):
    """Decode a split into memory: dict(images uint8 [N, 3, S, S], masks uint8 [N, 1, S, S],
    boxes float [N, 4], labels long [N], image_ids long [N], num_classes, class_names
    [, parts uint8 [N, 1, S, S]: union of the distinguishing parts])."""
    ds = open_split(dataset_dir, split, size, parts)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise SystemExit(f"sgfast: the {split} split of {dataset_dir} is empty")
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(n, 1, size, size, dtype=torch.uint8)
    part = torch.empty(n, 1, size, size, dtype=torch.uint8) if parts else None
    boxes = torch.empty(n, 4)
    labels = torch.empty(n, dtype=torch.long)
    ids = torch.empty(n, dtype=torch.long)
    it = range(n)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"load {split}", leave=False, dynamic_ncols=True)
    for i in it:
        s = ds[i]
        images[i] = (s["image"] * 255 + 0.5).clamp(0, 255).to(torch.uint8)
        masks[i] = (s["mask"] * 255 + 0.5).clamp(0, 255).to(torch.uint8)
        boxes[i] = s["box"]
        labels[i] = int(s["label"])
        ids[i] = int(s["image_id"])
        if parts:
            if s.get("parts") is None:
                raise NoParts(dataset_dir)
            part[i] = (torch.as_tensor(s["parts"]).float().reshape(1, size, size) * 255 + 0.5
                       ).clamp(0, 255).to(torch.uint8)
    out = dict(images=images, masks=masks, boxes=boxes, labels=labels, image_ids=ids,
               num_classes=getattr(ds, "num_classes", int(labels.max()) + 1),
               class_names=list(getattr(ds, "class_names", [])))
    if parts:
        out["parts"] = part
    return out


def to_float(u8):
    return u8.float() / 255


def cosine_lr(step, total, peak, warmup=None):
    """Linear warm-up over the first 3% (at least 1 step), then cosine decay to 2% of the peak."""
    warmup = max(1, int(0.03 * total)) if warmup is None else warmup
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


class BatchOrder:
    """Epoch-wise random permutations from a checkpointable generator."""

    def __init__(self, n, batch_size, seed):
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = None, n

    def next(self):
        if self.pos + self.batch_size > self.n and self.perm is not None and self.pos < self.n \
                and self.n >= self.batch_size:
            self.pos = self.n  # drop the ragged tail so every batch has the same size
        if self.pos >= self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self):
        return {"gen": self.gen.get_state(), "perm": self.perm if self.perm is not None else torch.empty(0, dtype=torch.long),
                "pos": self.pos}

    def load_state_dict(self, s):
        self.gen.set_state(s["gen"])
        self.perm = s["perm"] if s["perm"].numel() else None
        self.pos = int(s["pos"])


def optimiser_step(opt, loss, lr):
    """One update of `loss` at learning rate `lr` (the schedule's value for this step); returns lr."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return lr


def flip_batch(images, masks, boxes, which):
    """Horizontally flip the samples selected by `which` [B] bool; x of a box becomes 1 - x - w."""
    return (*mirror_rows(which, images, masks), mirror_boxes(boxes, which))


def draw_batch(data, order):
    """The next training batch of a split (load_split): (indices, images and masks as float in
    [0, 1], boxes), each sample flipped horizontally with probability 1/2."""
    idx = order.next()
    x, m = to_float(data["images"][idx]), to_float(data["masks"][idx])
    return (idx, *flip_batch(x, m, data["boxes"][idx], torch.rand(len(idx)) < 0.5))


def total_steps(args, n_train):
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit(f"sgfast: --steps must be >= 1, got {args.steps}")
        return args.steps
    if args.epochs <= 0:
        raise SystemExit(f"sgfast: --epochs must be > 0, got {args.epochs}")
    return max(1, math.ceil(args.epochs * n_train / args.batch_size))


def resume_path(args):
    if args.resume is True:
        return os.path.join(args.out, CHECKPOINT_NAME)
    return args.resume or None


class StopFlag:
    """Ctrl-C / SIGTERM request a stop; the loop checkpoints between steps and exits."""

    def __init__(self):
        self.stop = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. under some test runners)
                pass
        return self

    def _handle(self, *_):
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclasses.dataclass
class TrainingSetup:
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    order: "BatchOrder"
    step: int
    total: int
    batch_size: int
    memory_format: torch.memory_format
    ckpt_path: str


def setup_training(model, args, n_train, ckpt, ckpt_source, device) -> TrainingSetup:
    """What both trainers set up the same way: the model on the device in the convolutions' memory
    format, AdamW, the batch order, the step count; all restored from `ckpt` when resuming
    (weights, optimiser, order, RNG, step). Creates the output folder."""
    total = total_steps(args, n_train) if (not ckpt or args.steps is not None) else ckpt["total_steps"]
    batch_size = min(args.batch_size, n_train)
    memory_format = conv_memory_format(device)
    model = model.to(device).to(memory_format=memory_format)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    order = BatchOrder(n_train, batch_size, args.seed)
    step = 0
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        order.load_state_dict(ckpt["order"])
        torch.set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        print(f"sgfast: resumed {ckpt_source} at step {step}/{total}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    return TrainingSetup(model, opt, order, step, total, batch_size, memory_format,
                         os.path.join(args.out, CHECKPOINT_NAME))


def training_loop(step, total, train_step, checkpoint, *, desc, progress, writer, eval_every, ckpt_every,
                  test_metrics, ckpt_path):
    """The loop both trainers share: steps `step`..`total` of train_step(step) -> {"loss": tensor,
    other scalars}, a progress bar, TensorBoard scalars every 10 steps, test_metrics() every
    eval_every steps, checkpoint(step) every ckpt_every steps and at the end, and Ctrl-C / SIGTERM
    stopping between steps. Returns (step, stopped); a stopped run has said how to resume."""
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, desc=desc, dynamic_ncols=True)
    stopped = False
    with StopFlag() as flag:
        while step < total:
            scalars = train_step(step)
            step += 1
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{float(scalars['loss']):.4f}")
            if writer and (step % 10 == 0 or step == total):
                for k, v in scalars.items():
                    writer.add_scalar(f"train/{k}", float(v), step)
            if eval_every and step % eval_every == 0 and step < total:
                metrics = test_metrics()
                if writer:
                    for k, v in metrics.items():
                        writer.add_scalar(f"test/{k}", v, step)
            if ckpt_every and step % ckpt_every == 0:
                checkpoint(step)
            if flag.stop:
                stopped = True
                break
    if bar:
        bar.close()
    checkpoint(step)
    if stopped:
        print(f"sgfast: stopped at step {step}/{total}; checkpoint {ckpt_path} (use --resume)", file=sys.stderr)
    return step, stopped


def report_test(metrics, writer, step):
    """The final test figures: printed as one "test: k=v ..." line and, with a writer, as scalars."""
    if writer:
        for k, v in metrics.items():
            writer.add_scalar(f"test/{k}", v, step)
        writer.close()
    print("test: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in metrics.items()))


def make_writer(log_dir):
    if not log_dir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard is in requirements.txt, but say what is missing
        raise SystemExit(f"sgfast: --log-dir needs the tensorboard package ({exc})") from exc
    return SummaryWriter(log_dir)


def save_training_state(path, kind, model, optimizer, step, total, config, order, extra=None):
    state = {"kind": kind, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "step": step, "total_steps": total, "config": config, "order": order.state_dict(),
             "rng": torch.get_rng_state(), "saved_at": time.time()}
    state.update(extra or {})
    save_checkpoint(path, state)


def load_training_state(path, kind):
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind or "optimizer" not in ckpt:
        raise SystemExit(f"sgfast: {path} is not a {kind} training checkpoint")
    return ckpt
