"""`lavie dedup` on synthetic embeddings with planted near-duplicates, on the local Ray.

1. 1,000,000 embeddings of 768 floats (float16, in 100 manifest parts), gathered around 1,000
   directions, 5 % of originals with one or two near copies (cosine 0.97 to 0.999): the wall time
   of each stage, the peak resident memory of a task (a Ray worker's peak over the tasks it ran,
   an upper bound), and recall and precision against the planted pairs.
2. On 20,000 embeddings made the same way: the same run against brute force, every pair compared
   in one process (what does not scale: 20,000² similarities), timed side by side, with the
   agreement of the clips each drops.

Usage: python benchmarks/bench_dedup.py [--rows 1000000] [--subset 20000] [--cluster-size 10000]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch

from curation.dedup.config import DedupConfig
from curation.dedup.groups import near_duplicates
from curation.dedup.run import DedupRequest, run_dedup
from lavie.core.manifest import REJECTS_DIR
from lavie.synthetic.embeddings import PlantedEmbeddings, planted_embeddings, write_embedded_manifest
from ray_jobs.cluster import connect

WORK = Path(__file__).parent / "_work" / "dedup"


def dedup(planted: PlantedEmbeddings, name: str, parts: int, config: DedupConfig) -> tuple[dict, list, list, float]:
    manifest = WORK / name / "manifest"
    if not manifest.exists():
        write_embedded_manifest(manifest, planted, parts=parts)
    out = WORK / name / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    record = run_dedup(DedupRequest(str(manifest), str(out), config=config))
    wall = time.perf_counter() - started
    rejects = ds.dataset(out / REJECTS_DIR).to_table(filter=pc.field("stage") == "dedup")
    return record, rejects.column("clip_id").to_pylist(), rejects.column("duplicate_of").to_pylist(), wall


def brute_force(planted: PlantedEmbeddings, threshold: float) -> tuple[set[str], float]:
    started = time.perf_counter()
    vectors = torch.from_numpy(planted.vectors.astype(np.float32))
    found = near_duplicates(vectors, planted.clip_ids, planted.aesthetic.astype(np.float64), planted.duration, threshold)
    return {planted.clip_ids[i] for i in found.rows}, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--cluster-size", type=int, default=10_000)
    args = parser.parse_args()
    connect(None, log_to_driver=False)
    config = DedupConfig(cluster_size=args.cluster_size)

    subset = planted_embeddings(args.subset, 768, centers=max(1, args.subset // 1000), duplicate_fraction=0.05, seed=1)
    small = DedupConfig(cluster_size=min(args.cluster_size, max(2, args.subset // 10)))
    record, dropped, kept, wall = dedup(subset, f"subset-{args.subset}", 4, small)
    exact, exact_wall = brute_force(subset, small.threshold)
    agree = len(exact & set(dropped))
    print(f"## {args.subset:,} embeddings: lavie dedup (k={record['dedup']['clusters']}) against brute force\n")
    print("| method | wall s | drops | recall vs planted | precision vs planted |")
    print("|---|---:|---:|---:|---:|")
    score = subset.score(dropped, kept)
    print(f"| lavie dedup on Ray | {wall:.1f} | {len(dropped):,} | {score['recall']:.4f} | {score['precision']:.4f} |")
    print(f"| brute force, all pairs | {exact_wall:.1f} | {len(exact):,} | — | — |")
    print(f"\nclips both drop: {agree:,} of brute force's {len(exact):,} ({agree / max(1, len(exact)):.4%}); "
          f"dropped by lavie dedup only: {len(set(dropped) - exact):,}\n")  # fmt: skip

    planted = planted_embeddings(args.rows, 768, centers=1000, duplicate_fraction=0.05, seed=0)
    record, dropped, kept, wall = dedup(planted, f"rows-{args.rows}", 100, config)
    score = planted.score(dropped, kept)
    info = record["dedup"]
    print(f"## {args.rows:,} embeddings × 768 (float16), {info['clusters']} clusters\n")
    print("| stage | wall s |")
    print("|---|---:|")
    for stage, seconds in info["seconds"].items():
        print(f"| {stage} | {seconds:.1f} |")
    print(f"| **total** | **{wall:.1f}** |")
    print(f"\npeak task RSS {info['peak_task_rss_mb']:,.0f} MB; clusters split in their task: {info['clusters_split']}; "
          f"drops {len(dropped):,} of {score['planted']:,} planted; recall {score['recall']:.4f}, "
          f"precision {score['precision']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
