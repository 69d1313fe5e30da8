"""What `sgfast train-segmenter` and `sgfast train-expert` share: supervised training on a CUB-layout
dataset (train/cub_data.py) with AdamW, a cosine learning-rate schedule, a test evaluation at the
end, and their common options (SupervisedOptions, the base of both config dataclasses).

Their checkpoints (train/checkpoint.py) hold the model, the optimizer, the step, the total steps,
the model config, the batch order's generator and the torch RNG state; the loop (train/loop.py)
takes them only between steps, so --resume continues the same stream of batches.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys

import torch

from sgfast.cli_errors import UsageError
from sgfast.train import checkpoint as ckpt_io
from sgfast.train import options
# open_split (sgfast.data.cub_split) is also the reader of `sgfast prepare`.
from sgfast.train.cub_data import (BatchOrder, NoParts, draw_batch, flip_batch, load_split,  # noqa: F401
                                   open_split, to_float)

# The options every preset of both trainers has (argparse default None = take the preset's).
COMMON_FIELDS = ("epochs", "steps", "batch_size", "lr", "weight_decay", "ckpt_every", "eval_every",
                 "limit")

SMOKE_BIRDS = dict(num=24, size=64, seed=3, num_classes=4, test_fraction=0.25)


@dataclasses.dataclass(frozen=True)
class SupervisedOptions:
    run: options.RunOptions
    config: str             # the preset's name
    dataset: str
    epochs: float           # passes over the train split (when steps is None)
    steps: int | None       # total optimisation steps
    batch_size: int
    lr: float               # peak learning rate
    weight_decay: float
    ckpt_every: int
    eval_every: int         # test evaluation every N steps (0 = only at the end)
    limit: int | None       # at most this many images per split
    export: str | None


def add_common_args(parser, *, command, default_out, presets):
    """The shared options, then the supervised trainers' own; defaults from presets["tiny"]."""
    tiny = presets["tiny"]
    options.add_run_args(parser, configs=presets, default_config="tiny", default_out=default_out,
                         config_help="training preset: tiny (the defaults shown below) or smoke "
                                     "(seconds; without DATASET, on generated birds in OUT/smoke-birds)")
    parser.add_argument("dataset", nargs="?", default=None,
                        help="dataset folder in the CUB-200-2011 layout (e.g. made by `sgfast make-dataset "
                             "birds`); optional with --config smoke")
    parser.add_argument("--epochs", type=float, default=None,
                        help=f"passes over the train split (default {tiny['epochs']}); --steps wins")
    parser.add_argument("--steps", type=int, default=None, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"images per step (default {tiny['batch_size']})")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak AdamW learning rate, cosine-decayed (default {tiny['lr']})")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help=f"AdamW weight decay (default {tiny['weight_decay']})")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="also write the final fp16 weights (with config and test metrics) here")
    parser.add_argument("--ckpt-every", type=int, default=None,
                        help=f"checkpoint every N steps (default {tiny['ckpt_every']}; 0 = only at the end)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="evaluate on the test split every N steps (default 0 = only at the end)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use at most N images per split (quick experiments and tests)")


def common_values(args, presets, command) -> dict:
    """The preset's values overridden by the options given, checked: the SupervisedOptions fields
    plus the trainer's own preset keys."""
    values = options.preset_values(presets, args.config, args)
    if args.epochs is not None and args.steps is None:
        values["steps"] = None  # --epochs given: the preset's step count does not win over it
    run = options.run_options(args)
    dataset = args.dataset
    if dataset is None:
        if isinstance(args.resume, str) and os.path.isdir(args.resume):
            raise UsageError(f"DATASET is required: --resume took {args.resume} as its checkpoint "
                             "(put DATASET before --resume)")
        if args.config != "smoke":
            raise UsageError("DATASET is required (a CUB-layout folder, e.g. from `sgfast make-dataset "
                             "birds`), or use --config smoke")
        dataset = smoke_dataset(run.out, command)
    if values["steps"] is not None:
        options.at_least("steps", values["steps"], 1)
    elif not values["epochs"] > 0:
        raise UsageError(f"--epochs must be > 0, got {values['epochs']}")
    options.at_least("batch_size", values["batch_size"], 1)
    options.positive("lr", values["lr"])
    options.at_least("weight_decay", values["weight_decay"], 0)
    options.at_least("ckpt_every", values["ckpt_every"], 0)
    options.at_least("eval_every", values["eval_every"], 0)
    if values["limit"] is not None:
        options.at_least("limit", values["limit"], 1)
    values.update(run=run, config=args.config, dataset=dataset, export=args.export)
    return values


def smoke_dataset(out, command):
    """--config smoke without DATASET: a few generated birds in OUT/smoke-birds (made once)."""
    from sgfast.data.synthetic_birds import write_birds_dataset

    folder = os.path.join(out, "smoke-birds")
    if not os.path.isfile(os.path.join(folder, "images.txt")):
        s = SMOKE_BIRDS
        print(f"sgfast {command}: --config smoke without DATASET: writing {s['num']} generated birds "
              f"to {folder}", file=sys.stderr)
        write_birds_dataset(folder, s["num"], size=s["size"], seed=s["seed"], num_classes=s["num_classes"],
                            test_fraction=s["test_fraction"], progress=False)
    return folder


def conv_memory_format(device):
    """channels_last on CPU: oneDNN's NHWC convolutions are ~1.5x faster than NCHW for these small
    networks."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def cosine_lr(step, total, peak, warmup=None):
    """Linear warm-up over the first 3% (at least 1 step), then cosine decay to 2% of the peak."""
    warmup = max(1, int(0.03 * total)) if warmup is None else warmup
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def optimiser_step(opt, loss, lr):
    """One update of `loss` at learning rate `lr` (the schedule's value for this step); returns lr."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return lr


def total_steps(cfg: SupervisedOptions, n_train):
    if cfg.steps is not None:
        return cfg.steps
    return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))


def load_state(cfg: SupervisedOptions, kind):
    """The checkpoint --resume names (None for a fresh run)."""
    if not cfg.run.resume:
        return None
    return ckpt_io.load(cfg.run.resume, kind, required=("model", "optimizer", "order", "rng", "step"))


@dataclasses.dataclass
class TrainingSetup:
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    order: BatchOrder
    step: int
    total: int
    batch_size: int
    memory_format: torch.memory_format


def setup_training(model, cfg: SupervisedOptions, n_train, ckpt, device, command) -> TrainingSetup:
    """What both trainers set up the same way: the model on the device in the convolutions' memory
    format, AdamW, the batch order, the step count; all restored from `ckpt` when resuming
    (weights, optimiser, order, RNG, step). Creates the output folder."""
    total = total_steps(cfg, n_train) if (not ckpt or cfg.steps is not None) else ckpt["total_steps"]
    batch_size = min(cfg.batch_size, n_train)
    memory_format = conv_memory_format(device)
    model = model.to(device).to(memory_format=memory_format)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = BatchOrder(n_train, batch_size, cfg.run.seed)
    step = 0
    if ckpt:
        step = int(ckpt["step"])
        if step > total:
            raise UsageError(f"--resume: the checkpoint is at step {step}, beyond --steps {total}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        order.load_state_dict(ckpt["order"])
        torch.set_rng_state(ckpt["rng"])
        print(f"sgfast {command}: resumed {cfg.run.resume} at step {step}/{total}", file=sys.stderr)
    os.makedirs(cfg.run.out, exist_ok=True)
    return TrainingSetup(model, opt, order, step, total, batch_size, memory_format)


def save_state(path, kind, model, optimizer, step, total, config, order, extra=None):
    ckpt_io.save(path, kind, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "step": step, "total_steps": total, "config": config,
                              "order": order.state_dict(), "rng": torch.get_rng_state(), **(extra or {})})


def report_test(metrics, writer, step):
    """The final test figures: printed as one "test: k=v ..." line and, with a writer, as scalars."""
    if writer is not None:
        for k, v in metrics.items():
            writer.add_scalar(f"test/{k}", v, step)
    print("test: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in metrics.items()))
