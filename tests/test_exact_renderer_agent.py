"""`train-agent --renderer exact`: the agent painting with render_strokes (the exact renderer fused with
compositing) in the env step and the DDPG update, its checkpoints and exported actor, and painting
with such an agent without renderer weights. Smoke config, eager ops (sgfast.reference), 1 thread."""
import argparse
import math
import pathlib
import types

import pytest
import torch

import sgfast.reference
from cli_usage import usage_error
from sgfast import cli

BASE = ["--config", "smoke", "--ops", "eager", "--renderer", "exact", "--threads", "1", "--no-progress",
        "--synthetic-images", "12", "--no-tensorboard"]


@pytest.fixture(autouse=True)
def _one_thread():
    """As --threads 1: on the shared CPU more threads than free cores spin."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _args(out, *extra):
    from train import agent

    parser = argparse.ArgumentParser()
    agent.configure(parser)
    return parser.parse_args(BASE + ["--out", str(out)] + list(extra))


def _by_hand(canvas, strokes, mask, layer, softness):
    """The reference op, one stroke at a time, in order."""
    for k in range(strokes.shape[1]):
        canvas = sgfast.reference.render_strokes(canvas, strokes[:, k:k + 1], mask,
                                                 None if layer is None else layer[k:k + 1], softness)
    return canvas


@pytest.mark.parametrize("mode,softness", [("sg", 1.0), ("baseline", 1.0), ("sg", 2.5)])
def test_exact_painter_equals_a_hand_loop_of_the_reference(mode, softness):
    from sgfast.backend import get_ops
    from sgfast.agent.env import ExactPainter

    g = torch.Generator().manual_seed(3)
    canvas = torch.rand(3, 3, 32, 32, generator=g)
    action = torch.rand(3, 5 * 13, generator=g)
    mask = torch.rand(3, 1, 32, 32, generator=g)
    painter = ExactPainter(get_ops("eager"), mode, 2, 32, softness)
    assert painter.source == "sgfast.reference" or painter.source.startswith("sgfast.backend")
    got = painter(canvas, action, mask)
    strokes = action.view(3, 5, 13)
    if mode == "sg":  # 2 background strokes (gated by 1 - S), then 3 foreground strokes (by S)
        want = _by_hand(canvas, strokes, mask, torch.tensor([False, False, True, True, True]), softness)
    else:  # no gates
        want = _by_hand(canvas, strokes, None, None, softness)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # Differentiable in the action (the DDPG actor loss goes through it) and the canvas.
    a = action.clone().requires_grad_(True)
    c = canvas.clone().requires_grad_(True)
    painter(c, a, mask).square().sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0 and c.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="canvas is 16x16"):
        painter(canvas[:, :, :16, :16], action, mask[:, :, :16, :16])


def test_render_strokes_comes_from_the_backend_when_it_has_it():
    from sgfast.agent.env import ExactPainter, render_strokes_op

    calls = []

    def fake(canvas, strokes, mask, layer, softness):
        calls.append((strokes.shape, mask, layer, softness))
        return canvas + 1

    ops = types.SimpleNamespace(name="eager", render_strokes=fake)
    assert render_strokes_op(ops)[0] is fake
    out = ExactPainter(ops, "baseline", 0, 8, 0.5)(torch.zeros(2, 3, 8, 8), torch.rand(2, 26))
    assert torch.equal(out, torch.ones(2, 3, 8, 8)) and calls == [((2, 2, 13), None, None, 0.5)]
    # Without it: the reference for eager ops.
    assert render_strokes_op(types.SimpleNamespace(name="eager"))[1] == "sgfast.reference"


def test_bad_softness_is_refused_with_one_line(tmp_path, capsys):
    for bad in ("0", "-1", "nan", "inf"):
        usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--softness", bad],
                    "--softness must be a finite number of pixels > 0")
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--softness", "soft"], "argument --softness")
    neural = [a if a != "exact" else "random" for a in BASE]
    usage_error(capsys, ["train-agent", *neural, "--out", tmp_path, "--softness", "2"],
                "--softness needs --renderer exact")
    from sgfast.agent.env import ExactPainter, check_softness

    assert check_softness(3) == 3.0
    with pytest.raises(ValueError, match="softness"):
        ExactPainter(types.SimpleNamespace(name="eager"), "sg", 2, 32, 0.0)


def test_no_renderer_weights_are_loaded_for_any_config(tmp_path, monkeypatch):
    from sgfast.train import agent

    def refuse(*a, **k):
        raise AssertionError("--renderer exact loaded a neural renderer")

    monkeypatch.setattr(agent, "load_renderer_for", refuse)
    tr = agent.Trainer(_args(tmp_path, "--config", "tiny", "--replay-episodes", "1", "--softness", "1.5"))
    assert tr.renderer is None and tr.painter.kind == "exact" and tr.painter.size == 64
    assert tr.painter.softness == 1.5 and tr.agent.painter is tr.painter and tr.env.painter is tr.painter


def test_an_update_trains_the_actor_through_render_strokes(tmp_path):
    from sgfast.train.agent import Trainer

    tr = Trainer(_args(tmp_path, "--mode", "sg"))
    tr.run_episode()
    before = [p.detach().clone() for p in tr.agent.actor.parameters()]
    stats = tr.agent.update(tr.replay.sample(tr.cfg.batch_size, tr.gen))
    assert all(math.isfinite(float(v)) for v in stats.values())
    # The actor's only way into its loss is the painted canvas: it moves only if gradients pass render_strokes.
    moved = [not torch.equal(a, b.detach()) for a, b in zip(before, tr.agent.actor.parameters())]
    assert all(moved)


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    """A smoke sg run with --renderer exact: 6 steps, then resumed to 12, exporting the actor."""
    out = tmp_path_factory.mktemp("exact_run")
    export = out / "actor.pt"
    assert cli.main(["train-agent", *BASE, "--mode", "sg", "--softness", "1.5", "--out", str(out),
                     "--train-steps", "6", "--export", str(export)]) == 0
    return out, export


def test_smoke_run_checkpoints_and_resumes(exact_run, capsys):
    from sgfast.io import load_checkpoint
    from sgfast.train.agent import Trainer

    out, _ = exact_run
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["renderer"] == "exact" and saved["softness"] == 1.5
    assert saved["counters"]["step"] == 6 and saved["counters"]["updates"] > 0
    resumed = Trainer(_args(out, "--mode", "sg", "--softness", "1.5", "--train-steps", "12", "--resume"))
    assert resumed.step == 6 and resumed.updates == saved["counters"]["updates"]
    state = resumed.agent.state_dict()
    for k, v in saved["agent"]["actor"].items():
        assert torch.equal(state["actor"][k], v), k
    assert "trained with" not in capsys.readouterr().err  # same renderer: nothing to say
    resumed.train()
    assert resumed.step == 12 and resumed.updates > saved["counters"]["updates"]
    assert load_checkpoint(out / "checkpoint.pt")["counters"]["step"] == 12
    # Another renderer or softness resumes (fine-tuning), and says so.
    Trainer(_args(out, "--mode", "sg", "--softness", "3", "--validate-only"))
    assert "trained with the exact renderer (softness 1.5); this run paints with the exact renderer (softness 3)" \
        in capsys.readouterr().err


def test_export_and_paint_without_renderer_weights(exact_run, monkeypatch, tmp_path):
    from sgfast.agent.env import to_uint8
    from sgfast.agent.export import load_actor
    from sgfast.paint import PaintError, paint
    from sgfast.paint import weights
    from sgfast.resources import bundled_asset

    _, export = exact_run
    actor, meta = load_actor(export)
    assert meta["renderer"] == "exact" and meta["softness"] == 1.5 and meta["size"] == 32
    # No renderer weights: the shipped default is not there.
    monkeypatch.setattr(weights, "DEFAULT_RENDERER", str(tmp_path / "no_renderer.pt"))
    birds = pathlib.Path(bundled_asset("samples", "birds"))
    image = next((birds / "images").rglob("*.jpg"))
    mask = next((birds / "segmentations").rglob(image.stem + ".png"))
    (res,) = paint([str(image)], mode="sg", method="agent", actor=str(export), masks=[str(mask)], ops="eager",
                   frames="none")
    assert res.ok, res.error
    k = meta["strokes_bg"] + meta["strokes_fg"]
    assert res.strokes.shape == (meta["max_step"] * k, 13) and res.layers[:k] == ["bg"] * 2 + ["fg"] * 3
    # The painting is render_strokes' own, step by step (uint8 between steps, as in training).
    canvas, s = torch.zeros(1, 3, 32, 32), res.masks[:1, None]
    layer = torch.arange(k) >= meta["strokes_bg"]
    for t in range(meta["max_step"]):
        step = torch.as_tensor(res.strokes[t * k:(t + 1) * k], dtype=torch.float32)[None]
        canvas = to_uint8(sgfast.reference.render_strokes(canvas, step, s, layer, 1.5)).float() / 255
    torch.testing.assert_close(res.canvas, canvas[0], rtol=0, atol=1.01 / 255)
    assert (res.canvas - canvas[0]).abs().gt(1e-6).float().mean() < 0.01
    # Renderer weights for such an agent are refused, naming the option.
    with pytest.raises(PaintError, match="--renderer: .* exact renderer"):
        paint([str(image)], mode="sg", method="agent", actor=str(export), masks=[str(mask)], ops="eager",
              renderer=str(tmp_path / "r.pt"))
