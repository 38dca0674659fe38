"""Benchmark the base 3D UNet: forward and forward+backward time and peak memory, SDPA vs naive.

With CUDA: the paper's size, the SD 1.x UNet (random init from its published config) on a
16 x 40 x 64 latent grid (16 x 320 x 512 video), batch 1, bf16, 77 text tokens; peak memory is
``torch.cuda.max_memory_allocated``. Without: a reduced SD-shaped UNet (widths 32/64/128/128, 2 heads)
in fp32 on 16 x 20 x 32 latents (half the paper's height and width); peak memory is the growth of the
process's peak RSS over its size after building the model. Each attention implementation runs in
its own process.

"naive" replaces ``scaled_dot_product_attention`` by an explicit softmax(QK^T)V in both the spatial
(diffusers' ``AttnProcessor``) and the temporal attention.

    .venv/bin/python benchmarks/bench_unet.py [--device cpu|cuda] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cascade.models import SD1_UNET_CONFIG, BaseUNet3DModel  # noqa: E402

# SD 1.x's layout at a quarter of its widths and heads (head widths 32/64/128/128 -> 16/32/64/64).
REDUCED_CONFIG = {
    **SD1_UNET_CONFIG,
    "block_out_channels": [32, 64, 128, 128],
    "attention_head_dim": 2,
    "norm_num_groups": 16,
    "cross_attention_dim": 128,
}
SETTINGS = {
    # latent grid (frames, height, width), dtype, text tokens
    "cuda": {"config": SD1_UNET_CONFIG, "grid": (16, 40, 64), "dtype": torch.bfloat16, "tokens": 77},
    "cpu": {"config": REDUCED_CONFIG, "grid": (16, 20, 32), "dtype": torch.float32, "tokens": 77},
}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _time(step: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    step()  # warm-up (allocator, kernels selection)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)  # the least disturbed run: other load only ever adds time


def worker(device: str, implementation: str, repeats: int) -> dict[str, Any]:
    """Measure one attention implementation; runs in its own process."""
    settings = SETTINGS[device]
    torch.manual_seed(0)
    model = BaseUNet3DModel.from_config(settings["config"]).to(device=device, dtype=settings["dtype"]).train()
    model.set_attention_implementation(implementation)
    frames, height, width = settings["grid"]
    config = settings["config"]
    sample = torch.randn(1, config["in_channels"], frames, height, width, device=device, dtype=settings["dtype"])
    context = torch.randn(1, settings["tokens"], config["cross_attention_dim"], device=device, dtype=settings["dtype"])
    timestep = torch.tensor([500], device=device)
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def forward() -> None:
        with torch.no_grad():
            model(sample, timestep, context)

    def forward_backward() -> None:
        model(sample, timestep, context).sample.float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    result: dict[str, Any] = {"implementation": implementation}
    for name, step in (("forward", forward), ("forward_backward", forward_backward)):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _peak_rss_bytes()  # peak RSS only grows, so fwd+bwd (measured second) dominates
        result[f"{name}_s"] = _time(step, repeats, sync)
        peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
        result[f"{name}_peak_bytes"] = peak - base
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default: 5 GPU, 3 CPU)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on a shared CPU, OpenMP threads that wait on each other stall for seconds)",
    )
    parser.add_argument("--worker", choices=["sdpa", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.device == "cuda" else 3)
    if args.worker:
        print(json.dumps(worker(args.device, args.worker, repeats)))
        return

    results = {}
    for implementation in ("sdpa", "naive"):
        command = [sys.executable, __file__, "--device", args.device, "--repeats", str(repeats),
                   "--threads", str(args.threads), "--worker", implementation]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[implementation] = json.loads(output.strip().splitlines()[-1])

    settings = SETTINGS[args.device]
    frames, height, width = settings["grid"]
    widths = "/".join(str(c) for c in settings["config"]["block_out_channels"])
    memory = "CUDA max allocated" if args.device == "cuda" else "peak RSS growth"
    print(
        f"BaseUNet3DModel ({widths}), latents 1x4x{frames}x{height}x{width}, {str(settings['dtype'])[6:]}, "
        f"{args.device}, best of {repeats} (torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    print(f"{'':18}{'sdpa':>12}{'naive':>12}{'naive/sdpa':>12}")
    for phase in ("forward", "forward_backward"):
        sdpa, naive = results["sdpa"], results["naive"]
        seconds = (sdpa[f"{phase}_s"], naive[f"{phase}_s"])
        print(f"{phase + ' s':18}{seconds[0]:12.3f}{seconds[1]:12.3f}{seconds[1] / seconds[0]:12.2f}")
        mib = (sdpa[f"{phase}_peak_bytes"] / 2**20, naive[f"{phase}_peak_bytes"] / 2**20)
        print(f"{phase + ' MiB':18}{mib[0]:12.0f}{mib[1]:12.0f}{mib[1] / max(mib[0], 1e-9):12.2f}")
    print(f"memory: {memory}")


if __name__ == "__main__":
    main()
