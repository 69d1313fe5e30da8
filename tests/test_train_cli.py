"""What the four training commands (train-renderer, train-segmenter, train-expert, train-agent) do
alike: `--config smoke` runs with no other option, TensorBoard logs by default in OUT/tb, a
SIGINT or SIGTERM stops after the current step with a checkpoint and `--resume` continues exactly
(the same weights, optimiser and RNG states as a run never stopped), checkpoints written before
this layout still resume, and a user's mistake is one line "sgfast <command>: error: ...", exit 2.
Tiny settings, one thread (conftest.one_thread)."""
import os
import signal
import subprocess
import sys

import pytest
import torch

import sgfast
import sgfast.reference
from cli_usage import usage_error
from sgfast.cli import main
from sgfast.io import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINERS = ["train-renderer", "train-segmenter", "train-expert", "train-agent"]
HAVE_AGENT_OPS = all(hasattr(sgfast.reference, f) for f in ("composite", "aligned_crop", "focus_reward"))
needs_agent_ops = pytest.mark.skipif(not HAVE_AGENT_OPS, reason="sgfast.reference lacks the agent's ops")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    from sgfast.data.synthetic_birds import write_birds_dataset

    root = tmp_path_factory.mktemp("birds")
    write_birds_dataset(root, 24, size=64, seed=3, num_classes=4, test_fraction=0.25, progress=False)
    return str(root)


def _argv(command, out, birds, *extra):
    """A small run of `command` (smoke preset; the agent on the eager ops and a random renderer)."""
    base = {
        "train-renderer": ["--steps", "5", "--val-size", "16", "--lr-steps", "3,4", "--ckpt-every", "0"],
        "train-segmenter": [birds, "--steps", "5", "--ckpt-every", "0"],
        "train-expert": [birds, "--steps", "5", "--ckpt-every", "0", "--gbp-images", "0"],
        "train-agent": ["--ops", "eager", "--renderer", "random", "--synthetic-images", "12", "--train-steps", "15",
                        "--checkpoint-interval", "100", "--validate-interval", "2"],
    }[command]
    return [command, "--config", "smoke", "--out", str(out), "--no-progress", "--no-tensorboard", *base, *extra]


def _state(command, path):
    """The tensors that must match between a resumed and an uninterrupted run, flattened."""
    ckpt = load_checkpoint(path)
    keys = ["agent", "rng"] if command == "train-agent" else ["model", "optimizer", "rng"]
    if command in ("train-segmenter", "train-expert"):
        keys.append("order")
    flat = {}

    def walk(x, name):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{name}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{name}.{i}")
        elif isinstance(x, torch.Tensor):
            flat[name] = x

    for k in keys:
        walk(ckpt[k], k)
    counter = ckpt["counters"]["step"] if command == "train-agent" else ckpt["step"]
    return counter, flat


def _assert_same(a, b):
    (step_a, ta), (step_b, tb) = a, b
    assert step_a == step_b and ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def _signal_during_step(monkeypatch, command, k, sig):
    """Send `sig` to this process in the middle of training step (agent: episode) k, counted from 1."""
    calls = {"n": 0}

    def hit():
        calls["n"] += 1
        if calls["n"] == k:
            os.kill(os.getpid(), sig)

    if command == "train-renderer":
        import sgfast.train.renderer as mod
        real_op, _ = mod.label_op(torch.device("cpu"))
        state = {"validation_set": True}

        def labels(params, size, mode="ltp"):
            if state.pop("validation_set", False):  # the first call labels the validation strokes
                return real_op(params, size, mode=mode)
            hit()
            return real_op(params, size, mode=mode)

        monkeypatch.setattr(mod, "label_op", lambda device: (labels, "test"))
    elif command == "train-segmenter":
        import sgfast.train.segmenter as mod
        real = mod.segmenter_loss
        monkeypatch.setattr(mod, "segmenter_loss", lambda *a, **kw: (hit(), real(*a, **kw))[1])
    elif command == "train-expert":
        import sgfast.train.expert as mod
        real = mod.jitter_boxes
        monkeypatch.setattr(mod, "jitter_boxes", lambda *a, **kw: (hit(), real(*a, **kw))[1])
    else:
        from sgfast.train.agent import Trainer
        real = Trainer.run_episode
        monkeypatch.setattr(Trainer, "run_episode", lambda self, *a: (hit(), real(self, *a))[1])
    return calls


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", TRAINERS)
def test_a_signal_stops_cleanly_and_resume_continues_exactly(command, sig, birds, tmp_path, monkeypatch, capsys):
    if command == "train-agent":
        if not HAVE_AGENT_OPS:
            pytest.skip("sgfast.reference lacks the agent's ops")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(_argv(command, whole, birds)) == 0
    handler = signal.getsignal(sig)
    calls = _signal_during_step(monkeypatch, command, 3, sig)
    assert main(_argv(command, cut, birds)) == 130
    assert calls["n"] == 3                               # nothing ran after the step the signal hit
    err = capsys.readouterr().err
    assert f"sgfast {command}: {signal.Signals(sig).name}: stopping after this step" in err
    unit = "episode 3" if command == "train-agent" else "step 3"
    assert f"sgfast {command}: stopped at {unit}/5; checkpoint {cut / 'checkpoint.pt'}" in err
    assert "Traceback" not in err
    counter, _ = _state(command, cut / "checkpoint.pt")
    assert counter == (9 if command == "train-agent" else 3)  # that step was completed, then saved
    assert signal.getsignal(sig) is handler              # the loop's handler is gone
    monkeypatch.undo()
    assert main(_argv(command, cut, birds, "--resume")) == 0
    _assert_same(_state(command, whole / "checkpoint.pt"), _state(command, cut / "checkpoint.pt"))


@pytest.mark.parametrize("command", ["train-renderer", "train-agent"])
def test_checkpoints_of_the_earlier_layout_still_resume(command, birds, tmp_path, monkeypatch):
    """The two layouts that changed: renderer checkpoints had no "kind" (they resume exactly);
    agent checkpoints had no replay memory (refilled on --resume, as before: the run goes on, but
    not exactly as one never stopped). Segmenter and expert checkpoints keep their layout."""
    if command == "train-agent" and not HAVE_AGENT_OPS:
        pytest.skip("sgfast.reference lacks the agent's ops")
    out = tmp_path / "run"
    _signal_during_step(monkeypatch, command, 3, signal.SIGINT)
    assert main(_argv(command, out, birds)) == 130
    monkeypatch.undo()
    path = out / "checkpoint.pt"
    old = load_checkpoint(path)
    for key in {"train-renderer": ("kind", "saved_at"), "train-agent": ("replay", "saved_at")}[command]:
        old.pop(key)
    save_checkpoint(path, old)
    (out / "replay.pt").unlink(missing_ok=True)
    assert main(_argv(command, out, birds, "--resume", str(path))) == 0
    counter, _ = _state(command, path)
    assert counter == (15 if command == "train-agent" else 5)
    if command == "train-renderer":
        whole = tmp_path / "whole"
        assert main(_argv(command, whole, birds)) == 0
        _assert_same(_state(command, whole / "checkpoint.pt"), _state(command, path))


@pytest.mark.parametrize("command", TRAINERS)
def test_config_smoke_needs_no_other_option(command, tmp_path, capsys):
    """`--config smoke` alone (and --out, to keep the run in tmp_path): trains, checkpoints, and
    writes TensorBoard logs to OUT/tb (on by default in every trainer). The segmenter and expert
    then train on generated birds in OUT/smoke-birds; the agent on synthetic targets with a random
    renderer (--ops fused, the default, needs the compiled extension)."""
    if command == "train-agent" and not sgfast.HAS_EXT:
        pytest.skip("train-agent's default --ops fused needs sgfast._C")
    out = tmp_path / "run"
    assert main([command, "--config", "smoke", "--out", str(out)]) == 0, capsys.readouterr().err
    assert os.path.isfile(out / "checkpoint.pt")
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(out / "tb"))
    if command in ("train-segmenter", "train-expert"):
        assert os.path.isfile(out / "smoke-birds" / "images.txt")


@pytest.mark.parametrize("command", TRAINERS)
def test_threads_0_is_refused_with_one_line(command, tmp_path, capsys):
    line = usage_error(capsys, [command, "--config", "smoke", "--out", tmp_path, "--threads", "0"])
    assert line == f"sgfast {command}: error: --threads must be >= 1, got 0"
    assert not os.path.exists(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("command", TRAINERS)
def test_a_time_limit_that_is_not_positive_is_refused(command, tmp_path, capsys):
    line = usage_error(capsys, [command, "--config", "smoke", "--out", tmp_path, "--time-limit", "0"])
    assert line == f"sgfast {command}: error: --time-limit must be a positive number of minutes, got 0"


@pytest.mark.parametrize("command,extra,message", [
    ("train-renderer", ["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ("train-renderer", ["--val-every", "-1"], "--val-every must be >= 0, got -1"),
    ("train-segmenter", ["--lr", "0"], "--lr must be a positive number, got 0.0"),
    ("train-segmenter", ["--resume"], "--resume: no checkpoint at"),
    ("train-expert", ["--pool", "avg", "--widths", "a"], "--widths must be comma-separated integers"),
    ("train-expert", ["--limit", "0"], "--limit must be >= 1, got 0"),
    ("train-agent", ["--tau", "2"], r"--tau and --discount must lie in \[0, 1\]"),
    ("train-agent", ["--log-dir", "x", "--no-tensorboard"], "--log-dir and --no-tensorboard contradict"),
    ("train-agent", ["--device", "cuda:99"], "--device"),
])
def test_bad_options_give_one_line_and_exit_2(command, extra, message, tmp_path, capsys):
    usage_error(capsys, [command, "--config", "smoke", "--out", tmp_path, *extra], message)


def test_a_user_error_prints_no_traceback_from_the_console_entry(tmp_path):
    """End to end (python -m sgfast): exactly one line on stderr, exit status 2."""
    r = subprocess.run([sys.executable, "-m", "sgfast", "train-renderer", "--config", "smoke", "--out",
                        str(tmp_path), "--threads", "0"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert r.stderr == "sgfast train-renderer: error: --threads must be >= 1, got 0\n"
    r = subprocess.run([sys.executable, "-m", "sgfast", "train-segmenter", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("sgfast train-segmenter: error: DATASET is required")


@needs_agent_ops
def test_sigterm_from_outside_stops_a_training_process(tmp_path):
    """A real SIGTERM (a scheduler's kill) to a running `python -m sgfast train-agent`: the episode
    is finished, the checkpoint written, the process exits with 130 and says how to continue."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sgfast", *_argv("train-agent", out, None, "--train-steps", "1000000",
                                                  "--threads", "1")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        for line in proc.stdout:  # the validation line of episode 2: training is under way
            if line.startswith("episode 2 "):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped at episode" in err and "continue with --resume" in err
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["counters"]["episode"] >= 2 and ckpt["replay"] is not None


def test_an_export_onto_the_runs_own_files_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    line = usage_error(capsys, ["train-agent", "--config", "smoke", "--out", out, "--export-best", out / "best.pt"])
    assert line.startswith("sgfast train-agent: error: --export-best ") and "one of the run's own files" in line
