"""Curation at scale: throughput, driver memory, object store and Ray work units against the
number of inputs, for this code and for the code before shard workers, side by side in one run.

Inputs are hard links of four small videos (lavie.synthetic.linked_inputs: 96×64 to 160×96,
40–68 frames, one to three scenes) with a Parquet listing of their captions. Each size runs
`lavie curate` as its own driver process against one Ray cluster per code base (started here, so
that the object store can be watched while the driver runs):

* this code: `lavie curate --inputs-from LISTING` (default config: every step; the tiny clips are
  all rejected by the 720p resolution filter, so `training_decode` and scoring do not run on them);
* the code before shard workers (`--baseline REV`, checked out as a git worktree, its Ray workers
  importing it): `lavie curate FOLDER --metadata CSV`, the same steps.

Per run: videos/s end to end (the driver's wall time, planning and Ray start-up included) and in
the steady state (videos between the first and the last shard marker over that time span), the
driver's peak RSS (its rusage), the object store's peak (Ray's memory summary, sampled every
second), and the Ray tasks the run started (Ray's state API). The fixed cost per video is the
steps' CPU seconds per input from run.json. The decoder floor decodes every frame of the same
files with PyAV, one process per core, and is compared with the steady-state rate.

Usage: python benchmarks/bench_curation_scale.py [--sizes 1000 10000 100000] [--fixed-cost N] [--check-sizes N ...]
           [--baseline-sizes 1000 10000] [--baseline c6facf8] [--workdir benchmarks/_work/scale]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASE = "--phase"


# --------------------------------------------------------------------------- one code base's runs
def _plasma_mib() -> float:
    import re

    from ray._private.internal_api import memory_summary

    match = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(stats_only=True))
    return float(match.group(1)) if match else 0.0


def _tasks_started() -> int:
    from ray.util.state import summarize_tasks

    summary = summarize_tasks(raise_on_missing_output=False)
    return sum(sum(row["state_counts"].values()) for row in summary["cluster"]["summary"].values())


def _steady_rate(out: Path, per_shard: int, videos: int) -> float:
    times = sorted(p.stat().st_mtime for p in (out / "_progress").glob("shard-*.json"))
    if len(times) < 3:
        return float("nan")
    shards_after_first = len(times) - 1
    return min(videos, shards_after_first * per_shard) / (times[-1] - times[0])


def run_phase(spec: dict) -> list[dict]:
    """Inside the phase process: start the cluster, run each driver, watch it."""
    import logging

    from ray_jobs.cluster import connect

    connect(None, log_to_driver=False, logging_level=logging.WARNING)
    import ray

    address = ray.get_runtime_context().gcs_address
    results = []
    for run in spec["runs"]:
        out = Path(run["out"])
        before = _tasks_started()
        peak, stop = [0.0], threading.Event()

        def watch(peak=peak, stop=stop) -> None:
            while not stop.wait(1.0):
                peak[0] = max(peak[0], _plasma_mib())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.perf_counter()
        process = subprocess.Popen([*run["command"], "--address", address, "--quiet"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        stderr = process.stderr.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{run['label']}: the driver failed: {stderr.strip().splitlines()[-1:]}")
        record = json.loads((out / "run.json").read_text())
        videos = record["counts"]["inputs"]
        results.append({
            "label": run["label"], "inputs": videos, "wall_s": round(wall, 1),
            "videos_per_s_end_to_end": round(videos / wall, 1),
            "videos_per_s_steady": round(_steady_rate(out, run["per_shard"], videos), 1),
            "driver_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "object_store_peak_mib": peak[0],
            "ray_tasks": _tasks_started() - before,
            "shards": record["counts"]["shards"],
            "step_cpu_ms_per_video": round(sum(record["timings"]["stage_cpu_sec"].values()) / videos * 1000, 2),
            "stage_cpu_ms_per_video": {k: round(v / videos * 1000, 2) for k, v in record["timings"]["stage_cpu_sec"].items()},
        })  # fmt: skip
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def _phase(env: dict, runs: list[dict], cwd: Path = REPO) -> list[dict]:
    """Run ``runs`` in a process of their own (a cluster of their own, importing the code that
    ``env`` and ``cwd`` select: ``python -m`` puts the working directory first on the path)."""
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), PHASE, json.dumps({"runs": runs})], env=env,
                            cwd=cwd, stdout=subprocess.PIPE, text=True, check=True)  # fmt: skip
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- lavie check
def check_run(workdir: Path, count: int, per_part: int) -> dict:
    """`lavie check --frames ends` on a manifest of ``count`` clips (each input's first scene), its
    own embedded Ray; the driver's peak RSS and clips/s."""
    from lavie.synthetic import clip_row, write_clip_manifest
    from lavie.synthetic.linked_inputs import input_path

    inputs, _ = _inputs(workdir, count)
    manifest = workdir / f"check-manifest-{count}"
    if not manifest.exists():
        rows = []
        for index in range(count):
            scenes, width, height = inputs.base_of(index)
            rows.append(clip_row(str(input_path(inputs.root, index)), 0, scenes[0], 24.0, width, height, "a clip"))
        write_clip_manifest(manifest, rows, files=-(-count // per_part))
    report = workdir / f"check-report-{count}-{time.time_ns()}"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "lavie.cli", "check", str(manifest), "--out", str(report),
                                "--frames", "ends", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    summary = json.loads((report / "summary.json").read_text())
    return {"clips": summary["clips"], "ok": summary["ok"], "wall_s": round(wall, 1), "clips_per_s": round(count / wall, 1),
            "driver_peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "parts": -(-count // per_part),
            "exit": os.waitstatus_to_exitcode(status)}  # fmt: skip


# --------------------------------------------------------------------------- the decoder floor
def _decode_all(paths: list[str]) -> int:
    import av

    frames = 0
    for path in paths:
        with av.open(path) as container:
            for _ in container.decode(video=0):
                frames += 1
    return frames


def decoder_floor(paths: list[str], cores: int) -> float:
    """Videos/s of decoding every frame of ``paths``, one process per core."""
    chunks = [paths[i::cores] for i in range(cores)]
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_decode_all, [c[:2] for c in chunks]))  # warm the processes
        started = time.perf_counter()
        list(pool.map(_decode_all, chunks))
        return len(paths) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the driver
def _inputs(workdir: Path, count: int):
    from lavie.synthetic.linked_inputs import write_linked_inputs

    inputs = write_linked_inputs(workdir / f"inputs-{count}", count)
    metadata = inputs.root / "metadata.csv"
    if not metadata.exists():
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        pa_csv.write_csv(pq.read_table(inputs.listing), metadata)
    return inputs, metadata


#: The venv installs this project in editable mode, through an import hook that would win over
#: PYTHONPATH; the baseline's processes (driver and Ray workers) drop it at start-up.
_SHIM = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
"""


def _baseline(workdir: Path, revision: str) -> tuple[str, Path]:
    """PYTHONPATH and working directory that make a process import the code of ``revision``
    (a git worktree)."""
    tree, shim = workdir / f"baseline-{revision}", workdir / "baseline-shim"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), revision], check=True,
                       capture_output=True)  # fmt: skip
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "sitecustomize.py").write_text(_SHIM)
    return f"{shim}{os.pathsep}{tree}", tree


def _table(rows: list[dict]) -> str:
    lines = ["| code | inputs | videos/s end to end | videos/s steady | driver peak RSS MiB | object store peak MiB "
             "| Ray tasks | shards | step CPU ms/video |", "|" + "---|" * 9]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['label']} | {r['inputs']:,} | {r['videos_per_s_end_to_end']} | {r['videos_per_s_steady']} | "
                     f"{r['driver_peak_rss_mib']} | {r['object_store_peak_mib']:.0f} | {r['ray_tasks']:,} | "
                     f"{r['shards']:,} | {r['step_cpu_ms_per_video']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--baseline", default="c6facf8", help="the revision before shard workers")
    parser.add_argument("--per-shard", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_work" / "scale")
    parser.add_argument("--fixed-cost", type=int, default=0, metavar="N",
                        help="also run both codes on N inputs with --min-height 0, so that every step (the "
                        "training-decode check too) runs on every clip: the fixed cost per video, step by step")
    parser.add_argument("--check-sizes", type=int, nargs="*", default=[],
                        help="also run `lavie check` on manifests of these many clips (its driver's memory)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    cores = os.cpu_count() or 1
    runs, baseline_runs = [], []
    for count in sorted(set(args.sizes) | set(args.baseline_sizes) | ({args.fixed_cost} - {0})):
        inputs, metadata = _inputs(workdir, count)
        if count == args.fixed_cost:
            for label, runs_of, command in (
                ("every step (this code)", runs, ["--inputs-from", str(inputs.listing)]),
                (f"every step ({args.baseline})", baseline_runs, [str(inputs.root / "videos"), "--metadata", str(metadata)]),
            ):
                out = workdir / f"out-all-{len(runs_of)}-{count}-{time.time_ns()}"
                runs_of.append({"label": label, "out": str(out), "per_shard": args.per_shard if runs_of is runs else 16,
                                "command": [sys.executable, "-m", "lavie.cli", "curate", *command, "--out", str(out),
                                            "--min-height", "0"]})  # fmt: skip
        if count in args.sizes:
            out = workdir / f"out-new-{count}-{time.time_ns()}"
            runs.append({"label": "shard workers (this code)", "out": str(out), "per_shard": args.per_shard,
                         "command": [sys.executable, "-m", "lavie.cli", "curate", "--inputs-from", str(inputs.listing),
                                     "--out", str(out), "--videos-per-shard", str(args.per_shard)]})  # fmt: skip
        if count in args.baseline_sizes:
            out = workdir / f"out-old-{count}-{time.time_ns()}"
            baseline_runs.append({"label": f"driver rows ({args.baseline})", "out": str(out), "per_shard": 16,
                                  "command": [sys.executable, "-m", "lavie.cli", "curate", str(inputs.root / "videos"),
                                              "--metadata", str(metadata), "--out", str(out)]})  # fmt: skip
    checks = [check_run(workdir, count, args.per_shard) for count in args.check_sizes]
    for check in checks:
        print(f"lavie check, {check['clips']:,} clips in {check['parts']:,} parts: {check['clips_per_s']} clips/s, "
              f"driver peak RSS {check['driver_peak_rss_mib']} MiB, {check['ok']:,} ok", flush=True)  # fmt: skip
    results = _phase(dict(os.environ), runs) if runs else []
    if baseline_runs:
        path, tree = _baseline(workdir, args.baseline)
        results += _phase({**os.environ, "PYTHONPATH": path}, baseline_runs, cwd=tree)
    floor_inputs, _ = _inputs(workdir, min(n for n in (*args.sizes, *args.baseline_sizes, args.fixed_cost, 1000) if n > 0))
    paths = [str(p) for p in sorted((floor_inputs.root / "videos").rglob("*.mp4"))]
    floor = decoder_floor(paths, cores)
    print(_table(results))
    for r in results:
        if r["label"].startswith("every step"):
            stages = ", ".join(f"{k} {v}" for k, v in sorted(r["stage_cpu_ms_per_video"].items()))
            print(f"fixed cost per video, {r['label']}: {r['step_cpu_ms_per_video']} ms ({stages})")
    print(f"\ndecoder floor (every frame of the {len(paths):,} files, PyAV, {cores} processes): {floor:.1f} videos/s")
    mine = [r for r in results if r["label"].startswith("shard")]
    for r in mine:
        print(f"{r['inputs']:>7,} inputs: steady / decoder floor {r['videos_per_s_steady'] / floor:.2f}x")
    if len(mine) > 1:
        rates = [r["videos_per_s_steady"] for r in mine]
        print(f"steady throughput spread over sizes: {(max(rates) - min(rates)) / max(rates):.1%} (goal <= 10%)")
        rss = {r["inputs"]: r["driver_peak_rss_mib"] for r in mine}
        print(f"driver peak RSS growth from {min(rss):,} to {max(rss):,} inputs: {rss[max(rss)] - rss[min(rss)]:+.1f} MiB (goal <= 50)")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "decoder_floor_videos_per_s": floor}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == PHASE:
        print(json.dumps(run_phase(json.loads(sys.argv[2]))))
    else:
        main()
