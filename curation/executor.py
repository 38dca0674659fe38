"""The one executor: the declared steps (:data:`curation.steps.STEPS`) as a Ray Data graph.

``map`` steps become ``Dataset.map``, ``split`` steps ``flat_map`` and ``model`` steps
``map_batches`` over an actor pool sized by the step's config section (a GPU per actor when the
cluster has GPUs). Consecutive CPU steps fuse into one task per video. Before the first step that
needs ``frames`` the executor samples them, and drops them after the last one.

Around every step the executor does what no step should repeat: rows rejected earlier pass
through untouched, a :class:`~curation.steps.Reject` (or any exception) becomes a reject row under
the step's name, and the step's seconds are added to the row. Every row stays accounted for.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from curation.config import CurationConfig
from curation.rows import FRAMES, METADATA, SECONDS_PREFIX, VIDEO_ROWS, Row, add_seconds, is_rejected, mark_rejected
from curation.steps import STEPS, Reject, Step, StepContext
from lavie.core.errors import first_line


def active_steps(config: CurationConfig) -> list[Step]:
    """The declared steps this config runs, in order."""
    return [step for step in STEPS if step.enabled(config)]


def build_dataset(videos: list[Row], config: CurationConfig, context: StepContext) -> Any:
    """The Ray Data graph over the given video rows (one block per video for load balance)."""
    import ray
    import ray.data

    steps = active_steps(config)
    needing = [i for i, step in enumerate(steps) if "frames" in step.needs]
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    ds = ray.data.from_items(videos, override_num_blocks=max(1, len(videos)))
    for index, step in enumerate(steps):
        if needing and index == needing[0]:
            ds = ds.map(provide_frames, fn_kwargs={"stage": step.name, "context": context})
        kwargs = {"step": step, "config": step.config_of(config), "context": context}
        if step.kind == "map":
            ds = ds.map(run_map_step, fn_kwargs=kwargs)
        elif step.kind == "split":
            ds = ds.flat_map(run_split_step, fn_kwargs=kwargs)
        else:
            section = kwargs["config"]
            ds = ds.map_batches(
                ModelStepActor,
                fn_constructor_kwargs=kwargs,
                batch_size=section.batch_size,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=section.actors),
                num_gpus=1 if has_gpu else 0,
            )
        if needing and index == needing[-1]:
            ds = ds.drop_columns([FRAMES])
    return ds


# --------------------------------------------------------------------------- per-row steps
def run_map_step(row: Row, *, step: Step, config: Any, context: StepContext) -> Row:
    if is_rejected(row):
        return row
    started = time.perf_counter()
    try:
        step.load()(row, config, context)
    except Reject as rejected:
        mark_rejected(row, step.name, rejected.reason, rejected.detail)
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop a run over millions
        mark_rejected(row, step.name, "unexpected_error", first_line(exc))
    return add_seconds(row, step.name, time.perf_counter() - started)


def run_split_step(row: Row, *, step: Step, config: Any, context: StepContext) -> list[Row]:
    """A video row → one row per clip, each carrying the video's columns and how many rows its
    video produced (the shard writer's completion check); a rejected video stays one row.

    The seconds that earlier steps spent on the video stay with its first clip only, so that
    summing over rows counts them once."""
    if is_rejected(row):
        return [{**row, VIDEO_ROWS: 1}]
    started = time.perf_counter()
    try:
        clips = step.load()(row, config, context)
    except Reject as rejected:
        clips = []
        mark_rejected(row, step.name, rejected.reason, rejected.detail)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop a run over millions
        clips = []
        mark_rejected(row, step.name, "unexpected_error", first_line(exc))
    elapsed = time.perf_counter() - started
    if not clips:
        if not is_rejected(row):
            mark_rejected(row, step.name, "no_clips", "the step found no clip")
        return [add_seconds({**row, VIDEO_ROWS: 1}, step.name, elapsed)]
    video = {key: value for key, value in row.items() if key != METADATA}
    later = {key: 0.0 for key in video if key.startswith(SECONDS_PREFIX)}
    rows = [{**video, **(later if index else {}), **clip, VIDEO_ROWS: len(clips)} for index, clip in enumerate(clips)]
    return [add_seconds(clip_row, step.name, elapsed / len(clips)) for clip_row in rows]


def provide_frames(row: Row, *, stage: str, context: StepContext) -> Row:
    """Attach the ``frames`` need; a clip whose frames cannot be read is rejected under ``stage``,
    the first step that needs them."""
    row[FRAMES] = b""
    if is_rejected(row):
        return row
    from curation.steps.frames import sample_frames

    started = time.perf_counter()
    try:
        row[FRAMES] = sample_frames(row, context)
    except Reject as rejected:
        mark_rejected(row, stage, rejected.reason, rejected.detail)
    return add_seconds(row, "frames", time.perf_counter() - started)


# --------------------------------------------------------------------------- batched model steps
class ModelStepActor:
    """One actor of a model step's pool: builds the step's model once, then runs it on the kept
    rows of each batch and writes its columns back in place."""

    def __init__(self, step: Step, config: Any, context: StepContext) -> None:
        self.step = step
        self.model = step.load()(config, context)

    def __call__(self, batch: pa.Table) -> pa.Table:
        stages = batch.column("reject_stage").to_pylist()
        kept = [i for i, stage in enumerate(stages) if stage is None]
        seconds = [0.0] * batch.num_rows
        if kept:
            started = time.perf_counter()
            try:
                result = self.model(batch.take(kept))
                if result.num_rows != len(kept):
                    raise RuntimeError(f"returned {result.num_rows} rows for {len(kept)}")
                batch = _scatter(batch, kept, result)
            except Exception as exc:  # noqa: BLE001 - a failing batch rejects its rows, not the run
                detail = first_line(exc)
                rejects = {"reject_stage": self.step.name, "reject_reason": "model_error", "reject_detail": detail}
                batch = _scatter(batch, kept, pa.table({k: pa.array([v] * len(kept), pa.string()) for k, v in rejects.items()}))
            share = (time.perf_counter() - started) / len(kept)
            for i in kept:
                seconds[i] = share
        return _set_column(batch, SECONDS_PREFIX + self.step.name, pa.array(seconds, pa.float64()))


def _scatter(batch: pa.Table, rows: list[int], values: pa.Table) -> pa.Table:
    """``batch`` with ``values``' columns written into ``rows`` (other rows keep their values)."""
    for name in values.column_names:
        new = values.column(name).to_pylist()
        if name in batch.column_names:
            column = batch.column(name).to_pylist()
            kind = batch.schema.field(name).type
            kind = values.schema.field(name).type if pa.types.is_null(kind) else kind
        else:
            column, kind = [None] * batch.num_rows, values.schema.field(name).type
        for position, value in zip(rows, new):
            column[position] = value
        batch = _set_column(batch, name, pa.array(column, kind))
    return batch


def _set_column(batch: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = batch.schema.get_field_index(name)
    if index < 0:
        return batch.append_column(name, values)
    return batch.set_column(index, name, values)
