"""Prompts in bulk: one video per prompt, on a Ray actor pool or in this process, resumable.

``generate_batch`` writes, under its output folder::

    videos/<id>.mp4   (or <id>.png for text to image)   one per finished prompt
    frames/<id>/      the frames as PNGs, when asked
    rows/<id>.json    written last for each prompt: its manifest row (or its failure and reason)
    manifest.parquet  every prompt's row, composed at the end
    index.html        the gallery (:mod:`cascade.gallery`)

A prompt's ``id`` is a digest of its text, seed and settings, so a re-run with the same inputs
finds its finished rows and generates only the rest; a failed prompt is recorded with its reason
and retried by the next run. On Ray each actor loads the cascade once and holds it (on its own GPU
when the cluster has GPUs); the driver only hands out prompts and collects rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, ValidationError

from cascade.errors import CascadeError
from cascade.pipelines.settings import STAGE_ORDER, GenerationSettings
from lavie.core.config import StrictModel
from lavie.core.errors import UserError, config_error, first_line, message_line, require_ray
from lavie.core.storage import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
VIDEOS = "videos"
SECONDS_STAGES = (*STAGE_ORDER, "long_video", "decode")
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # "ok" or "failed"
        pa.field("error", pa.string()),
        pa.field("path", pa.string()),  # relative to the output folder
        pa.field("num_frames", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("settings", pa.string()),  # GenerationSettings as JSON
        *[pa.field(f"seconds_{stage}", pa.float64()) for stage in SECONDS_STAGES],
    ]
)


class PromptItem(StrictModel):
    prompt: str = Field(min_length=1)
    seed: int = 0


@dataclass(frozen=True)
class BatchResult:
    manifest: Path
    generated: int
    skipped: int
    failed: int


def item_id(item: PromptItem, settings: GenerationSettings) -> str:
    payload = json.dumps([item.prompt, item.seed, settings.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def read_prompts(path: str | Path, seed: int = 0) -> list[PromptItem]:
    """Prompts from a file: plain text (one per line, blank lines skipped; seeds ``seed``,
    ``seed + 1``...) or JSONL (``.jsonl``: one ``{"prompt": ..., "seed": ...}`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such prompt file")
    lines = [(number, line.strip()) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    if not lines:
        raise UserError(f"{path}: the prompt file is empty")
    if path.suffix != ".jsonl":
        return [PromptItem(prompt=line, seed=seed + index) for index, (_, line) in enumerate(lines)]
    items = []
    for number, line in lines:
        try:
            items.append(PromptItem.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        except ValidationError as exc:
            raise UserError(f"{path}:{number}: {config_error(exc)}") from None
    return items


class GenerationWorker:
    """Holds one cascade and turns prompts into files and rows (a Ray actor, or used in process)."""

    def __init__(self, models: str, settings_json: str, out_dir: str, png_frames: bool, device: str | None) -> None:
        from cascade.pipelines.cascade import CascadePipeline

        self.settings = GenerationSettings.model_validate_json(settings_json)
        self.out_dir = Path(out_dir)
        self.png_frames = png_frames
        self.pipeline = CascadePipeline.from_pretrained(models, self.settings, device=device)
        self.pipeline.set_progress_bar_config(disable=True)

    def ready(self) -> bool:
        return True

    def generate(self, item_json: str, identifier: str) -> dict[str, Any]:
        import torch

        from cascade.files import write_mp4, write_pngs

        item = PromptItem.model_validate_json(item_json)
        row: dict[str, Any] = {"id": identifier, "prompt": item.prompt, "seed": item.seed,
                               "settings": self.settings.model_dump_json()}  # fmt: skip
        try:
            generator = torch.Generator("cpu").manual_seed(item.seed)
            result = self.pipeline(item.prompt, self.settings, generator)
            frames = result.frames[0]
            if self.settings.mode == "image":
                path = write_pngs(frames, self.out_dir / VIDEOS, stem=identifier)[0]
            else:
                path = write_mp4(frames, self.out_dir / VIDEOS / f"{identifier}.mp4", result.fps)
            if self.png_frames and self.settings.mode != "image":
                write_pngs(frames, self.out_dir / "frames" / identifier)
            row.update(status="ok", error=None, path=str(path.relative_to(self.out_dir)), num_frames=len(frames),
                       height=frames.shape[1], width=frames.shape[2], fps=result.fps,
                       **{f"seconds_{stage}": seconds for stage, seconds in result.seconds.items()})  # fmt: skip
        except UserError as exc:  # this prompt cannot be generated: record why, keep going
            row.update(status="failed", error=message_line(exc))
        except Exception as exc:  # noqa: BLE001 - one prompt's failure must not lose the batch
            row.update(status="failed", error=first_line(exc))
        atomic_write_json(str(self.out_dir / "rows" / f"{identifier}.json"), row)
        return row


def generate_batch(
    models: str | os.PathLike,
    items: Sequence[PromptItem],
    out_dir: str | os.PathLike,
    settings: GenerationSettings,
    *,
    workers: int = 1,
    use_ray: bool = False,
    png_frames: bool = False,
    device: str | None = None,
    on_row: Any = None,
) -> BatchResult:
    """Generate every prompt not finished by an earlier run; see the module docstring.
    ``on_row(row)`` is called as each prompt finishes (progress)."""
    if not items:
        raise UserError("no prompts to generate")
    from cascade.pipelines.cascade import CascadePipeline

    CascadePipeline.check(models, settings)  # a missing folder or stage fails here, not in every worker
    out = Path(out_dir)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    ids = [item_id(item, settings) for item in items]
    finished = {i for i in ids if _finished(out, i)}
    pending = [(item, i) for item, i in zip(items, ids) if i not in finished]
    pending = list({i: (item, i) for item, i in pending}.values())  # the same prompt and seed twice: once
    arguments = (str(models), settings.model_dump_json(), str(out), png_frames)
    rows = _run_ray(arguments, pending, workers) if use_ray else _run_local(arguments, pending, device)
    generated = failed = 0
    for row in rows:
        generated += row["status"] == "ok"
        failed += row["status"] != "ok"
        if on_row is not None:
            on_row(row)
    manifest = write_manifest(out, ids)
    from cascade.gallery import write_gallery

    write_gallery(out)
    return BatchResult(manifest, generated, len(set(ids)) - len(pending), failed)


def _finished(out: Path, identifier: str) -> bool:
    row_file = out / "rows" / f"{identifier}.json"
    if not row_file.is_file():
        return False
    row = json.loads(row_file.read_text())
    return row.get("status") == "ok" and (out / row["path"]).is_file()


def _run_local(arguments: tuple[str, str, str, bool], pending: list[tuple[PromptItem, str]], device: str | None) -> Iterator[dict[str, Any]]:
    if not pending:
        return
    worker = GenerationWorker(*arguments, device)
    for item, identifier in pending:
        yield worker.generate(item.model_dump_json(), identifier)


def _run_ray(arguments: tuple[str, str, str, bool], pending: list[tuple[PromptItem, str]], workers: int) -> Iterator[dict[str, Any]]:
    """An actor pool of ``workers`` cascades, one GPU each when the cluster has GPUs."""
    require_ray("batch generation")
    import ray
    from ray.util import ActorPool

    if not pending:
        return
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    resources = ray.cluster_resources()
    gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    capacity = int(resources.get("GPU" if gpus else "CPU", 1))
    if workers > capacity:  # more actors than the cluster can place would wait forever
        logger.warning("--workers %d: the cluster has room for %d generation actors; starting %d", workers, capacity, capacity)
    actor_class = ray.remote(num_cpus=0 if gpus else 1, num_gpus=gpus)(GenerationWorker)
    count = max(1, min(workers, capacity, len(pending)))
    actors = [actor_class.remote(*arguments, "cuda" if gpus else "cpu") for _ in range(count)]
    try:
        ray.get([actor.ready.remote() for actor in actors])
    except ray.exceptions.RayActorError as exc:
        raise CascadeError(f"a generation worker failed to start: {_init_failure(exc)}") from None
    pool = ActorPool(actors)
    yield from pool.map_unordered(lambda actor, job: actor.generate.remote(job[0].model_dump_json(), job[1]), pending)
    for actor in actors:
        ray.kill(actor)


def write_manifest(out: Path, ids: Sequence[str]) -> Path:
    """``manifest.parquet`` of every prompt that has a row, in the order given (written atomically)."""
    rows = []
    for identifier in dict.fromkeys(ids):
        row_file = out / "rows" / f"{identifier}.json"
        if row_file.is_file():
            rows.append(json.loads(row_file.read_text()))
    columns = {field.name: [row.get(field.name) for row in rows] for field in MANIFEST_SCHEMA}
    table = pa.table(columns, schema=MANIFEST_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write(str(out / MANIFEST), sink.getvalue().to_pybytes())
    return out / MANIFEST


def _init_failure(exc: BaseException) -> str:
    """What a worker's ``__init__`` raised, as one line. Ray hands it over as the error's
    ``__cause__``, or, when the death reaches the driver through the actor's state instead of its
    creation task, only inside the message, whose last line is the original exception's."""
    if exc.__cause__ is not None:
        return first_line(exc.__cause__)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if len(lines) > 1 else first_line(exc)

