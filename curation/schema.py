"""The manifest schema: one pyarrow schema per table, defined here and imported everywhere.

A finished curation output folder holds::

    clips/     Parquet dataset of kept single-scene clips          (CLIP_SCHEMA)
    rejects/   Parquet dataset of every dropped input or clip      (REJECT_SCHEMA)
    run.json   config, versions, counts per stage, timings
    _SUCCESS   written last

Image manifests (LAION-style) follow IMAGE_SCHEMA. Readers should select columns by name
(``CLIP_COLUMNS`` etc.) so that manifests written by other tools with extra columns still load.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

CLIP_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_dataset", pa.string()),
        pa.field("category", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("caption_words", pa.int32()),
        pa.field("start_frame", pa.int64(), nullable=False),
        pa.field("end_frame", pa.int64(), nullable=False),  # exclusive
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("start_sec", pa.float64()),
        pa.field("end_sec", pa.float64()),
        pa.field("duration_sec", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("aesthetic_score", pa.float32()),  # null when not scored
        pa.field("clip_score", pa.float32()),  # text-frame CLIP cosine similarity, null when not scored
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("clip_id", pa.string()),  # null when a whole input was rejected
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("num_frames", pa.int64()),
        pa.field("height", pa.int32()),
        pa.field("caption", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)

IMAGE_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("aesthetic_score", pa.float32()),
    ]
)

# Curation stages in pipeline order; `rejects.stage` is always one of these.
STAGES = (
    "input",  # the input could not be found or listed
    "probe",  # unreadable, zero-byte, truncated or non-video files
    "scene_detect",  # decoding failed during scene detection, or no scene found
    "min_frames",  # clips shorter than the frame minimum
    "caption",  # caption missing, under the word minimum, or URL-only
    "resolution",  # clips below the height minimum
    "scoring",  # aesthetic / CLIP scoring could not read the clip's frames
)

# run.json layout (keys a reader may rely on):
#   "counts": {"inputs": int, "inputs_rejected": int, "clips_detected": int,
#              "clips_kept": int, "clips_rejected": int}
#   "rejects_by_stage": {stage: {reason: count}}
#   "scoring": {"aesthetic": bool, "clip_score": bool, "skipped_reason": str | None}
#   "config": {...}, "versions": {...}, "timings": {"wall_sec": float, "stage_cpu_sec": {...}}

CLIP_COLUMNS = tuple(CLIP_SCHEMA.names)
REJECT_COLUMNS = tuple(REJECT_SCHEMA.names)
IMAGE_COLUMNS = tuple(IMAGE_SCHEMA.names)

CLIPS_DIR = "clips"
REJECTS_DIR = "rejects"
RUN_FILE = "run.json"
SUCCESS_FILE = "_SUCCESS"


def clip_id_for(source_uri: str, start_frame: int) -> str:
    """Stable clip id: the same source and start frame always give the same id."""
    digest = hashlib.sha1(f"{source_uri}#{start_frame}".encode()).hexdigest()
    return digest[:20]


def image_id_for(uri: str) -> str:
    """Stable image id derived from the image's URI."""
    return hashlib.sha1(uri.encode()).hexdigest()[:20]
