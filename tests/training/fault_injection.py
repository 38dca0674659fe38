"""Trainer callbacks that let a test find the worker processes and stop one at a known step, and
:func:`train_killing_a_worker`, which uses them to kill a worker mid-run.

The callbacks run inside Ray Train workers, which cannot import test modules: this module is
registered with ``ray.cloudpickle.register_pickle_by_value`` before they go to ``train``
(:func:`by_value`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from training.callbacks import TrainerCallback


def by_value() -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_pid(folder: Path, rank: int, step: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".rank{rank}.{os.getpid()}.tmp"
    tmp.write_text(f"{os.getpid()} {step}\n")
    os.replace(tmp, folder / f"rank{rank}.pid")


class PidFiles(TrainerCallback):
    """``folder/rank<r>.pid``: the process of rank r and the step it last reached."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def on_setup(self, trainer: Any) -> None:
        _write_pid(self.folder, trainer.rank, trainer.step)

    def on_report(self, trainer: Any, metrics: dict[str, Any], checkpoint: str | None) -> None:
        if checkpoint is not None:
            _write_pid(self.folder, trainer.rank, trainer.step)


class HoldAt(TrainerCallback):
    """Rank ``rank`` waits after its report at ``step`` until ``release`` exists, announcing it
    with ``held.rank<r>`` beside ``release``: a test kills the process there, at a known step,
    then creates ``release`` so that the restarted worker passes."""

    def __init__(self, rank: int, step: int, release: str | Path) -> None:
        self.rank, self.step, self.release = rank, step, Path(release)

    def on_report(self, trainer: Any, metrics: dict[str, Any], checkpoint: str | None) -> None:
        if trainer.rank != self.rank or trainer.step != self.step or self.release.exists():
            return
        (self.release.parent / f"held.rank{self.rank}").write_text(f"{os.getpid()} {self.step}\n")
        while not self.release.exists():
            time.sleep(0.05)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


class KilledRun(NamedTuple):
    result: Any  # the run's training.launcher.TrainResult
    killed_pid: int
    final_pid: int  # the process of the killed rank at the end: its restarted worker


def train_killing_a_worker(config: Any, *, rank: int, step: int, checkpoint_step: int, folder: Path) -> KilledRun:
    """Train ``config`` and SIGKILL the process of rank ``rank`` (a real worker death, mid-run)
    while it is held after its report at ``step``, once the checkpoint of ``checkpoint_step`` is
    registered; Ray Train restarts the worker group from that checkpoint and the run finishes."""
    from training.launcher import run_state, train

    by_value()
    pids, release = folder / "pids", folder / "pids" / "release"
    callbacks = [PidFiles(pids), HoldAt(rank=rank, step=step, release=release)]
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(train, config, quiet=True, callbacks=callbacks)
        wait_for(
            lambda: (pids / f"held.rank{rank}").exists() or job.done(), 240, f"rank {rank} never reached step {step}"
        )
        if job.done():
            raise AssertionError(f"the run ended before rank {rank} was killed: {job.result()}")
        wait_for(
            lambda: run_state(config).step == checkpoint_step, 30, f"checkpoint {checkpoint_step} was not registered"
        )
        victim = int((pids / f"rank{rank}.pid").read_text().split()[0])
        os.kill(victim, signal.SIGKILL)
        release.touch()
        result = job.result(timeout=300)
    return KilledRun(result, victim, int((pids / f"rank{rank}.pid").read_text().split()[0]))
