"""The trainer of one rank: assembled from the config and the network's model spec.

Step ``s`` (0-based) of rank ``r`` consumes micro-batches ``s * A .. s * A + A - 1`` of the rank's
data stream (``A`` = gradient accumulation), and every random draw of the step is keyed by
(seed, s, r, micro-step) (:class:`training.specs.spec.DrawKey`). A worker that restarts from the
checkpoint taken after step ``k`` therefore recomputes steps ``k+1...`` exactly as the
uninterrupted run did: same data, same randomness, same weights and optimizer state.

Reports: every ``log_every`` steps and at every checkpoint, on every rank (Ray requires the same
number of reports on all ranks). Checkpoints: every ``checkpoint_every`` steps and after the last
step, each rank writing its part into a local folder that Ray merges into one checkpoint
``checkpoint_<step>`` in the run's storage (see :mod:`training.checkpointing`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from training.callbacks import TrainerCallback
from training.checkpointing import PROBE_FILE, checkpoint_name, export_checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig, public_dump
from training.specs import spec_class
from training.specs.spec import DrawKey

#: ``report(metrics, checkpoint folder or None, checkpoint name or None)``: how metrics leave a rank.
Reporter = Callable[[dict[str, Any], Path | None, str | None], None]


def ray_report(metrics: dict[str, Any], folder: Path | None, name: str | None) -> None:
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(folder)) if folder is not None else None
    ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        callbacks: Iterable[TrainerCallback] = (),
        report: Reporter = ray_report,
    ) -> None:
        self.config = config
        self.spec = spec_class(config.model.kind)(config)
        self.rank, self.world_size = rank, world_size
        self.device = device or torch.device("cpu")
        on_gpu = self.device.type == "cuda"
        self.on_gpu = on_gpu
        self.model_dtype = torch.bfloat16 if config.deepspeed.bf16 else torch.float32
        self.frozen_dtype = torch.bfloat16 if config.deepspeed.bf16 and on_gpu else torch.float32
        self.callbacks = list(callbacks)
        self._report = report
        self.step = 0  # optimizer steps done
        self._batches: Iterator[dict[str, Any]] | None = None
        self._lr = 0.0

    # ------------------------------------------------------------------ set-up
    def setup(self, checkpoint: Path | None = None) -> None:
        """Build the model, engine, EMA and data stream; restore them from ``checkpoint``."""
        from training.data import JointLoader
        from training.ema import ShardedEMA
        from training.engine import initialize
        from training.metrics import MetricsTracker, MetricsWriter

        config = self.config
        # Same seed on every rank: identical new (temporal) layers; DeepSpeed also broadcasts rank 0's.
        model = self.spec.starting_model()
        self.model_config = self.spec.model_config(model)
        self.engine = initialize(config, model, on_gpu=self.on_gpu)
        latents = config.latent_store()
        self.spec.prepare(self.device, self.frozen_dtype, self.model_dtype, latents)
        self.ema = (
            ShardedEMA(
                self.engine.module, config.ema.decay, rank=self.rank, world_size=self.world_size,
                start_step=config.ema.start_step,
            )
            if config.ema.enabled
            else None
        )  # fmt: skip
        data_state = None
        if checkpoint is not None:
            self.step, data_state = load_checkpoint(checkpoint, engine=self.engine, rank=self.rank, ema=self.ema)
        dataset = self.spec.build_dataset(self.rank, self.world_size, self.step, latents)
        if data_state is not None:
            dataset.load_state_dict(data_state)
        self.loader = JointLoader(dataset, num_workers=config.loader.num_workers)
        self.tracker = MetricsTracker([s.name for s in config.data.sources])
        self.writer = MetricsWriter(config.run_uri(), config.run.storage_options) if self.rank == 0 else None
        for callback in self.callbacks:
            callback.on_setup(self)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> None:
        """Optimizer step ``self.step`` (its micro-batches, then the EMA); advances ``self.step``."""
        if self._batches is None:
            self._batches = iter(self.loader)
        config = self.config
        self._lr = float(self.engine.get_lr()[0])  # the rate this step uses (the scheduler steps after it)
        for micro in range(config.deepspeed.grad_accum):
            batch = next(self._batches)
            out = self.spec.loss(self.engine, batch, DrawKey(config.run.seed, self.step, self.rank, micro))
            self.engine.backward(out.parts.total)
            self.engine.step()
            self.tracker.add(
                loss=out.parts.total,
                loss_video=out.parts.video,
                loss_image=out.parts.image,
                samples=out.samples,
                dropped=out.dropped_captions,
                captions=out.captions,
            )
        if self.ema is not None:
            self.ema.update(self.step)
        self.step += 1

    # ------------------------------------------------------------------ reports and checkpoints
    def report(self, checkpoint: bool) -> dict[str, Any]:
        """Reduce the metrics over ranks (collective), write them (rank 0) and report them to Ray,
        with this rank's part of a checkpoint when ``checkpoint``."""
        metrics = self.tracker.reduce(step=self.step, lr=self._lr, counters=self.loader.counters())
        name = checkpoint_name(self.step) if checkpoint else None
        if name is not None:
            metrics["checkpoint"] = name
        if self.writer is not None:
            self.writer.write(metrics)
            if name is not None:
                self.writer.sync()
        if name is None:
            self._report(metrics, None, None)
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"lavie-{name}-r{self.rank}-"))
            try:
                self.save_checkpoint(folder, metrics)
                self._report(metrics, folder, name)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        for callback in self.callbacks:
            callback.on_report(self, metrics, name)
        return metrics

    def save_checkpoint(self, folder: Path, metrics: dict[str, Any]) -> None:
        """Write this rank's part of the checkpoint after ``self.step`` steps (collective)."""
        config = self.config
        state = {
            "run": config.run.name,
            "step": self.step,
            "config_digest": config.digest(),
            "world_size": self.world_size,
            "zero_stage": config.deepspeed.zero_stage,
            "model_kind": self.spec.kind,
            "model_config": self.model_config,
            "prediction_type": self.spec.prediction_type,
            "ema_enabled": self.ema is not None,
            "trainable": self.spec.trainable,
            "metrics": metrics,
            "config": public_dump(config),
        }
        save_checkpoint(
            folder, engine=self.engine, step=self.step, rank=self.rank, ema=self.ema,
            data_state=self.loader.state_dict(), trainer_state=state,
        )  # fmt: skip
        if self.step == config.run.max_steps:
            self.save_probe(folder)

    def save_probe(self, folder: Path) -> None:
        save_probe(self.engine, self.spec.probe_inputs(self.engine.module), folder, self.rank, self.model_dtype, self.device)

    # ------------------------------------------------------------------ the run
    def fit(self) -> None:
        """Train to ``run.max_steps``, reporting and checkpointing on schedule."""
        run = self.config.run
        try:
            while self.step < run.max_steps:
                self.train_step()
                save = self.step % run.checkpoint_every == 0 or self.step == run.max_steps
                if save or self.step % run.log_every == 0:
                    self.report(checkpoint=save)
        finally:
            if self.writer is not None:
                self.writer.close()

    # ------------------------------------------------------------------ export
    @staticmethod
    def export(checkpoint_dir: str | Path, out_uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Consolidate a checkpoint and export it as the spec's ``cascade.models`` folders."""
        return export_checkpoint(checkpoint_dir, out_uri, storage_options)


def save_probe(
    engine: Any, inputs: dict[str, Any], folder: Path, rank: int, dtype: torch.dtype, device: torch.device
) -> None:
    """Run the engine on a spec's fixed input (collective under ZeRO-3); rank 0 stores the input
    and the output, against which the export is checked (:func:`training.checkpointing.probe_difference`)."""
    module = engine.module
    on_device = {
        key: value.to(device, dtype if value.is_floating_point() else value.dtype) if torch.is_tensor(value) else value
        for key, value in inputs.items()
    }
    was_training = module.training
    module.eval()
    with torch.no_grad():
        output = engine(**on_device).sample
    module.train(was_training)
    if rank == 0:
        torch.save({"inputs": inputs, "output": output.detach().cpu()}, folder / PROBE_FILE)
