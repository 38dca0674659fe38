"""Benchmark `lavie stats` against a naive pandas full load of the same columns.

Generates a synthetic curation output with a 10-million-row ``clips/`` table (several Parquet
files, every column of CLIP_SCHEMA) under ``benchmarks/_work/``, then runs, each in its own
process so that peak RSS is that process's alone:

* ``lavie stats MANIFEST --out REPORT_DIR`` (the real command line), and
* a naive script that ``pandas.read_parquet``-s the same columns at once and computes the same
  figures with pandas.

It checks that both give the same figures, then prints wall time, peak RSS and the ratios.

    .venv/bin/python benchmarks/bench_stats.py [--rows 10000000] [--files 10] [--clips-per-video 8] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.stats.accumulate import OPTIONAL_COLUMNS, REQUIRED_COLUMNS  # noqa: E402
from curation.stats.bins import AESTHETIC_BINS, CAPTION_WORD_BINS, DURATION_BINS, HEIGHT_BINS  # noqa: E402
from lavie.core.manifest import CLIP_SCHEMA, CLIPS_DIR, SUCCESS_FILE  # noqa: E402

WORK = ROOT / "benchmarks" / "_work"
CATEGORIES = (
    "Ads and Commercials", "Animation", "Branded Content", "Comedy", "Documentary",
    "Experimental", "Music", "Narrative", "Sports", "Travel",
)  # fmt: skip
ROW_GROUP = 256 * 1024


def _file_table(
    rng: np.random.Generator, first_row: int, rows: int, clips_per_video: int, captions: pa.Array
) -> pa.Table:
    index = np.arange(first_row, first_row + rows)
    video = index // clips_per_video
    fps = rng.choice(np.array([24.0, 25.0, 30.0]), rows)
    duration = np.maximum(np.exp(rng.normal(1.8, 0.7, rows)), 0.6)
    num_frames = np.round(duration * fps).astype(np.int64)
    start_frame = (index % clips_per_video) * 2000
    heights = np.array([360, 480, 720, 1080, 1440, 2160], dtype=np.int32)
    height = rng.choice(heights, rows, p=[0.02, 0.03, 0.35, 0.45, 0.05, 0.10])
    names = np.array(CATEGORIES, dtype=object)
    category = pa.array(names[rng.integers(0, len(names), rows)], mask=rng.random(rows) < 0.01)
    aesthetic = rng.normal(5.2, 0.8, rows).astype(np.float32)
    words = (rng.poisson(7, rows) + 3).astype(np.int32)
    digits = pc.utf8_lpad(pa.array(video).cast(pa.string()), 9, "0")
    columns = {
        "clip_id": pc.binary_join_element_wise("clip-", pa.array(index).cast(pa.string()), ""),
        "source_uri": pc.binary_join_element_wise("s3://vimeo-raw/videos/", digits, ".mp4", ""),
        "source_dataset": pa.array(["vimeo25m-synthetic"] * rows),
        "category": category,
        "caption": captions.take(pa.array(rng.integers(0, len(captions), rows))),
        "caption_words": words,
        "start_frame": start_frame,
        "end_frame": start_frame + num_frames,
        "num_frames": num_frames,
        "start_sec": start_frame / fps,
        "end_sec": (start_frame + num_frames) / fps,
        "duration_sec": num_frames / fps,
        "fps": fps,
        "width": height * 16 // 9,
        "height": height,
        "codec": pa.array(["h264"] * rows),
        "aesthetic_score": pa.array(aesthetic, mask=rng.random(rows) < 0.02),
        "clip_score": rng.normal(0.3, 0.03, rows).astype(np.float32),
        "motion_score": rng.lognormal(np.log(0.004), 1.0, rows).astype(np.float32),
        "motion_method": pa.array(["motion_vectors"] * rows),
        "overlay_score": rng.beta(0.5, 4.0, rows).astype(np.float32),
    }
    return pa.table(columns).cast(CLIP_SCHEMA)


def generate(manifest: Path, rows: int, files: int, clips_per_video: int, seed: int = 0) -> None:
    """A curation-output folder whose clips/ holds ``rows`` synthetic clips in ``files`` files.

    Clips of one video are adjacent, ``clips_per_video`` of them, as scene detection emits them."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"word{i}" for i in range(5000)], dtype=object)
    captions = pa.array([" ".join(rng.choice(vocabulary, 3 + rng.poisson(7))) for _ in range(50_000)])
    clips = manifest / CLIPS_DIR
    clips.mkdir(parents=True)
    per_file = -(-rows // files)
    for i in range(files):
        first = i * per_file
        n = min(per_file, rows - first)
        table = _file_table(rng, first, n, clips_per_video, captions)
        pq.write_table(table, clips / f"part-{i:05d}.parquet", row_group_size=ROW_GROUP)
    (manifest / SUCCESS_FILE).write_text("")
    (manifest / "rows.txt").write_text(str(rows))


NAIVE_PANDAS = """
import json, sys
import numpy as np
import pandas as pd

clips_dir, columns, bins = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
df = pd.read_parquet(clips_dir, columns=columns)

def hist(series, spec):
    values = series.dropna().to_numpy()
    index = np.zeros(len(values), dtype=np.int64)
    for b in spec["boundaries"]:
        index += (values > b) if b in spec["closed_below"] else (values >= b)
    return np.bincount(index, minlength=len(spec["labels"])).tolist()

category = df["category"].value_counts()
print(json.dumps({
    "videos": int(df["source_uri"].nunique()),
    "clips": len(df),
    "hours": round(float(df["duration_sec"].sum()) / 3600, 4),
    "category": {str(k): int(v) for k, v in category.items()},
    "duration_sec": hist(df["duration_sec"], bins["duration_sec"]),
    "caption_words": hist(df["caption_words"], bins["caption_words"]),
    "aesthetic_score": hist(df["aesthetic_score"], bins["aesthetic_score"]),
    "resolution": hist(df["height"], bins["height"]),
}))
"""


# A child's ru_maxrss starts at its parent's peak RSS (Linux records the old address space's peak
# at exec), and this process holds the generated data. So a small launcher forks the command from
# its own small address space, waits for it alone (wait4) and reports its time and peak.
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    seconds = time.perf_counter() - start
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}, f)
"""


def measure(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes (of ``command``'s process alone) and its stdout."""
    report = WORK / "measure.json"
    launcher = [sys.executable, "-S", "-c", LAUNCHER, str(report)]
    result = subprocess.run(launcher + command, capture_output=True, text=True)
    figures = json.loads(report.read_text())
    if result.returncode != 0 or figures["rc"] != 0:
        raise SystemExit(f"{' '.join(command[:3])}... failed ({figures['rc']}):\n{result.stderr}")
    return figures["seconds"], figures["maxrss_kib"] * 1024, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--clips-per-video", type=int, default=8, help="1: every clip a distinct video (worst case)")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()

    manifest = WORK / f"synthetic-{args.rows}-{args.clips_per_video}"
    marker = manifest / "rows.txt"
    if args.regenerate or not marker.exists() or marker.read_text() != str(args.rows):
        shutil.rmtree(manifest, ignore_errors=True)
        start = time.perf_counter()
        generate(manifest, args.rows, args.files, args.clips_per_video)
        print(f"generated {args.rows:,} rows in {args.files} files in {time.perf_counter() - start:.1f} s")
    size = sum(f.stat().st_size for f in (manifest / CLIPS_DIR).iterdir())
    print(f"manifest: {manifest} ({size / 2**20:,.0f} MiB of Parquet)")

    out = WORK / "report"
    lavie = Path(sys.executable).with_name("lavie")
    stats_command = [str(lavie), "stats", str(manifest), "--out", str(out)]
    if not lavie.exists():
        stats_command = [sys.executable, "-m", "lavie.cli", "stats", str(manifest), "--out", str(out)]
    columns = list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    bins = {b.name: b.describe() for b in (DURATION_BINS, CAPTION_WORD_BINS, AESTHETIC_BINS, HEIGHT_BINS)}
    pandas_command = [sys.executable, "-c", NAIVE_PANDAS, str(manifest / CLIPS_DIR), json.dumps(columns)]
    pandas_command.append(json.dumps(bins))
    idle_command = [sys.executable, "-c", "import pyarrow.dataset, pandas"]

    stats_s, stats_rss, _ = measure(stats_command)
    pandas_s, pandas_rss, pandas_out = measure(pandas_command)
    _, idle_rss, _ = measure(idle_command)

    ours = json.loads((out / "stats.json").read_text())["datasets"][0]
    theirs = json.loads(pandas_out)
    mine = {
        "videos": ours["totals"]["videos"],
        "clips": ours["totals"]["clips"],
        "hours": ours["totals"]["hours"],
        "category": dict(zip(ours["category"]["labels"], ours["category"]["counts"])),
        **{k: ours[k]["counts"] for k in ("duration_sec", "caption_words", "aesthetic_score", "resolution")},
    }
    if mine != theirs:
        raise SystemExit(f"lavie stats and pandas disagree:\n{mine}\n{theirs}")

    mib = 2**20
    print(f"both agree: {mine['clips']:,} clips, {mine['videos']:,} videos, {mine['hours']:,} h")
    print(f"{'':28}{'wall s':>9}{'peak RSS MiB':>15}")
    print(f"{'lavie stats (streaming)':28}{stats_s:9.1f}{stats_rss / mib:15,.0f}")
    print(f"{'pandas full load':28}{pandas_s:9.1f}{pandas_rss / mib:15,.0f}")
    print(f"{'python + pyarrow + pandas':28}{'':9}{idle_rss / mib:15,.0f}   (imports only, for reference)")
    print(f"speed-up {pandas_s / stats_s:.2f}x, memory {pandas_rss / stats_rss:.2f}x less")


if __name__ == "__main__":
    main()
