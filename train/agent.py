"""`sgfast train-agent`: train the painting agent (model-based DDPG), semantic guidance or baseline.

    sgfast train-agent --config smoke                                        (seconds: a check)
    sgfast train-agent --config tiny --mode sg --data out/birds/prepared --out runs/sg
    torchrun --nproc_per_node 4 -m sgfast train-agent --config paper ...   (one rank per GPU)

One loop iteration (train/loop.py) is an episode of env-batch paintings followed by its updates.
Writes <out>/checkpoint.pt (atomically, every --checkpoint-interval episodes and when the run ends
or is stopped by Ctrl-C / SIGTERM), TensorBoard logs in <out>/tb, and with --export an fp16 actor
for painting. A run that ended or was stopped also leaves its replay memory in <out>/replay.pt
(single-process runs), so --resume continues exactly as if it had not stopped; from a periodic
checkpoint alone (a crash) the replay memory is refilled first. See docs/agent.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

from sgfast import metrics
from sgfast.agent import distributed
from sgfast.agent.config import CONFIGS, AgentConfig, get_config
from sgfast.cli_errors import UsageError, reports_errors
from sgfast.device import pick_device
from sgfast.strokes import STROKE_PARAMS
from sgfast.train import checkpoint as ckpt_io
from sgfast.train import options
from sgfast.train.loop import STOPPED_EXIT, Periodic, run_loop, tensorboard

COMMAND = "train-agent"
CHECKPOINT_KIND = "sgfast.agent.checkpoint"
REPLAY_NAME = "replay.pt"


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


@dataclasses.dataclass(frozen=True)
class AgentTraining:
    """Everything a train-agent run uses, built once from the command line (from_args): the
    preset's AgentConfig with the options' overrides, and how to run it."""
    run: options.RunOptions
    agent: AgentConfig
    mode: str                   # sg | baseline
    ops: str                    # fused | eager
    data: str                   # a prepared file or "synthetic"
    synthetic_images: int
    val_fraction: float
    renderer: str | None        # weights, "random", "exact" (render_strokes), or None: the shipped one for the config
    softness: float | None      # render_strokes' anti-aliasing ramp in pixels (--renderer exact), else None
    export: str | None
    export_best: str | None
    validate_only: bool
    per_step: bool

    @property
    def source(self) -> str:
        """The checkpoint --resume and --validate-only read."""
        return self.run.resume or self.run.checkpoint

    @classmethod
    def from_args(cls, args) -> "AgentTraining":
        if args.per_step and not args.validate_only:
            raise UsageError("--per-step needs --validate-only")
        options.within("val_fraction", args.val_fraction, 0, 1)
        # the run's own files in --out: an export there would be overwritten by them
        own = {os.path.abspath(os.path.join(args.out, n)) for n in ("checkpoint.pt", "best.pt", REPLAY_NAME)}
        for flag, path in (("--export", args.export), ("--export-best", args.export_best)):
            if path and os.path.abspath(path) in own:
                raise UsageError(f"{flag} {path} is one of the run's own files in --out (checkpoint.pt, best.pt, "
                                 f"{REPLAY_NAME}); choose another name")
        return cls(run=options.run_options(args), agent=build_config(args), mode=args.mode, ops=args.ops,
                   data=args.data, synthetic_images=args.synthetic_images, val_fraction=args.val_fraction,
                   renderer=args.renderer, softness=renderer_softness(args), export=args.export,
                   export_best=args.export_best,
                   validate_only=args.validate_only, per_step=args.per_step)


def configure(parser):
    options.add_run_args(parser, configs=CONFIGS, default_config="tiny", default_out="runs/agent",
                         default_seed=1234,
                         config_help="sizes and schedule: paper (128^2, batch 96, GPU), tiny (64^2, 2 CPU "
                                     "cores), smoke (seconds, tests; a random renderer unless --renderer)")
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
                             "initialised renderer of the config's size (tests, benchmarks); 'exact' to paint "
                             "with render_strokes, the exact renderer, in the env and the update (no renderer "
                             "weights; any config) (default: the shipped renderer_<config renderer>.pt; smoke: "
                             "random)")
    parser.add_argument("--softness", type=float, default=None,
                        help="with --renderer exact: the width of the strokes' anti-aliasing ramp in pixels, "
                             "> 0 (default: 1.0)")
    parser.add_argument("--validate-only", action="store_true",
                        help="load <out>/checkpoint.pt (or --resume CKPT), run --validate-episodes validation "
                             "episodes, print the figures and exit (no training)")
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
    for flag, field, typ, help_text in OVERRIDES:
        parser.add_argument(flag, dest=field, type=typ, default=None,
                            help=f"{help_text} (default: from --config)")


def build_config(args) -> AgentConfig:
    """The --config preset with the options given, checked."""
    cfg = get_config(args.config)
    over = {f: getattr(args, f) for _, f, _, _ in OVERRIDES if getattr(args, f, None) is not None}
    cfg = dataclasses.replace(cfg, **over)
    for name in ("max_step", "env_batch", "batch_size", "replay_episodes", "episode_train_times",
                 "validate_interval", "validate_episodes", "log_interval", "checkpoint_interval"):
        options.at_least(name, getattr(cfg, name), 1)
    options.at_least("warmup", cfg.warmup, 0)
    options.at_least("train_steps", cfg.train_steps, 0)
    if cfg.strokes_bg < 0 or cfg.strokes_fg < 0 or cfg.strokes < 1:
        raise UsageError("--strokes-bg/--strokes-fg must be >= 0 with at least one stroke")
    from sgfast.agent.rewards import FOCUS_NORMS

    if cfg.focus_norm not in FOCUS_NORMS:
        raise UsageError(f"--focus-norm must be one of {', '.join(FOCUS_NORMS)}, got {cfg.focus_norm!r}")
    if cfg.action_reg < 0 or cfg.action_reg_margin < 0:
        raise UsageError(f"--action-reg and --action-reg-margin must be >= 0, got "
                         f"{cfg.action_reg}, {cfg.action_reg_margin}")
    if not 0 <= cfg.tau <= 1 or not 0 <= cfg.discount <= 1:
        raise UsageError("--tau and --discount must lie in [0, 1]")
    return cfg


def renderer_softness(args) -> float | None:
    """--softness, checked: a finite number of pixels > 0, only with --renderer exact (default 1.0)."""
    from sgfast.agent.env import check_softness

    softness = getattr(args, "softness", None)
    if args.renderer != "exact":
        if softness is not None:
            raise UsageError("--softness needs --renderer exact (the neural renderer has no softness)")
        return None
    if softness is None:
        return 1.0
    try:
        return check_softness(softness)
    except ValueError:
        raise UsageError(f"--softness must be a finite number of pixels > 0, got {softness}") from None


def load_renderer_for(cfg, path, device):
    from sgfast.models.renderer import Renderer, load_renderer
    from sgfast.resources import shipped_weights

    if path is None:
        shipped = shipped_weights(f"renderer_{cfg.renderer}.pt")
        if os.path.isfile(shipped):
            path = shipped
        elif cfg.name == "smoke":
            path = "random"
        else:
            raise UsageError(f"no shipped renderer for --config {cfg.name} (renderer_{cfg.renderer}.pt): pass "
                             f"--renderer W (from `sgfast train-renderer --config {cfg.renderer}`) or "
                             "--renderer random")
    if path == "random":
        renderer = Renderer(cfg.renderer)
    else:
        try:
            renderer = load_renderer(path)
        except (OSError, RuntimeError, ValueError) as exc:
            raise UsageError(f"--renderer {path}: {exc}".replace("sgfast: ", "")) from None
    if renderer.config.size != cfg.size:
        raise UsageError(f"the renderer paints {renderer.config.size}^2 but config "
                         f"{cfg.name!r} uses a {cfg.size}^2 canvas")
    renderer.requires_grad_(False)
    return renderer.to(device).eval()


def load_data(opts: AgentTraining, cfg, device):
    from sgfast.agent.data import TensorData, synthetic_data

    try:
        if opts.data == "synthetic":
            return synthetic_data(opts.synthetic_images, cfg.size, seed=opts.run.seed, device=device)
        return TensorData.from_prepared(opts.data, cfg.size, opts.val_fraction, device=device, seed=opts.run.seed)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot use --data {opts.data}: {exc}") from exc


def replay_state(memory) -> dict:
    """The filled rows of a ReplayMemory and its write position."""
    n = memory.count
    return {"canvas0": memory.canvas0[:n], "canvas1": memory.canvas1[:n], "action": memory.action[:n],
            "ids": memory.ids[:n], "step": memory.step[:n], "flip": memory.flip[:n],
            "pos": memory.pos, "count": n}


def restore_replay(memory, state) -> bool:
    """Refill `memory` from replay_state's dict; False (memory untouched) if the shapes differ."""
    n = int(state["count"])
    if n > memory.capacity or state["canvas0"].shape[1:] != memory.canvas0.shape[1:] \
            or state["action"].shape[1:] != memory.action.shape[1:]:
        return False
    for name in ("canvas0", "canvas1", "action", "ids", "step", "flip"):
        getattr(memory, name)[:n] = state[name].to(memory.device)
    memory.pos, memory.count = int(state["pos"]) % memory.capacity, n
    return True


def _renderer_words(meta: dict) -> str:
    if meta["renderer"] == "exact":
        return f"the exact renderer (softness {meta['softness']:g})"
    return "the neural renderer"


def l2_metrics(image, canvas, mask):
    """Per-image L2 (mean over C, H, W of the squared difference, the baseline's `dist`) and
    foreground L2 (the same, weighted by the soft mask S)."""
    return metrics.l2(image, canvas), metrics.fg_l2(image, canvas, mask)


class Trainer:
    """The DDPG training of one rank: from an AgentTraining (or, for scripts and tests, the parsed
    arguments of configure's parser)."""

    def __init__(self, opts: AgentTraining | argparse.Namespace):
        from sgfast.backend import get_ops
        from sgfast.agent.ddpg import DDPG
        from sgfast.agent.env import ExactPainter, PaintEnv, Painter
        from sgfast.agent.replay import ReplayMemory

        if isinstance(opts, argparse.Namespace):
            opts = AgentTraining.from_args(opts)
        self.opts = opts
        run = opts.run
        options.apply_threads(run)
        local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        self.device = pick_device(run.device, local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        distributed.init_from_env(self.device.type)
        self.rank, self.world = distributed.world()
        self.cfg = cfg = opts.agent
        self.mode = opts.mode
        torch.manual_seed(run.seed)  # same initial weights on every rank (and broadcast anyway)
        self.gen = torch.Generator().manual_seed(run.seed + 7919 * self.rank)  # envs, replay sampling
        try:
            self.ops = get_ops(opts.ops, opts.mode)
        except RuntimeError as exc:
            raise UsageError(f"--ops {opts.ops}: {exc}".replace("sgfast: ", "")) from None
        self.data = load_data(opts, cfg, self.device)
        if opts.renderer == "exact":  # render_strokes in the env and the update: no renderer weights
            self.renderer = None
            self.painter = ExactPainter(self.ops, self.mode, cfg.strokes_bg, cfg.size, opts.softness)
        else:
            self.renderer = load_renderer_for(cfg, opts.renderer, self.device)
            self.painter = Painter(self.renderer, self.ops, self.mode, cfg.strokes_bg)
        self.agent = DDPG(cfg, self.mode, self.painter, self.ops, self.data, self.device)
        capacity = cfg.replay_episodes * cfg.max_step  # the baseline's rmsize * max_step transitions
        self.replay = ReplayMemory(max(capacity, cfg.env_batch), cfg.size, cfg.strokes * STROKE_PARAMS, self.device)
        self.env = PaintEnv(self.data, self.painter, cfg.max_step, cfg.env_batch, self.data.train_ids, self.gen,
                            weights=self.data.train_weights)
        n_val = min(len(self.data.val_ids), cfg.env_batch)
        self.val_env = PaintEnv(self.data, self.painter, cfg.max_step, n_val, self.data.val_ids, self.gen,
                                augment=False)
        self.step = self.episode = self.updates = 0
        self.steps_this_run = 0  # env steps collected since the replay memory was empty (--warmup)
        self.last_validation = {}
        self.best_validation = {}  # the validation figures of the best export so far (--export-best)
        self.stopped = False       # the last train() ended by a signal
        self.out = run.out
        self.ckpt_path = run.checkpoint
        self.replay_path = os.path.join(self.out, REPLAY_NAME)
        if run.resume or opts.validate_only:
            self.load_checkpoint(opts.source, replay=not opts.validate_only)
        self.writer = None  # open during train() (rank 0, unless --no-tensorboard)

    # -- checkpoints ------------------------------------------------------------------------
    def renderer_meta(self) -> dict:
        """What painted the strokes: {"renderer": "neural"} or {"renderer": "exact", "softness": s}."""
        if self.painter.kind == "exact":
            return {"renderer": "exact", "softness": self.painter.softness}
        return {"renderer": "neural"}

    def checkpoint_state(self, replay_token=None) -> dict:
        return {"mode": self.mode, "config": self.cfg.to_dict(), **self.renderer_meta(),
                "agent": self.agent.state_dict(),
                "counters": {"step": self.step, "episode": self.episode, "updates": self.updates},
                "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state()},
                "validation": dict(self.last_validation), "best_validation": dict(self.best_validation),
                "replay": replay_token}

    def save_checkpoint(self, with_replay=False):
        """OUT/checkpoint.pt (rank 0), and with_replay (a single-process run's last checkpoint)
        OUT/replay.pt first, tied to it by a token so that only this checkpoint loads it."""
        if self.rank != 0:  # one writer; the other ranks hold the same weights
            return
        token = None
        if with_replay and self.world == 1:
            token = os.urandom(8).hex()  # not torch's RNG: saving must not change the run
            ckpt_io.save(self.replay_path, "sgfast.agent.replay",
                         {"token": token, "memory": replay_state(self.replay),
                          "steps_this_run": self.steps_this_run})
        ckpt_io.save(self.ckpt_path, CHECKPOINT_KIND, self.checkpoint_state(token))
        if self.opts.export:
            self.export(self.opts.export)

    def keep_best(self, v: dict):
        """--export-best: export when this validation's L2 is the run's lowest so far."""
        best = self.best_validation.get("val/l2")
        if self.rank != 0 or not self.opts.export_best or (best is not None and v["val/l2"] >= best):
            return
        self.best_validation = dict(v, episode=self.episode, step=self.step)
        self.export(self.opts.export_best, v)
        ckpt_io.save(os.path.join(self.out, "best.pt"), CHECKPOINT_KIND, self.checkpoint_state())

    def export(self, path, validation=None):
        from sgfast.agent.export import save_actor

        v = self.last_validation if validation is None else validation
        save_actor(path, self.agent.actor, self.cfg, self.mode,
                   {"episode": self.episode, "step": self.step, "validation": dict(v)}, **self.renderer_meta())

    def load_checkpoint(self, path=None, replay=True):
        path = path or self.ckpt_path
        state = ckpt_io.load(path, CHECKPOINT_KIND, map_location=self.device,
                             required=("mode", "config", "agent", "counters", "rng"),
                             what="--validate-only" if self.opts.validate_only else "--resume")
        if state["mode"] != self.mode:
            raise UsageError(f"{path} was trained in mode {state['mode']!r}, not {self.mode!r}")
        arch = ("size", "width", "blocks", "disc_width", "strokes_bg", "strokes_fg")
        saved = state["config"]
        for key in arch:
            if saved[key] != self.cfg.to_dict()[key]:
                raise UsageError(f"{path} has {key}={saved[key]}, this run {self.cfg.to_dict()[key]} "
                                 "(use the same --config and stroke options)")
        saved_renderer = {"renderer": state.get("renderer", "neural")}
        if saved_renderer["renderer"] == "exact":
            saved_renderer["softness"] = float(state.get("softness", 1.0))
        if saved_renderer != self.renderer_meta() and self.rank == 0:  # allowed (fine-tuning), but said
            print(f"sgfast {COMMAND}: {path} was trained with {_renderer_words(saved_renderer)}; this run "
                  f"paints with {_renderer_words(self.renderer_meta())}", file=sys.stderr)
        self.agent.load_state_dict(state["agent"])
        c = state["counters"]
        self.step, self.episode, self.updates = int(c["step"]), int(c["episode"]), int(c["updates"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.gen.set_state(state["rng"]["gen"].cpu())
        if self.rank:  # rank 0's RNG state was saved: decorrelate the other ranks' environments
            self.gen.manual_seed(self.opts.run.seed + 7919 * self.rank + self.episode)
        self.last_validation = dict(state.get("validation", {}))
        self.best_validation = dict(state.get("best_validation", {}))
        if replay and state.get("replay") and self.world == 1:
            self.load_replay(state["replay"])

    def load_replay(self, token):
        """The replay memory saved with the checkpoint (token), if it is there and fits."""
        try:
            saved = ckpt_io.load(self.replay_path, "sgfast.agent.replay", map_location=self.device,
                                 required=("token", "memory", "steps_this_run"))
        except UsageError:
            saved = None
        if saved is None or saved["token"] != token or not restore_replay(self.replay, saved["memory"]):
            print(f"sgfast {COMMAND}: {self.replay_path} does not belong to the checkpoint or does not fit "
                  "this run's replay memory; refilling it (the run will not match an uninterrupted one)",
                  file=sys.stderr)
            return
        self.steps_this_run = int(saved["steps_this_run"])

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
        """Episodes until --train-steps env steps (train/loop.py: validation every
        --validate-interval episodes, a checkpoint every --checkpoint-interval, Ctrl-C / SIGTERM
        stop after the episode); sets self.stopped. Returns self."""
        cfg = self.cfg
        # One iteration is an episode of max_step env steps; the run ends after the episode that
        # reaches train_steps.
        total = self.episode + -(-max(0, cfg.train_steps - self.step) // cfg.max_step)
        t0, updates0 = time.perf_counter(), self.updates

        def episode(i):
            self.run_episode()
            if self.steps_this_run >= cfg.warmup and len(self.replay) >= cfg.batch_size:
                self.train_updates()
            rate = (self.updates - updates0) / max(time.perf_counter() - t0, 1e-9)
            return {"updates": self.updates, "ups": rate}

        def validation(i):
            v = self.validate()
            self.keep_best(v)
            return (f"episode {self.episode} step {self.step} ({time.perf_counter() - t0:.0f} s, {self.updates} updates): val L2 {v['val/l2']:.5f} "
                    f"fg L2 {v['val/fg_l2']:.5f} (empty {v['val/l2_empty_canvas']:.5f}, "
                    f"mean fill {v['val/l2_mean_fill']:.5f})")

        with tensorboard(self.opts.run.tensorboard if self.rank == 0 else None) as self.writer:
            result = run_loop(
                COMMAND, start=self.episode, total=total, step=episode,
                save=lambda i: self.save_checkpoint(), save_last=lambda i: self.save_checkpoint(with_replay=True),
                ckpt_every=cfg.checkpoint_interval, ckpt_path=self.ckpt_path,
                periodic=[Periodic(cfg.validate_interval, validation)], log_every=0,
                progress=self.opts.run.progress and self.rank == 0, desc=None, unit="episode",
                bar=(cfg.train_steps, lambda: min(self.step, cfg.train_steps), "step"),
                agree=self._any_rank_stops if self.world > 1 else None, announce=self.rank == 0,
                time_limit=self.opts.run.time_limit)
        self.writer = None
        self.stopped = result.stopped
        return self

    def _any_rank_stops(self, stopping: bool) -> bool:
        """All ranks stop after the same episode when any of them got a signal."""
        import torch.distributed as dist

        flag = torch.tensor([1.0 if stopping else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

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


@reports_errors(COMMAND)
def run(args):
    return train(AgentTraining.from_args(args))


def train(opts: AgentTraining) -> int:
    trainer = Trainer(opts)
    if opts.validate_only:
        steps = [] if opts.per_step else None
        v = trainer.validate(steps)
        if trainer.rank == 0:
            n = trainer.cfg.validate_episodes * trainer.val_env.batch
            print(f"train-agent: validation of {opts.source} (episode {trainer.episode}, {n} images): "
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

        bpt = ReplayMemory.bytes_per_transition(cfg.size, cfg.strokes * STROKE_PARAMS)
        painter = trainer.painter
        rend = (f"renderer exact (softness {painter.softness:g}, render_strokes of {painter.source})"
                if painter.kind == "exact" else "renderer neural")
        print(f"train-agent: mode {trainer.mode}, config {cfg.name}, ops {trainer.ops.name}, {rend}, device "
              f"{trainer.device}, ranks {trainer.world}, {cfg.strokes} strokes/step "
              f"({cfg.strokes_bg} bg + {cfg.strokes_fg} fg in sg mode), replay {trainer.replay.capacity} "
              f"transitions x {bpt} B", flush=True)
    trainer.train()
    if trainer.stopped:
        return STOPPED_EXIT
    if trainer.rank == 0:
        if opts.export:
            trainer.export(opts.export)
        v = trainer.last_validation
        if v:
            print("train-agent: final validation " + ", ".join(f"{k} {val:.5f}" for k, val in v.items()))
    return 0
