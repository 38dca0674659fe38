"""Trainer step of the interpolation and VSR model specs: the DeepSpeed engine of `lavie train`
against a plain PyTorch AdamW loop, on the same spec (same batch, same draws, same loss).

Each side runs ``spec.loss`` (VAE and text encoding, patches, the kind's conditioning: key-frame
latents on the 61-frame grid, or the x4-downsampled and noised low-res input with its noise
level; noise, timesteps, the network) then the optimizer step: ``engine.backward/step`` on one
side, ``loss.backward(); clip_grad_norm_(); AdamW.step(); zero_grad()`` with the same fused AdamW
on the other. One process, no Ray; the test suite's tiny models (``lavie.synthetic``) on CPU,
alternating short rounds, medians reported with the overhead.

    python benchmarks/bench_trainer_kinds.py [--kind interpolation vsr] [--rounds 10]

The engine's cost per step is mostly fixed (gradient hooks per parameter tensor, clipping, the
LR scheduler), so the overhead depends on how long a step is. The default shape is the test
suite's (a step of ~50 ms); steps of a few hundred ms, closer to real training (wider models,
more frames, larger patches), are::

    python benchmarks/bench_trainer_kinds.py --size small --patch 48 --interpolation-frames 13 --vsr-frames 16

``--gpu`` (needs CUDA): the engine alone on each kind's training shape (interpolation: 61 frames
of 256x256 patches, SD 1.x-size UNet with 8 input channels; VSR: 8 frames of 320x320 patches,
the x4 upscaler's UNet), random weights, bf16; prints samples/s.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training"))

from bench_trainer import SMALL_UNET, _init_dist, _timed  # noqa: E402

#: ``--size small``: the upscaler UNet at bench_trainer's small widths.
SMALL_UPSCALER_WIDTHS = {"block_out_channels": [64, 128], "norm_num_groups": 16}


def _tiny_paths(work: Path) -> dict[str, Path]:
    """The test suite's tiny folders and manifests (tests/training/conftest.py), written once."""
    import conftest

    class Factory:
        def mktemp(self, name: str) -> Path:
            (work / name).mkdir(parents=True, exist_ok=True)
            return work / name

    return conftest.cascade_data.__wrapped__(conftest.train_data.__wrapped__(Factory()))


def _small_models(paths: dict[str, Path], work: Path) -> dict[str, Path]:
    """``paths`` with wider starting models: SD and its inflated base at bench_trainer's small
    UNet (6.1M parameters), the upscaler at :data:`SMALL_UPSCALER_WIDTHS`."""
    from cascade.models import BaseUNet3DModel
    from lavie.synthetic import TINY_UPSCALER_UNET_CONFIG, write_tiny_sd, write_tiny_upscaler

    sd = write_tiny_sd(work / "sd-small", unet_config=SMALL_UNET)
    torch.manual_seed(0)
    BaseUNet3DModel.from_pretrained_2d(sd).save_pretrained(work / "base-small")
    wider = {**TINY_UPSCALER_UNET_CONFIG, **SMALL_UPSCALER_WIDTHS}
    upscaler = write_tiny_upscaler(work / "upscaler-small", unet_config=wider)
    return {**paths, "sd": sd, "base": work / "base-small", "upscaler": upscaler}


def run_cpu(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from conftest import kind_config

    from training.config import load_train_config
    from training.data import JointLoader
    from training.engine import initialize, select_trainable
    from training.specs import spec_class
    from training.specs.spec import DrawKey

    work = Path(tempfile.mkdtemp(prefix="bench-kinds-"))
    paths = _tiny_paths(work)
    if args.size == "small":
        paths = _small_models(paths, work)
    raw = kind_config(kind, paths, work / "runs", scaling={"num_workers": 1}, ema={"enabled": False})
    side = max(args.patch, raw["data"]["height"])  # the test clips are 48x64 px, 16 frames
    raw["data"].update(height=side, width=side)
    raw["model"]["options"]["patch_size"] = [args.patch, args.patch]
    if kind == "interpolation":
        raw["data"]["num_frames"] = args.interpolation_frames
    else:
        raw["data"].update(num_frames=args.vsr_frames, frame_stride=1)
    config = load_train_config(raw)
    spec = spec_class(kind)(config)
    models = {}
    for side in ("plain", "engine"):
        torch.manual_seed(0)
        models[side] = spec.build_model()
        select_trainable(models[side], spec.trainable)
    engine = initialize(config, models["engine"], on_gpu=False)
    o = config.optimizer
    params = [p for p in models["plain"].parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True)
    spec.prepare(torch.device("cpu"), torch.float32, torch.float32, None)
    batch = next(iter(JointLoader(spec.build_dataset(0, 1, 0, None))))
    key = DrawKey(0, 1, 0, 0)

    def step(use_engine: bool) -> None:
        loss = spec.loss(engine if use_engine else models["plain"], batch, key).parts.total
        if use_engine:
            engine.backward(loss)
            engine.step()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.deepspeed.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    sides = {"plain": lambda: step(False), "deepspeed": lambda: step(True)}
    for _ in range(args.warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            times[name] += _timed(sides[name], args.steps, False)
    med = {name: statistics.median(values) for name, values in times.items()}
    return {
        "kind": kind,
        "size": args.size,
        "batch": f"1 x {batch['video'].shape[1]} frames at {batch['video'].shape[-2]}x{batch['video'].shape[-1]} px, "
        f"patch {spec.options.patch_size}",
        "trainable": f"{sum(p.numel() for p in params):,} of {sum(p.numel() for p in models['plain'].parameters()):,}",
        "plain_step_ms": round(med["plain"] * 1e3, 2),
        "deepspeed_step_ms": round(med["deepspeed"] * 1e3, 2),
        "overhead_pct": round((med["deepspeed"] / med["plain"] - 1) * 100, 1),
        "steps_per_side": len(times["plain"]),
    }


def run_gpu(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Samples/s of the engine on the kind's real training shape (random weights, bf16)."""
    from cascade.models import SD1_UNET_CONFIG, X4_UPSCALER_UNET_CONFIG, InterpolationUNet3DModel, VSRUNet3DModel
    from training.config import TrainConfig
    from training.engine import initialize, select_trainable

    device = torch.device("cuda")
    if kind == "interpolation":
        model = InterpolationUNet3DModel.from_config({**SD1_UNET_CONFIG, "in_channels": 8})
        frames, side, latent_side, trainable, cond = 61, 256, 32, "all", 4
    else:
        model = VSRUNet3DModel.from_config(dict(X4_UPSCALER_UNET_CONFIG))
        frames, side, latent_side, trainable, cond = 8, 320, 80, "temporal", 3
    select_trainable(model, trainable)
    config = TrainConfig.model_validate({
        "model": {"kind": kind, "pretrained": "unused"},
        "data": {"sources": [{"name": "x", "kind": "video", "manifest": "unused", "schedule": [[0, 1.0]]}],
                 "images_per_sample": 0, "num_frames": frames, "height": side, "width": side},
        "deepspeed": {"zero_stage": 2, "bf16": True, "activation_checkpointing": True},
        "scaling": {"num_workers": 1, "use_gpu": True}, "run": {"name": "bench", "max_steps": 10},
    })  # fmt: skip
    engine = initialize(config, model.to(device), on_gpu=True)
    dim = model.config.cross_attention_dim
    sample = torch.randn(args.batch, 4, frames, latent_side, latent_side, device=device, dtype=torch.bfloat16)
    added = torch.randn(args.batch, cond, frames, latent_side, latent_side, device=device, dtype=torch.bfloat16)
    context = torch.randn(args.batch, 77, dim, device=device, dtype=torch.bfloat16)
    extra = {"class_labels": torch.full((args.batch,), 50, device=device)} if kind == "vsr" else {}

    def step() -> None:
        t = torch.randint(0, 1000, (args.batch,), device=device)
        out = engine(sample, t, context, added_cond=added, **extra).sample
        engine.backward(out.float().pow(2).mean())
        engine.step()

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    times = _timed(step, args.steps * 2, True)
    med = statistics.median(times)
    return {"kind": kind, "shape": f"{args.batch} x {frames} x {side}x{side} px", "step_s": round(med, 3),
            "samples_per_s": round(args.batch / med, 3), "gpu": torch.cuda.get_device_name()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", default=["interpolation", "vsr"], choices=["interpolation", "vsr"])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--interpolation-frames", type=int, default=9, help="CPU: frames of the window (4k+1, <= 13)")
    parser.add_argument("--vsr-frames", type=int, default=4, help="CPU: frames of a VSR clip (<= 16)")
    parser.add_argument("--patch", type=int, default=16, help="CPU: side of the training patch in px (<= 48)")
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny", help="CPU: the models' widths")
    parser.add_argument("--batch", type=int, default=1, help="with --gpu")
    parser.add_argument("--steps", type=int, default=3, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not args.gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        torch.set_num_threads(1)
    _init_dist()
    results = []
    for kind in args.kind:
        started = time.perf_counter()
        result = run_gpu(kind, args) if args.gpu else run_cpu(kind, args)
        result["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
