"""End-to-end agent throughput on the `tiny` config: env strokes/s and DDPG updates/s, with the
eager references (`--ops eager`) and the fused ops (`--ops fused`) on the same pipeline code, and
with either renderer: the neural one (a random renderer of the config's size) or the exact one
(`--renderer exact`: render_strokes, as `train-agent --renderer exact`).

    python -m pytest benchmarks/bench_agent.py --benchmark-columns=min,median,mean,rounds
    python benchmarks/bench_agent.py [--config tiny] [--mode sg] [--repeats 5]   (prints the ratios)
    python benchmarks/bench_agent.py --strokes-bg 6 --strokes-fg 4   (the shipped sg agent's bundle)
    python benchmarks/bench_agent.py --threads 1 --ops fused --renderer exact [--softness 1]
    python benchmarks/bench_agent.py --threads 1 --ops fused --renderer both   (exact / neural, alternating)

torch.compile of the eager pipeline is not timed: the update holds a double backward (WGAN-GP)
through weight-normed convs and an actor loss through the renderer, and compiling it takes longer
than a tiny training run on 2 cores. The network weights are random (timing does not depend on them).
"""
import argparse
import dataclasses
import time

import pytest
import torch

import sgfast
from sgfast.strokes import STROKE_PARAMS
import sgfast.ops
import sgfast.reference

NEEDED = ("composite", "aligned_crop", "focus_reward")


def available(name):
    mod = sgfast.ops if name == "fused" else sgfast.reference
    return all(hasattr(mod, f) for f in NEEDED) and (name == "eager" or sgfast.HAS_EXT)


def make_setup(ops_name, mode="sg", config="tiny", seed=0, renderer="neural", softness=1.0, **overrides):
    """renderer "neural": a random neural renderer + composite (Painter); "exact": render_strokes
    (ExactPainter, as train-agent --renderer exact). Returns cfg, agent, env, replay, generator."""
    from sgfast.backend import get_ops
    from sgfast.agent.config import get_config
    from sgfast.agent.data import synthetic_data
    from sgfast.agent.ddpg import DDPG
    from sgfast.agent.env import ExactPainter, PaintEnv, Painter
    from sgfast.agent.replay import ReplayMemory
    from sgfast.models.renderer import Renderer

    torch.manual_seed(seed)
    cfg = dataclasses.replace(get_config(config), **overrides)  # e.g. strokes_bg, strokes_fg
    ops = get_ops(ops_name, mode)
    data = synthetic_data(64, cfg.size, seed=seed)
    if renderer == "exact":
        painter = ExactPainter(ops, mode, cfg.strokes_bg, cfg.size, softness)
    else:
        painter = Painter(Renderer(cfg.renderer).eval().requires_grad_(False), ops, mode, cfg.strokes_bg)
    agent = DDPG(cfg, mode, painter, ops, data, "cpu")
    gen = torch.Generator().manual_seed(seed)
    env = PaintEnv(data, painter, cfg.max_step, cfg.env_batch, data.train_ids, gen)
    replay = ReplayMemory(cfg.env_batch * 4, cfg.size, cfg.strokes * STROKE_PARAMS)
    env.reset()
    for t in range(4):  # a few transitions to sample updates from
        before, after, _ = env.step(agent.act(env.canvas, env.targets, t))
        replay.append(before, after, torch.rand(cfg.env_batch, cfg.strokes * STROKE_PARAMS, generator=gen), t, env.ids, env.flip)
    return cfg, agent, env, replay, gen


def env_step(agent, env, t=1):
    env.step(agent.act(env.canvas, env.targets, t))


def update(agent, replay, cfg, gen):
    agent.update(replay.sample(cfg.batch_size, gen))


OPS = [pytest.param(n, marks=pytest.mark.skipif(not available(n), reason=f"{n} agent ops unavailable"))
       for n in ("eager", "fused")]


@pytest.fixture(autouse=True)
def _threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(prev)


@pytest.mark.parametrize("mode", ["sg", "baseline"])
@pytest.mark.parametrize("ops", OPS)
def test_env_step(benchmark, ops, mode):
    cfg, agent, env, _, _ = make_setup(ops, mode)
    benchmark.group = f"agent env step ({mode}, tiny)"
    benchmark.extra_info["strokes_per_call"] = cfg.env_batch * cfg.strokes
    benchmark.pedantic(env_step, args=(agent, env), rounds=10, warmup_rounds=2)


@pytest.mark.parametrize("mode", ["sg", "baseline"])
@pytest.mark.parametrize("ops", OPS)
def test_update(benchmark, ops, mode):
    cfg, agent, _, replay, gen = make_setup(ops, mode)
    benchmark.group = f"agent DDPG update ({mode}, tiny)"
    benchmark.pedantic(update, args=(agent, replay, cfg, gen), rounds=5, warmup_rounds=1)


def _median_times(fns, repeats):
    """Median seconds of each of fns, timed in alternation (one call of each per round), so that a
    change of the machine's load during the run falls on all of them alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--mode", default="sg", choices=["sg", "baseline"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--strokes-bg", type=int, default=None, help="background strokes per step (default: the config's)")
    p.add_argument("--strokes-fg", type=int, default=None, help="foreground strokes per step (default: the config's)")
    p.add_argument("--ops", default="both", choices=["eager", "fused", "both"],
                   help="which ops to time (default: both, and their ratio)")
    p.add_argument("--renderer", default="neural", choices=["neural", "exact", "both"],
                   help="neural: a random neural renderer + composite; exact: render_strokes; both: the two "
                        "timed in alternation, and their ratio (default: %(default)s)")
    p.add_argument("--softness", type=float, default=1.0, help="with --renderer exact: render_strokes' softness (px)")
    a = p.parse_args(argv)
    over = {k: v for k, v in (("strokes_bg", a.strokes_bg), ("strokes_fg", a.strokes_fg)) if v is not None}
    torch.set_num_threads(a.threads)
    renderers = ("neural", "exact") if a.renderer == "both" else (a.renderer,)
    res = {}
    for ops in ("eager", "fused") if a.ops == "both" else (a.ops,):
        if not available(ops):
            print(f"{ops}: unavailable")
            continue
        setups = [make_setup(ops, a.mode, a.config, renderer=r, softness=a.softness, **over) for r in renderers]
        for cfg, agent, env, replay, gen in setups:
            env_step(agent, env), update(agent, replay, cfg, gen)  # warm-up
        t_env = _median_times([lambda s=s: env_step(s[1], s[2]) for s in setups], a.repeats * 2)
        t_upd = _median_times([lambda s=s: update(s[1], s[3], s[0], s[4]) for s in setups], a.repeats)
        for r, (cfg, agent, *_), te, tu in zip(renderers, setups, t_env, t_upd):
            res[ops, r] = (cfg.env_batch * cfg.strokes / te, 1 / tu)
            what = r + (f" (render_strokes of {agent.painter.source})" if r == "exact" else "")
            print(f"{ops:5s} {a.mode} {a.config} K={cfg.strokes} renderer {what}: env {res[ops, r][0]:9.1f} "
                  f"strokes/s   update {res[ops, r][1]:6.2f} updates/s")
        if len(renderers) == 2:
            ex, ne = res[ops, "exact"], res[ops, "neural"]
            print(f"{ops:5s} exact / neural: env {ex[0] / ne[0]:.2f}x, update {ex[1] / ne[1]:.2f}x")
    for r in renderers:
        if ("fused", r) in res and ("eager", r) in res:
            fu, ea = res["fused", r], res["eager", r]
            print(f"{r} renderer, fused / eager: env {fu[0] / ea[0]:.2f}x, update {fu[1] / ea[1]:.2f}x")


if __name__ == "__main__":
    main()
