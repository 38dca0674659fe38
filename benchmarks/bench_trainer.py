"""Trainer step time: the DeepSpeed engine of `lavie train` against a plain PyTorch AdamW loop.

Both train the same 3D UNet (inflated from the tiny SD of ``lavie.synthetic``, or one built
from a larger config with ``--size small``) with the shipped ``training/configs/tiny-cpu.yaml``
(frames, frame size, optimizer, clipping, ZeRO stage), in one process, no Ray, on a fixed batch.
Two comparisons:

* model step: forward + loss + backward + optimizer step on precomputed latents and text
  embeddings; the DeepSpeed engine (ZeRO partitioned optimizer, gradient hooks, clipping, LR
  scheduler) against ``loss.backward(); clip_grad_norm_(); AdamW.step(); zero_grad()`` with the
  same AdamW kernel (torch's fused one, which the trainer selects on CPU);
* trainer step: the same plus what every training step also does (VAE encoding of the uint8
  frames, text encoding with caption dropout, noise and timesteps: ``training.conditioning`` and
  ``training.objective``), i.e. the per-step work of ``training.trainer`` minus data decoding.
Runs alternate between the two in short rounds (so that load from other processes on a shared
machine hits both alike); the median step time of each is reported, with the overhead.

    python benchmarks/bench_trainer.py [--size tiny|small] [--zero-stage 2] [--pixels 64] [--rounds 20]

``--gpu`` (needs CUDA): the trainer's engine on the real base-model shape, 16x320x512 (+4 images),
bf16, SD 1.x-size UNet with random weights; prints samples/s and model FLOPs utilisation (matmul,
conv and attention FLOPs of one training step counted with ``torch.utils.flop_counter``, divided
by the median step time and ``--peak-tflops``, default the H100 SXM's dense bf16 989).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMALL_UNET = {
    "block_out_channels": [64, 128, 128],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "cross_attention_dim": 32,
    "attention_head_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "in_channels": 4,
    "out_channels": 4,
    "sample_size": 16,
}


def _init_dist() -> None:
    import deepspeed

    from training.engine import skip_cpu_shared_memory_op

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    if not torch.cuda.is_available():
        skip_cpu_shared_memory_op()
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)


def _timed(step: Any, n: int, sync: bool) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    from lavie.synthetic import write_tiny_sd
    from training.conditioning import Conditioner
    from training.config import load_train_config
    from training.engine import initialize, select_trainable
    from training.objective import DiffusionObjective
    from training.specs.base_model import BaseModelSpec

    torch.set_num_threads(args.threads)
    _init_dist()
    work = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    sd = write_tiny_sd(work / "sd", unet_config=SMALL_UNET if args.size == "small" else None)
    # The shipped tiny config (frame count, size, optimizer, ZeRO stage), with this SD folder.
    overrides = [f"model.pretrained={sd}", f"deepspeed.zero_stage={args.zero_stage}", "ema.enabled=false",
                 f"deepspeed.config={args.ds_config}", "scaling.num_workers=1"]  # fmt: skip
    if args.frames is not None:
        overrides.append(f"data.num_frames={args.frames}")
    if args.images is not None:
        overrides.append(f"data.images_per_sample={args.images}")
    if args.pixels is not None:
        overrides += [f"data.height={args.pixels}", f"data.width={args.pixels}"]
    config = load_train_config(Path(__file__).resolve().parents[1] / "training/configs/tiny-cpu.yaml", overrides)
    data = config.data

    torch.manual_seed(0)
    plain = BaseModelSpec(config).build_model()
    torch.manual_seed(0)
    ds_model = BaseModelSpec(config).build_model()
    select_trainable(plain, "all")
    select_trainable(ds_model, "all")
    engine = initialize(config, ds_model, on_gpu=False)
    o = config.optimizer
    # The same AdamW implementation the engine runs (torch's fused kernel on CPU): what differs is
    # the engine around it.
    optimizer = torch.optim.AdamW(
        plain.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True
    )
    conditioner = Conditioner(config.model.pretrained)
    objective = DiffusionObjective(sd / "scheduler")
    g = torch.Generator().manual_seed(0)
    pixels = {
        "video": torch.randint(0, 256, (1, data.num_frames, 3, data.height, data.width), generator=g, dtype=torch.uint8),
        "images": torch.randint(0, 256, (1, data.images_per_sample, 3, data.height, data.width), generator=g, dtype=torch.uint8),
        "video_caption": ["a red car on a road at night"],
        "image_captions": [["a cat on the sea"] * data.images_per_sample],
    }
    inputs = conditioner.prepare(pixels, seed=0, step=0, rank=0, micro=0, caption_dropout=0.0)
    fixed = objective.noised(inputs.latents, seed=0, step=0, rank=0, micro=0)
    grad_clip = config.deepspeed.grad_clip

    def model_step(use_engine: bool, noisy: torch.Tensor, timesteps: torch.Tensor, target: torch.Tensor, context: torch.Tensor) -> None:
        model = engine if use_engine else plain
        out = model(noisy, timesteps, context, num_image_frames=inputs.num_image_frames).sample
        loss = objective.loss(out, target, inputs.num_video_frames).total
        if use_engine:
            engine.backward(loss)
            engine.step()
        else:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(plain.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def trainer_step(use_engine: bool) -> None:
        x = conditioner.prepare(pixels, seed=0, step=1, rank=0, micro=0, caption_dropout=0.1)
        noisy, timesteps, target = objective.noised(x.latents, seed=0, step=1, rank=0, micro=0)
        model_step(use_engine, noisy, timesteps, target, x.context)

    sides = {
        "plain_model": lambda: model_step(False, fixed[0], fixed[1], fixed[2], inputs.context),
        "deepspeed_model": lambda: model_step(True, fixed[0], fixed[1], fixed[2], inputs.context),
        "plain_trainer": lambda: trainer_step(False),
        "deepspeed_trainer": lambda: trainer_step(True),
    }
    for _ in range(args.warmup):
        for step in sides.values():
            step()
    # Short alternating rounds, so that load from other processes on a shared machine hits every
    # side alike; medians of the per-step times.
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name] += _timed(sides[name], args.steps, False)
    med = {name: statistics.median(values) for name, values in times.items()}
    return {
        "mode": "cpu, one process, no Ray",
        "model": f"{args.size} ({sum(x.numel() for x in plain.parameters()):,} parameters)",
        "zero_stage": config.deepspeed.zero_stage,
        "batch": f"1 x ({data.num_frames} frames + {data.images_per_sample} images) at {data.height}x{data.width} px",
        "threads": args.threads,
        "plain_model_step_ms": round(med["plain_model"] * 1e3, 2),
        "deepspeed_model_step_ms": round(med["deepspeed_model"] * 1e3, 2),
        "model_step_overhead_pct": round((med["deepspeed_model"] / med["plain_model"] - 1) * 100, 1),
        "plain_trainer_step_ms": round(med["plain_trainer"] * 1e3, 2),
        "deepspeed_trainer_step_ms": round(med["deepspeed_trainer"] * 1e3, 2),
        "trainer_step_overhead_pct": round((med["deepspeed_trainer"] / med["plain_trainer"] - 1) * 100, 1),
        "steps_per_side": len(times["plain_model"]),
    }


def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """The trainer's engine (``training.engine.initialize``, bf16) on the base model's real shape.

    ``--device cpu --unet tiny`` runs the same code on a CPU with the tiny UNet (a check of the
    code path, not a measurement)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cascade.models import SD1_UNET_CONFIG, BaseUNet3DModel
    from lavie.synthetic import TINY_UNET_CONFIG
    from training.config import load_train_config
    from training.engine import initialize
    from training.objective import joint_loss

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    _init_dist()
    if on_gpu:
        torch.cuda.set_device(device)
    height, width = (args.pixels, args.pixels) if args.pixels else (320, 512)
    overrides = [
        "model.pretrained=unused", "scaling.num_workers=1", "ema.enabled=false", "deepspeed.bf16=true",
        f"deepspeed.zero_stage={args.zero_stage}", f"deepspeed.activation_checkpointing={str(args.checkpointing).lower()}",
        f"loader.micro_batch_size={args.batch}", f"data.num_frames={args.frames}", f"data.images_per_sample={args.images}",
        f"data.height={height}", f"data.width={width}", "optimizer.lr=1.0e-5", f"deepspeed.config={args.ds_config}",
    ]  # fmt: skip
    config = load_train_config(Path(__file__).resolve().parents[1] / "training/configs/tiny-cpu.yaml", overrides)
    unet_config = SD1_UNET_CONFIG if args.unet == "sd1" else TINY_UNET_CONFIG
    torch.manual_seed(0)
    unet = BaseUNet3DModel.from_config({k: v for k, v in unet_config.items() if not k.startswith("_")})
    unet.requires_grad_(True)
    engine = initialize(config, unet.to(device), on_gpu=on_gpu)
    vae_down = 8 if args.unet == "sd1" else 4
    g = torch.Generator().manual_seed(0)
    f = args.frames + args.images
    shape = (args.batch, 4, f, height // vae_down, width // vae_down)
    noisy = torch.randn(*shape, generator=g).to(device, torch.bfloat16)
    target = torch.randn(*shape, generator=g).to(device)
    timesteps = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
    context = torch.randn(args.batch, f, 77, unet.config.cross_attention_dim, generator=g).to(device, torch.bfloat16)

    def step() -> None:
        out = engine(noisy, timesteps, context, num_image_frames=args.images).sample
        loss = joint_loss(out, target, args.frames, 1.0).total
        engine.backward(loss)
        engine.step()

    for _ in range(args.warmup):
        step()
    with FlopCounterMode(display=False) as counter:  # matmul/conv/attention FLOPs of forward + backward
        step()
    flops = counter.get_total_flops()
    times = _timed(step, args.steps, on_gpu)
    t = statistics.median(times)
    return {
        "mode": f"{device.type}, one process, no Ray, trainer engine (training.engine.initialize), bf16",
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "unet": f"{args.unet} ({sum(p.numel() for p in unet.parameters()):,} parameters)",
        "zero_stage": args.zero_stage,
        "batch": f"{args.batch} x ({args.frames} frames + {args.images} images) at {height}x{width} px",
        "activation_checkpointing": args.checkpointing,
        "step_ms": round(t * 1e3, 1),
        "samples_per_sec": round(args.batch / t, 3),
        "model_tflop_per_step": round(flops / 1e12, 3),
        "achieved_tflops": round(flops / t / 1e12, 2),
        "mfu_pct": round(flops / t / (args.peak_tflops * 1e12) * 100, 1),
        "peak_tflops": args.peak_tflops,
        "max_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 1) if on_gpu else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the base model's real shape, bf16, samples/s and MFU")
    parser.add_argument("--device", default="cuda", help="with --gpu: the device (cpu: a code-path check)")
    parser.add_argument("--unet", choices=["sd1", "tiny"], default="sd1", help="with --gpu: the UNet config")
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--zero-stage", type=int, default=2, choices=[1, 2, 3])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=None, help="default: tiny-cpu.yaml's (GPU: 16)")
    parser.add_argument("--pixels", type=int, default=None, help="square frame size (default: tiny-cpu.yaml's)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--steps", type=int, default=5, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--ds-config", default="{}", help="JSON merged into the DeepSpeed config (deepspeed.config)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if args.gpu:
        args.frames = args.frames or 16
        args.images = 4 if args.images is None else args.images
        args.steps = max(args.steps, 10)
    result = run_gpu(args) if args.gpu else run_cpu(args)
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
