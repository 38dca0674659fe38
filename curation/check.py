"""`lavie check`: decode every clip of any clip manifest the way the trainer does, and report what fails.

Any manifest will do: a curation output, or a Parquet file or folder made elsewhere (WebVid-style)
with a ``source_uri`` column. A clip is the frame range ``[start_frame, end_frame)`` when the
manifest gives one, else the time range ``[start_sec, end_sec)`` (mapped to frames through the
video's own timestamps), else the whole video. Each video is opened once, with the reader the
training stream uses (:func:`lavie.core.video.open_video`), in one Ray task per video; each of its
clips is checked in turn:

    opens     the file is there and a decoder opens it          (else ``unreadable``)
    range     the range is well formed and inside the video     (``bad_range``, ``out_of_range``)
    decodes   every frame of the range decodes                  (else ``undecodable``)

``--frames ends`` decodes only each clip's first, middle and last frame: quicker, and it still
finds what curation's own check finds. The report folder gets ``failures.parquet`` (one row per
failed clip, with its reason and detail) and ``summary.json`` (the counts, funnel-style).
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
from lavie.core.storage import SealedOptions, atomic_write, atomic_write_json, join
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


def plan_checks(request: CheckRequest) -> list[dict[str, Any]]:
    """One work item per (manifest, video): the video's clips, as the manifest gives them."""
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for uri in request.manifests:
        manifest = open_manifest(uri, request.storage_options)
        if "source_uri" not in manifest.columns:
            manifest.require_columns(["source_uri"])
        columns = ["source_uri", *(c for c in _RANGE_COLUMNS if c in manifest.columns)]
        for batch in manifest.table.to_batches(columns=columns):
            for row in batch.to_pylist():
                key = (uri, row["source_uri"] or "")
                item = items.setdefault(key, {"manifest": uri, "source_uri": row["source_uri"], "clips": []})
                item["clips"].append({c: row.get(c) for c in _RANGE_COLUMNS})
    if not items:
        raise UserError(f"{', '.join(request.manifests)}: no clips to check")
    return list(items.values())


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
    """Check every clip of the manifests on Ray; write the report; return the summary."""
    items = plan_checks(request)  # bad manifests fail here, before any cluster starts
    (connect or (lambda: require_ray("lavie check")))()
    import ray.data

    storage = SealedOptions.seal(request.storage_options)
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
        check_video, fn_kwargs={"frames": request.frames, "storage": storage}
    )
    summary, failures, videos = CheckSummary(), [], set()
    for row in dataset.iter_rows():
        summary.clips += 1
        videos.add((row["manifest"], row["source_uri"]))
        counts = summary.by_manifest.setdefault(row["manifest"], {"clips": 0, "ok": 0, "failed": 0})
        counts["clips"] += 1
        if row["reason"] is None:
            summary.ok += 1
            counts["ok"] += 1
        else:
            summary.failed[row["reason"]] += 1
            counts["failed"] += 1
            failures.append({name: row.get(name) for name in FAILURE_SCHEMA.names})
        if on_progress:
            on_progress(summary.clips, sum(len(item["clips"]) for item in items))
    summary.videos = len(videos)
    failures.sort(key=lambda r: (r["manifest"], r["source_uri"], r["start_frame"] or -1))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(failures, schema=FAILURE_SCHEMA), sink)
    atomic_write(join(request.out, FAILURES_FILE), sink.getvalue(), request.storage_options)
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
