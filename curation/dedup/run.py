"""`lavie dedup` on Ray: the stages of :mod:`curation.dedup` as tasks, and the output manifest.

The output folder is a manifest like curation's: ``clips/`` (the clips that stay, one file per
input part), ``embeddings/`` (theirs), ``rejects/`` (the input's rejects, copied, and
``dedup-<part>`` files of the dropped duplicates with ``duplicate_of``), ``run.json`` (the input's
record with the dedup stage added to its counts and funnel) and ``_SUCCESS``, last. The work files
(``_dedup/``) are removed at the end. The driver holds the part list, the centroids (k × dim) and
a count per cluster; every row stays in the tasks.
"""

from __future__ import annotations

import copy
import posixpath
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch

from curation.dedup.config import DedupConfig
from curation.dedup.groups import near_duplicates
from curation.dedup.kmeans import (
    cluster_count,
    device,
    kmeans_plus_plus,
    local_kmeans,
    minibatch_update,
    nearest,
    partial_sums,
    row_generator,
)
from curation.dedup.parts import Part, Unit, count_rows, embedding_dim, group_units, list_parts, read_table, read_unit
from curation.output import parquet_bytes
from curation.steps import DEDUP_STAGE
from lavie.core.errors import UserError, require_ray
from lavie.core.manifest import (
    CLIPS_DIR,
    EMBEDDINGS_DIR,
    REJECT_SCHEMA,
    REJECTS_DIR,
    RUN_FILE,
    SUCCESS_FILE,
    embedding_matrix,
    open_manifest,
)
from lavie.core.storage import SealedOptions, arrow_filesystem, atomic_write, atomic_write_json, filesystem, join
from lavie.core.tasks import bounded_tasks

STAGE = DEDUP_STAGE
REASON = "near_duplicate"
WORK_DIR = "_dedup"
#: Parts whose footers one counting task reads, and input reject files one copying task copies.
FILES_PER_TASK = 256
#: Rows per row group of the work files: what a task reading one cluster range decodes beyond it.
WORK_ROW_GROUP = 2048
#: A cluster larger than this many times ``cluster_size`` is split inside its task before comparing.
SPLIT_FACTOR = 2


@dataclass(frozen=True)
class DedupRequest:
    manifest: str
    out: str
    embeddings: str | None = None
    config: DedupConfig = field(default_factory=DedupConfig)
    storage_options: dict | None = None


@dataclass(frozen=True)
class _Job:
    """What every task of a run shares."""

    out: str
    config: DedupConfig
    storage: SealedOptions

    def work(self, *parts: str) -> str:
        return join(self.out, WORK_DIR, *parts)


def _peak_rss_mb() -> float:
    """The task's process peak resident memory (a Ray worker runs tasks one after another, so this
    bounds the peak of each task it ran)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tensor(vectors: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(vectors.astype(np.float32)).to(device())


# --------------------------------------------------------------------------- tasks
def _count_task(parts: list[Part], job: _Job) -> list[int]:
    return count_rows(parts, job.storage.open())


def _draw_task(unit: Unit, job: _Job, sample_fraction: float, batch_fraction: float) -> tuple[np.ndarray, list]:
    """One read of the unit for all of k-means: its share of the k-means++ sample (sent to the
    driver) and of every iteration's mini-batch (kept in Ray's object store for the iterations)."""
    _, vectors = read_unit(unit, job.storage.open())
    draws = [row_generator(job.config.seed, draw, unit.index).random(len(vectors)) for draw in range(1 + job.config.iterations)]
    sample = vectors[draws[0] < sample_fraction]
    return sample, [vectors[draw < batch_fraction] for draw in draws[1:]]


def _minibatch_task(batches: list[np.ndarray], iteration: int, centroids: np.ndarray) -> tuple:
    return partial_sums(_tensor(batches[iteration]), torch.from_numpy(centroids).to(device()))


def _assign_task(unit: Unit, job: _Job, centroids: np.ndarray) -> tuple[np.ndarray, float]:
    """Label the unit's rows with their nearest centroid; write them sorted by it."""
    options = job.storage.open()
    table, vectors = read_unit(unit, options)
    labels = nearest(_tensor(vectors), torch.from_numpy(centroids).to(device())).cpu().numpy().astype(np.int32)
    order = np.argsort(labels, kind="stable")
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors[order].reshape(-1), pa.float16()), vectors.shape[1])
    table = table.take(order).append_column("cluster", pa.array(labels[order]))
    table = table.append_column("unit", pa.array(np.full(len(order), unit.index, np.int32)))
    table = table.append_column("embedding", column)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=WORK_ROW_GROUP)
    atomic_write(job.work("assigned", f"unit-{unit.index:05d}.parquet"), sink.getvalue().to_pybytes(), options)
    return np.bincount(labels, minlength=len(centroids)), _peak_rss_mb()


def _read_work(job: _Job, folder: str, where: ds.Expression, options: Mapping[str, Any]) -> pa.Table:
    fs, path = arrow_filesystem(job.work(folder), options)
    return ds.dataset(path, filesystem=fs, format="parquet").to_table(filter=where)


def _groups_task(index: int, first: int, end: int, job: _Job) -> dict[str, Any]:
    """Find the duplicates in clusters ``[first, end)``; write them sorted by unit and part."""
    options = job.storage.open()
    config = job.config
    rows = _read_work(job, "assigned", (pc.field("cluster") >= first) & (pc.field("cluster") < end), options)
    found: list[pa.Table] = []
    split = 0
    clusters = rows.column("cluster").to_numpy()
    for cluster in np.unique(clusters):
        members = rows.filter(pa.array(clusters == cluster))
        vectors = _tensor(embedding_matrix(members))
        pieces = [np.arange(members.num_rows)]
        if members.num_rows > SPLIT_FACTOR * config.cluster_size:
            labels = local_kmeans(vectors, cluster_count(members.num_rows, config.cluster_size), 10, config.seed + int(cluster))
            labels = labels.cpu().numpy()
            pieces = [np.nonzero(labels == label)[0] for label in np.unique(labels)]
            split += 1
        for piece in pieces:
            found.append(_duplicates_of(members.take(piece), vectors[torch.from_numpy(piece).to(vectors.device)], config))
    duplicates = pa.concat_tables(found) if found else _duplicates_of(rows.slice(0, 0), _tensor(np.zeros((0, 1))), config)
    duplicates = duplicates.sort_by([("unit", "ascending"), ("part", "ascending"), ("clip_id", "ascending")])
    atomic_write(job.work("duplicates", f"range-{index:05d}.parquet"), parquet_bytes(duplicates), options)
    return {
        "clusters": int(len(np.unique(clusters))), "rows": rows.num_rows, "duplicates": duplicates.num_rows,
        "split": split, "largest": int(np.bincount(clusters - first).max()) if len(clusters) else 0,
        "peak_rss_mb": _peak_rss_mb(),
    }  # fmt: skip


def _duplicates_of(members: pa.Table, vectors: torch.Tensor, config: DedupConfig) -> pa.Table:
    clip_ids = members.column("clip_id").to_pylist()
    aesthetic = pc.fill_null(members.column("aesthetic_score"), float("nan")).to_numpy(zero_copy_only=False)
    duration = pc.fill_null(members.column("duration_sec"), float("nan")).to_numpy(zero_copy_only=False)
    found = near_duplicates(vectors, clip_ids, aesthetic.astype(np.float64), duration.astype(np.float64), config.threshold)
    return pa.table({
        "clip_id": members.column("clip_id").take(found.rows),
        "duplicate_of": members.column("clip_id").take(found.kept),
        "similarity": pa.array(found.similarity, pa.float32()),
        "unit": members.column("unit").take(found.rows),
        "part": members.column("part").take(found.rows),
    })  # fmt: skip


def _write_task(parts: list[Part], unit: int | None, job: _Job) -> dict[str, int]:
    """Write the output files of ``parts``: the clips that stay, their embeddings and the
    duplicates' rejects (``unit`` None: parts without embeddings, copied as they are)."""
    options = job.storage.open()
    duplicates = None
    if unit is not None:
        duplicates = _read_work(job, "duplicates", pc.field("unit") == unit, options)
    written = {"clips": 0, "duplicates": 0}
    for part in parts:
        clips = read_table(part.clips, options)
        dropped = None
        if duplicates is not None:
            dropped = duplicates.filter(pc.field("part") == part.index)
        kept = clips
        if dropped is not None and dropped.num_rows:
            kept = clips.filter(pc.invert(pc.is_in(clips.column("clip_id"), value_set=dropped.column("clip_id"))))
        atomic_write(join(job.out, CLIPS_DIR, part.name), parquet_bytes(kept), options)
        if part.embeddings is not None:
            embedded = read_table(part.embeddings, options)
            embedded = embedded.filter(pc.is_in(embedded.column("clip_id"), value_set=kept.column("clip_id")))
            atomic_write(join(job.out, EMBEDDINGS_DIR, part.name), parquet_bytes(embedded), options)
        if dropped is not None and dropped.num_rows:
            rejects = _reject_rows(clips, dropped)
            atomic_write(join(job.out, REJECTS_DIR, _dedup_name(part.name)), parquet_bytes(rejects), options)
            written["duplicates"] += rejects.num_rows
        written["clips"] += kept.num_rows
    return written


def _dedup_name(name: str) -> str:
    folder, base = posixpath.split(name)
    return posixpath.join(folder, f"{STAGE}-{base}")


def _reject_rows(clips: pa.Table, dropped: pa.Table) -> pa.Table:
    """The rejects of the dropped clips, in REJECT_SCHEMA with ``duplicate_of``."""
    rows = clips.filter(pc.is_in(clips.column("clip_id"), value_set=dropped.column("clip_id")))
    by_id = {r["clip_id"]: r for r in dropped.select(["clip_id", "duplicate_of", "similarity"]).to_pylist()}
    records = []
    for row in rows.to_pylist():
        match = by_id[row["clip_id"]]
        records.append({
            **{name: row.get(name) for name in REJECT_SCHEMA.names if name in row},
            "stage": STAGE, "reason": REASON, "duplicate_of": match["duplicate_of"],
            "detail": f"cosine {match['similarity']:.4f} to {match['duplicate_of']}",
        })  # fmt: skip
    return pa.Table.from_pylist(records, schema=REJECT_SCHEMA)


def _copy_task(sources: list[str], targets: list[str], job: _Job) -> int:
    options = job.storage.open()
    for source, target in zip(sources, targets):
        fs, path = filesystem(source, options)
        atomic_write(target, fs.cat_file(path), options)
    return len(sources)


# --------------------------------------------------------------------------- the driver
def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _ranges(counts: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Consecutive cluster ranges holding at most ``limit`` rows each (or one larger cluster)."""
    ranges, first, rows = [], 0, 0
    for cluster, n in enumerate(counts):
        if rows and rows + n > limit:
            ranges.append((first, cluster))
            first, rows = cluster, 0
        rows += int(n)
    if rows:
        ranges.append((first, len(counts)))
    return ranges


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._started, 3)
        self._started = now


def run_dedup(
    request: DedupRequest, connect: Callable[[], None] | None = None, on_stage: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Deduplicate ``request.manifest`` into ``request.out``; returns the output's run record."""
    say = on_stage or (lambda stage: None)
    options = request.storage_options
    manifest = open_manifest(request.manifest, options)
    manifest.require_finished()
    manifest.require_columns(["clip_id"])
    out_fs, out_root = filesystem(request.out, options)
    if out_fs.exists(out_root) and out_fs.ls(out_root):
        raise UserError(f"{request.out}: not empty; give a new --out folder")
    parts = list_parts(manifest, request.embeddings, options)
    dim = embedding_dim(parts, options)
    (connect or (lambda: require_ray("dedup")))()
    import ray

    watch = _Stopwatch()
    config = request.config
    job = _Job(request.out, config, SealedOptions.seal(options))
    # The tasks that compute distances take a GPU each when the cluster has GPUs.
    gpu = {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) > 0 else {}
    remote = {name: ray.remote(fn).options(num_cpus=1, num_returns=returns, **(gpu if on_gpu else {}))
              for name, fn, returns, on_gpu in (
        ("count", _count_task, 1, False), ("draw", _draw_task, 2, False), ("minibatch", _minibatch_task, 1, True),
        ("assign", _assign_task, 1, True), ("groups", _groups_task, 1, True), ("write", _write_task, 1, False),
        ("copy", _copy_task, 1, False),
    )}  # fmt: skip

    say("counting embeddings")
    counted: dict[int, int] = {}
    chunks = _chunks(parts, FILES_PER_TASK)
    for chunk, counts in zip(chunks, ray.get([remote["count"].remote(c, job) for c in chunks])):
        counted.update({part.index: n for part, n in zip(chunk, counts)})
    parts = [Part(p.index, p.name, p.clips, p.embeddings, counted[p.index]) for p in parts]
    units = group_units(parts, config.rows_per_task)
    rows = sum(unit.rows for unit in units)
    k = cluster_count(rows, config.cluster_size)
    watch.lap("count")

    say(f"k-means: {rows:,} embeddings, {k:,} clusters")
    sample_fraction = min(1.0, config.sample_per_cluster * k / rows)
    batch_fraction = min(1.0, config.batch_per_cluster * k / rows)
    # The sample (sample_per_cluster × k rows, small enough to gather) comes in unit order, so the
    # seed decides it; each unit's mini-batches stay in the object store.
    drawn = [remote["draw"].remote(u, job, sample_fraction, batch_fraction) for u in units]
    sample = np.concatenate(ray.get([sample for sample, _ in drawn]))
    batches = [batch for _, batch in drawn]
    generator = torch.Generator().manual_seed(config.seed)
    centroids = kmeans_plus_plus(torch.from_numpy(sample.astype(np.float32)), k, generator).double().numpy()
    k = len(centroids)
    del sample, drawn
    seen = np.zeros(k, np.int64)
    for iteration in range(config.iterations):
        shared = ray.put(centroids.astype(np.float32))
        sums, counts = np.zeros_like(centroids), np.zeros(k, np.int64)
        arguments = ((unit_batches, iteration, shared) for unit_batches in batches)
        for unit_sums, unit_counts in bounded_tasks(remote["minibatch"], arguments):
            sums += unit_sums
            counts += unit_counts
        minibatch_update(centroids, seen, sums, counts)
    del batches
    watch.lap("kmeans")

    say("assigning clusters")
    shared = ray.put(centroids.astype(np.float32))
    cluster_sizes = np.zeros(k, np.int64)  # the rows compared: embeddings whose clip is in clips/
    peak = 0.0
    for sizes, rss in bounded_tasks(remote["assign"], ((u, job, shared) for u in units)):
        cluster_sizes += sizes
        peak = max(peak, rss)
    watch.lap("assign")

    ranges = _ranges(cluster_sizes, SPLIT_FACTOR * config.cluster_size)
    say(f"comparing within clusters: {len(ranges):,} tasks")
    found = {"duplicates": 0, "split": 0}
    for result in bounded_tasks(remote["groups"], ((i, a, b, job) for i, (a, b) in enumerate(ranges))):
        found["duplicates"] += result["duplicates"]
        found["split"] += result["split"]
        peak = max(peak, result["peak_rss_mb"])
    watch.lap("groups")

    say("writing the manifest")
    written = {"clips": 0, "duplicates": 0}
    bare = [p for p in parts if not p.rows]
    arguments = [(list(u.parts), u.index, job) for u in units] + [(c, None, job) for c in _chunks(bare, FILES_PER_TASK)]
    for result in bounded_tasks(remote["write"], arguments):
        for key in written:
            written[key] += result[key]
    copied = _copy_rejects(manifest, request.out, options, job, remote["copy"])
    watch.lap("write")

    record = _run_record(manifest.run, request, {
        "clusters": k, "embedding_dim": dim, "embeddings_compared": int(cluster_sizes.sum()),
        "clips_without_embedding": written["clips"] + written["duplicates"] - int(cluster_sizes.sum()),
        "duplicates": written["duplicates"],
        "clusters_split": found["split"], "peak_task_rss_mb": round(peak, 1), "reject_files_copied": copied,
        "seconds": watch.seconds,
    }, written)  # fmt: skip
    atomic_write_json(join(request.out, RUN_FILE), record, options)
    out_fs.rm(posixpath.join(out_root, WORK_DIR), recursive=True)
    atomic_write(join(request.out, SUCCESS_FILE), b"", options)
    return record


def _copy_rejects(manifest: Any, out: str, options: Mapping[str, Any] | None, job: _Job, task: Any) -> int:
    """Copy the input's rejects/ files, in tasks, so that the output's funnel keeps every stage."""
    if manifest.rejects is None:
        return 0
    _, root = arrow_filesystem(join(manifest.uri, REJECTS_DIR), options)
    names = sorted(posixpath.relpath(path, root) for path in manifest.rejects.files)
    sources = [join(manifest.uri, REJECTS_DIR, name) for name in names]
    targets = [join(out, REJECTS_DIR, name) for name in names]
    arguments = [(s, t, job) for s, t in zip(_chunks(sources, FILES_PER_TASK), _chunks(targets, FILES_PER_TASK))]
    return sum(bounded_tasks(task, arguments))


def _run_record(input_run: dict | None, request: DedupRequest, dedup: dict, written: dict) -> dict[str, Any]:
    """The input's run record with the dedup stage added (or a new one for a plain manifest)."""
    record = copy.deepcopy(input_run) if input_run else {}
    duplicates = written["duplicates"]
    counts = record.get("counts") if isinstance(record.get("counts"), dict) else {}
    kept_before = written["clips"] + duplicates
    counts.setdefault("clips_detected", kept_before)
    counts.setdefault("clips_rejected", 0)
    counts["clips_kept"] = written["clips"]
    counts["clips_rejected"] += duplicates
    record["counts"] = counts
    record.setdefault("rejects_by_stage", {})[STAGE] = {REASON: duplicates} if duplicates else {}
    if isinstance(record.get("steps"), list):
        record["steps"] = [*record["steps"], STAGE]
    record[STAGE] = {
        "manifest": request.manifest, "embeddings": request.embeddings or join(request.manifest, EMBEDDINGS_DIR),
        "config": request.config.model_dump(), "clips_in": kept_before, **dedup,
    }  # fmt: skip
    return record
