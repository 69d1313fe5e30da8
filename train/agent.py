"""`sgfast train-agent`: train the painting agent (model-based DDPG), semantic guidance or baseline.

    sgfast train-agent --config tiny --mode sg --data out/birds/prepared --out /work/runs/sg
    torchrun --nproc_per_node 4 -m sgfast train-agent --config paper ...   (one rank per GPU)

Writes <out>/checkpoint.pt (atomically, every --checkpoint-interval episodes and on Ctrl-C),
TensorBoard logs in <out>/tb, and with --export an fp16 actor for painting. See docs/agent.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time

import torch

from sgfast.agent import distributed
from sgfast.agent.config import CONFIGS, get_config
from sgfast.device import pick_device


def _numbers(text, convert, what, increasing=False):
    """'a,b,c' -> a tuple of non-negative numbers (increasing ones if asked), or an argparse error."""
    try:
        out = tuple(convert(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    if any(v < 0 for v in out) or (increasing and list(out) != sorted(out)):
        order = "increasing " if increasing else ""
        raise argparse.ArgumentTypeError(f"expected non-negative {order}{what}, got {text!r}")
    return out


def floats(text):
    """'3e-4,1e-4,3e-5' -> (3e-4, 1e-4, 3e-5) (a per-phase learning-rate schedule)."""
    return _numbers(text, float, "numbers")


def ints(text):
    """'7000,11000' -> (7000, 11000) (learning-rate phase boundaries)."""
    return _numbers(text, int, "integers", increasing=True)


# Command-line overrides of AgentConfig fields: (flag, field, type).
OVERRIDES = [
    ("--max-step", "max_step", int, "steps per episode"),
    ("--env-batch", "env_batch", int, "environments painted in parallel (per rank)"),
    ("--batch-size", "batch_size", int, "transitions per update (per rank)"),
    ("--replay-episodes", "replay_episodes", int, "replay capacity: this times max-step transitions (the baseline's rmsize)"),
    ("--warmup", "warmup", int, "batched env steps collected (in this run) before updates start"),
    ("--episode-train-times", "episode_train_times", int, "updates after each batched episode"),
    ("--train-steps", "train_steps", int, "batched env steps in total (training stops after the episode reaching it)"),
    ("--discount", "discount", float, "discount per step"),
    ("--tau", "tau", float, "soft target-update rate (actor, critic, discriminators)"),
    ("--noise", "noise", float, "exploration noise: per-env sigma ~ U(0, noise) (baseline: 0)"),
    ("--action-reg", "action_reg", float, "weight of a penalty on the actor's squared pre-sigmoid outputs, keeps "
     "actions out of saturation (0 = the baseline's actor loss)"),
    ("--action-reg-margin", "action_reg_margin", float, "penalise only |logit| beyond this (3: actions outside "
     "[0.047, 0.953]); 0 penalises every logit, which also pulls strokes towards the centre"),
    ("--eta", "eta", float, "weight of the foreground reward r_fg (sg mode)"),
    ("--nu", "nu", float, "weight of the focus reward r_focus (sg mode)"),
    ("--focus-norm", "focus_norm", str, "normalisation of the focus distance L_G (sg mode): sum (divide by "
     "sum Z_G, the paper's text and the authors' code) or frobenius (by ||Z_G||_F, Eq. 14 as typeset)"),
    ("--strokes-bg", "strokes_bg", int, "background strokes per step (sg mode); baseline mode paints bg+fg plain strokes"),
    ("--strokes-fg", "strokes_fg", int, "foreground strokes per step (sg mode)"),
    ("--lr-disc", "lr_disc", float, "discriminator learning rate"),
    ("--lr-actor", "lr_actor", floats, "actor learning rate per phase, comma-separated (paper: 1e-3,3e-4,1e-4)"),
    ("--lr-critic", "lr_critic", floats, "critic learning rate per phase, comma-separated (paper: 3e-4,1e-4,3e-5)"),
    ("--lr-boundaries", "lr_boundaries", ints, "batched env steps where the next learning-rate phase starts, "
     "comma-separated (tiny: 20000,40000)"),
    ("--validate-interval", "validate_interval", int, "episodes between validations"),
    ("--validate-episodes", "validate_episodes", int, "validation episodes of env-batch held-out images"),
    ("--log-interval", "log_interval", int, "updates between TensorBoard scalar writes"),
    ("--checkpoint-interval", "checkpoint_interval", int, "episodes between checkpoints"),
]


def configure(parser):
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS),
                        help="sizes and schedule: paper (128^2, batch 96, GPU), tiny (64^2, 2 CPU cores), "
                             "smoke (seconds, tests) (default: %(default)s)")
    parser.add_argument("--mode", default="sg", choices=["sg", "baseline"],
                        help="sg: bi-level strokes, S and G inputs, r_bg + eta r_fg + nu r_focus; baseline: "
                             "Learning to Paint (same number of strokes, global WGAN reward only) (default: %(default)s)")
    parser.add_argument("--ops", default="fused", choices=["fused", "eager"],
                        help="compositing/crop/focus ops: fused (sgfast.ops) or eager (sgfast.reference) "
                             "(default: %(default)s)")
    parser.add_argument("--data", default="synthetic",
                        help="targets: a prepared dataset (output of `sgfast prepare`) or 'synthetic' for "
                             "procedural in-memory targets (default: %(default)s)")
    parser.add_argument("--synthetic-images", type=int, default=64,
                        help="number of procedural targets with --data synthetic (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="held-out fraction of a prepared dataset used for validation (default: %(default)s)")
    parser.add_argument("--renderer", default=None,
                        help="neural renderer weights (sgfast train-renderer --export); 'random' for a randomly "
                             "initialised renderer of the config's size (tests, benchmarks) "
                             "(default: weights/renderer_<config renderer>.pt)")
    parser.add_argument("--out", default="runs/agent", help="checkpoint and TensorBoard folder (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/checkpoint.pt (models, optimisers, discriminators, counters, "
                             "RNG states; the replay memory is refilled)")
    parser.add_argument("--validate-only", action="store_true",
                        help="load <out>/checkpoint.pt, run --validate-episodes validation episodes, print the "
                             "figures and exit (no training)")
    parser.add_argument("--per-step", action="store_true",
                        help="with --validate-only: also print, for every step of the episode, the mean L2 "
                             "after it, the mean reward terms it earned (r_bg, r_fg, r_focus, total; from "
                             "the target discriminators, as in training), the mean change of the action from the "
                             "step before (dact: near 0 = the agent repeats its strokes), the critic's Q of it "
                             "and the discounted return that followed: where an agent stops improving")
    parser.add_argument("--export-best", default=None,
                        help="write fp16 actor weights here (and <out>/best.pt, a full checkpoint) whenever the "
                             "validation L2 is the lowest of the run so far")
    parser.add_argument("--export", default=None,
                        help="also write fp16 actor weights here at every checkpoint and at the end")
    parser.add_argument("--seed", type=int, default=1234, help="random seed; a CPU run is repeatable (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, field, typ, help_text in OVERRIDES:
        parser.add_argument(flag, dest=field, type=typ, default=None,
                            help=f"{help_text} (default: from --config)")


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def build_config(args):
    cfg = get_config(args.config)
    over = {f: getattr(args, f) for _, f, _, _ in OVERRIDES if getattr(args, f, None) is not None}
    cfg = dataclasses.replace(cfg, **over)
    for name in ("max_step", "env_batch", "batch_size", "replay_episodes", "episode_train_times",
                 "validate_interval", "validate_episodes", "log_interval", "checkpoint_interval"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"sgfast train-agent: --{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.strokes_bg < 0 or cfg.strokes_fg < 0 or cfg.strokes < 1:
        raise SystemExit("sgfast train-agent: --strokes-bg/--strokes-fg must be >= 0 with at least one stroke")
    from sgfast.agent.rewards import FOCUS_NORMS

    if cfg.focus_norm not in FOCUS_NORMS:
        raise SystemExit(f"sgfast train-agent: --focus-norm must be one of {', '.join(FOCUS_NORMS)}, "
                         f"got {cfg.focus_norm!r}")
    if cfg.action_reg < 0 or cfg.action_reg_margin < 0:
        raise SystemExit(f"sgfast train-agent: --action-reg and --action-reg-margin must be >= 0, got "
                         f"{cfg.action_reg}, {cfg.action_reg_margin}")
    if not 0 <= cfg.tau <= 1 or not 0 <= cfg.discount <= 1:
        raise SystemExit("sgfast train-agent: --tau and --discount must lie in [0, 1]")
    return cfg


def load_renderer_for(cfg, path, device):
    from sgfast.models.renderer import Renderer, load_renderer

    if path == "random":
        renderer = Renderer(cfg.renderer)
    else:
        path = path or os.path.join("weights", f"renderer_{cfg.renderer}.pt")
        renderer = load_renderer(path)
    if renderer.config.size != cfg.size:
        raise SystemExit(f"sgfast train-agent: the renderer paints {renderer.config.size}^2 but config "
                         f"{cfg.name!r} uses a {cfg.size}^2 canvas")
    renderer.requires_grad_(False)
    return renderer.to(device).eval()


def load_data(args, cfg, device):
    from sgfast.agent.data import TensorData, synthetic_data

    try:
        if args.data == "synthetic":
            return synthetic_data(args.synthetic_images, cfg.size, seed=args.seed, device=device)
        return TensorData.from_prepared(args.data, cfg.size, args.val_fraction, device=device, seed=args.seed)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"sgfast train-agent: cannot use --data {args.data}: {exc}") from exc


def l2_metrics(image, canvas, mask):
    """Per-image L2 (mean over C, H, W of the squared difference, the baseline's `dist`) and
    foreground L2 (the same, weighted by the soft mask S)."""
    sq = (image - canvas) ** 2
    l2 = sq.mean((1, 2, 3))
    fg = (sq * mask).sum((1, 2, 3)) / (3 * mask.sum((1, 2, 3)) + 1e-8)
    return l2, fg


class Trainer:
    def __init__(self, args):
        from sgfast.agent.backend import get_ops
        from sgfast.agent.ddpg import DDPG
        from sgfast.agent.env import PaintEnv, Painter
        from sgfast.agent.replay import ReplayMemory

        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        self.device = pick_device(args.device, local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        distributed.init_from_env(self.device.type)
        self.rank, self.world = distributed.world()
        self.cfg = cfg = build_config(args)
        self.mode = args.mode
        torch.manual_seed(args.seed)  # same initial weights on every rank (and broadcast anyway)
        self.gen = torch.Generator().manual_seed(args.seed + 7919 * self.rank)  # envs, replay sampling
        self.ops = get_ops(args.ops, args.mode)
        self.renderer = load_renderer_for(cfg, args.renderer, self.device)
        self.data = load_data(args, cfg, self.device)
        self.painter = Painter(self.renderer, self.ops, self.mode, cfg.strokes_bg)
        self.agent = DDPG(cfg, self.mode, self.painter, self.ops, self.data, self.device)
        capacity = cfg.replay_episodes * cfg.max_step  # the baseline's rmsize * max_step transitions
        self.replay = ReplayMemory(max(capacity, cfg.env_batch), cfg.size, cfg.strokes * 13, self.device)
        self.env = PaintEnv(self.data, self.painter, cfg.max_step, cfg.env_batch, self.data.train_ids, self.gen)
        n_val = min(len(self.data.val_ids), cfg.env_batch)
        self.val_env = PaintEnv(self.data, self.painter, cfg.max_step, n_val, self.data.val_ids, self.gen,
                                augment=False)
        self.step = self.episode = self.updates = 0
        self.steps_this_run = 0
        self.last_validation = {}
        self.best_validation = {}  # the validation figures of the best export so far (--export-best)
        self.out = args.out
        self.ckpt_path = os.path.join(self.out, "checkpoint.pt")
        if args.resume or getattr(args, "validate_only", False):
            self.load_checkpoint()
        self.writer = None
        if self.rank == 0 and not args.no_tensorboard and not getattr(args, "validate_only", False):
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.out, "tb"))

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {"kind": "sgfast.agent.checkpoint", "mode": self.mode, "config": self.cfg.to_dict(),
                "agent": self.agent.state_dict(),
                "counters": {"step": self.step, "episode": self.episode, "updates": self.updates},
                "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state()},
                "validation": dict(self.last_validation), "best_validation": dict(self.best_validation)}

    def save_checkpoint(self):
        from sgfast.io import save_checkpoint

        if self.rank != 0:  # one writer; the other ranks hold the same weights
            return
        save_checkpoint(self.ckpt_path, self.checkpoint_state())
        if self.args.export:
            self.export(self.args.export)

    def keep_best(self, v: dict):
        """--export-best: export when this validation's L2 is the run's lowest so far."""
        from sgfast.io import save_checkpoint

        best = self.best_validation.get("val/l2")
        if self.rank != 0 or not self.args.export_best or (best is not None and v["val/l2"] >= best):
            return
        self.best_validation = dict(v, episode=self.episode, step=self.step)
        self.export(self.args.export_best, v)
        save_checkpoint(os.path.join(self.out, "best.pt"), self.checkpoint_state())

    def export(self, path, validation=None):
        from sgfast.agent.export import save_actor

        v = self.last_validation if validation is None else validation
        save_actor(path, self.agent.actor, self.cfg, self.mode,
                   {"episode": self.episode, "step": self.step, "validation": dict(v)})

    def load_checkpoint(self):
        from sgfast.io import load_checkpoint

        state = load_checkpoint(self.ckpt_path, map_location=self.device)
        if state.get("kind") != "sgfast.agent.checkpoint":
            raise SystemExit(f"sgfast train-agent: {self.ckpt_path} is not an agent checkpoint")
        if state["mode"] != self.mode:
            raise SystemExit(f"sgfast train-agent: {self.ckpt_path} was trained in mode {state['mode']!r}, "
                             f"not {self.mode!r}")
        arch = ("size", "width", "blocks", "disc_width", "strokes_bg", "strokes_fg")
        saved = state["config"]
        for key in arch:
            if saved[key] != self.cfg.to_dict()[key]:
                raise SystemExit(f"sgfast train-agent: {self.ckpt_path} has {key}={saved[key]}, this run "
                                 f"{self.cfg.to_dict()[key]} (use the same --config and stroke options)")
        self.agent.load_state_dict(state["agent"])
        c = state["counters"]
        self.step, self.episode, self.updates = int(c["step"]), int(c["episode"]), int(c["updates"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.gen.set_state(state["rng"]["gen"].cpu())
        if self.rank:  # rank 0's RNG state was saved: decorrelate the other ranks' environments
            self.gen.manual_seed(self.args.seed + 7919 * self.rank + self.episode)
        self.last_validation = dict(state.get("validation", {}))
        self.best_validation = dict(state.get("best_validation", {}))

    # -- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, per_step: list | None = None) -> dict:
        """Validation figures; per_step (a list) gets one dict per step, means over the validation
        images: L2 after the step, its reward terms, the mean change of the action from the step
        before ("dact", stroke parameters in [0, 1]; NaN at step 1), the critic's Q of it ("q"), the
        discounted return that actually followed it in the episode ("return"), and |q - return|."""
        cfg, env = self.cfg, self.val_env
        val_ids = self.data.val_ids
        l2s, fgs, ref = [], [], {"empty": [], "mean_fill": []}
        sums = [{} for _ in range(cfg.max_step)]
        for e in range(cfg.validate_episodes):
            ids = val_ids[(torch.arange(env.batch, device=val_ids.device) + e * env.batch) % len(val_ids)]
            env.reset(ids)
            totals, qs, prev_action = [], [], None
            for t in range(cfg.max_step):
                action = self.agent.act(env.canvas, env.targets, t)
                before, after, _ = env.step(action)
                if per_step is not None:  # (validate runs under no_grad)
                    c0, c1 = before.float() / 255, after.float() / 255
                    terms = self.agent.rewards(c0, c1, env.targets)
                    terms["l2"] = l2_metrics(env.targets["image"], c1, env.targets["mask"])[0]
                    # Mean |a_t - a_t-1| over the stroke parameters: near 0 when the agent repeats
                    # its strokes, so the canvas (and with it the next action) stops changing.
                    terms["dact"] = (torch.full_like(terms["l2"], float("nan")) if prev_action is None
                                     else (action - prev_action).abs().flatten(1).mean(1))
                    prev_action = action
                    step = torch.full((env.batch,), t, device=c0.device)
                    qs.append(self.agent.value(c0, c1, env.targets, step).view(-1))
                    totals.append(terms["total"].view(-1))
                    for k, v in terms.items():
                        sums[t][k] = sums[t].get(k, 0.0) + float(v.sum())
            if per_step is not None:  # the return after step t: discount * (r_t+1 + return after t+1)
                ret = torch.zeros_like(totals[-1])
                for t in range(cfg.max_step - 1, -1, -1):
                    for k, v in (("q", qs[t]), ("return", ret), ("|q-return|", (qs[t] - ret).abs())):
                        sums[t][k] = sums[t].get(k, 0.0) + float(v.sum())
                    ret = cfg.discount * (totals[t] + ret)
            img, mask = env.targets["image"], env.targets["mask"]
            l2, fg = l2_metrics(img, env.canvas.float() / 255, mask)
            l2s.append(l2), fgs.append(fg)
            ref["empty"].append(l2_metrics(img, torch.zeros_like(img), mask)[0])
            ref["mean_fill"].append(l2_metrics(img, img.mean((2, 3), keepdim=True).expand_as(img), mask)[0])
        out = {"val/l2": torch.cat(l2s).mean().item(), "val/fg_l2": torch.cat(fgs).mean().item(),
               "val/l2_empty_canvas": torch.cat(ref["empty"]).mean().item(),
               "val/l2_mean_fill": torch.cat(ref["mean_fill"]).mean().item()}
        if self.writer is not None:
            n = min(8, env.batch)
            self.writer.add_images("val/canvas", env.canvas[:n].float() / 255, self.episode)
            self.writer.add_images("val/target", env.targets["image"][:n], self.episode)
            for k, v in out.items():
                self.writer.add_scalar(k, v, self.episode)
        if per_step is not None:
            n = cfg.validate_episodes * env.batch
            per_step += [{k: v / n for k, v in s.items()} for s in sums]
        self.last_validation = out
        return out

    # -- training ---------------------------------------------------------------------------
    def train(self):
        from tqdm import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.train_steps, initial=min(self.step, cfg.train_steps), unit="step",
                   disable=self.rank != 0 or self.args.no_progress, dynamic_ncols=True, file=sys.stderr)
        t0, updates0 = time.perf_counter(), self.updates
        # SIGTERM (kill, schedulers) and SIGINT stop like Ctrl-C: checkpoint, then exit. SIGINT is
        # re-armed because background jobs of a non-interactive shell start with it ignored.
        restore = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, _interrupt)
        try:
            while self.step < cfg.train_steps:
                self.run_episode(bar)
                if self.steps_this_run >= cfg.warmup and len(self.replay) >= cfg.batch_size:
                    self.train_updates()
                if self.episode % cfg.validate_interval == 0:
                    v = self.validate()
                    if self.rank == 0:
                        bar.write(f"episode {self.episode} step {self.step}: val L2 {v['val/l2']:.5f} "
                                  f"fg L2 {v['val/fg_l2']:.5f} (empty {v['val/l2_empty_canvas']:.5f}, "
                                  f"mean fill {v['val/l2_mean_fill']:.5f})")
                    self.keep_best(v)
                if self.episode % cfg.checkpoint_interval == 0:
                    self.save_checkpoint()
                rate = (self.updates - updates0) / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(ep=self.episode, upd=self.updates, ups=f"{rate:.2f}/s")
        except KeyboardInterrupt:
            if self.rank == 0:
                bar.write(f"interrupted: saving {self.ckpt_path}")
            self.save_checkpoint()
            raise
        finally:
            bar.close()
            for sig, handler in restore.items():
                signal.signal(sig, handler)
        self.save_checkpoint()
        if self.writer is not None:
            self.writer.close()
        return self

    def run_episode(self, bar=None):
        cfg, env = self.cfg, self.env
        env.reset()
        for t in range(cfg.max_step):
            action = self.agent.act(env.canvas, env.targets, t, cfg.noise, self.gen)
            before, after, _ = env.step(action)
            self.replay.append(before, after, action, t, env.ids, env.flip)
            self.step += 1
            self.steps_this_run += 1
            if bar is not None:
                bar.update(1)
        self.episode += 1

    def train_updates(self):
        cfg = self.cfg
        phase = self.agent.set_lr(self.step)
        for _ in range(cfg.episode_train_times):
            stats = self.agent.update(self.replay.sample(cfg.batch_size, self.gen))
            self.updates += 1
            if self.writer is not None and self.updates % cfg.log_interval == 0:
                for k, v in stats.items():
                    self.writer.add_scalar(f"train/{k}", float(v), self.updates)
                self.writer.add_scalar("train/lr_phase", phase, self.updates)
        self.last_stats = stats


def run(args):
    if args.per_step and not args.validate_only:
        raise SystemExit("sgfast train-agent: --per-step needs --validate-only")
    trainer = Trainer(args)
    if args.validate_only:
        steps = [] if args.per_step else None
        v = trainer.validate(steps)
        if trainer.rank == 0:
            n = trainer.cfg.validate_episodes * trainer.val_env.batch
            print(f"train-agent: validation of {trainer.ckpt_path} (episode {trainer.episode}, {n} images): "
                  + ", ".join(f"{k} {val:.5f}" for k, val in v.items()))
            if steps:
                keys = ["l2"] + [k for k in steps[0] if k != "l2"]
                print("step " + " ".join(f"{k:>10s}" for k in keys))
                for t, s in enumerate(steps):
                    print(f"{t + 1:4d} " + " ".join(f"{s[k]:+10.5f}" for k in keys))
        return 0
    if trainer.rank == 0:
        cfg = trainer.cfg
        from sgfast.agent.replay import ReplayMemory

        bpt = ReplayMemory.bytes_per_transition(cfg.size, cfg.strokes * 13)
        print(f"train-agent: mode {trainer.mode}, config {cfg.name}, ops {trainer.ops.name}, device "
              f"{trainer.device}, ranks {trainer.world}, {cfg.strokes} strokes/step "
              f"({cfg.strokes_bg} bg + {cfg.strokes_fg} fg in sg mode), replay {trainer.replay.capacity} "
              f"transitions x {bpt} B", flush=True)
    trainer.train()
    if trainer.rank == 0:
        if args.export:
            trainer.export(args.export)
        v = trainer.last_validation
        if v:
            print("train-agent: final validation " + ", ".join(f"{k} {val:.5f}" for k, val in v.items()))
    return 0
