"""Training options of the agent: the actor's logit penalty (--action-reg) and --export-best.
Smoke config, eager ops, a random renderer, 1 thread."""
import argparse
import copy
import math

import pytest
import torch

import sgfast.reference

NEEDED = ("composite", "aligned_crop", "focus_reward")
pytestmark = pytest.mark.skipif(not all(hasattr(sgfast.reference, f) for f in NEEDED),
                                reason="sgfast.reference lacks the agent's ops")

BASE = ["--config", "smoke", "--ops", "eager", "--renderer", "random", "--threads", "1", "--no-progress",
        "--synthetic-images", "12", "--no-tensorboard"]


def _trainer(tmp_path, *extra):
    from train import agent

    parser = argparse.ArgumentParser()
    agent.configure(parser)
    return agent.Trainer(parser.parse_args(BASE + ["--out", str(tmp_path)] + list(extra)))


def _actor_logits(tr, batch):
    """The logits the update's actor step sees (train-mode BN, on a copy: running stats untouched)."""
    from sgfast.agent.env import actor_input

    targets = tr.data.batch(batch["ids"], batch["flip"])
    canvas0 = batch["canvas0"].float() / 255
    x = actor_input(canvas0, targets, batch["step"].float() / tr.cfg.max_step, tr.agent.coords, tr.mode)
    with torch.no_grad():
        return copy.deepcopy(tr.agent.actor).train().logits(x)


@pytest.mark.parametrize("mode,margin", [("sg", 0.0), ("baseline", 0.0), ("sg", 0.3)])
def test_action_reg_adds_the_logit_penalty_to_the_actor_loss(tmp_path, mode, margin):
    reg = 0.5
    plain = _trainer(tmp_path / "plain", "--mode", mode)
    penal = _trainer(tmp_path / "reg", "--mode", mode, "--action-reg", str(reg), "--action-reg-margin", str(margin))
    stats = {}
    for name, tr in (("plain", plain), ("reg", penal)):
        tr.run_episode()
        batch = tr.replay.sample(tr.cfg.batch_size, tr.gen)
        logits = _actor_logits(tr, batch)
        stats[name] = tr.agent.update(batch)
    # Same seed, same batch: the runs differ only by the penalty term of the actor loss.
    beyond = (logits.abs() - margin).clamp(min=0)  # the margin's part of every logit is free
    assert margin == 0 or bool((beyond == 0).any() and (beyond > 0).any())
    want = reg * beyond.pow(2).sum(1).mean()
    got = stats["reg"]["actor_loss"] - stats["plain"]["actor_loss"]
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert torch.allclose(stats["reg"]["actor_logit_rms"], logits.pow(2).mean().sqrt(), rtol=1e-4)


def test_action_reg_pulls_saturated_logits_back(tmp_path):
    """Logits that start far out in the sigmoid's tails (every action ~0.998, pinned) come back
    faster with the penalty than with the plain actor loss, on the same batches."""
    sizes = {}
    for reg in ("0", "10"):
        tr = _trainer(tmp_path / reg, "--mode", "sg", "--action-reg", reg)
        with torch.no_grad():
            tr.agent.actor.net.fc.bias.fill_(6.0)
        tr.run_episode()
        batch = tr.replay.sample(tr.cfg.batch_size, tr.gen)
        for _ in range(5):
            tr.agent.update(batch)
        sizes[reg] = _actor_logits(tr, batch).abs().mean()
    assert sizes["10"] < sizes["0"] - 0.01


def test_export_best_keeps_the_lowest_validation(tmp_path):
    from sgfast.agent.export import load_actor
    from sgfast.io import load_checkpoint

    best = tmp_path / "best_actor.pt"
    tr = _trainer(tmp_path, "--mode", "sg", "--export-best", str(best))
    figures = {"val/fg_l2": 0.1, "val/l2_empty_canvas": 0.3, "val/l2_mean_fill": 0.02}
    for episode, l2 in ((1, 0.05), (2, 0.08), (3, 0.03), (4, 0.04)):
        tr.episode = episode
        with torch.no_grad():  # a different actor each time, to tell the exports apart
            tr.agent.actor.net.fc.bias.fill_(float(episode))
        tr.keep_best(dict(figures, **{"val/l2": l2}))
    _, meta = load_actor(best)
    assert meta["episode"] == 3 and meta["validation"]["val/l2"] == 0.03
    assert tr.best_validation["val/l2"] == 0.03 and tr.best_validation["episode"] == 3
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["counters"]["episode"] == 3
    assert torch.all(ckpt["agent"]["actor"]["net.fc.bias"] == 3.0)


@pytest.mark.parametrize("mode", ["sg", "baseline"])
def test_per_step_validation_report(tmp_path, mode):
    """--per-step: one row per step; the last L2 is the validation L2, and the r_bg of the steps add
    up to D(I, C_T) - D(I, C_0) (the reward telescopes), computed here from the final canvases."""
    tr = _trainer(tmp_path, "--mode", mode, "--validate-episodes", "1")
    steps = []
    v = tr.validate(steps)
    assert len(steps) == tr.cfg.max_step
    assert steps[-1]["l2"] == pytest.approx(v["val/l2"], rel=1e-5)
    img = tr.val_env.targets["image"]
    d = tr.agent.rewards.d_global_target
    with torch.no_grad():
        final = tr.val_env.canvas.float() / 255
        telescoped = (d(torch.cat([img, final], 1)) - d(torch.cat([img, torch.zeros_like(final)], 1))).mean()
    assert sum(s["r_bg"] for s in steps) == pytest.approx(float(telescoped), rel=1e-4, abs=1e-5)
    assert ("r_focus" in steps[0]) == (mode == "sg")
    # the realised return: 0 after the last step, discount * (r + return) before it (means are linear)
    assert steps[-1]["return"] == 0
    for t in range(len(steps) - 1):
        expect = tr.cfg.discount * (steps[t + 1]["total"] + steps[t + 1]["return"])
        assert steps[t]["return"] == pytest.approx(expect, rel=1e-4, abs=1e-6)
    assert all(s["|q-return|"] >= abs(s["q"] - s["return"]) - 1e-6 for s in steps)


def test_per_step_action_change(tmp_path):
    """dact: the mean |a_t - a_t-1| of the actions the agent actually took (NaN at the first step)."""
    tr = _trainer(tmp_path, "--validate-episodes", "1")
    taken, act = [], tr.agent.act

    def recording_act(*a, **k):
        out = act(*a, **k)
        taken.append(out.clone())
        return out

    tr.agent.act = recording_act
    steps = []
    tr.validate(steps)
    assert len(taken) == len(steps) == tr.cfg.max_step
    assert math.isnan(steps[0]["dact"])
    for t in range(1, len(steps)):
        assert steps[t]["dact"] == pytest.approx(float((taken[t] - taken[t - 1]).abs().mean()), rel=1e-5)


def test_per_step_cli(tmp_path, capsys):
    from sgfast import cli

    args = ["train-agent", *BASE, "--out", str(tmp_path)]
    assert cli.main(args + ["--train-steps", "6"]) == 0
    capsys.readouterr()
    assert cli.main(args + ["--validate-only", "--per-step"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:4].strip().isdigit()]
    from sgfast.agent.config import get_config

    assert len(rows) == get_config("smoke").max_step
    with pytest.raises(SystemExit) as exc:  # a user's mistake: one line, exit status 2
        cli.main(args + ["--per-step"])
    assert exc.value.code == 2 and "--per-step needs --validate-only" in capsys.readouterr().err


def test_lr_boundaries_option_sets_the_phases(tmp_path):
    tr = _trainer(tmp_path, "--lr-boundaries", "5,9", "--lr-actor", "1e-3,2e-4,3e-5")
    assert tr.cfg.lr_boundaries == (5, 9)
    for steps, phase, lr in ((4, 0, 1e-3), (5, 1, 2e-4), (8, 1, 2e-4), (9, 2, 3e-5), (100, 2, 3e-5)):
        assert tr.agent.set_lr(steps) == phase
        assert tr.agent.opt_actor.param_groups[0]["lr"] == pytest.approx(lr)


@pytest.mark.parametrize("bad", ["9,5", "-1", "a,b", "1.5"])
def test_lr_boundaries_option_refuses_bad_values(tmp_path, bad, capsys):
    with pytest.raises(SystemExit):
        _trainer(tmp_path, "--lr-boundaries", bad)
    assert "--lr-boundaries" in capsys.readouterr().err
