"""train.semantic_common.training_loop, the loop of train-segmenter and train-expert: steps,
scalars, periodic evaluation and checkpoints, and Ctrl-C stopping with a final checkpoint."""
import os
import signal

import torch

from train.semantic_common import training_loop


class Writer:
    def __init__(self):
        self.rows = []

    def add_scalar(self, tag, value, step):
        self.rows.append((tag, value, step))


def _run(total, stop_at=None, start=0):
    seen, ckpts, writer = [], [], Writer()

    def train_step(step):
        seen.append(step)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: the loop stops after this step
        return {"loss": torch.tensor(float(step)), "lr": 0.1}

    out = training_loop(start, total, train_step, ckpts.append, desc="t", progress=False, writer=writer,
                        eval_every=4, ckpt_every=5, test_metrics=lambda: {"acc": float(len(seen))},
                        ckpt_path="ck.pt")
    return out, seen, ckpts, writer.rows


def test_runs_every_step_logs_evaluates_and_checkpoints():
    (step, stopped), seen, ckpts, rows = _run(12, start=2)
    assert (step, stopped) == (12, False)
    assert seen == list(range(2, 12))
    assert ckpts == [5, 10, 12]                       # every 5 steps, then at the end
    assert [(t, v) for t, v, s in rows if t == "test/acc"] == [("test/acc", 2.0), ("test/acc", 6.0)]  # steps 4, 8
    assert {s for t, v, s in rows if t == "train/loss"} == {10, 12}  # every 10 steps and the last
    assert ("train/loss", 9.0, 10) in rows


def test_ctrl_c_stops_after_the_step_and_checkpoints(capsys):
    old = signal.getsignal(signal.SIGINT)
    (step, stopped), seen, ckpts, _ = _run(20, stop_at=6)
    assert (step, stopped) == (7, True)
    assert seen == list(range(7)) and ckpts == [5, 7]
    assert "stopped at step 7/20; checkpoint ck.pt (use --resume)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is old     # the handler is restored
