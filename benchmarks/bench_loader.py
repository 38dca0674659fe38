"""Benchmark the training clip loader against a naive decord loader, per CPU core.

Generates (once, cached) a dozen 1280x720 H.264 clips (default: 60 frames at 30 fps) under
``benchmarks/_work/loader/`` and a clip manifest over them, then times, side by side in one
process, alternating rounds:

* ``loader``: :class:`training.data.JointVideoImageDataset` (video only, M = 0): decord scales
  frames in the decoder to the smallest size covering the crop, ``get_batch`` fetches only the
  sampled frames, then a centre crop;
* ``naive``: decord at full resolution decodes the clip's whole frame range, the sampled frames
  are picked, resized (antialiased bilinear) and centre-cropped in torch.

Both decode exactly the same frames (the naive loader replays the loader's ``frame_indices``)
with one decoder thread and one torch thread, so clips per CPU-second is clips/s per core. The
check compares the two outputs' mean absolute difference (different resamplers, same content).

``--codec av1`` encodes the clips in AV1, which decord cannot open: the loader then reads through
the shared reader's PyAV fallback, and the naive loader decodes the range with PyAV at full
resolution.

    .venv/bin/python benchmarks/bench_loader.py [--clips 12] [--rounds 3] [--frame-stride 3] [--codec h264|av1]

The interpolation model's sample, a window of 61 consecutive frames at 24 fps (every frame of
the range is used, so the naive loader decodes no extra frame and the difference is the decoder
scaling alone), from 3 s clips at 24 fps::

    .venv/bin/python benchmarks/bench_loader.py --clip-frames 72 --fps 24 --num-frames 61 --target-fps 24
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import decord
import numpy as np
import pyarrow.dataset as ds
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lavie.core.manifest import CLIPS_DIR  # noqa: E402
from lavie.core.video import write_video  # noqa: E402
from lavie.synthetic import clip_row, write_clip_manifest  # noqa: E402
from lavie.synthetic.videos import texture_frame  # noqa: E402
from training.data import JointVideoImageDataset, parse_data_config  # noqa: E402
from training.data.decode import center_crop, cover_size, resize_frames  # noqa: E402

WORK = ROOT / "benchmarks" / "_work" / "loader"
WIDTH, HEIGHT = 1280, 720


def generate(clips: int, codec: str, frames: int, fps: int) -> Path:
    """Clips and manifest under WORK (reused when already there)."""
    layout = "" if (frames, fps) == (60, 30) else f"-{frames}f{fps}"  # the default clips keep their names
    suffix = f"{layout}{'' if codec == 'h264' else '-' + codec}"
    videos = []
    for i in range(clips):
        path = WORK / "videos" / f"clip{i:03d}{suffix}.mp4"
        if not path.exists():
            pixels = (texture_frame(k, HEIGHT, WIDTH) for k in range(frames))
            encoding = {"codec": "libsvtav1", "options": {"crf": "35", "preset": "10", "g": "30"}} if codec == "av1" else {}
            write_video(path.with_suffix(".tmp.mp4"), pixels, fps, preset="veryfast", gop=30, **encoding)
            path.with_suffix(".tmp.mp4").rename(path)
        videos.append(path)
    rows = [
        clip_row(str(p), 0, frames, float(fps), WIDTH, HEIGHT, f"synthetic clip number {i}")
        for i, p in enumerate(videos)
    ]
    return write_clip_manifest(WORK / f"manifest{suffix or '-h264'}-{clips}", rows)


def naive_clip(uri: str, start: int, end: int, indices: list[int], height: int, width: int) -> torch.Tensor:
    if uri.endswith("-av1.mp4"):  # decord cannot open AV1: PyAV decodes from the start
        with av.open(uri) as container:
            container.streams.video[0].thread_type = "SLICE"
            decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(end), container.decode(video=0))]
        frames = np.stack(decoded[start:end])
    else:
        reader = decord.VideoReader(uri, num_threads=1)
        frames = reader.get_batch(list(range(start, end))).asnumpy()  # full resolution, whole range
    picked = torch.from_numpy(frames[np.asarray(indices) - start]).permute(0, 3, 1, 2)
    resized = resize_frames(picked, *cover_size(picked.shape[-2], picked.shape[-1], height, width))
    return center_crop(resized, height, width).contiguous()


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--frame-stride", type=int, default=3)
    parser.add_argument(
        "--target-fps",
        type=float,
        help="sample at this rate instead of --frame-stride, frames distinct (the interpolation model's window)",
    )
    parser.add_argument("--clip-frames", type=int, default=60, help="frames of each generated clip")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the generated clips")
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--codec", choices=["h264", "av1"], default="h264")
    args = parser.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    manifest = generate(args.clips, args.codec, args.clip_frames, args.fps)
    rate = {"target_fps": args.target_fps} if args.target_fps else {"frame_stride": args.frame_stride}
    print(f"clips: {args.clips} x {WIDTH}x{HEIGHT} {args.codec}, {args.clip_frames} frames at {args.fps} fps "
          f"(ready in {time.perf_counter() - t0:.1f} s); sample {args.num_frames} frames, "
          f"{', '.join(f'{k} {v:g}' for k, v in rate.items())}, out {args.height}x{args.width}; "
          "1 decoder thread, 1 torch thread")
    config = parse_data_config({
        "sources": [{"name": "bench", "kind": "video", "manifest": str(manifest), "schedule": [[0, 1.0]]}],
        "num_frames": args.num_frames, **rate,
        "height": args.height, "width": args.width, "images_per_sample": 0, "decode_threads": 1,
    })  # fmt: skip

    def run_loader() -> list[dict]:
        stream = iter(JointVideoImageDataset(config, distinct_frames=args.target_fps is not None))
        return [next(stream) for _ in range(args.clips)]

    samples = run_loader()  # warm-up, and the frames both loaders decode
    rows = {r["clip_id"]: r for r in ds.dataset(manifest / CLIPS_DIR).to_table().to_pylist()}

    def run_naive() -> list[torch.Tensor]:
        out = []
        for s in samples:
            row = rows[s["clip_id"]]
            out.append(naive_clip(row["source_uri"], row["start_frame"], row["end_frame"],
                                  s["frame_indices"], args.height, args.width))
        return out

    naive_out = run_naive()
    diff = statistics.mean(
        (s["video"].float() - n.float()).abs().mean().item() for s, n in zip(samples, naive_out)
    )
    rates: dict[str, list[tuple[float, float]]] = {"loader": [], "naive": []}
    for _ in range(args.rounds):
        for name, fn in (("loader", run_loader), ("naive", run_naive)):
            wall, cpu = timed(fn)
            rates[name].append((args.clips / wall, args.clips / cpu))
    print(f"output check: mean |loader - naive| = {diff:.2f} grey levels (resampler difference)")
    print(f"{'':8s} {'clips/s wall':>13s} {'clips per CPU-s':>16s}   (median of {args.rounds} rounds)")
    med = {}
    for name, values in rates.items():
        med[name] = (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        print(f"{name:8s} {med[name][0]:13.2f} {med[name][1]:16.2f}")
    print(f"ratio loader/naive: {med['loader'][0] / med['naive'][0]:.2f}x wall, "
          f"{med['loader'][1] / med['naive'][1]:.2f}x per CPU core")


if __name__ == "__main__":
    main()
