"""Benchmark the evaluation's two costs: I3D features (per CPU core, or on a GPU) and the Fréchet distance.

* I3D features per second per CPU core: torch on one thread, a random I3D in the published layout,
  16 generated 320×512 frames per video, timed both for the network alone and with the FVD
  preprocessing (270×270 centre crop, bilinear resize to 224, scaling to [-1, 1]).
* Fréchet distance on the paper's count, 10,100 × 400 features: the statistics (mean and
  covariance) and the distance, timed side by side with the I3D time of the same 10,100 videos
  on one core, so the share of the metric's own arithmetic is a ratio of the same run.
* ``--device cuda``: I3D throughput on the GPU (videos per second per batch size), the
  preprocessing on the GPU too, with the peak memory.

    .venv/bin/python benchmarks/bench_eval.py [--videos 6] [--device cpu|cuda] [--batch-sizes 8,16,32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.frechet import FeatureStats, frechet_distance  # noqa: E402
from evaluation.i3d import InceptionI3d  # noqa: E402
from evaluation.preprocess import GENERATED_CROP, i3d_input  # noqa: E402

PAPER_VIDEOS = 10_100  # UCF-101: 101 classes × 100 samples
FEATURES = 400


def random_i3d(device: str) -> InceptionI3d:
    torch.manual_seed(0)
    return InceptionI3d().eval().to(device)


def generated_video(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 320, 512, 3), dtype=np.uint8)


@torch.inference_mode()
def cpu_features(videos: int) -> dict[str, float]:
    """Seconds per video on one thread: preprocessing, network, both."""
    torch.set_num_threads(1)
    model = random_i3d("cpu")
    frames = [generated_video(k) for k in range(videos)]
    model(i3d_input(frames[0], GENERATED_CROP)[None])  # warm-up
    start = time.perf_counter()
    inputs = [i3d_input(f, GENERATED_CROP)[None] for f in frames]
    prepared = time.perf_counter()
    for x in inputs:
        model(x).mean(dim=2)
    done = time.perf_counter()
    return {"preprocess": (prepared - start) / videos, "network": (done - prepared) / videos, "total": (done - start) / videos}


def frechet_seconds(repeats: int = 3) -> dict[str, float]:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(FEATURES, FEATURES)) / np.sqrt(FEATURES)
    real = rng.normal(size=(PAPER_VIDEOS, FEATURES)) @ mixing
    fake = rng.normal(0.1, 1.1, size=(PAPER_VIDEOS, FEATURES)) @ mixing
    stats, distance = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a, b = FeatureStats.of(real), FeatureStats.of(fake)
        middle = time.perf_counter()
        frechet_distance(a, b)
        stats.append(middle - start)
        distance.append(time.perf_counter() - middle)
    return {"statistics": min(stats), "distance": min(distance)}


@torch.inference_mode()
def gpu_throughput(batch_sizes: list[int], repeats: int = 5, device: str = "cuda") -> list[dict[str, float]]:
    """Videos/s per batch size, preprocessing on the device too (``device="cpu"``: a check of the
    code path; peak memory is then not measured)."""
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = random_i3d(device)
    video = torch.from_numpy(generated_video(0)).to(device)
    rows = []
    for batch in batch_sizes:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        frames = video.expand(batch, *video.shape)
        model(torch.stack([i3d_input(f, GENERATED_CROP) for f in frames]))  # warm-up (cuDNN picks algorithms)
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            model(torch.stack([i3d_input(f, GENERATED_CROP) for f in frames])).mean(dim=2).cpu()
        sync()
        seconds = (time.perf_counter() - start) / repeats
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        rows.append({"batch": batch, "videos_per_s": batch / seconds, "peak_gib": peak})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6, help="videos timed on the CPU (default 6)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-sizes", default="8,16,32", help="GPU batch sizes (default 8,16,32)")
    args = parser.parse_args()

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("bench_eval: --device cuda but torch sees no GPU")
        print(f"I3D on {torch.cuda.get_device_name()}, fp32, 16x224x224 inputs from 16x320x512 frames:")
        for row in gpu_throughput([int(b) for b in args.batch_sizes.split(",")]):
            print(f"  batch {row['batch']:>3}: {row['videos_per_s']:8.1f} videos/s, peak {row['peak_gib']:.2f} GiB")
        return

    per_video = cpu_features(args.videos)
    frechet = frechet_seconds()
    i3d_all = per_video["total"] * PAPER_VIDEOS
    metric = frechet["statistics"] + frechet["distance"]
    print(f"I3D features, one CPU core ({args.videos} videos of 16x320x512):")
    print(f"  {1 / per_video['total']:.3f} videos/s/core ({per_video['total']:.2f} s/video:"
          f" preprocessing {per_video['preprocess']:.3f} s, network {per_video['network']:.2f} s)")  # fmt: skip
    print(f"Frechet distance, {PAPER_VIDEOS} x {FEATURES} features, float64 (best of 3):")
    print(f"  statistics of both sets {frechet['statistics']:.3f} s, distance {frechet['distance']:.3f} s")
    print(f"  = {metric / i3d_all:.2e} of the I3D time of the same {PAPER_VIDEOS} videos on one core"
          f" ({i3d_all / 3600:.1f} core-hours)")  # fmt: skip


if __name__ == "__main__":
    main()
