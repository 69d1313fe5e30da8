"""`sgfast train-renderer`: train the neural stroke renderer on rasterizer labels.

Each step draws a fresh batch of random strokes U(0, 1)^10 on the training device, renders their
labels there with `sgfast.ops.rasterize_strokes(params, size, mode="ltp")` (the baseline's cv2
generator, batched; no CPU label loop) and takes one Adam step on the MSE between the renderer's
alpha and the label. Learning rate: the baseline's step schedule, lr until the first boundary,
lr/10 until the second, lr/100 after (paper: 1e-4, 1e-5, 1e-6 at 200k and 400k of 500k steps).

Exact resumption: the strokes come from a dedicated generator whose state is checkpointed with the
model, the optimizer and the step, and checkpoints are only taken between steps (train/loop.py:
Ctrl-C and SIGTERM set a flag that the loop checks), so a run resumed at step k continues the very
same stream of batches as an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.device import pick_device
from sgfast.models.renderer import CONFIGS, Renderer, load_renderer, save_renderer
from sgfast.train import checkpoint as ckpt_io
from sgfast.train import options
from sgfast.train.loop import STOPPED_EXIT, Periodic, run_loop, tensorboard

COMMAND = "train-renderer"

# The held-out validation strokes are the same for every run and config (only the label size
# differs), so validation L2 figures of different runs are comparable.
VAL_SEED = 20240531

# Training presets per --config (the renderer architecture of the same name); every key is also an
# option that overrides it. lr_steps None = the paper's boundaries scaled to --steps (200k and 400k
# of 500k -> 40% and 80%).
PRESETS = {
    "paper": dict(steps=500_000, batch_size=64, lr=1e-4, lr_steps=None, val_every=1000, ckpt_every=1000,
                  image_every=5000, val_size=512),
    "tiny": dict(steps=60_000, batch_size=64, lr=1e-4, lr_steps=None, val_every=1000, ckpt_every=1000,
                 image_every=5000, val_size=512),
    "smoke": dict(steps=60, batch_size=16, lr=1e-3, lr_steps=None, val_every=20, ckpt_every=20,
                  image_every=20, val_size=64),
}
TRAIN_DEFAULTS = PRESETS  # the earlier name


@dataclasses.dataclass(frozen=True)
class RendererTraining:
    """Everything a train-renderer run uses, built once from the command line (from_args). lr and
    lr_steps are None when not given: a fresh run then takes the preset's, a resumed one the
    checkpoint's."""
    run: options.RunOptions
    config: str                 # renderer architecture and preset
    steps: int | None           # None with --export-only: the checkpoint's step
    batch_size: int
    lr: float | None
    lr_steps: tuple | None
    val_every: int
    ckpt_every: int
    image_every: int
    val_size: int
    export: str                 # the final fp16 weights
    export_only: bool

    @classmethod
    def from_args(cls, args) -> "RendererTraining":
        v = options.preset_values(PRESETS, args.config, args)
        options.at_least("steps", v["steps"], 0)
        options.at_least("batch_size", v["batch_size"], 1)
        options.at_least("val_size", v["val_size"], 1)
        for k in ("val_every", "ckpt_every", "image_every"):
            options.at_least(k, v[k], 0)
        if args.lr is not None:
            options.positive("lr", args.lr)
        lr_steps = options.int_list("lr_steps", args.lr_steps) if args.lr_steps else None
        run = options.run_options(args)
        if args.export_only and not run.resume:
            run = dataclasses.replace(run, resume=ckpt_io.checkpoint_path(run.out))
        return cls(run=run, config=args.config, steps=None if args.export_only else v["steps"],
                   batch_size=v["batch_size"], lr=args.lr, lr_steps=lr_steps, val_every=v["val_every"],
                   ckpt_every=v["ckpt_every"], image_every=v["image_every"], val_size=v["val_size"],
                   export=args.export or os.path.join(run.out, f"renderer_{args.config}.pt"),
                   export_only=args.export_only)

    def schedule(self):
        """(lr, lr_steps) of a fresh run: the options', else the preset's."""
        lr = self.lr if self.lr is not None else PRESETS[self.config]["lr"]
        lr_steps = self.lr_steps or (round(0.4 * self.steps), round(0.8 * self.steps))
        return lr, lr_steps


def configure(parser):
    options.add_run_args(parser, configs=CONFIGS, default_config="tiny", default_out="runs/renderer",
                         config_help="renderer architecture and training preset: paper, tiny, or smoke "
                                     "(seconds, tests)")
    parser.add_argument("--steps", type=int, help="total optimisation steps (default: per config; "
                        "paper 500000, tiny 60000, smoke 60)")
    parser.add_argument("--batch-size", type=int, help="strokes per step (paper: 64)")
    parser.add_argument("--lr", type=float, help="initial learning rate (paper: 1e-4; on --resume: "
                        "the checkpoint's)")
    parser.add_argument("--lr-steps", type=str, default=None, metavar="A,B",
                        help="steps where the lr drops 10x (default: 40%%,80%% of --steps, i.e. "
                             "the paper's 200000,400000 of 500000; on --resume: the checkpoint's)")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="final fp16 weights (default: OUT/renderer_<config>.pt)")
    parser.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (0 = only at the end)")
    parser.add_argument("--val-every", type=int, help="validation L2 every N steps (0 = only at the end)")
    parser.add_argument("--image-every", type=int, help="TensorBoard label/prediction grid every N steps")
    parser.add_argument("--val-size", type=int, help="held-out strokes (default 512; smoke 64)")
    parser.add_argument("--export-only", action="store_true",
                        help="no training: export the checkpoint's weights (with their validation L2)")


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


@reports_errors(COMMAND)
def run(args) -> int:
    return train(RendererTraining.from_args(args))


def train(cfg: RendererTraining) -> int:
    run_opts = cfg.run
    device = pick_device(run_opts.device)
    options.apply_threads(run_opts)
    rasterize, label_source = label_op(device)
    ckpt_path = run_opts.checkpoint

    torch.manual_seed(run_opts.seed)  # initial weights
    model = Renderer(cfg.config).to(device)
    size = model.config.size
    lr, lr_steps = cfg.schedule() if cfg.steps is not None else (cfg.lr, cfg.lr_steps)
    steps = cfg.steps
    optimizer = torch.optim.Adam(model.parameters(), lr=lr if lr is not None else 1.0)
    gen = torch.Generator(device=device).manual_seed(run_opts.seed + 1)  # the training strokes
    step, train_seconds, history = 0, 0.0, []

    if run_opts.resume:
        ckpt = ckpt_io.load(run_opts.resume, "renderer",
                            required=("model", "optimizer", "rng", "step", "lr", "lr_steps"))
        if ckpt.get("config") != cfg.config:
            raise UsageError(f"--resume: {run_opts.resume} is a {ckpt.get('config')!r} checkpoint, "
                             f"not --config {cfg.config}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"])
        step, train_seconds = int(ckpt["step"]), float(ckpt["train_seconds"])
        history = [tuple(h) for h in ckpt.get("val_history", [])]
        # The schedule goes on as it was unless given again (--steps may grow when resuming).
        if cfg.lr is None:
            lr = float(ckpt["lr"])
        if not cfg.lr_steps:
            lr_steps = tuple(int(b) for b in ckpt["lr_steps"])
        if ckpt.get("batch_size") != cfg.batch_size:
            warnings.warn(f"resuming with batch size {cfg.batch_size} (checkpoint: "
                          f"{ckpt.get('batch_size')}): the run will not match an uninterrupted one")
        if cfg.export_only:
            steps = step
        if step > steps:
            raise UsageError(f"--resume: the checkpoint is at step {step}, beyond --steps {steps}")
        print(f"sgfast {COMMAND}: resumed {run_opts.resume} at step {step}", file=sys.stderr)

    val_params, val_labels = validation_set(size, cfg.val_size, device, rasterize)
    start_step, t0 = step, None

    def seconds():
        """Training time so far: the checkpoint's plus this run's loop."""
        return train_seconds + time.perf_counter() - t0

    def checkpoint(step):
        ckpt_io.save(ckpt_path, "renderer", {
            "config": cfg.config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": gen.get_state(), "step": step, "train_seconds": seconds(),
            "batch_size": cfg.batch_size, "lr": lr, "lr_steps": list(lr_steps),
            "seed": run_opts.seed, "val_history": [list(h) for h in history],
        })

    def train_step(step):
        rate = lr_at(step, lr, lr_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        params = torch.rand(cfg.batch_size, 10, generator=gen, device=device)
        with torch.no_grad():
            labels = rasterize(params, size, mode="ltp")
        loss = F.mse_loss(model(params), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "lr": rate}

    with tensorboard(run_opts.tensorboard, step) as writer:
        def validate(step):
            val = validation_l2(model, val_params, val_labels)
            history.append((step, val))
            if writer is not None:
                writer.add_scalar("val/l2", val, step)
            return val

        def images(step):
            if writer is not None:
                writer.add_image("val/label_vs_prediction", image_grid(model, val_params, val_labels), step)

        if step == 0:
            validate(0)  # the untrained model's figure, for comparison
            images(0)
        model.train()
        t0 = time.perf_counter()
        result = run_loop(
            COMMAND, start=step, total=steps, step=train_step, save=checkpoint, ckpt_every=cfg.ckpt_every,
            ckpt_path=ckpt_path, writer=writer, progress=run_opts.progress, desc="renderer",
            time_limit=run_opts.time_limit,
            periodic=[Periodic(cfg.val_every, lambda i: f"step {i}: val_l2 {validate(i):.6f}", skip_last=True),
                      Periodic(cfg.image_every, images)])
        if result.stopped:
            return STOPPED_EXIT
        step = result.step
        train_seconds = seconds() if step > start_step else train_seconds

        val_fp32 = validate(step)
        save_renderer(cfg.export, model, {
            "steps": step, "train_seconds": round(train_seconds, 1), "val_l2_fp32": val_fp32,
            "batch_size": cfg.batch_size, "lr": lr, "lr_steps": list(lr_steps),
            "seed": run_opts.seed, "labels": f"{label_source}.rasterize_strokes(mode='ltp')",
            "val_set": {"seed": VAL_SEED, "strokes": cfg.val_size},
            "val_l2_initial": history[0][1] if history and history[0][0] == 0 else None,
        })
        # The shipped figure is that of the fp16 weights as they will be loaded.
        shipped = load_renderer(cfg.export, device)
        val_l2 = validation_l2(shipped, val_params, val_labels)
        meta = dict(shipped.meta, val_l2=val_l2)
        save_renderer(cfg.export, shipped, {k: v for k, v in meta.items() if k not in ("kind", "config")})
        images(step)
    print(f"sgfast: {cfg.config} renderer, {step} steps in {train_seconds:.0f} s: val_l2 {val_l2:.6f} "
          f"(fp32 {val_fp32:.6f}) -> {cfg.export}")
    return 0
