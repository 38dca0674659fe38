"""The curation run: plan the work, assemble the Ray Data graph, stream results into the manifest.

The graph is one chain of small stages (probe → scene detection → frame-count filter →
[frames → captioner] → caption filter → height filter → [frames → scorer]). CPU stages fuse into one
task per video; the model stages run in actor pools. The driver only consumes finished rows (a few
hundred bytes each), writing a shard's Parquet parts as soon as all its videos are through.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

from curation.config import CurationConfig
from curation.errors import UserError
from curation.inputs import resolve_inputs
from curation.metadata import VideoMetadata, match_metadata, read_metadata_table
from curation.output import OutputDir, ShardCounts
from curation.rows import FRAMES, METADATA, SHARD, VIDEO_ROWS, Row, new_row, reject
from curation.schema import STAGES


@dataclass(frozen=True)
class CurationRequest:
    inputs: tuple[str, ...]
    out: str
    metadata: str | None = None
    config: CurationConfig = CurationConfig()
    storage_options: dict | None = None
    address: str | None = None


@dataclass
class WorkPlan:
    videos: list[Row]  # one row per input video, with its shard
    input_rejects: list[Row]  # inputs rejected before any video is opened (own shard)
    num_shards: int
    fingerprint: dict[str, Any]


def plan_work(request: CurationRequest) -> WorkPlan:
    """Resolve inputs and metadata into shards of video rows; every input ends up in the plan."""
    config = request.config
    resolved = resolve_inputs(list(request.inputs), request.storage_options)
    metadata_by_uri: dict[str, VideoMetadata] = {}
    metadata_rejects: list[tuple[str, str, str]] = []  # (key, reason, detail)
    metadata_digest = None
    if request.metadata:
        table = read_metadata_table(request.metadata, request.storage_options)
        match = match_metadata(table, resolved.videos, request.metadata)
        metadata_by_uri = match.by_uri
        metadata_rejects = [
            (key, "not_found", f"listed in {request.metadata} but not among the inputs")
            for key in match.unmatched
            if not any(m.uri == key or m.uri.endswith("/" + key) for m in resolved.missing)
        ] + [
            (key, "ambiguous_metadata", f"'{key}' in {request.metadata} names several inputs; give a longer path")
            for key in match.ambiguous
        ]
        metadata_digest = hashlib.sha1(json.dumps(table.to_pylist(), default=str).encode()).hexdigest()

    videos = []
    for index, uri in enumerate(resolved.videos):
        meta = metadata_by_uri.get(uri, VideoMetadata())
        videos.append(
            new_row(
                source_uri=uri,
                source_dataset=meta.source_dataset or config.source_dataset,
                category=meta.category,
                **{SHARD: index // config.videos_per_shard, METADATA: json.dumps(meta.to_record())},
            )
        )
    num_shards = -(-len(videos) // config.videos_per_shard)
    input_rejects = [
        reject(new_row(source_uri=m.uri, **{SHARD: num_shards}), "input", "not_found", m.detail)
        for m in resolved.missing
    ] + [
        reject(new_row(source_uri=key, **{SHARD: num_shards}), "input", reason, detail)
        for key, reason, detail in metadata_rejects
    ]
    if not videos and not input_rejects:
        raise UserError("no input given")
    fingerprint = {
        "inputs": [v["source_uri"] for v in videos],
        "missing": sorted(r["source_uri"] for r in input_rejects),
        "metadata": metadata_digest,
        "config": config.model_dump(mode="json"),
    }
    return WorkPlan(videos, input_rejects, num_shards + (1 if input_rejects else 0), fingerprint)


def build_dataset(videos: list[Row], config: CurationConfig, storage_options: dict | None):
    """The Ray Data graph over the given video rows (one block per video for load balance)."""
    import ray
    import ray.data

    from curation.stages.filters import filter_caption, filter_min_frames, filter_min_height
    from curation.stages.frames import sample_frames
    from curation.stages.probe import probe_video
    from curation.stages.scenes import split_into_clips
    from curation.stages.score import CaptionClips, ScoreClips

    io = {"storage_options": storage_options}
    positions = config.scoring.frame_positions
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    ds = ray.data.from_items(videos, override_num_blocks=max(1, len(videos)))
    ds = ds.map(probe_video, fn_kwargs=io)
    ds = ds.flat_map(split_into_clips, fn_kwargs={"config": config.scenes, **io})
    ds = ds.map(filter_min_frames, fn_kwargs={"config": config.filters})
    frames_added = False
    if config.captioner is not None:
        ds = ds.map(sample_frames, fn_kwargs={"positions": positions, **io})
        frames_added = True
        ds = ds.map_batches(
            CaptionClips,
            fn_constructor_kwargs={"config": config.captioner, "frame_count": len(positions)},
            batch_size=config.captioner.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=config.captioner.actors),
            num_gpus=1 if has_gpu else 0,
        )
    ds = ds.map(filter_caption, fn_kwargs={"config": config.filters})
    ds = ds.map(filter_min_height, fn_kwargs={"config": config.filters})
    if config.scoring.enabled:
        if not frames_added:
            ds = ds.map(sample_frames, fn_kwargs={"positions": positions, **io})
            frames_added = True
        ds = ds.map_batches(
            ScoreClips,
            fn_constructor_kwargs={"config": config.scoring},
            batch_size=config.scoring.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=config.scoring.actors),
            num_gpus=1 if has_gpu else 0,
        )
    if frames_added:
        ds = ds.drop_columns([FRAMES])
    return ds


class ShardAssembler:
    """Collects streamed rows and says when a shard's videos are all through the pipeline."""

    def __init__(self, videos: list[Row]) -> None:
        self._pending: dict[int, set[str]] = defaultdict(set)
        for video in videos:
            self._pending[video[SHARD]].add(video["source_uri"])
        self._rows: dict[int, list[Row]] = defaultdict(list)
        self._seen: dict[str, int] = defaultdict(int)

    def add(self, row: Row) -> tuple[bool, int | None]:
        """Add a row; returns (its video finished, the shard that finished or None)."""
        shard, uri = row[SHARD], row["source_uri"]
        self._rows[shard].append(row)
        self._seen[uri] += 1
        if self._seen[uri] < row[VIDEO_ROWS]:
            return False, None
        self._pending[shard].discard(uri)
        if self._pending[shard]:
            return True, None
        del self._pending[shard]
        return True, shard

    def take(self, shard: int) -> list[Row]:
        return self._rows.pop(shard)


def _versions() -> dict[str, str]:
    names = ("lavie-platform", "ray", "scenedetect", "av", "decord", "pyarrow", "torch", "open_clip_torch")
    out = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _run_record(request: CurationRequest, plan: WorkPlan, counts: ShardCounts, wall: float) -> dict[str, Any]:
    by_stage: dict[str, dict[str, int]] = {stage: {} for stage in STAGES}
    for key, value in sorted(counts.rejects.items()):
        stage, reason = key.split("/", 1)
        by_stage[stage][reason] = value
    scoring = request.config.scoring
    return {
        "inputs": list(request.inputs),
        "out": request.out,
        "metadata": request.metadata,
        "config": request.config.model_dump(mode="json"),
        "versions": _versions(),
        "counts": {
            "inputs": counts.inputs,
            "inputs_rejected": counts.inputs_rejected,
            "clips_detected": counts.clips_detected,
            "clips_kept": counts.clips_kept,
            "clips_rejected": counts.clips_rejected,
            "frames_decoded": counts.frames_decoded,
            "shards": plan.num_shards,
        },
        "rejects_by_stage": by_stage,
        "scoring": {
            "aesthetic": scoring.enabled,
            "clip_score": scoring.enabled,
            "skipped_reason": None
            if scoring.enabled
            else "no scoring.clip_checkpoint / scoring.aesthetic_mlp given: aesthetic_score and clip_score are null",
        },
        "timings": {
            "wall_sec_last_invocation": round(wall, 3),
            "stage_cpu_sec": {k: round(v, 3) for k, v in sorted(counts.stage_seconds.items())},
        },
    }


ProgressCallback = Callable[[int, int, ShardCounts], None]


def _ensure_ray(address: str | None) -> None:
    from ray_jobs.cluster import connect, quiet_ray_data

    connect(address, log_to_driver=False)
    quiet_ray_data()


def run_curation(request: CurationRequest, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run (or resume, or recognise as finished) a curation job; returns its run.json record."""
    plan = plan_work(request)
    out = OutputDir(request.out, request.storage_options)
    out.begin(plan.fingerprint)
    if out.is_complete():
        return {**out.read_run(), "already_complete": True}
    started = time.perf_counter()
    done = out.done_shards()
    pending = [v for v in plan.videos if v[SHARD] not in done]
    if plan.input_rejects and plan.input_rejects[0][SHARD] not in done:
        for row in plan.input_rejects:
            row[VIDEO_ROWS] = 1
        out.write_shard(plan.input_rejects[0][SHARD], plan.input_rejects)
    progress = out.total_counts()
    finished_videos = len(plan.videos) - len(pending)
    if on_progress:
        on_progress(finished_videos, len(plan.videos), progress)
    if pending:
        _ensure_ray(request.address)
        assembler = ShardAssembler(pending)
        for row in build_dataset(pending, request.config, request.storage_options).iter_rows():
            video_done, shard = assembler.add(row)
            if shard is not None:
                progress += out.write_shard(shard, assembler.take(shard))
            if video_done:
                finished_videos += 1
                if on_progress:
                    on_progress(finished_videos, len(plan.videos), progress)
    counts = out.total_counts()
    record = _run_record(request, plan, counts, time.perf_counter() - started)
    out.finish(record)
    return record
