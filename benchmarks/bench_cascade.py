"""Benchmark the inference cascade: seconds and peak memory per stage, chunking off against on.

Each measurement runs in its own process (peak memory only ever grows within a process) on a
cascade folder of random models written once to a temporary folder:

* ``--size tiny``: the test suite's tiny models (``lavie.synthetic``), base 4×16×32: a check of
  the code paths in seconds, not a measurement.
* ``--size small`` (the CPU default): SD-shaped UNets at a quarter of SD's widths, the tiny VAE and
  text encoders of ``lavie.synthetic``; base 16×64×96, interpolation to 61 frames, VSR ×4 to
  256×384. Peak memory is the highest RSS seen while the stage runs (sampled every 5 ms) less the RSS before it.
* ``--size paper`` (GPU): SD 1.x's and the x4 upscaler's published UNet configs, SD's VAE and an SD
  1.x-sized CLIP text encoder; base 16×320×512 with guidance, 61 frames, 1280×2048. Peak memory is
  ``torch.cuda.max_memory_allocated``. ``--cascade`` adds the whole cascade with and without model
  offload. Not runnable on a CPU in reasonable time.

    .venv/bin/python benchmarks/bench_cascade.py [--size small|paper] [--steps N] [--cascade]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cascade.models import (  # noqa: E402
    SD1_UNET_CONFIG,
    X4_UPSCALER_UNET_CONFIG,
    BaseUNet3DModel,
    InterpolationUNet3DModel,
    VSRUNet3DModel,
)
from cascade.pipelines import GenerationSettings, assemble_cascade  # noqa: E402
from lavie.synthetic import TINY_UNET_CONFIG, TINY_UPSCALER_UNET_CONFIG  # noqa: E402

SMALL_SD = {**SD1_UNET_CONFIG, "block_out_channels": [80, 160, 320, 320], "attention_head_dim": 4,
            "norm_num_groups": 16, "cross_attention_dim": 32}  # fmt: skip
SMALL_X4 = {**X4_UPSCALER_UNET_CONFIG, "block_out_channels": [64, 128, 128, 256], "attention_head_dim": 4,
            "norm_num_groups": 16, "cross_attention_dim": 32, "num_class_embeds": 1000}  # fmt: skip
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
          "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 2, "latent_channels": 4,
          "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215}  # fmt: skip
X4_VAE = {**SD_VAE, "block_out_channels": [128, 256, 512], "down_block_types": ["DownEncoderBlock2D"] * 3,
          "up_block_types": ["UpDecoderBlock2D"] * 3, "scaling_factor": 0.08333}  # fmt: skip
#: x4 VAEs (three levels) at half of SD's widths, for the small size.
SMALL_VAE = {**X4_VAE, "block_out_channels": [64, 128, 256], "scaling_factor": 0.18215}
SIZES = {
    # the test suite's tiny models as written by lavie.synthetic (no VAE or text encoder replaced)
    "tiny": {"sd": TINY_UNET_CONFIG, "x4": TINY_UPSCALER_UNET_CONFIG, "vae": None, "x4_vae": None,
             "text_width": None, "frames": 2, "height": 16, "width": 32},
    "small": {"sd": SMALL_SD, "x4": SMALL_X4, "vae": SMALL_VAE, "x4_vae": {**SMALL_VAE, "scaling_factor": 0.08333},
              "text_width": None, "frames": 16, "height": 64, "width": 96},
    "paper": {"sd": SD1_UNET_CONFIG, "x4": X4_UPSCALER_UNET_CONFIG, "vae": SD_VAE, "x4_vae": X4_VAE,
              "text_width": (768, 1024), "frames": 16, "height": 320, "width": 512},
}  # fmt: skip
#: (name, stage, settings that differ): each stage with its chunking off, then on.
RUNS = [
    ("VAE decode of 61 frames, all at once", "decode", {"decode_chunk_size": None}),
    ("VAE decode of 61 frames, 8 at a time", "decode", {"decode_chunk_size": 8}),
    ("base, VAE decode all frames at once", "base", {"decode_chunk_size": None}),
    ("base, VAE decode 8 frames at a time", "base", {"decode_chunk_size": 8}),
    ("interpolation, decode all 61 at once", "interpolation", {"decode_chunk_size": None}),
    ("interpolation, decode 8 at a time", "interpolation", {"decode_chunk_size": 8}),
    ("VSR stage, 8-frame chunks, x4 decode", "vsr", {"vsr_chunk_frames": 8}),
    ("VSR denoising, UNet on all frames", "vsr_unet", {"vsr_chunk_frames": None}),
    ("VSR denoising, 8-frame chunks (release)", "vsr_unet", {"vsr_chunk_frames": 8}),
    ("VSR denoising, 8-frame chunks sharing 2", "vsr_unet", {"vsr_chunk_frames": 8, "vsr_chunk_overlap": 2}),
    ("VSR denoising, 8-frame chunks + tiles", "vsr_unet", {"vsr_chunk_frames": 8, "vsr_tile_size": "half"}),
]


def build_cascade(size: str, folder: Path) -> Path:
    """Random models of ``size`` written as a cascade folder (weights are random: only cost counts)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from lavie.synthetic import write_tiny_sd, write_tiny_upscaler

    spec = SIZES[size]
    sd, upscaler = write_tiny_sd(folder / "sd"), write_tiny_upscaler(folder / "upscaler")
    widths = spec["text_width"] or (None, None)
    for parts, vae_config, width in ((sd, spec["vae"], widths[0]), (upscaler, spec["x4_vae"], widths[1])):
        if vae_config is not None:
            AutoencoderKL(**vae_config).save_pretrained(parts / "vae")
        if width is not None:
            config = CLIPTextConfig.from_pretrained(parts / "text_encoder")
            config.update({"hidden_size": width, "intermediate_size": 4 * width, "num_hidden_layers": 12,
                           "num_attention_heads": width // 64, "projection_dim": width})  # fmt: skip
            CLIPTextModel(config).save_pretrained(parts / "text_encoder")
    torch.manual_seed(0)
    base = BaseUNet3DModel.from_config(spec["sd"])
    base.save_pretrained(folder / "base")
    InterpolationUNet3DModel.from_base(base).save_pretrained(folder / "interpolation")
    del base
    VSRUNet3DModel.from_config(spec["x4"]).save_pretrained(folder / "vsr")
    return assemble_cascade(folder / "cascade", sd=sd, upscaler=upscaler, base=folder / "base",
                            interpolation=folder / "interpolation", vsr=folder / "vsr")  # fmt: skip


class RSSPeak:
    """The highest resident set size seen while running, sampled every 5 ms from ``/proc`` (the
    process's lifetime peak would be the model loading's, not the stage's)."""

    def __enter__(self) -> RSSPeak:
        self.start = self.peak = _rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def worker(cascade: Path, size: str, stage: str, overrides: dict[str, Any], steps: int, device: str) -> dict[str, Any]:
    """One stage (or ``cascade``: all three) with the given settings, in this process."""
    from cascade.pipelines import CascadePipeline

    spec = SIZES[size]
    cuda = device == "cuda"
    tile = overrides.pop("vsr_tile_size", None)
    if tile == "half":
        overrides["vsr_tile"], overrides["vsr_tile_overlap"] = spec["height"] // 2, spec["height"] // 8
    if stage == "decode":
        return decode_worker(cascade, spec, overrides["decode_chunk_size"], cuda)
    stages = ["base", "interpolation", "vsr"] if stage == "cascade" else [stage.removesuffix("_unet")]
    settings = GenerationSettings(stages=stages, num_frames=spec["frames"], height=spec["height"], width=spec["width"],
                                  base_steps=steps, interpolation_steps=steps, vsr_steps=steps, **overrides)  # fmt: skip
    pipeline = CascadePipeline.from_pretrained(cascade, settings, device=device)
    pipeline.set_progress_bar_config(disable=True)
    # interpolation takes 16 key frames, VSR 16 low-resolution frames, at the base's size
    starts_from_text = stage in ("base", "cascade")
    video = None if starts_from_text else torch.rand(1, spec["frames"], 3, spec["height"], spec["width"])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() if cuda else 0
    started, cpu_started = time.perf_counter(), time.process_time()
    prompt, generator = "a sleek car drives through a neon city street at night", torch.Generator("cpu").manual_seed(0)
    with RSSPeak() as rss:
        if stage == "vsr_unet":  # the denoising loop alone: latents out, no x4 VAE decode
            output = pipeline.vsr(video, prompt, num_inference_steps=steps, generator=generator, output_type="latent",
                                  chunk_frames=settings.vsr_chunk_frames, chunk_overlap=settings.vsr_chunk_overlap,
                                  tile_size=settings.vsr_tile, tile_overlap=settings.vsr_tile_overlap)  # fmt: skip
        else:
            output = pipeline(prompt, settings, generator, video=video)
        if cuda:
            torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - baseline if cuda else rss.peak - rss.start
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
            "peak_bytes": peak, "frames": list(output.frames.shape),
            "stage_seconds": output.seconds}  # fmt: skip


def decode_worker(cascade: Path, spec: dict[str, Any], chunk: int | None, cuda: bool) -> dict[str, Any]:
    """The SD VAE alone decoding 61 frames of random latents (what interpolation's output costs)."""
    from cascade.encoders import decode_latents
    from cascade.pipelines.stage import load_vae, vae_scale

    vae = load_vae(cascade, "vae", torch.float32).to("cuda" if cuda else "cpu")
    scale = vae_scale(vae)
    latents = torch.randn(1, 4, 61, spec["height"] // scale, spec["width"] // scale, device=vae.device)
    started, cpu_started = time.perf_counter(), time.process_time()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() if cuda else 0
    with RSSPeak() as rss:
        pixels = decode_latents(vae, latents, chunk)
        if cuda:
            torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - baseline if cuda else rss.peak - rss.start
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
            "peak_bytes": peak, "frames": [1, pixels.shape[2], pixels.shape[3], pixels.shape[4]]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="paper" if torch.cuda.is_available() else "small")
    parser.add_argument("--steps", type=int, default=None, help="steps per stage (default: 50 paper, 2 small)")
    parser.add_argument("--cascade", action="store_true", help="also the whole cascade, offload off and on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = args.steps or (50 if args.size == "paper" else 2)
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(worker(Path(job["cascade"]), args.size, job["stage"], job["overrides"], steps, device)))
        return

    runs = list(RUNS)
    if args.cascade:
        runs += [("whole cascade, no offload", "cascade", {}), ("whole cascade, offload", "cascade", {"offload": True})]
    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as tmp:
        cascade = build_cascade(args.size, Path(tmp))
        memory = "CUDA max allocated" if device == "cuda" else "peak RSS over the RSS before the run"
        print(f"cascade of random {args.size}-size models, {steps} steps per stage, {device}, "
              f"{args.threads} threads (torch {torch.__version__}); memory: {memory}")  # fmt: skip
        print(f"{'run':40}{'seconds':>10}{'CPU s':>10}{'peak MiB':>10}  output")
        for name, stage, overrides in runs:
            job = json.dumps({"cascade": str(cascade), "stage": stage, "overrides": overrides})
            command = [sys.executable, __file__, "--size", args.size, "--steps", str(steps), "--threads",
                       str(args.threads), "--worker", job]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{name:40}{'failed':>10}  {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}")
                continue
            out = json.loads(result.stdout.strip().splitlines()[-1])
            shape = "x".join(str(n) for n in out["frames"][1:4])
            print(f"{name:40}{out['seconds']:10.2f}{out['cpu_seconds']:10.2f}{out['peak_bytes'] / 2**20:10.0f}  {shape}")


if __name__ == "__main__":
    main()
