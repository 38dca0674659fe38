"""The per-worker training loop run by Ray Train (one DeepSpeed rank per Ray Train worker).

Step ``s`` (0-based) of rank ``r`` consumes micro-batches ``s * A .. s * A + A - 1`` of the rank's
data stream (``A`` = gradient accumulation), and draws caption dropout, VAE samples, noise and
timesteps from generators keyed by (seed, s, r, micro-step). A worker that restarts from the
checkpoint taken after step ``k`` therefore recomputes steps ``k+1...`` exactly as the
uninterrupted run did: same data, same randomness, same weights and optimizer state.

Reports: every ``log_every`` steps and at every checkpoint, on every rank (Ray requires the same
number of ``ray.train.report`` calls on all ranks). Checkpoints: every ``checkpoint_every`` steps
and after the last step, each rank writing its part into a local folder that Ray merges into one
checkpoint ``checkpoint_<step>`` in the run's storage.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from training import rng
from training.checkpointing import PROBE_FILE, checkpoint_name, load_checkpoint, save_checkpoint
from training.config import TrainConfig


def _write_pid(folder: str, rank: int, step: int) -> None:
    """Fault-injection hook: where tests find the worker processes to kill."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".rank{rank}.{os.getpid()}.tmp"
    tmp.write_text(f"{os.getpid()} {step}\n")
    os.replace(tmp, path / f"rank{rank}.pid")


def _maybe_hold(hold: dict[str, Any] | None, rank: int, step: int) -> None:
    """Fault-injection hook: ``{"rank": r, "step": s, "release": path}`` makes rank ``r`` wait after
    step ``s`` (its report done) until ``release`` exists, announcing it with ``held.rank<r>``
    beside ``release``; a test kills the process there, at a known step, then creates ``release``
    so that the restarted worker passes."""
    if not hold or rank != int(hold["rank"]) or step != int(hold["step"]):
        return
    release = Path(hold["release"])
    if release.exists():
        return
    (release.parent / f"held.rank{rank}").write_text(f"{os.getpid()} {step}\n")
    while not release.exists():
        time.sleep(0.05)


def probe_inputs(config: TrainConfig, latent_channels: int, latent_hw: tuple[int, int], context_shape: tuple[int, int]) -> dict[str, Any]:
    """A fixed input (the same on every rank) to compare the engine with the exported model."""
    generator = rng.keyed_generator(config.run.seed, rng.PROBE)
    frames = config.data.num_frames + config.data.images_per_sample
    return {
        "sample": torch.randn(1, latent_channels, frames, *latent_hw, generator=generator),
        "timestep": torch.tensor([config.run.seed % 997 + 1]),
        "context": torch.randn(1, frames, *context_shape, generator=generator),
        "num_image_frames": config.data.images_per_sample,
    }


def _quiet_ray_train_logs() -> None:
    """Ray Train V2 logs every report at INFO, from a logger named by its file path."""
    from ray.train.v2._internal.execution import context as train_context

    for name in ("ray.train", train_context.__name__, train_context.__file__):
        logging.getLogger(name).setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point: ``loop_config = {"config": TrainConfig dump, "hooks": {...}}``."""
    import ray.train
    from ray.train import Checkpoint

    from training.conditioning import Conditioner
    from training.data import JointLoader, JointVideoImageDataset
    from training.ema import ShardedEMA
    from training.engine import build_unet, initialize, select_trainable
    from training.metrics import MetricsTracker, MetricsWriter
    from training.objective import DiffusionObjective

    config = TrainConfig.model_validate(loop_config["config"])
    hooks = loop_config.get("hooks") or {}
    _quiet_ray_train_logs()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if hooks.get("pid_dir"):
        _write_pid(hooks["pid_dir"], rank, -1)

    on_gpu = config.scaling.use_gpu and torch.cuda.is_available()
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported: no auto-detection warning
    if on_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    model_dtype = torch.bfloat16 if config.deepspeed.bf16 else torch.float32
    frozen_dtype = torch.bfloat16 if config.deepspeed.bf16 and on_gpu else torch.float32

    # Same seed on every rank: identical new (temporal) layers; DeepSpeed also broadcasts rank 0's.
    torch.manual_seed(rng.key_seed(config.run.seed, rng.INIT))
    unet = build_unet(config.model)
    select_trainable(unet, config.trainable)
    unet_config = dict(unet.config)
    engine = initialize(config, unet, on_gpu=on_gpu)
    latent_store = config.latent_store()
    conditioner = Conditioner(
        config.model.pretrained,
        device=device,
        dtype=frozen_dtype,
        vae_batch_frames=config.loader.vae_batch_frames,
        latent_store=latent_store,
    )
    objective = DiffusionObjective(
        Path(config.model.pretrained) / "scheduler",
        config.objective.prediction_type,
        config.objective.image_loss_weight,
    )
    ema = (
        ShardedEMA(engine.module, config.ema.decay, rank=rank, world_size=world, start_step=config.ema.start_step)
        if config.ema.enabled
        else None
    )

    start_step, data_state = 0, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start_step, data_state = load_checkpoint(Path(folder), engine=engine, rank=rank, ema=ema)
    dataset = JointVideoImageDataset(
        config.data,
        rank,
        world,
        start_step,
        batch_size=config.loader.micro_batch_size,
        grad_accum_steps=config.deepspeed.grad_accum,
        latents=latent_store,
    )
    if data_state is not None:
        dataset.load_state_dict(data_state)
    loader = JointLoader(dataset, num_workers=config.loader.num_workers)
    tracker = MetricsTracker([s.name for s in config.data.sources])
    writer = MetricsWriter(config.run_uri(), config.run.storage_options) if rank == 0 else None
    trainer_state = {
        "run": config.run.name,
        "config_digest": config.digest(),
        "world_size": world,
        "zero_stage": config.deepspeed.zero_stage,
        "unet_config": unet_config,
        "prediction_type": config.objective.prediction_type,
        "ema_enabled": ema is not None,
        "trainable": config.trainable,
    }
    if hooks.get("pid_dir"):
        _write_pid(hooks["pid_dir"], rank, start_step)

    batches = iter(loader)
    seed, accum = config.run.seed, config.deepspeed.grad_accum
    try:
        for step in range(start_step, config.run.max_steps):
            lr = float(engine.get_lr()[0])  # the rate this step uses (the scheduler steps after it)
            for micro in range(accum):
                batch = next(batches)
                inputs = conditioner.prepare(
                    batch, seed=seed, step=step, rank=rank, micro=micro, caption_dropout=config.data.caption_dropout
                )
                noisy, timesteps, target = objective.noised(inputs.latents, seed=seed, step=step, rank=rank, micro=micro)
                prediction = engine(
                    noisy.to(model_dtype),
                    timesteps,
                    inputs.context.to(model_dtype),
                    num_image_frames=inputs.num_image_frames,
                ).sample
                parts = objective.loss(prediction, target, inputs.num_video_frames)
                engine.backward(parts.total)
                engine.step()
                tracker.add(
                    loss=parts.total,
                    loss_video=parts.video,
                    loss_image=parts.image,
                    samples=inputs.latents.shape[0],
                    dropped=inputs.dropped_captions,
                    captions=inputs.latents.shape[0] * (1 + inputs.num_image_frames),
                )
            if ema is not None:
                ema.update(step)
            done = step + 1
            last = done == config.run.max_steps
            save = done % config.run.checkpoint_every == 0 or last
            if not (save or done % config.run.log_every == 0):
                continue
            metrics = tracker.reduce(step=done, lr=lr, counters=loader.counters())
            if not save:
                if writer is not None:
                    writer.write(metrics)
                ray.train.report(metrics)
                _maybe_hold(hooks.get("hold"), rank, done)
                continue
            name = checkpoint_name(done)
            metrics["checkpoint"] = name
            if writer is not None:
                writer.write(metrics)
                writer.sync()
            local = Path(tempfile.mkdtemp(prefix=f"lavie-{name}-r{rank}-"))
            try:
                save_checkpoint(
                    local,
                    engine=engine,
                    step=done,
                    rank=rank,
                    ema=ema,
                    data_state=loader.state_dict(),
                    trainer_state={**trainer_state, "step": done, "metrics": metrics},
                )
                if last:
                    save_probe(engine, config, local, rank, model_dtype, device)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(local)), checkpoint_dir_name=name)
            finally:
                shutil.rmtree(local, ignore_errors=True)
            if hooks.get("pid_dir"):
                _write_pid(hooks["pid_dir"], rank, done)
            _maybe_hold(hooks.get("hold"), rank, done)
    finally:
        if writer is not None:
            writer.close()


def save_probe(engine: Any, config: TrainConfig, folder: Path, rank: int, dtype: torch.dtype, device: torch.device) -> None:
    """Run the engine on a fixed input (collective under ZeRO-3); rank 0 stores input and output."""
    module = engine.module
    latent_channels = module.config.in_channels
    down = 2 ** (len(module.config.block_out_channels) - 1)
    # Smallest latent size the UNet accepts, to keep the probe cheap.
    latent_hw = (down * 2, down * 2)
    probe = probe_inputs(config, latent_channels, latent_hw, (8, module.config.cross_attention_dim))
    was_training = module.training
    module.eval()
    with torch.no_grad():
        output = engine(
            probe["sample"].to(device, dtype),
            probe["timestep"].to(device),
            probe["context"].to(device, dtype),
            num_image_frames=probe["num_image_frames"],
        ).sample
    module.train(was_training)
    if rank == 0:
        torch.save({**probe, "output": output.detach().cpu()}, folder / PROBE_FILE)
