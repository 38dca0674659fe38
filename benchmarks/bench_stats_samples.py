"""Benchmark what the examples cost `lavie stats`: the same report with ``--samples 6`` (examples
beside every chart, previews decoded on Ray, a 500-clip index) and with ``--samples 0``.

Generates, under ``benchmarks/_work/``, a curation output with a ``--rows`` clip table (the
columns and distributions of benchmarks/bench_stats.py) whose sources are real videos: a pool of
``--pool`` generated 640x360 H.264 files, reached through one symbolic link per source video (so
the videos are as many and as distinct as in a real manifest, and each drawn clip's video is
opened by its own Ray task). Each command runs in its own process (peak RSS is the driver's alone;
Ray's workers are other processes), the two alternating ``--runs`` times.

    .venv/bin/python benchmarks/bench_stats_samples.py [--rows 1000000] [--files 4] [--runs 2] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_stats import ROW_GROUP, WORK, _file_table, measure  # noqa: E402

from curation.stats.previews import request_for  # noqa: E402
from curation.stats.samples import drawn_rows  # noqa: E402
from lavie.core.manifest import CLIPS_DIR, SUCCESS_FILE  # noqa: E402
from lavie.synthetic import write_scene_video  # noqa: E402

POOL_FRAMES = 240  # 10 s at 24 fps per pooled video


def write_pool(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 640x360 videos of ``POOL_FRAMES`` frames (four scenes each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"real-{i:03d}.mp4"
        if not path.exists():
            write_scene_video(path, (60, 60, 60, 60), 640, 360, fps=24, seed=i)
        paths.append(path)
    return paths


def generate(manifest: Path, rows: int, files: int, clips_per_video: int, pool: list[Path], seed: int = 0) -> None:
    """A curation output of ``rows`` clips whose ``source_uri`` are links to the ``pool`` videos
    (video ``v`` is ``links/v{v}.mp4`` → pool[v % len(pool)]) and whose ranges lie inside them."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"word{i}" for i in range(5000)], dtype=object)
    captions = pa.array([" ".join(rng.choice(vocabulary, 3 + rng.poisson(7))) for _ in range(50_000)])
    links = manifest / "links"
    links.mkdir(parents=True)
    videos = -(-rows // clips_per_video)
    for v in range(videos):
        os.symlink(pool[v % len(pool)], links / f"v{v:09d}.mp4")
    (manifest / CLIPS_DIR).mkdir()
    per_file = -(-rows // files)
    for i in range(files):
        first = i * per_file
        n = min(per_file, rows - first)
        table = _file_table(rng, first, n, clips_per_video, captions)
        video = (np.arange(first, first + n) // clips_per_video).astype(np.int64)
        digits = pc.utf8_lpad(pa.array(video).cast(pa.string()), 9, "0")
        start = rng.integers(0, POOL_FRAMES - 48, n)
        end = start + np.minimum(table["num_frames"].to_numpy(), 48)
        for name, column in (
            ("source_uri", pc.binary_join_element_wise(f"{links}/v", digits, ".mp4", "")),
            ("start_frame", pa.array(start)),
            ("end_frame", pa.array(end)),
        ):
            table = table.set_column(table.schema.get_field_index(name), name, column)
        pq.write_table(table, manifest / CLIPS_DIR / f"part-{i:05d}.parquet", row_group_size=ROW_GROUP)
    (manifest / SUCCESS_FILE).write_text("")
    (manifest / "rows.txt").write_text(str(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--clips-per-video", type=int, default=8)
    parser.add_argument("--pool", type=int, default=16, help="distinct generated videos behind the links")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()

    pool = write_pool(WORK / "sample-pool", args.pool)
    manifest = WORK / f"samples-{args.rows}-{args.clips_per_video}"
    marker = manifest / "rows.txt"
    if args.regenerate or not marker.exists() or marker.read_text() != str(args.rows):
        shutil.rmtree(manifest, ignore_errors=True)
        start = time.perf_counter()
        generate(manifest, args.rows, args.files, args.clips_per_video, pool)
        print(f"generated {args.rows:,} rows in {args.files} files in {time.perf_counter() - start:.1f} s")

    lavie = Path(sys.executable).with_name("lavie")
    base = [str(lavie), "stats"] if lavie.exists() else [sys.executable, "-m", "lavie.cli", "stats"]
    commands = {
        "--samples 0": base + [str(manifest), "--out", str(WORK / "report-samples-0"), "--samples", "0"],
        f"--samples {args.samples}": base + [str(manifest), "--out", str(WORK / "report-samples"),
                                             "--samples", str(args.samples)],
    }  # fmt: skip
    figures: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            seconds, rss, _ = measure(command)
            figures[name].append((seconds, rss))

    stats = json.loads((WORK / "report-samples" / "stats.json").read_text())
    drawn = {request_for(r).name: r for d in stats["samples"]["datasets"] for r in drawn_rows(d)}
    index = stats["samples"]["datasets"][0]["index"]
    made = [r for r in drawn.values() if r.get("preview")]
    size = sum((WORK / "report-samples" / r["preview"]).stat().st_size for r in made)
    mib = 2**20
    print(f"manifest: {manifest} ({args.rows:,} clips)")
    print(f"drawn: {len(drawn):,} distinct clips ({len(index)} in the index), {len(made):,} previews "
          f"({size / mib:.1f} MiB), {len(drawn) - len(made)} placeholders")  # fmt: skip
    print(f"{'':16}{'wall s (each run)':>28}{'peak RSS MiB':>16}")
    for name, runs in figures.items():
        times = ", ".join(f"{s:.1f}" for s, _ in runs)
        print(f"{name:16}{times:>28}{max(r for _, r in runs) / mib:16,.0f}")
    without = min(s for s, _ in figures["--samples 0"])
    with_samples = min(s for s, _ in figures[f"--samples {args.samples}"])
    print(f"examples cost +{with_samples - without:.1f} s (best of each; goal at most +60 s)")


if __name__ == "__main__":
    main()
