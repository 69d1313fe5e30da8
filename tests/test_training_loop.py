"""train/loop.py, the loop of every `sgfast train-*` command: steps, scalars, periodic actions,
checkpoint cadence, SIGINT/SIGTERM stopping between steps with a final checkpoint, a second signal
stopping at once, the ranks' common stop decision, and the TensorBoard writer."""
import os
import signal

import pytest
import torch

from sgfast.train.loop import Periodic, StopSignals, run_loop, tensorboard


class Writer:
    def __init__(self):
        self.rows = []

    def add_scalar(self, tag, value, step):
        self.rows.append((tag, value, step))


def _run(total, stop_at=None, start=0, sig=signal.SIGINT, **kw):
    seen, ckpts, last, writer, evals = [], [], [], Writer(), []

    def train_step(step):
        seen.append(step)
        if step == stop_at:
            os.kill(os.getpid(), sig)  # arrives in the middle of the step: the loop stops after it
        return {"loss": torch.tensor(float(step)), "lr": 0.1}

    def evaluate(i):
        evals.append(i)
        return f"eval at {i}"

    kw.setdefault("save_last", lambda i: last.append(i))
    result = run_loop("train-test", start=start, total=total, step=train_step, save=ckpts.append,
                      ckpt_every=5, ckpt_path="ck.pt", periodic=[Periodic(4, evaluate, skip_last=True)],
                      writer=writer, progress=False, **kw)
    return result, seen, ckpts, last, writer.rows, evals


def test_runs_every_step_logs_evaluates_and_checkpoints(capsys):
    result, seen, ckpts, last, rows, evals = _run(12, start=2)
    assert (result.step, result.stopped) == (12, False)
    assert seen == list(range(2, 12))
    assert ckpts == [5, 10] and last == [12]         # every 5 steps, then once at the end
    assert evals == [4, 8]                           # not at 12: a final evaluation follows there
    assert "eval at 4" in capsys.readouterr().out    # a periodic action's message is printed
    assert {s for t, v, s in rows if t == "train/loss"} == {10, 12}  # every 10 steps and the last
    assert ("train/loss", 9.0, 10) in rows and ("train/lr", 0.1, 12) in rows


def test_nothing_to_do_writes_nothing():
    result, seen, ckpts, last, rows, _ = _run(4, start=4)
    assert (result.step, result.stopped, seen, ckpts, last, rows) == (4, False, [], [], [], [])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_and_checkpoints(capsys, sig):
    old = signal.getsignal(sig)
    result, seen, ckpts, last, _, _ = _run(20, stop_at=6, sig=sig)
    assert (result.step, result.stopped) == (7, True)
    assert seen == list(range(7)) and ckpts == [5] and last == [7]
    err = capsys.readouterr().err
    assert f"sgfast train-test: {signal.Signals(sig).name}: stopping after this step" in err
    assert "sgfast train-test: stopped at step 7/20; checkpoint ck.pt (continue with --resume)" in err
    assert signal.getsignal(sig) is old               # the handler is restored


def test_the_time_limit_ends_the_run_like_its_last_step(capsys, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("sgfast.train.loop.time.monotonic", lambda: clock[0])

    def tick(step):  # each step takes 25 s of the fake clock
        clock[0] += 25.0
        return {}

    saved = []
    result = run_loop("train-test", start=0, total=20, step=tick, save=lambda i: None, ckpt_every=0,
                      ckpt_path="ck.pt", progress=False, time_limit=60.0, save_last=saved.append)
    assert (result.step, result.stopped, result.timed_out) == (3, False, True) and saved == [3]
    assert "time limit of 1 min reached at step 3/20; checkpoint ck.pt (continue with --resume)" in capsys.readouterr().err
    # a limit reached only at the last step is an ordinary end
    clock[0], saved[:] = 0.0, []
    result = run_loop("train-test", start=0, total=3, step=tick, save=lambda i: None, ckpt_every=0,
                      ckpt_path="ck.pt", progress=False, time_limit=60.0, save_last=saved.append)
    assert (result.step, result.timed_out, saved) == (3, False, [3])


def test_a_second_signal_stops_at_once_without_a_checkpoint():
    ckpts = []

    def train_step(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)       # impatient: stop now
        return {}

    with pytest.raises(KeyboardInterrupt):
        run_loop("train-test", start=0, total=10, step=train_step, save=ckpts.append, ckpt_every=1,
                 ckpt_path="ck.pt", progress=False)
    assert ckpts == [1, 2, 3]                         # the periodic ones before step 4 only


def test_ranks_agree_on_stopping():
    """agree() is asked after every iteration; any rank stopping stops all (here: the "other rank"
    got the signal at iteration 3)."""
    asked = []

    def agree(stopping):
        asked.append(stopping)
        return stopping or len(asked) == 3

    result, seen, ckpts, last, _, _ = _run(10, agree=agree)
    assert (result.step, result.stopped) == (3, True) and asked == [False] * 3 and last == [3]


def test_stop_signals_outside_the_main_thread_do_nothing():
    import threading

    out = {}

    def worker():
        with StopSignals("x") as s:
            out["installed"] = bool(s._old)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert out == {"installed": False}


def test_tensorboard_writer_is_optional_and_closed(tmp_path):
    with tensorboard(None) as w:
        assert w is None
    with tensorboard(str(tmp_path / "tb")) as w:
        w.add_scalar("train/loss", 1.0, 1)
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "tb"))
