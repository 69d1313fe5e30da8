"""The training loop every `sgfast train-*` command runs: steps, periodic actions (validation,
images), checkpoint cadence, progress bar, TensorBoard scalars, and Ctrl-C / SIGTERM.

    result = run_loop("train-renderer", start=step, total=steps, step=train_step, save=checkpoint,
                      ckpt_every=1000, ckpt_path=path, periodic=[Periodic(1000, validate, skip_last=True)],
                      writer=writer)

One iteration is a trainer's unit of work: an optimisation step (renderer, segmenter, expert) or an
episode with its updates (agent). After iteration i (counted from 1):

  1. the progress bar moves and shows the step's scalars; every `log_every` iterations and after the
     last one they go to TensorBoard as train/<name> at x = i;
  2. each Periodic action whose interval divides i runs (a returned string is printed);
  3. if SIGINT or SIGTERM arrived, the loop stops here;
  4. if `time_limit` seconds have passed since the loop started, it ends here as if i were the
     last iteration (the run is complete, not stopped: exports and final figures follow);
  5. every `ckpt_every` iterations, save(i).

After the last iteration, or the stop, save(i) once more (if any iteration ran). A signal never
interrupts a step: the handler only sets a flag, so checkpoints always lie between steps and a run
resumed from one continues exactly. A second signal stops at once (KeyboardInterrupt, no
checkpoint beyond the last one written). A stopped run prints how to continue; the command then
exits with status 130.
"""
from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
import time
from typing import Callable

from sgfast.cli_errors import UsageError

STOPPED_EXIT = 130  # the shell's status for a run ended by Ctrl-C


@dataclasses.dataclass
class Periodic:
    every: int                          # iterations between calls; 0 = never
    action: Callable[[int], object]     # action(i); a returned str is printed
    skip_last: bool = False             # not after the last iteration (a final evaluation follows)


@dataclasses.dataclass
class LoopResult:
    step: int       # iterations done in all (the checkpoint's count)
    stopped: bool   # ended by a signal before `total`
    timed_out: bool = False  # ended by the time limit before `total`


class StopSignals:
    """SIGINT and SIGTERM set `received` instead of raising; a second one raises KeyboardInterrupt.
    Outside the main thread (where handlers cannot be installed) it does nothing. SIGINT is
    installed even where it was ignored (background jobs of a non-interactive shell)."""

    def __init__(self, command: str = "", announce: bool = True):
        self.command, self.announce = command, announce
        self.received = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        if self.announce:
            name = signal.Signals(signum).name
            print(f"\nsgfast {self.command}: {name}: stopping after this step with a checkpoint "
                  "(again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


@contextlib.contextmanager
def tensorboard(folder: str | None, purge_step: int | None = None):
    """A SummaryWriter on `folder` (None: yields None), closed on exit. purge_step: a resumed run
    drops the events a previous run logged at or after this step."""
    if not folder:
        yield None
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise UsageError(f"TensorBoard logs need the tensorboard package ({exc}); "
                         "install it or pass --no-tensorboard") from None
    writer = SummaryWriter(folder, purge_step=purge_step or None)
    try:
        yield writer
    finally:
        writer.close()


def progress_bar(total, initial, *, enabled=True, desc=None, unit="step"):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=not enabled, mininterval=1.0 if sys.stderr.isatty() else 30.0)


def _shown(value) -> str:
    value = float(value) if not isinstance(value, int) else value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_loop(command: str, *, start: int, total: int, step: Callable[[int], dict],
             save: Callable[[int], None], ckpt_every: int, ckpt_path: str,
             save_last: Callable[[int], None] | None = None,
             periodic: list[Periodic] | tuple = (), writer=None, log_every: int = 10,
             progress: bool = True, desc: str | None = None, unit: str = "step",
             bar: tuple[int, Callable[[], int], str] | None = None,
             agree: Callable[[bool], bool] | None = None, announce: bool = True,
             time_limit: float | None = None) -> LoopResult:
    """Iterations start+1 .. total of step(i) -> {name: scalar} (see the module docstring); i
    counts iterations from the start of training (a resumed run starts at its checkpoint's count).

    save_last: the checkpoint after the last iteration or the stop, if not save. log_every 0: the
    scalars only go to the progress bar. bar: (total, position(), unit) when the bar counts something
    else than iterations (the agent's env steps). agree(stopping) -> bool: the ranks' common decision
    (any rank stopping stops all), so that they leave the loop after the same iteration. announce:
    print the signal and stop notices (False on ranks other than 0). time_limit: seconds (None: none)."""
    bar_total, position, bar_unit = bar if bar is not None else (total, None, unit)
    save_last = save_last or save
    pbar = progress_bar(bar_total, min(position() if position else start, bar_total),
                        enabled=progress, desc=desc, unit=bar_unit)
    i, stopped, timed_out = start, False, False
    t0 = time.monotonic()
    try:
        with StopSignals(command, announce) as signals:
            while i < total:
                scalars = step(i) or {}
                i += 1
                pbar.update((position() if position else i) - pbar.n)
                log_now = log_every and (i % log_every == 0 or i == total)
                if log_now and scalars:
                    values = {k: float(v) for k, v in scalars.items()}
                    pbar.set_postfix({k: _shown(v) for k, v in values.items()}, refresh=False)
                    if writer is not None:
                        for k, v in values.items():
                            writer.add_scalar(f"train/{k}", v, i)
                elif not log_every and scalars:
                    pbar.set_postfix({k: _shown(v) for k, v in scalars.items()}, refresh=False)
                for p in periodic:
                    if p.every and i % p.every == 0 and not (p.skip_last and i == total):
                        message = p.action(i)
                        if isinstance(message, str) and announce:
                            pbar.write(message)
                stop = signals.received is not None
                late = time_limit is not None and time.monotonic() - t0 >= time_limit
                if agree is not None:  # one decision for all ranks (their clocks differ)
                    stop = agree(stop)
                    late = agree(late) if time_limit is not None else False
                if stop:
                    stopped = True
                    break
                if late and i < total:
                    timed_out = True
                    break
                if ckpt_every and i % ckpt_every == 0:
                    save(i)
            pbar.close()
            if i > start:
                # Still under the handlers: a second signal raises KeyboardInterrupt, which leaves
                # the previous checkpoint in place (the write is atomic).
                save_last(i)
    finally:
        pbar.close()
    if stopped and announce:
        print(f"sgfast {command}: stopped at {unit} {i}/{total}; checkpoint {ckpt_path} "
              "(continue with --resume)", file=sys.stderr, flush=True)
    if timed_out and announce:
        print(f"sgfast {command}: time limit of {time_limit / 60:g} min reached at {unit} {i}/{total}; "
              f"checkpoint {ckpt_path} (continue with --resume)", file=sys.stderr, flush=True)
    return LoopResult(i, stopped, timed_out)
