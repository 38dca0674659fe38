"""`lavie check`: decode every clip of any clip manifest the way the trainer does, and report what fails.

Any manifest will do: a curation output, or a Parquet file or folder made elsewhere (WebVid-style)
with a ``source_uri`` column. A clip is the frame range ``[start_frame, end_frame)`` when the
manifest gives one, else the time range ``[start_sec, end_sec)`` (mapped to frames through the
video's own timestamps), else the whole video. The work is one Ray task per Parquet file of the
manifest (a curation output's shard part), at most a window of them in flight; a task opens each
video once for its consecutive rows, with the reader the training stream uses
(:func:`lavie.core.video.open_video`), and checks each of its clips in turn:

    opens     the file is there and a decoder opens it          (else ``unreadable``)
    range     the range is well formed and inside the video     (``bad_range``, ``out_of_range``)
    decodes   every frame of the range decodes                  (else ``undecodable``)

``--frames ends`` decodes only each clip's first, middle and last frame: quicker, and it still
finds what curation's own check finds. The report folder gets ``failures.parquet`` (a Parquet
dataset with one part per manifest part, each task writing its own: one row per failed clip, with
its reason and detail) and ``summary.json`` (the counts, funnel-style). The driver holds counts:
its memory does not grow with the clips. ``videos`` counts a video once per part it appears in.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lavie.core.errors import UserError, message_line, require_ray
from lavie.core.manifest import open_manifest
from lavie.core.storage import SealedOptions, arrow_filesystem, atomic_write, atomic_write_json, filesystem, join
from lavie.core.tasks import bounded_tasks
from lavie.core.video import VideoReadError, open_video

Frames = Literal["all", "ends"]
#: The checks in order; a clip failing one is not checked further.
CHECKS = (("opens", "unreadable"), ("range", "bad_range"), ("range", "out_of_range"), ("decodes", "undecodable"))
FAILURES_FILE = "failures.parquet"
SUMMARY_FILE = "summary.json"
FAILURE_SCHEMA = pa.schema(
    [
        pa.field("manifest", pa.string(), nullable=False),
        pa.field("clip_id", pa.string()),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)
_RANGE_COLUMNS = ("clip_id", "start_frame", "end_frame", "start_sec", "end_sec")
#: Frames are decoded this small: whether a frame decodes does not depend on the output size.
_DECODE_SIZE = (72, 128)
_BATCH = 32


@dataclass(frozen=True)
class CheckRequest:
    manifests: tuple[str, ...]
    out: str
    frames: Frames = "all"
    storage_options: dict[str, Any] | None = None


@dataclass
class CheckSummary:
    clips: int = 0
    videos: int = 0
    ok: int = 0
    failed: Counter = field(default_factory=Counter)  # reason → clips
    by_manifest: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_parts(self) -> dict[str, Any]:
        """The counts alone, as a task returns them (:meth:`add` sums them)."""
        return {"clips": self.clips, "videos": self.videos, "ok": self.ok, "failed": dict(self.failed),
                "by_manifest": self.by_manifest}  # fmt: skip

    def add(self, part: dict[str, Any]) -> None:
        self.clips += part["clips"]
        self.videos += part["videos"]
        self.ok += part["ok"]
        self.failed.update(part["failed"])
        for manifest, counts in part["by_manifest"].items():
            mine = self.by_manifest.setdefault(manifest, {"clips": 0, "ok": 0, "failed": 0})
            for key, value in counts.items():
                mine[key] += value

    def to_json(self) -> dict[str, Any]:
        funnel, left = [{"step": "clips", "count": self.clips}], self.clips
        for step, reason in CHECKS:
            left -= self.failed.get(reason, 0)
            funnel.append({"step": f"{step} ({reason} dropped)", "count": left})
        return {
            "clips": self.clips,
            "videos": self.videos,
            "ok": self.ok,
            "failed": dict(self.failed),
            "funnel": funnel,
            "by_manifest": self.by_manifest,
        }


@dataclass(frozen=True)
class CheckPart:
    """One unit of work: a Parquet file of a manifest, checked by one Ray task."""

    manifest: str
    number: int
    path: str  # in the manifest's filesystem
    columns: tuple[str, ...]


def plan_checks(request: CheckRequest) -> list[tuple[str, list[str], tuple[str, ...]]]:
    """Per manifest: its URI, its Parquet files and the columns to read. Bad manifests fail here,
    before any cluster starts; nothing is read beyond the datasets' file lists and a footer."""
    plans, has_rows = [], False
    for uri in request.manifests:
        manifest = open_manifest(uri, request.storage_options)
        manifest.require_columns(["source_uri"])
        columns = ("source_uri", *(c for c in _RANGE_COLUMNS if c in manifest.columns))
        plans.append((uri, list(manifest.table.files), columns))
        # One footer read until a part with rows turns up, not every part's: the driver's memory
        # would grow with the parts' metadata.
        has_rows = has_rows or any(fragment.count_rows() for fragment in manifest.table.get_fragments())
    if not has_rows:
        raise UserError(f"{', '.join(request.manifests)}: no clips to check")
    return plans


def _parts(plans: list[tuple[str, list[str], tuple[str, ...]]]) -> Iterator[CheckPart]:
    number = 0
    for uri, files, columns in plans:
        for path in files:
            yield CheckPart(uri, number, path, columns)
            number += 1


def _videos(part: CheckPart, storage_options: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """The part's rows as one work item per run of consecutive rows of the same video."""
    fs, _ = arrow_filesystem(part.manifest, storage_options)
    item: dict[str, Any] | None = None
    with fs.open_input_file(part.path) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(columns=list(part.columns), batch_size=4096):
            for row in batch.to_pylist():
                if item is None or item["source_uri"] != row["source_uri"]:
                    if item is not None:
                        yield item
                    item = {"manifest": part.manifest, "source_uri": row["source_uri"], "clips": []}
                item["clips"].append({c: row.get(c) for c in _RANGE_COLUMNS})
    if item is not None:
        yield item


def check_part(part: CheckPart, out: str, frames: Frames, storage: SealedOptions) -> dict[str, Any]:
    """Check every clip of one manifest part (each video opened once for its run of rows), write
    the part's failures under ``failures.parquet/`` and return its counts."""
    options = storage.open()
    summary, failures, videos = CheckSummary(), [], 0
    counts = summary.by_manifest.setdefault(part.manifest, {"clips": 0, "ok": 0, "failed": 0})
    for item in _videos(part, options):
        videos += 1
        for row in check_video(item, frames=frames, storage=storage):
            summary.clips += 1
            counts["clips"] += 1
            if row["reason"] is None:
                summary.ok += 1
                counts["ok"] += 1
            else:
                summary.failed[row["reason"]] += 1
                counts["failed"] += 1
                failures.append({name: row.get(name) for name in FAILURE_SCHEMA.names})
    summary.videos = videos
    failures.sort(key=lambda r: (r["source_uri"], r["start_frame"] or -1))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(failures, schema=FAILURE_SCHEMA), sink)
    atomic_write(join(out, FAILURES_FILE, f"part-{part.number:05d}.parquet"), sink.getvalue(), options)
    return summary.to_parts()


def check_video(item: dict[str, Any], *, frames: Frames, storage: SealedOptions) -> list[dict[str, Any]]:
    """Check every clip of one video; one result row per clip (``reason`` None when it passed)."""
    uri, clips = item["source_uri"], item["clips"]
    results = [{"manifest": item["manifest"], "source_uri": uri, **clip, "reason": None, "detail": None} for clip in clips]
    if not uri:
        return [{**r, "reason": "unreadable", "detail": "the row has no source_uri"} for r in results]
    try:
        reader = open_video(uri, storage.open(), size=_DECODE_SIZE)
    except VideoReadError as exc:
        return [{**r, "reason": "unreadable", "detail": message_line(exc)} for r in results]
    with reader:
        for result in results:
            result["start_frame"], result["end_frame"], problem = _frame_range(result, reader)
            if problem is not None:
                result["reason"], result["detail"] = problem
                continue
            try:
                for chunk in _frames_to_decode(result["start_frame"], result["end_frame"], frames):
                    reader.read(chunk)
            except VideoReadError as exc:
                result["reason"], result["detail"] = "undecodable", message_line(exc)
    return results


def _frame_range(clip: dict[str, Any], reader: Any) -> tuple[int | None, int | None, tuple[str, str] | None]:
    """The clip's frame range (from frames, else seconds, else the whole video), and what is
    wrong with it, if anything."""
    frames = len(reader)
    start, end = clip.get("start_frame"), clip.get("end_frame")
    if start is None and end is None and (clip.get("start_sec") is not None or clip.get("end_sec") is not None):
        stamps = reader.timestamps()
        start = int(np.searchsorted(stamps, clip.get("start_sec") or 0.0, side="left"))
        end = int(np.searchsorted(stamps, clip["end_sec"], side="left")) if clip.get("end_sec") is not None else frames
    elif start is None and end is None:
        start, end = 0, frames
    if start is None or end is None or start < 0 or end <= start:
        return start, end, ("bad_range", f"frame range [{start}, {end}) is empty or negative")
    if end > frames:
        return start, end, ("out_of_range", f"the clip ends at frame {end}, the decoder finds {frames} in the file")
    return start, end, None


def _frames_to_decode(start: int, end: int, frames: Frames) -> Iterator[list[int]]:
    if frames == "ends":
        yield sorted({start, (start + end - 1) // 2, end - 1})
        return
    for first in range(start, end, _BATCH):
        yield list(range(first, min(first + _BATCH, end)))


ProgressCallback = Callable[[int, int], None]


def run_check(
    request: CheckRequest,
    *,
    connect: Callable[[], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Check every clip of the manifests on Ray, one task per manifest part through a bounded
    window; each task writes its failures itself and returns counts, which the driver sums.
    Writes the report; returns the summary. ``on_progress(parts done, parts)``."""
    plans = plan_checks(request)  # bad manifests fail here, before any cluster starts
    (connect or (lambda: require_ray("lavie check")))()
    import ray

    fs, path = filesystem(join(request.out, FAILURES_FILE), request.storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)  # an earlier report's parts
    storage = SealedOptions.seal(request.storage_options)
    task = ray.remote(check_part).options(num_cpus=1, max_retries=3)
    parts = sum(len(files) for _, files, _ in plans)
    summary = CheckSummary()
    for done, counts in enumerate(bounded_tasks(task, ((p, request.out, request.frames, storage) for p in _parts(plans))), 1):
        summary.add(counts)
        if on_progress:
            on_progress(done, parts)
    record = {"manifests": list(request.manifests), "frames": request.frames, **summary.to_json()}
    atomic_write_json(join(request.out, SUMMARY_FILE), record, request.storage_options)
    return record


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The summary for a terminal, funnel-style."""
    lines = [f"{record['clips']:,} clips of {record['videos']:,} videos decoded as the trainer does ({record['frames']} frames)"]
    for step in record["funnel"]:
        lines.append(f"  {step['step']:<32s} {step['count']:>10,}")
    lines.append(f"  {'ok':<32s} {record['ok']:>10,}")
    return lines
