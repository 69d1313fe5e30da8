"""Neural renderer: architecture, pickle-free weights, and `sgfast train-renderer` (smoke config)."""
import os
import signal

import pytest
import torch

import sgfast.train.renderer as tr
from cli_usage import usage_error
from sgfast.cli import main
from sgfast.io import load_checkpoint, save_weights_fp16
from sgfast.models.renderer import CONFIGS, Renderer, RendererConfig, load_renderer, save_renderer


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_output_shape_and_range(name):
    model = Renderer(name)
    size = CONFIGS[name].size
    alpha = model(torch.rand(3, 10))
    assert alpha.shape == (3, size, size) and alpha.dtype == torch.float32
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert model(torch.rand(0, 10)).shape == (0, size, size)


def test_paper_config_is_the_baseline_fcn():
    # The baseline's FCN has 11,040,812 parameters (the Learning to Paint reference code).
    model = Renderer("paper")
    assert sum(p.numel() for p in model.parameters()) == 11_040_812
    assert [tuple(fc.weight.shape) for fc in model.fc] == [(512, 10), (1024, 512), (2048, 1024), (4096, 2048)]
    assert [(c.in_channels, c.out_channels) for c in model.convs] == [
        (16, 32), (32, 32), (8, 16), (16, 16), (4, 8), (8, 4)]


def test_tiny_ships_under_5mb():
    assert sum(p.numel() for p in Renderer("tiny").parameters()) * 2 < 5e6


def test_other_sizes_and_bad_configs():
    assert Renderer(RendererConfig("x", size=256, stages=4))(torch.rand(1, 10)).shape == (1, 256, 256)
    with pytest.raises(ValueError, match="divisible"):
        RendererConfig("x", size=100)
    with pytest.raises(ValueError, match="unknown renderer config"):
        Renderer("huge")
    with pytest.raises(ValueError, match=r"\[N, 10\]"):
        Renderer("smoke")(torch.rand(4, 13))


def test_weights_roundtrip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = Renderer("smoke")
    path = tmp_path / "r.pt"
    save_renderer(path, model, {"val_l2": 0.5})
    # Readable by the weights-only unpickler (no code objects), stored as fp16.
    raw = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values())
    back = load_renderer(path)
    assert back.config == model.config and back.meta["val_l2"] == 0.5 and not back.training
    # Equal to the original with its weights rounded to fp16.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    x = torch.rand(5, 10)
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=1e-6)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="renderer weights not found"):
        load_renderer(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    save_weights_fp16(other, {"w": torch.zeros(2)}, {"kind": "something"})
    with pytest.raises(RuntimeError, match="not a renderer weights file"):
        load_renderer(other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read"):
        load_renderer(garbage)
    mismatched = tmp_path / "mismatch.pt"
    save_weights_fp16(mismatched, Renderer("smoke").state_dict(),
                      {"kind": "sgfast.renderer", "config": CONFIGS["tiny"].to_dict()})
    with pytest.raises(RuntimeError, match="do not match"):
        load_renderer(mismatched)


def _argv(out, *extra, tensorboard=False):
    return ["train-renderer", "--config", "smoke", "--out", str(out), "--no-progress",
            "--threads", "1", "--val-size", "32", "--lr-steps", "15,25", *extra,
            *([] if tensorboard else ["--no-tensorboard"])]


def _train(out, *extra, tensorboard=False):
    return main(_argv(out, *extra, tensorboard=tensorboard))


def test_smoke_training_writes_everything_and_learns(tmp_path):
    out, logs = tmp_path / "run", tmp_path / "tb"
    assert _train(out, "--steps", "30", "--lr-steps", "25,28", "--log-dir", str(logs),
                  "--ckpt-every", "10", tensorboard=True) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 30 and ckpt["config"] == "smoke"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logs))
    model = load_renderer(out / "renderer_smoke.pt")
    meta = model.meta
    assert meta["steps"] == 30 and meta["train_seconds"] >= 0 and meta["config"]["name"] == "smoke"
    # The stored val_l2 is the shipped (fp16) model's MSE on the held-out strokes: recompute it.
    rasterize, _ = tr.label_op(torch.device("cpu"))
    params, labels = tr.validation_set(model.config.size, 32, torch.device("cpu"), rasterize)
    assert tr.validation_l2(model, params, labels) == pytest.approx(meta["val_l2"], rel=1e-6)
    assert meta["val_l2"] < 0.7 * meta["val_l2_initial"]  # it learns


def _ckpt_state(path):
    ckpt = load_checkpoint(path)
    return ckpt["model"], ckpt["rng"], ckpt["step"]


def _assert_same_run(a, b):
    model_a, rng_a, step_a = _ckpt_state(a / "checkpoint.pt")
    model_b, rng_b, step_b = _ckpt_state(b / "checkpoint.pt")
    assert step_a == step_b and torch.equal(rng_a, rng_b)
    for k in model_a:
        torch.testing.assert_close(model_b[k], model_a[k], rtol=0, atol=1e-6)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _train(whole, "--steps", "20") == 0
    assert _train(split, "--steps", "10") == 0
    assert _train(split, "--steps", "20", "--resume") == 0
    _assert_same_run(whole, split)


def test_interrupt_saves_a_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _train(whole, "--steps", "20", "--ckpt-every", "0") == 0

    real_op, _ = tr.label_op(torch.device("cpu"))
    calls = {"n": 0}

    def interrupting(params, size, mode="ltp"):
        calls["n"] += 1
        if calls["n"] == 1 + 7:  # call 1 labels the validation set; call 8 is the 7th step
            os.kill(os.getpid(), signal.SIGINT)  # the "Ctrl-C" arrives in the middle of a step
        return real_op(params, size, mode=mode)

    monkeypatch.setattr(tr, "label_op", lambda device: (interrupting, "test"))
    assert _train(cut, "--steps", "20", "--ckpt-every", "0") == 130
    assert load_checkpoint(cut / "checkpoint.pt")["step"] == 7  # that step was completed, then saved
    monkeypatch.undo()
    assert _train(cut, "--steps", "20", "--ckpt-every", "0", "--resume") == 0
    _assert_same_run(whole, cut)


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    """A user's mistake: one line "sgfast train-renderer: error: ...", exit status 2, no traceback."""
    usage_error(capsys, _argv(tmp_path / "none", "--steps", "5", "--resume"), "--resume: no checkpoint at")
    usage_error(capsys, _argv(tmp_path / "x", "--steps", "5", "--batch-size", "0"), "--batch-size must be >= 1")
    usage_error(capsys, ["train-renderer", "--config", "smoke", "--out", tmp_path, "--lr-steps", "a,b"],
                "--lr-steps must be comma-separated integers")
    usage_error(capsys, _argv(tmp_path / "x", "--lr", "-1"), "--lr must be a positive number")
    usage_error(capsys, _argv(tmp_path / "x", "--threads", "0"), "--threads must be >= 1, got 0")
    usage_error(capsys, _argv(tmp_path / "x", "--device", "nonsense"), "--device")
    assert _train(tmp_path / "small", "--steps", "5") == 0
    usage_error(capsys, _argv(tmp_path / "small", "--steps", "3", "--resume"), "beyond --steps")
    usage_error(capsys, ["train-renderer", "--config", "tiny", "--out", tmp_path / "small", "--resume",
                         "--steps", "5", "--no-progress"], "not --config tiny")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    usage_error(capsys, _argv(tmp_path / "x", "--resume", tmp_path / "junk.pt"), "cannot read checkpoint")


def test_export_only_exports_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert _train(out, "--steps", "6", "--export", str(tmp_path / "a.pt")) == 0
    assert _train(out, "--export-only", "--export", str(tmp_path / "b.pt")) == 0
    a, b = load_renderer(tmp_path / "a.pt"), load_renderer(tmp_path / "b.pt")
    assert b.meta["steps"] == 6 and b.meta["val_l2"] == a.meta["val_l2"]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6
