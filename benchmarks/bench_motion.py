"""The motion step's per-core cost against decoding the same frames, measured side by side.

Videos: 1280×720 at 24 fps of the moving, noisy texture that costs a decoder roughly what natural
footage does (``lavie.synthetic``'s texture pattern), x264 "veryfast" (B-frames, like web video),
and the same frames in MJPEG (no motion vectors: the optical-flow fallback). CPU seconds of this process, one decoder
thread, medians of interleaved repeats:

1. ``decode``: every frame decoded by PyAV, no pixels extracted (the floor of any decode).
2. ``decode + vectors``: the same decode asked to export motion vectors, with the motion step's
   meter sampling them at 2 fps (what scene detection does when the motion step is on).
3. ``scene detection`` without and with the motion vectors: the pipeline's actual pass over the
   video, and then the motion step on each clip (averaging the sampled values).
4. MJPEG: ``decode`` against the optical-flow fallback (which reads 2 frame pairs a second, small).

Usage: python benchmarks/bench_motion.py [--videos 4] [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import av

from curation.config import MotionConfig, SceneDetectionConfig
from curation.rows import MOTION, new_row
from curation.steps.base import StepContext
from curation.steps.motion import MotionVectorMeter, request_motion_vectors, sample_stride, score_motion
from curation.steps.scenes import detect_scenes
from lavie.core.video import write_video
from lavie.synthetic.videos import texture_frame

WORK = Path(__file__).parent / "_work" / "motion"
FPS = 24


def make_videos(count: int, seconds: int) -> list[tuple[Path, Path]]:
    folder = WORK / f"texture-{count}x{seconds}s"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        h264, mjpeg = folder / f"v{i:02d}.mp4", folder / f"v{i:02d}.avi"
        frames = [texture_frame(i * 1000 + k, 720, 1280) for k in range(seconds * FPS)]
        if not h264.exists():
            write_video(h264, frames, FPS, codec="libx264", preset="veryfast")
        if not mjpeg.exists():
            write_video(mjpeg, frames, FPS, codec="mjpeg", pix_fmt="yuvj420p")
        pairs.append((h264, mjpeg))
    return pairs


def cpu_seconds(work) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def decode(path: Path, vectors: bool = False) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        meter = None
        if vectors and request_motion_vectors(stream.codec_context):
            meter = MotionVectorMeter(sample_stride(float(stream.average_rate), 2.0))
        for frame in container.decode(stream):
            if meter is not None:
                meter.observe(frame)


def scenes_then_motion(path: Path, vectors: bool) -> None:
    detected = detect_scenes(str(path), SceneDetectionConfig(), motion_vector_fps=2.0 if vectors else None)
    if not vectors:
        return
    context = StepContext()
    for start, end in detected.scenes:
        row = new_row(source_uri=str(path), start_frame=start, end_frame=end, fps=FPS, width=1280, height=720)
        row[MOTION] = detected.motion
        score_motion(row, MotionConfig(), context)
    context.close_source()


def flow_fallback(path: Path, frames: int) -> None:
    context = StepContext()
    row = new_row(source_uri=str(path), start_frame=0, end_frame=frames, fps=FPS, width=1280, height=720)
    score_motion(row, MotionConfig(), context)
    context.close_source()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    videos = make_videos(args.videos, args.seconds)
    frames = args.seconds * FPS
    runs = {
        "H.264: decode": lambda: [decode(h) for h, _ in videos],
        "H.264: decode + vectors at 2 fps": lambda: [decode(h, vectors=True) for h, _ in videos],
        "H.264: scene detection": lambda: [scenes_then_motion(h, False) for h, _ in videos],
        "H.264: scene detection + vectors + motion step": lambda: [scenes_then_motion(h, True) for h, _ in videos],
        "MJPEG: decode": lambda: [decode(m) for _, m in videos],
        "MJPEG: optical-flow fallback": lambda: [flow_fallback(m, frames) for _, m in videos],
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, work in runs.items():
            seconds[name].append(cpu_seconds(work))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    total = len(videos) * frames
    print(f"{len(videos)} videos × {frames} frames, 1280×720, CPU seconds (median of {args.repeats})\n")
    print("| run | CPU s | frames/s per core | ratio |")
    print("|---|---:|---:|---:|")
    baselines = {"H.264: decode + vectors at 2 fps": "H.264: decode",
                 "H.264: scene detection + vectors + motion step": "H.264: scene detection",
                 "MJPEG: optical-flow fallback": "MJPEG: decode"}  # fmt: skip
    for name, value in median.items():
        base = baselines.get(name)
        ratio = f"{value / median[base]:.2f}× {base.split(': ')[1]}" if base else ""
        print(f"| {name} | {value:.2f} | {total / value:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
