"""Curation throughput, measured side by side in one run on the same generated videos.

1. Scene detection: the pipeline's scene-detection stage (probe + PySceneDetect on swscale-scaled
   frames, on Ray) against PySceneDetect's command line (`scenedetect -i F detect-content`), with
   the cut lists compared (every cut within ±1 frame). The CLI's own "Processed N frames in T s"
   figure is used, so its process start-up is not held against it. A single-process run of our
   detector is shown too, as a per-core figure.
2. The whole pipeline (no model scoring) against bare decode: every frame of every file decoded
   to a full-resolution RGB array by PyAV (FFmpeg frame threads on all cores), one file after
   another. The decoder alone, without extracting any pixels, is shown too as the floor.

The videos are x264 "veryfast" (deblocking, B-frames, CABAC), like web video.

Usage: python benchmarks/bench_curation.py [--videos 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import pyarrow.parquet as pq

from curation.config import CurationConfig, SceneDetectionConfig
from curation.pipeline import CurationRequest, run_curation
from curation.steps.scenes import detect_scenes
from lavie.synthetic import write_scene_video
from ray_jobs.cluster import connect

WORK = Path(__file__).parent / "_work" / "curation"


def make_videos(count: int, seconds: int) -> list[Path]:
    folder = WORK / f"videos-{count}x{seconds}s-veryfast"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"v{i:03d}.mp4"
        frames = seconds * 24
        scenes = tuple(int(frames * f) for f in (0.3, 0.25, 0.2)) + (frames - int(frames * 0.75),)
        if not path.exists():
            write_scene_video(path, scenes, 1280, 720, 24, seed=i, preset="veryfast")
        paths.append(path)
    return paths


def cli_scene_detection(paths: list[Path]) -> tuple[float, int, dict[str, list[int]]]:
    """(seconds the CLI reports processing, frames, cut starts per file)."""
    cli = shutil.which("scenedetect", path=str(Path(sys.executable).parent))
    seconds, frames, cuts = 0.0, 0, {}
    for path in paths:
        out = tempfile.mkdtemp()
        result = subprocess.run(
            [cli, "-i", str(path), "-o", out, "detect-content", "list-scenes", "-f", "s.csv"],
            capture_output=True, text=True, check=True,
        )
        match = re.search(r"Processed (\d+) frames in ([\d.]+) seconds", result.stdout + result.stderr)
        frames += int(match.group(1))
        seconds += float(match.group(2))
        rows = Path(out, "s.csv").read_text().splitlines()
        start = next(i for i, r in enumerate(rows) if r.startswith("Scene Number"))
        cuts[str(path)] = [int(r.split(",")[1]) - 1 for r in rows[start + 1 :] if r]
    return seconds, frames, cuts


def stage_scene_detection(paths: list[Path]) -> tuple[float, int, dict[str, list[int]]]:
    """The pipeline's probe + scene-detection steps on Ray over the same files (filters off, one
    video per shard so that both cores work on 16 videos), the cuts read back from the manifest."""
    config = CurationConfig(filters={"min_frames": 1, "min_caption_words": 0, "min_height": 0}, videos_per_shard=1)
    out = Path(tempfile.mkdtemp()) / "out"
    started = time.perf_counter()
    record = run_curation(CurationRequest(inputs=tuple(map(str, paths)), out=str(out), config=config))
    seconds = time.perf_counter() - started
    cuts: dict[str, list[int]] = {}
    for folder in ("clips", "rejects"):  # a clip without a caption is a reject, with its frame range
        for row in pq.read_table(out / folder, columns=["source_uri", "start_frame"]).to_pylist():
            if row["start_frame"] is not None:
                cuts.setdefault(row["source_uri"], []).append(row["start_frame"])
    return seconds, record["counts"]["frames_decoded"], {k: sorted(v) for k, v in cuts.items()}


def single_process_detection(paths: list[Path]) -> tuple[float, int]:
    started, frames = time.perf_counter(), 0
    for path in paths:
        frames += detect_scenes(str(path), SceneDetectionConfig()).decoded
    return time.perf_counter() - started, frames


def bare_decode(paths: list[Path], to_rgb: bool) -> tuple[float, int]:
    started, frames = time.perf_counter(), 0
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if to_rgb:
                    frame.to_ndarray(format="rgb24")
                frames += 1
    return time.perf_counter() - started, frames


def whole_pipeline(paths: list[Path]) -> tuple[float, int]:
    """Every step at the default config, but one video per shard: 16 long videos in the default
    64-video shard would be one task on one core."""
    out = Path(tempfile.mkdtemp()) / "out"
    started = time.perf_counter()
    record = run_curation(CurationRequest(inputs=tuple(map(str, paths)), out=str(out), config=CurationConfig(videos_per_shard=1)))
    return time.perf_counter() - started, record["counts"]["frames_decoded"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    paths = make_videos(args.videos, args.seconds)
    connect(None, log_to_driver=False)
    stage_scene_detection(paths[:2])  # warm the Ray workers' imports

    cli_s, cli_frames, cli_cuts = cli_scene_detection(paths)
    stage_s, stage_frames, stage_cuts = stage_scene_detection(paths)
    single_s, single_frames = single_process_detection(paths)
    decode_s, decode_frames = bare_decode(paths, to_rgb=True)
    floor_s, floor_frames = bare_decode(paths, to_rgb=False)
    pipe_s, pipe_frames = whole_pipeline(paths)

    agree = all(
        len(cli_cuts[p]) == len(stage_cuts[p]) and all(abs(a - b) <= 1 for a, b in zip(cli_cuts[p], stage_cuts[p]))
        for p in cli_cuts
    )
    cli_fps, stage_fps, single_fps = cli_frames / cli_s, stage_frames / stage_s, single_frames / single_s
    decode_fps, pipe_fps = decode_frames / decode_s, pipe_frames / pipe_s
    floor_fps = floor_frames / floor_s
    print(f"videos: {len(paths)} x {args.seconds}s 1280x720 H.264, {decode_frames} frames")
    print(f"{'measure':58s} {'frames/s':>10s}")
    print(f"{'scenedetect CLI detect-content (self-reported)':58s} {cli_fps:10.0f}")
    print(f"{'scene-detection stage on Ray':58s} {stage_fps:10.0f}")
    print(f"{'our detector, one process':58s} {single_fps:10.0f}")
    print(f"{'bare decode to RGB arrays (PyAV, frame threads)':58s} {decode_fps:10.0f}")
    print(f"{'decoder alone, no pixels extracted (floor)':58s} {floor_fps:10.0f}")
    print(f"{'whole pipeline, no scoring (run_curation)':58s} {pipe_fps:10.0f}")
    print(f"scene detection stage / CLI: {stage_fps / cli_fps:.2f}x (target >= 1.5x); one process / CLI: {single_fps / cli_fps:.2f}x")
    print(f"cut lists identical within ±1 frame on every file: {agree}")
    print(f"pipeline / bare decode: {pipe_fps / decode_fps:.2f}x (target >= 0.7x); "
          f"pipeline / decoder floor: {pipe_fps / floor_fps:.2f}x")


if __name__ == "__main__":
    main()
