"""Trainer callbacks that let a test find the worker processes and stop one at a known step.

They run inside Ray Train workers, which cannot import test modules: register this module with
``ray.cloudpickle.register_pickle_by_value`` before handing them to ``train`` (:func:`by_value`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

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
