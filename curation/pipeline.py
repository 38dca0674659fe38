"""The curation run on the driver: plan the shards, run them on Ray, sum what they report.

:func:`prepare` streams the inputs into shard listings in the output folder (or, for a folder that
holds this run already, checks that the inputs and config are the same) and fails on bad input
before any work starts. :func:`run_curation` then runs one Ray task per shard
(:mod:`curation.worker`) through a bounded window (:func:`lavie.core.tasks.bounded_tasks`): the task runs the steps on its shard's videos,
writes the shard's Parquet parts and progress marker itself, and returns its counts. The driver
holds the tasks in flight and the running counts, never a row or a list of the inputs, so its
memory does not grow with the inputs (DESIGN.md, "Scale").

The run needs a Ray connection made by its caller (``ray_jobs.cluster.connect``; the `lavie`
command does it, only once there is work for the cluster).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from curation.config import CurationConfig
from curation.executor import ModelPools, active_steps, check_steps
from curation.output import OutputDir
from curation.plan import InputSpec, Plan, plan_inputs
from curation.shards import ShardCounts
from curation.steps import STAGES, StepContext
from curation.worker import ShardJob, run_shard
from lavie.core.errors import require_ray
from lavie.core.storage import SealedOptions
from lavie.core.tasks import bounded_tasks

#: Ray retries a shard's task this often when its worker dies (the task rewrites the same files).
SHARD_RETRIES = 3


@dataclass(frozen=True)
class CurationRequest:
    inputs: tuple[str, ...] = ()
    out: str = ""
    metadata: str | None = None
    config: CurationConfig = field(default_factory=CurationConfig)
    storage_options: dict | None = None
    inputs_from: str | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.inputs, self.metadata, self.inputs_from)


def prepare(request: CurationRequest) -> Plan:
    """Plan the run into its output folder, or check the plan recorded there; bad input, a folder
    of something else and a run with other inputs or config are one-line UserErrors."""
    check_steps(request.config)
    out = OutputDir(request.out, request.storage_options)
    recorded = out.recorded_plan()
    if recorded is None:
        out.clear_listing()
    plan = plan_inputs(request.spec, request.config, out, request.storage_options, write=recorded is None)
    fingerprint = plan.fingerprint(request.config)
    if recorded is None:
        out.record_plan(fingerprint)
    else:
        out.check_plan(recorded, fingerprint)
    return plan


def step_context(request: CurationRequest) -> StepContext:
    """What the run's steps share: storage, the frames the models see, and whether scene detection
    samples motion vectors for the motion step."""
    motion = request.config.motion
    vector_fps = motion.sample_fps if motion.enabled and motion.method == "auto" else None
    return StepContext(SealedOptions.seal(request.storage_options), request.config.scoring.frame_positions, vector_fps)


def _versions() -> dict[str, str]:
    names = ("lavie-platform", "ray", "scenedetect", "av", "decord", "pyarrow", "torch", "open_clip_torch")
    out = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _run_record(request: CurationRequest, plan: Plan, counts: ShardCounts, wall: float) -> dict[str, Any]:
    by_stage: dict[str, dict[str, int]] = {stage: {} for stage in STAGES}
    for key, value in sorted(counts.rejects.items()):
        stage, reason = key.split("/", 1)
        by_stage.setdefault(stage, {})[reason] = value
    scoring = request.config.scoring
    return {
        "inputs": list(request.inputs),
        "inputs_from": request.inputs_from,
        "out": request.out,
        "metadata": request.metadata,
        "listing": {"digest": plan.digest, "videos": plan.videos, "input_rejects": plan.input_rejects},
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
            "shards": plan.shards,
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
    plan: Plan | None = None,
    connect: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume, or recognise as finished) a curation job; returns its run.json record.

    ``plan``: the request's :func:`prepare`, when the caller made it already. ``connect`` is
    called when there is work for Ray (the `lavie` command joins or starts the cluster there, so
    bad input and finished runs cost no cluster start); without it, Ray must already be connected.
    """
    plan = plan or prepare(request)
    out = OutputDir(request.out, request.storage_options)
    if out.is_complete():
        return {**out.read_run(), "already_complete": True}
    started = time.perf_counter()
    (connect or (lambda: require_ray("curation")))()
    import ray

    context = step_context(request)
    job = ShardJob(request.out, request.config, context, plan.video_shards)
    needs_models = any(step.kind == "model" for step in active_steps(request.config))
    pools = ModelPools.start(request.config, context) if needs_models else None
    total = ShardCounts()
    expected = plan.videos + plan.input_rejects
    if on_progress:
        on_progress(0, expected, total)
    try:
        task = ray.remote(run_shard).options(num_cpus=1, max_retries=SHARD_RETRIES)
        for counts in bounded_tasks(task, ((shard, job, pools) for shard in range(plan.shards))):
            total += ShardCounts.from_json(counts)
            if on_progress:
                on_progress(total.inputs, expected, total)
    finally:
        if pools is not None:
            pools.stop()
    record = _run_record(request, plan, total, time.perf_counter() - started)
    out.finish(record)
    return record
