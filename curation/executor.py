"""The one executor: the declared steps (:data:`curation.steps.STEPS`) over a shard's videos.

A shard's Ray task (:mod:`curation.worker`) calls :func:`run_steps` on its videos, a chunk of
videos at a time. ``map`` and ``split`` steps run in the task, video by video: a video goes
through every step up to the next model step before the next video starts, so it is opened once
for all of them (:meth:`~curation.steps.base.StepContext.source`). ``model`` steps run in actor
pools built once per run (:class:`ModelPools`, a GPU per actor when the cluster has GPUs): the
task sends the chunk's kept rows in batches of the step's ``batch_size``, batched across videos.
Before the first step that needs ``frames`` the executor samples them, and drops them after the
last one; a chunk bounds the frames held at once.

Around every step the executor does what no step should repeat: rows rejected earlier pass
through untouched, a :class:`~curation.steps.Reject` (or any exception) becomes a reject row under
the step's name, and the step's seconds are added to the row. Every row stays accounted for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import groupby
from typing import Any

import pyarrow as pa

from curation.config import CurationConfig
from curation.rows import FRAMES, METADATA, SECONDS_PREFIX, Row, add_seconds, is_rejected, mark_rejected
from curation.steps import STEPS, Reject, Step, StepContext
from lavie.core.errors import first_line

#: Videos a task takes through the steps at once: enough clips to fill model batches, few enough
#: that their sampled frames stay small.
MIN_CHUNK_VIDEOS = 16


def active_steps(config: CurationConfig) -> list[Step]:
    """The declared steps this config runs, in order."""
    return [step for step in STEPS if step.enabled(config)]


def check_steps(config: CurationConfig) -> None:
    """Run the ``check`` of every active step (on the driver, before any work)."""
    for step in active_steps(config):
        if step.check is not None:
            step.load("check")(step.config_of(config))


# --------------------------------------------------------------------------- per-row steps
def run_map_step(row: Row, *, step: Step, config: Any, context: StepContext, part: str = "run") -> Row:
    """Run a ``map`` step on ``row`` (or, with ``part="filter"``, a model step's filter)."""
    if is_rejected(row):
        return row
    started = time.perf_counter()
    try:
        step.load(part)(row, config, context)
    except Reject as rejected:
        mark_rejected(row, step.name, rejected.reason, rejected.detail)
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop a run over millions
        mark_rejected(row, step.name, "unexpected_error", first_line(exc))
    return add_seconds(row, step.name, time.perf_counter() - started)


def run_split_step(row: Row, *, step: Step, config: Any, context: StepContext) -> list[Row]:
    """A video row → one row per clip, each carrying the video's columns; a rejected video stays
    one row.

    The seconds that earlier steps spent on the video stay with its first clip only, so that
    summing over rows counts them once."""
    if is_rejected(row):
        return [row]
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
        return [add_seconds(row, step.name, elapsed)]
    video = {key: value for key, value in row.items() if key != METADATA}
    later = {key: 0.0 for key in video if key.startswith(SECONDS_PREFIX)}
    rows = [{**video, **(later if index else {}), **clip} for index, clip in enumerate(clips)]
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
    """One actor of a model step's pool: builds the step's model once, then runs it on batches of
    kept rows and returns the columns it sets and the seconds it took."""

    def __init__(self, step: Step, config: Any, context: StepContext) -> None:
        self.model = step.load()(config, context)

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, float]:
        started = time.perf_counter()
        result = self.model(batch)
        if result.num_rows != batch.num_rows:
            raise RuntimeError(f"returned {result.num_rows} rows for {batch.num_rows}")
        return result, time.perf_counter() - started


class ModelPools:
    """The actor pool of every active model step, started once per run by the driver
    (:meth:`start`); shard tasks get it as an argument and send their batches to it."""

    def __init__(self, actors: dict[str, list[Any]], batch_sizes: dict[str, int]) -> None:
        self.actors = actors
        self.batch_sizes = batch_sizes

    @classmethod
    def start(cls, config: CurationConfig, context: StepContext) -> ModelPools:
        import ray

        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        remote = ray.remote(ModelStepActor)
        options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 0} if has_gpu else {"num_cpus": 1}
        options.update(max_restarts=-1, max_task_retries=2)  # a lost actor comes back; its calls retry
        actors, batch_sizes = {}, {}
        for step in active_steps(config):
            if step.kind == "model":
                section = step.config_of(config)
                actors[step.name] = [remote.options(**options).remote(step, section, context) for _ in range(section.actors)]
                batch_sizes[step.name] = section.batch_size
        return cls(actors, batch_sizes)

    def submit(self, actor: Any, batch: pa.Table) -> Any:
        """Start ``actor`` on ``batch``; :meth:`result` waits for what it returns."""
        return actor.__call__.remote(batch)

    def result(self, call: Any) -> tuple[pa.Table, float]:
        import ray

        try:
            return ray.get(call)
        except ray.exceptions.RayActorError:
            raise  # a lost actor is no verdict on the rows: the shard's task fails and Ray retries it
        except ray.exceptions.RayTaskError as exc:
            raise exc.cause if isinstance(exc.cause, Exception) else exc from None

    def run(self, step: Step, rows: list[Row], offset: int) -> None:
        """Run ``step`` on the kept ``rows`` in batches across its actors, writing its columns
        into the rows; a batch the model fails on rejects its rows with ``model_error``."""
        kept = [row for row in rows if not is_rejected(row)]
        size, actors = self.batch_sizes[step.name], self.actors[step.name]
        batches = [kept[i : i + size] for i in range(0, len(kept), size)]
        calls = [self.submit(actors[(offset + j) % len(actors)], pa.Table.from_pylist(batch)) for j, batch in enumerate(batches)]
        for batch, call in zip(batches, calls):
            try:
                result, seconds = self.result(call)
                values = result.to_pylist()
            except Exception as exc:  # noqa: BLE001 - a failing batch rejects its rows, not the run
                for row in batch:
                    add_seconds(mark_rejected(row, step.name, "model_error", first_line(exc)), step.name, 0.0)
                continue
            for row, update in zip(batch, values):
                row.update(update)
                add_seconds(row, step.name, seconds / len(batch))

    def stop(self) -> None:
        import ray

        for actors in self.actors.values():
            for actor in actors:
                ray.kill(actor)


# --------------------------------------------------------------------------- a shard's steps
Operation = Callable[[Row], list[Row]]


def _operations(steps: list[Step], config: CurationConfig, context: StepContext) -> list[Step | Operation]:
    """The steps as a list of per-row operations, with the ``frames`` need attached before the
    first step that needs it and dropped after the last; model steps stay as they are."""
    needing = [i for i, step in enumerate(steps) if "frames" in step.needs]
    operations: list[Step | Operation] = []
    for index, step in enumerate(steps):
        if needing and index == needing[0]:
            operations.append(lambda row, stage=step.name: [provide_frames(row, stage=stage, context=context)])
        kwargs = {"step": step, "config": step.config_of(config), "context": context}
        if step.kind == "map":
            operations.append(lambda row, kw=kwargs: [run_map_step(row, **kw)])
        elif step.kind == "split":
            operations.append(lambda row, kw=kwargs: run_split_step(row, **kw))
        else:
            operations.append(step)
            if step.filter is not None:
                operations.append(lambda row, kw=kwargs: [run_map_step(row, **kw, part="filter")])
        if needing and index == needing[-1]:
            operations.append(lambda row: [{k: v for k, v in row.items() if k != FRAMES}])
    return operations


def _per_video(rows: list[Row], operations: list[Operation], context: StepContext) -> Iterator[Row]:
    """Each video's rows through ``operations``, one video at a time, its file opened once."""
    for _, video_rows in groupby(rows, key=lambda row: row["source_uri"]):
        current = list(video_rows)
        try:
            for operation in operations:
                current = [out for row in current for out in operation(row)]
        finally:
            context.close_source()
        yield from current


def run_steps(
    videos: list[Row], config: CurationConfig, context: StepContext, pools: ModelPools | None, offset: int = 0
) -> list[Row]:
    """Every active step over ``videos`` (rows of consecutive input videos); returns the rows,
    kept and rejected, that they produced. ``offset`` spreads shards over the model actors."""
    operations = _operations(active_steps(config), config, context)
    sizes = pools.batch_sizes.values() if pools else ()
    chunk = max(MIN_CHUNK_VIDEOS, *sizes) if sizes else MIN_CHUNK_VIDEOS
    out: list[Row] = []
    for start in range(0, len(videos), chunk):
        rows = videos[start : start + chunk]
        pending: list[Operation] = []
        for operation in [*operations, None]:
            if operation is None or isinstance(operation, Step):
                rows = list(_per_video(rows, pending, context)) if pending else rows
                pending = []
                if operation is not None:
                    if pools is None:
                        raise RuntimeError(f"step {operation.name} needs the run's model pools")
                    pools.run(operation, rows, offset + start)
            else:
                pending.append(operation)
        out.extend(rows)
    return out
