"""Hooks into the trainer: code that watches or steers a run without living in the training loop.

A callback is registered with ``training.launcher.train(config, callbacks=[...])``; the objects
travel to every Ray Train worker (they must pickle) and are called there, on every rank, with the
:class:`~training.trainer.Trainer` (``trainer.rank``, ``trainer.world_size``, ``trainer.step``).
The tests use them to find worker processes and hold one at a known step before killing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.trainer import Trainer


class TrainerCallback:
    """Override what you need; every hook does nothing by default."""

    def on_setup(self, trainer: Trainer) -> None:
        """The model, engine and data are ready; ``trainer.step`` is the first step to run."""

    def on_report(self, trainer: Trainer, metrics: dict[str, Any], checkpoint: str | None) -> None:
        """Metrics after ``trainer.step`` steps were reported to Ray (with ``checkpoint``, the
        name of the checkpoint reported with them, or None)."""
