"""`sgfast train-renderer`: train the neural stroke renderer on rasterizer labels.

Each step draws a fresh batch of random strokes U(0, 1)^10 on the training device, renders their
labels there with `sgfast.ops.rasterize_strokes(params, size, mode="ltp")` (the baseline's cv2
generator, batched; no CPU label loop) and takes one Adam step on the MSE between the renderer's
alpha and the label. Learning rate: the baseline's step schedule, lr until the first boundary,
lr/10 until the second, lr/100 after (paper: 1e-4, 1e-5, 1e-6 at 200k and 400k of 500k steps).

Exact resumption: the strokes come from a dedicated generator whose state is checkpointed with the
model, the optimizer and the step, and checkpoints are only taken between steps (Ctrl-C and
SIGTERM set a flag that the loop checks), so a run resumed at step k continues the very same
stream of batches as an uninterrupted run.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings

import torch
import torch.nn.functional as F

from sgfast.device import pick_device
from sgfast.io import load_checkpoint, save_checkpoint
from sgfast.models.renderer import CONFIGS, Renderer, load_renderer, save_renderer

# The held-out validation strokes are the same for every run and config (only the label size
# differs), so validation L2 figures of different runs are comparable.
VAL_SEED = 20240531
CHECKPOINT_NAME = "checkpoint.pt"

# Training defaults per config. lr_steps None = the paper's boundaries scaled to --steps
# (200k and 400k of 500k -> 40% and 80%).
TRAIN_DEFAULTS = {
    "paper": dict(steps=500_000, batch_size=64, lr=1e-4, val_every=1000, ckpt_every=1000,
                  image_every=5000, val_size=512),
    "tiny": dict(steps=60_000, batch_size=64, lr=1e-4, val_every=1000, ckpt_every=1000,
                 image_every=5000, val_size=512),
    "smoke": dict(steps=60, batch_size=16, lr=1e-3, val_every=20, ckpt_every=20,
                  image_every=20, val_size=64),
}


def configure(parser):
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny",
                        help="renderer architecture and training defaults (default: tiny)")
    parser.add_argument("--steps", type=int, help="total optimisation steps (default: per config; "
                        "paper 500000, tiny 60000, smoke 60)")
    parser.add_argument("--batch-size", type=int, help="strokes per step (paper: 64)")
    parser.add_argument("--lr", type=float, help="initial learning rate (paper: 1e-4; on --resume: "
                        "the checkpoint's)")
    parser.add_argument("--lr-steps", type=str, default=None, metavar="A,B",
                        help="steps where the lr drops 10x (default: 40%%,80%% of --steps, i.e. "
                             "the paper's 200000,400000 of 500000; on --resume: the checkpoint's)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--out", default="runs/renderer", help="folder for checkpoint.pt and the "
                        "exported weights (default: runs/renderer)")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="final fp16 weights (default: OUT/renderer_<config>.pt)")
    parser.add_argument("--log-dir", default=None, help="TensorBoard folder (off by default)")
    parser.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (0 = only at the end)")
    parser.add_argument("--val-every", type=int, help="validation L2 every N steps (0 = only at the end)")
    parser.add_argument("--image-every", type=int, help="TensorBoard label/prediction grid every N steps")
    parser.add_argument("--val-size", type=int, help="held-out strokes (default 512; smoke 64)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="continue from OUT/checkpoint.pt (or CKPT) exactly where it stopped")
    parser.add_argument("--export-only", action="store_true",
                        help="no training: export the checkpoint's weights (with their validation L2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and strokes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def label_op(device: torch.device):
    """The label generator: the fused op, or its eager reference when the extension can't run it."""
    import sgfast

    if sgfast.HAS_EXT:
        from sgfast.ops import cuda_compiled, rasterize_strokes

        if device.type != "cuda" or cuda_compiled():
            return rasterize_strokes, "sgfast.ops"
    from sgfast.reference import rasterize_strokes

    warnings.warn("sgfast: the compiled rasterizer is not available for "
                  f"{device.type}; using the (slower) eager reference for labels")
    return rasterize_strokes, "sgfast.reference"


def lr_at(step: int, base_lr: float, boundaries) -> float:
    """The baseline's step schedule: base, base/10 after the first boundary, base/100 after the second."""
    return base_lr * 0.1 ** sum(step >= b for b in boundaries)


def validation_set(size: int, n: int, device: torch.device, rasterize):
    gen = torch.Generator().manual_seed(VAL_SEED)
    params = torch.rand(n, 10, generator=gen).to(device)
    with torch.no_grad():
        labels = rasterize(params, size, mode="ltp")
    return params, labels


@torch.no_grad()
def validation_l2(model, params, labels, chunk=256) -> float:
    """Mean squared error per pixel between predicted and true alpha on the held-out strokes."""
    total = 0.0
    for i in range(0, params.shape[0], chunk):
        pred = model(params[i:i + chunk])
        total += F.mse_loss(pred, labels[i:i + chunk], reduction="sum").item()
    return total / labels.numel()


def image_grid(model, params, labels, n=8) -> torch.Tensor:
    """[1, 2S, nS]: labels on the top row, predictions below."""
    with torch.no_grad():
        pred = model(params[:n])
    rows = [torch.cat(list(labels[:n]), dim=1), torch.cat(list(pred), dim=1)]
    return torch.cat(rows, dim=0).clamp(0, 1)[None].cpu()


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is never taken mid-step."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\nsgfast: signal {signum}: saving a checkpoint after this step (again to abort)",
              file=sys.stderr)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _resolve(args):
    d = TRAIN_DEFAULTS[args.config]
    opts = {k: (getattr(args, k) if getattr(args, k, None) is not None else v) for k, v in d.items()}
    for k in ("steps", "batch_size", "val_size"):
        if opts[k] < (0 if k == "steps" else 1):
            raise ValueError(f"--{k.replace('_', '-')} must be positive, got {opts[k]}")
    for k in ("val_every", "ckpt_every", "image_every"):
        if opts[k] < 0:
            raise ValueError(f"--{k.replace('_', '-')} must be >= 0, got {opts[k]}")
    if not (opts["lr"] > 0 and math.isfinite(opts["lr"])):
        raise ValueError(f"--lr must be a positive number, got {opts['lr']}")
    if args.lr_steps:
        try:
            opts["lr_steps"] = tuple(int(s) for s in args.lr_steps.split(","))
        except ValueError:
            raise ValueError(f"--lr-steps must be comma-separated integers, got {args.lr_steps!r}")
    else:
        opts["lr_steps"] = (round(0.4 * opts["steps"]), round(0.8 * opts["steps"]))
    return opts


def run(args) -> int:
    opts = _resolve(args)
    device = pick_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    rasterize, label_source = label_op(device)
    ckpt_path = os.path.join(args.out, CHECKPOINT_NAME)
    export_path = args.export or os.path.join(args.out, f"renderer_{args.config}.pt")

    torch.manual_seed(args.seed)  # initial weights
    model = Renderer(args.config).to(device)
    size = model.config.size
    optimizer = torch.optim.Adam(model.parameters(), lr=opts["lr"])
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)  # the training strokes
    step, train_seconds, history = 0, 0.0, []

    if args.export_only and not args.resume:
        args.resume = True
    if args.resume:
        path = ckpt_path if args.resume is True else args.resume
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--resume: no checkpoint at {path} (train without --resume first)")
        ckpt = load_checkpoint(path, map_location="cpu")
        if ckpt.get("config") != args.config:
            raise ValueError(f"--resume: {path} is a {ckpt.get('config')!r} checkpoint, "
                             f"not --config {args.config}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"])
        step, train_seconds = int(ckpt["step"]), float(ckpt["train_seconds"])
        history = [tuple(h) for h in ckpt.get("val_history", [])]
        # The schedule goes on as it was unless given again (--steps may grow when resuming).
        if args.lr is None:
            opts["lr"] = float(ckpt["lr"])
        if not args.lr_steps:
            opts["lr_steps"] = tuple(int(b) for b in ckpt["lr_steps"])
        if ckpt.get("batch_size") != opts["batch_size"]:
            warnings.warn(f"resuming with batch size {opts['batch_size']} (checkpoint: "
                          f"{ckpt.get('batch_size')}): the run will not match an uninterrupted one")
        if args.export_only:
            opts["steps"] = step
        if step > opts["steps"]:
            raise ValueError(f"--resume: the checkpoint is at step {step}, beyond --steps {opts['steps']}")
        print(f"sgfast: resumed {path} at step {step}", file=sys.stderr)

    val_params, val_labels = validation_set(size, opts["val_size"], device, rasterize)
    writer = None
    if args.log_dir:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(args.log_dir, purge_step=step if step else None)

    def checkpoint():
        save_checkpoint(ckpt_path, {
            "config": args.config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": gen.get_state(), "step": step, "train_seconds": train_seconds,
            "batch_size": opts["batch_size"], "lr": opts["lr"], "lr_steps": list(opts["lr_steps"]),
            "seed": args.seed, "val_history": [list(h) for h in history],
        })

    def validate():
        val = validation_l2(model, val_params, val_labels)
        history.append((step, val))
        if writer:
            writer.add_scalar("val_l2", val, step)
        return val

    if step == 0:
        validate()  # the untrained model's figure, for comparison
    start_step, stop = step, None
    if writer and step == 0:
        writer.add_image("val/label_vs_prediction", image_grid(model, val_params, val_labels), step)

    from tqdm import tqdm

    bar = tqdm(total=opts["steps"], initial=step, unit="step", dynamic_ncols=True,
               disable=args.no_progress, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    model.train()
    with _StopFlag() as flag:
        t0 = time.perf_counter()
        while step < opts["steps"]:
            lr = lr_at(step, opts["lr"], opts["lr_steps"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            params = torch.rand(opts["batch_size"], 10, generator=gen, device=device)
            with torch.no_grad():
                labels = rasterize(params, size, mode="ltp")
            loss = F.mse_loss(model(params), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)

            if step % 10 == 0 or step == opts["steps"]:
                loss_value = loss.item()
                bar.set_postfix(loss=f"{loss_value:.5f}", lr=f"{lr:.0e}", refresh=False)
                if writer:
                    writer.add_scalar("loss", loss_value, step)
                    writer.add_scalar("lr", lr, step)
            if opts["val_every"] and step % opts["val_every"] == 0 and step != opts["steps"]:
                val = validate()
                bar.write(f"step {step}: val_l2 {val:.6f} loss {loss.item():.6f} lr {lr:.0e}")
            if writer and opts["image_every"] and step % opts["image_every"] == 0:
                writer.add_image("val/label_vs_prediction", image_grid(model, val_params, val_labels), step)
            if flag.signal is not None:
                stop = flag.signal
                break
            if opts["ckpt_every"] and step % opts["ckpt_every"] == 0:
                train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
        train_seconds += time.perf_counter() - t0
        bar.close()
        if step > start_step:
            checkpoint()

    if stop is not None:
        print(f"sgfast: stopped at step {step}; checkpoint written to {ckpt_path} "
              f"(continue with --resume)", file=sys.stderr)
        if writer:
            writer.close()
        return 130

    val_fp32 = validate()
    save_renderer(export_path, model, {
        "steps": step, "train_seconds": round(train_seconds, 1), "val_l2_fp32": val_fp32,
        "batch_size": opts["batch_size"], "lr": opts["lr"], "lr_steps": list(opts["lr_steps"]),
        "seed": args.seed, "labels": f"{label_source}.rasterize_strokes(mode='ltp')",
        "val_set": {"seed": VAL_SEED, "strokes": opts["val_size"]},
        "val_l2_initial": history[0][1] if history and history[0][0] == 0 else None,
    })
    # The shipped figure is that of the fp16 weights as they will be loaded.
    shipped = load_renderer(export_path, device)
    val_l2 = validation_l2(shipped, val_params, val_labels)
    meta = dict(shipped.meta, val_l2=val_l2)
    save_renderer(export_path, shipped, {k: v for k, v in meta.items() if k not in ("kind", "config")})
    if writer:
        writer.add_image("val/label_vs_prediction", image_grid(model, val_params, val_labels), step)
        writer.close()
    print(f"sgfast: {args.config} renderer, {step} steps in {train_seconds:.0f} s: val_l2 {val_l2:.6f} "
          f"(fp32 {val_fp32:.6f}) -> {export_path}")
    return 0
