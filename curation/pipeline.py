"""The curation run on the driver: plan the work, run the executor, stream results into the manifest.

:func:`plan_work` resolves the inputs and metadata into shards of video rows (inputs that name no
file become ``input`` rejects here). :func:`run_curation` opens the output folder (refusing one of
another run, recognising a finished one, resuming an interrupted one), runs the declared steps on
the pending shards through :mod:`curation.executor`, and writes each shard's Parquet parts as soon
as its videos are all through; the driver only ever holds finished rows of a few hundred bytes.

The run needs a Ray connection made by its caller (``ray_jobs.cluster.connect``; the `lavie`
command does it, only once there is work for the cluster).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from curation.config import CurationConfig
from curation.executor import active_steps, build_dataset
from curation.inputs import resolve_inputs
from curation.metadata import VideoMetadata, match_metadata, read_metadata_table
from curation.output import OutputDir
from curation.rows import METADATA, SHARD, VIDEO_ROWS, Row, mark_rejected, new_row
from curation.shards import ShardAssembler, ShardCounts
from curation.steps import INPUT_STAGE, STAGES, StepContext
from lavie.core.errors import UserError, require_ray
from lavie.core.storage import SealedOptions


@dataclass(frozen=True)
class CurationRequest:
    inputs: tuple[str, ...]
    out: str
    metadata: str | None = None
    config: CurationConfig = field(default_factory=CurationConfig)
    storage_options: dict | None = None


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
    missing = [(m.uri, "not_found", m.detail) for m in resolved.missing] + metadata_rejects
    input_rejects = [
        mark_rejected(new_row(source_uri=uri, **{SHARD: num_shards, VIDEO_ROWS: 1}), INPUT_STAGE, reason, detail)
        for uri, reason, detail in missing
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
        by_stage.setdefault(stage, {})[reason] = value
    scoring = request.config.scoring
    return {
        "inputs": list(request.inputs),
        "out": request.out,
        "metadata": request.metadata,
        "config": request.config.model_dump(mode="json"),
        "steps": [step.name for step in active_steps(request.config)],
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


def run_curation(
    request: CurationRequest,
    on_progress: ProgressCallback | None = None,
    *,
    plan: WorkPlan | None = None,
    connect: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume, or recognise as finished) a curation job; returns its run.json record.

    ``plan``: the request's :func:`plan_work`, when the caller made it already. ``connect`` is
    called when there is work for Ray (the `lavie` command joins or starts the cluster there, so
    bad input and finished runs cost no cluster start); without it, Ray must already be connected.
    """
    plan = plan or plan_work(request)
    out = OutputDir(request.out, request.storage_options)
    out.begin(plan.fingerprint)
    if out.is_complete():
        return {**out.read_run(), "already_complete": True}
    started = time.perf_counter()
    done = out.done_shards()
    pending = [v for v in plan.videos if v[SHARD] not in done]
    if plan.input_rejects and plan.input_rejects[0][SHARD] not in done:
        out.write_shard(plan.input_rejects[0][SHARD], plan.input_rejects)
    progress = out.total_counts()
    finished_videos = len(plan.videos) - len(pending)
    if on_progress:
        on_progress(finished_videos, len(plan.videos), progress)
    if pending:
        (connect or (lambda: require_ray("curation")))()
        context = StepContext(SealedOptions.seal(request.storage_options), request.config.scoring.frame_positions)
        assembler = ShardAssembler(pending)
        for row in build_dataset(pending, request.config, context).iter_rows():
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
