"""The painting agent: smoke training of both modes, resume, Ctrl-C, [B, 1] shapes, seeds, the
fused and eager pipelines, and a 2-rank gloo run. Everything on the smoke config, 1 thread."""
import argparse
import os
import socket

import pytest
import torch

import sgfast.reference
from cli_usage import usage_error
from sgfast import cli

NEEDED = ("composite", "aligned_crop", "focus_reward")
HAVE_REFERENCE = all(hasattr(sgfast.reference, f) for f in NEEDED)
needs_reference = pytest.mark.skipif(not HAVE_REFERENCE, reason="sgfast.reference lacks the agent's ops")

BASE = ["--config", "smoke", "--ops", "eager", "--renderer", "random", "--threads", "1", "--no-progress",
        "--synthetic-images", "12"]


def _args(tmp_path, *extra):
    from train import agent

    parser = argparse.ArgumentParser()
    agent.configure(parser)
    return parser.parse_args(BASE + ["--out", str(tmp_path), "--no-tensorboard"] + list(extra))


def _same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@needs_reference
@pytest.mark.parametrize("mode", ["sg", "baseline"])
def test_smoke_training_writes_checkpoint_logs_and_weights(tmp_path, mode, capsys):
    export = tmp_path / "actor.pt"
    rc = cli.main(["train-agent", *BASE, "--mode", mode, "--out", str(tmp_path), "--export", str(export)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "final validation" in out
    from sgfast.io import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["mode"] == mode
    assert ckpt["counters"]["step"] >= 12 and ckpt["counters"]["updates"] > 0
    assert ckpt["validation"]["val/l2"] >= 0
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tb"))
    # The exported fp16 actor rebuilds and acts.
    from sgfast.agent.env import actor_channels
    from sgfast.agent.export import load_actor

    actor, meta = load_actor(export)
    assert meta["mode"] == mode and meta["size"] == 32
    with torch.no_grad():
        action = actor(torch.rand(2, actor_channels(mode), 32, 32))
    assert action.shape == (2, 5 * 13) and 0 <= float(action.min()) and float(action.max()) <= 1


@needs_reference
@pytest.mark.parametrize("mode", ["sg", "baseline"])
def test_rewards_and_q_are_b_by_1(tmp_path, mode):
    from sgfast.train.agent import Trainer

    tr = Trainer(_args(tmp_path, "--mode", mode))
    tr.run_episode()
    b = tr.cfg.batch_size
    tr.agent.update(tr.replay.sample(b, tr.gen))
    shapes = tr.agent.last_shapes
    expected = {"q", "value", "target", "r_bg", "total"} | ({"r_fg", "r_focus"} if mode == "sg" else set())
    assert set(shapes) == expected
    for name, shape in shapes.items():
        assert shape == (b, 1), f"{name} is {shape}, not ({b}, 1)"


@needs_reference
def test_seed_makes_a_cpu_run_repeatable(tmp_path):
    from sgfast.train.agent import Trainer

    states = []
    for sub in ("a", "b"):
        tr = Trainer(_args(tmp_path / sub, "--mode", "sg", "--train-steps", "6")).train()
        states.append(tr.agent.actor.state_dict())
    _same_state(*states)


@needs_reference
def test_resume_restores_everything_and_continues(tmp_path, capsys):
    from sgfast.io import load_checkpoint
    from sgfast.train.agent import Trainer

    first = Trainer(_args(tmp_path, "--mode", "sg", "--train-steps", "6")).train()
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["counters"]["step"] == first.step == 6
    resumed = Trainer(_args(tmp_path, "--mode", "sg", "--train-steps", "12", "--resume"))
    assert (resumed.step, resumed.episode, resumed.updates) == (first.step, first.episode, first.updates)
    state = resumed.agent.state_dict()
    for part in ("actor", "actor_target", "critic", "critic_target"):
        _same_state(state[part], first.agent.state_dict()[part])
    _same_state(state["rewards"]["model"], first.agent.rewards.state_dict())
    assert state["opt_actor"]["state"].keys() == first.agent.opt_actor.state_dict()["state"].keys()
    assert torch.equal(resumed.gen.get_state(), first.gen.get_state())
    resumed.train()
    assert resumed.step == 12 and resumed.updates > first.updates
    assert load_checkpoint(tmp_path / "checkpoint.pt")["counters"]["step"] == 12
    # --validate-only reads the checkpoint and reports the same figures as the run's last validation.
    assert cli.main(["train-agent", *BASE, "--mode", "sg", "--out", str(tmp_path), "--validate-only"]) == 0
    assert f"val/l2 {resumed.last_validation['val/l2']:.5f}" in capsys.readouterr().out
    # A mismatching mode is refused with a clear message.
    with pytest.raises(SystemExit, match="mode"):
        Trainer(_args(tmp_path, "--mode", "baseline", "--resume"))


@needs_reference
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_after_the_episode_with_a_checkpoint(tmp_path, monkeypatch, how, capsys):
    import signal

    from sgfast.io import load_checkpoint
    from sgfast.train.agent import Trainer

    calls = {"n": 0}
    original = Trainer.run_episode

    def interrupted(self, bar=None):
        calls["n"] += 1
        if calls["n"] == 3:  # arrives during the third episode, which is completed
            os.kill(os.getpid(), signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        return original(self, bar)

    monkeypatch.setattr(Trainer, "run_episode", interrupted)
    rc = cli.main(["train-agent", *BASE, "--mode", "baseline", "--out", str(tmp_path), "--no-tensorboard",
                   "--checkpoint-interval", "100", "--validate-interval", "100"])
    assert rc == 130 and calls["n"] == 3
    assert "stopped at episode 3/4" in capsys.readouterr().err
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["counters"]["episode"] == 3 and saved["counters"]["step"] == 9
    # The replay memory went with it, tied to this checkpoint.
    replay = load_checkpoint(tmp_path / "replay.pt")
    assert replay["token"] == saved["replay"]
    assert replay["memory"]["count"] == min(9 * 4, 10 * 3)  # 9 steps of 4 envs; capacity 10 episodes x 3


def test_bad_options_are_refused(tmp_path, capsys):
    """A user's mistake: one line "sgfast train-agent: error: ...", exit status 2, no traceback."""
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--max-step", "0"], "--max-step must be >= 1")
    with pytest.raises(SystemExit) as exc:  # argparse's own check (usage line + error line)
        cli.main(["train-agent", *BASE, "--out", str(tmp_path), "--mode", "other"])
    assert exc.value.code == 2 and "sgfast train-agent: error: argument --mode" in capsys.readouterr().err
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--data", tmp_path / "missing.sgprep"],
                "cannot use --data")
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--synthetic-images", "1"], "cannot use --data")
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--resume"], "--resume: no checkpoint at")
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--validate-only"],
                "--validate-only: no checkpoint at")
    usage_error(capsys, ["train-agent", *BASE, "--out", tmp_path, "--per-step"], "--per-step needs --validate-only")
    usage_error(capsys, ["train-agent", "--config", "tiny", "--out", tmp_path, "--renderer", tmp_path / "r.pt"],
                "--renderer .*r.pt")
    usage_error(capsys, ["train-agent", "--config", "paper", "--out", tmp_path, "--device", "cpu"],
                "no shipped renderer for --config paper.*--renderer")


def test_replay_memory_round_trip_and_bytes():
    from sgfast.agent.replay import ReplayMemory

    mem = ReplayMemory(5, 4, 13)
    c0 = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    c1 = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    act = torch.rand(3, 13)
    mem.append(c0, c1, act, 2, torch.tensor([7, 8, 9]), torch.tensor([True, False, True]))
    mem.append(c0, c1, act, 3, torch.tensor([7, 8, 9]), torch.tensor([True, False, True]))
    assert len(mem) == 5 and mem.pos == 1  # wrapped around
    s = mem.sample(64, torch.Generator().manual_seed(0))
    for i in range(64):  # every sampled row is one of the appended transitions, intact
        j = int(s["ids"][i]) - 7
        assert torch.equal(s["canvas0"][i], c0[j]) and torch.equal(s["canvas1"][i], c1[j])
        assert torch.equal(s["action"][i], act[j]) and bool(s["flip"][i]) == (j != 1)
    # At the paper's 128^2 and 5 strokes: well under the authors' 229 KB / 360 KB per transition.
    assert ReplayMemory.bytes_per_transition(128, 65) < 229_376 / 2


def test_flip_mirrors_targets_and_boxes():
    from sgfast.agent.data import synthetic_data

    data = synthetic_data(4, 16, seed=3)
    ids = torch.tensor([0, 1])
    plain = data.batch(ids)
    flipped = data.batch(ids, torch.tensor([True, False]))
    assert torch.equal(flipped["image"][0], plain["image"][0].flip(-1))
    assert torch.equal(flipped["image"][1], plain["image"][1])
    b0, b1 = plain["boxes"][0], flipped["boxes"][0]
    assert torch.allclose(b1, torch.stack([1 - b0[0] - b0[2], b0[1], b0[2], b0[3]]))


@needs_reference
def test_painter_matches_eq_3_4_by_hand():
    """The env's step against a hand-written loop of paper Eq. 3-4 (renderer alpha, masked colour)."""
    from sgfast.backend import get_ops
    from sgfast.agent.env import Painter
    from sgfast.models.renderer import Renderer

    torch.manual_seed(0)
    renderer = Renderer("smoke").eval()
    painter = Painter(renderer, get_ops("eager"), "sg", strokes_bg=2)
    canvas, mask, action = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32), torch.rand(2, 5 * 13)
    got = painter(canvas, action, mask)
    want = canvas.clone()
    a = action.view(2, 5, 13)
    for k in range(5):
        alpha = renderer(a[:, k, :10]).unsqueeze(1)
        m = mask if k >= 2 else 1 - mask
        want = want * (1 - alpha) + alpha * a[:, k, 10:].view(2, 3, 1, 1) * m
    assert torch.allclose(got, want, atol=1e-6)


def _fused_available():
    import sgfast.ops

    return sgfast.HAS_EXT and all(hasattr(sgfast.ops, f) for f in NEEDED) and HAVE_REFERENCE


@pytest.mark.skipif(not _fused_available(), reason="fused agent ops not built")
@pytest.mark.parametrize("mode", ["sg", "baseline"])
def test_fused_and_eager_pipelines_agree_on_a_step(mode):
    """Same weights, same batch: env step, rewards, values and gradients of both op sets agree."""
    from sgfast.backend import get_ops
    from sgfast.agent.config import get_config
    from sgfast.agent.data import synthetic_data
    from sgfast.agent.ddpg import DDPG
    from sgfast.agent.env import Painter
    from sgfast.models.renderer import Renderer

    cfg = get_config("smoke")
    data = synthetic_data(6, cfg.size, seed=1)
    renderer = Renderer("smoke").eval().requires_grad_(False)
    results = {}
    for name in ("eager", "fused"):
        torch.manual_seed(0)
        ops = get_ops(name, mode)
        painter = Painter(renderer, ops, mode, cfg.strokes_bg)
        agent = DDPG(cfg, mode, painter, ops, data, "cpu")
        targets = data.batch(torch.tensor([0, 1, 2, 3]))
        canvas = torch.rand(4, 3, cfg.size, cfg.size)
        action = torch.rand(4, cfg.strokes * 13, requires_grad=True)
        value, terms, q = agent.evaluate(canvas, action, targets, torch.tensor([0, 1, 2, 2]))
        value.sum().backward()
        results[name] = (painter(canvas, action.detach(), targets["mask"]), value.detach(),
                         {k: v.detach() for k, v in terms.items()}, action.grad)
    (c_e, v_e, t_e, g_e), (c_f, v_f, t_f, g_f) = results["eager"], results["fused"]
    assert torch.allclose(c_e, c_f, atol=1e-5)
    assert torch.allclose(v_e, v_f, atol=1e-4)
    for k in t_e:
        assert torch.allclose(t_e[k], t_f[k], atol=1e-4), k
    assert torch.allclose(g_e, g_f, atol=1e-4, rtol=1e-3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from sgfast.train.agent import Trainer

    try:
        tr = Trainer(_args(os.path.join(out, "run"), "--mode", "sg", "--train-steps", "6", "--validate-interval", "100",
                           "--checkpoint-interval", "100"))
        tr.train()
        torch.save({"actor": tr.agent.actor.state_dict(), "critic": tr.agent.critic.state_dict(),
                    "d": tr.agent.rewards.state_dict(), "updates": tr.updates},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@needs_reference
def test_two_gloo_ranks_keep_equal_weights(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["updates"] == r1["updates"] > 0
    for part in ("actor", "critic", "d"):
        _same_state(r0[part], r1[part])
    assert os.path.exists(tmp_path / "run" / "checkpoint.pt")  # written by rank 0 alone


@needs_reference
def test_trains_from_a_prepared_file(tmp_path):
    """A small file in `sgfast prepare`'s format feeds the agent; its test split is the validation set."""
    prepared = pytest.importorskip("sgfast.data.prepared")
    from sgfast.agent.data import TensorData

    n, size = 6, 32
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.2, 0.3, 0.5, 0.4]]).repeat(n, 1)
    train = [1, 1, 1, 1, 0, 0]
    rec = prepared.to_records(size, torch.rand(n, 3, size, size, generator=g), torch.rand(n, 1, size, size, generator=g),
                              torch.rand(n, 1, size, size, generator=g), boxes, [0] * n, [0] * n, list(range(n)), train)
    path = tmp_path / "tiny.sgprep"
    with open(path, "wb") as f:
        f.write(prepared.header_bytes({"format": "sgfast-prepared", "version": prepared.FORMAT_VERSION,
                                       "count": n, "size": size}))
        f.write(rec.tobytes())
    data = TensorData.from_prepared(path, size)
    assert data.val_ids.tolist() == [4, 5] and data.train_ids.tolist() == [0, 1, 2, 3]
    assert torch.equal(data.images[2], torch.from_numpy(rec["image"][2]))
    rc = cli.main(["train-agent", *BASE, "--mode", "sg", "--data", str(path), "--out", str(tmp_path / "run"),
                   "--no-tensorboard", "--train-steps", "6"])
    assert rc == 0
