"""The Ray Train entry point: one :class:`~training.trainer.Trainer` per worker, one DeepSpeed rank each."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch


def _quiet_ray_train_logs() -> None:
    """Ray Train V2 logs every report at INFO, from a logger named by its file path."""
    from ray.train.v2._internal.execution import context as train_context

    for name in ("ray.train", train_context.__name__, train_context.__file__):
        logging.getLogger(name).setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """``loop_config``: the sealed config (:func:`training.config.seal`), ``callbacks`` and
    ``resume_from`` (a checkpoint URI, for a run Ray cannot restore itself; else None)."""
    import ray.train

    from training.config import unseal
    from training.trainer import Trainer

    config = unseal(loop_config)
    _quiet_ray_train_logs()
    context = ray.train.get_context()
    on_gpu = config.scaling.use_gpu and torch.cuda.is_available()
    if on_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
    else:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported: no auto-detection warning
        device = torch.device("cpu")
    trainer = Trainer(
        config,
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=device,
        callbacks=loop_config.get("callbacks") or (),
    )
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and loop_config.get("resume_from"):
        # A run whose Ray snapshot was damaged: the launcher found its checkpoint in storage.
        from lavie.core.storage import arrow_filesystem

        fs, path = arrow_filesystem(loop_config["resume_from"], config.run.storage_options)
        checkpoint = ray.train.Checkpoint(path=path, filesystem=fs)
    if checkpoint is None:
        trainer.setup()
    else:
        with checkpoint.as_directory() as folder:
            trainer.setup(Path(folder))
    trainer.fit()
