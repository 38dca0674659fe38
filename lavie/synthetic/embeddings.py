"""Clip embeddings with planted near-duplicates, and a manifest that holds them, for `lavie dedup`.

Clips gather around ``centers`` random directions (two clips of one center have a cosine
similarity of about 0.5, as different shots of one topic do); a ``duplicate_fraction`` of them get
one or two near copies (cosine 0.97 to 0.999 with their original, as re-encodes and re-uploads of
one shot do). :class:`PlantedEmbeddings` records every planted group, so that a deduplication can
be scored: its recall and precision against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lavie.core.manifest import CLIP_SCHEMA, CLIPS_DIR, EMBEDDINGS_DIR, RUN_FILE, SUCCESS_FILE, embeddings_table

#: Noise that moves a copy off its original: cosine 1 / sqrt(1 + t²) for t in this range.
_COPY_NOISE = (0.05, 0.24)


@dataclass(frozen=True)
class PlantedEmbeddings:
    clip_ids: list[str]
    vectors: np.ndarray  # (n, dim) float16, unit length
    group: np.ndarray  # (n,) planted group of each clip; -1 for a clip with no copy
    aesthetic: np.ndarray  # (n,) float32
    duration: np.ndarray  # (n,) float64, seconds

    @property
    def planted_duplicates(self) -> int:
        """Clips a perfect deduplication drops: every member of a planted group but one."""
        groups = self.group[self.group >= 0]
        return len(groups) - len(np.unique(groups))

    def score(self, dropped: list[str], kept_instead: list[str]) -> dict[str, float]:
        """Recall and precision of a deduplication's drops (each with the clip kept in its place):
        a drop is right when both clips are of one planted group."""
        position = {clip_id: i for i, clip_id in enumerate(self.clip_ids)}
        a = self.group[[position[c] for c in dropped]] if dropped else np.zeros(0, np.int64)
        b = self.group[[position[c] for c in kept_instead]] if kept_instead else np.zeros(0, np.int64)
        right = int(((a == b) & (a >= 0)).sum())
        return {
            "recall": right / self.planted_duplicates if self.planted_duplicates else 1.0,
            "precision": right / len(dropped) if dropped else 1.0,
            "dropped": len(dropped),
            "planted": self.planted_duplicates,
        }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def planted_embeddings(
    n: int, dim: int = 768, centers: int = 100, duplicate_fraction: float = 0.05, seed: int = 0
) -> PlantedEmbeddings:
    """``n`` clips (originals and their planted copies together) in random order."""
    rng = np.random.default_rng(seed)
    # A duplicate_fraction of the originals get copies: one for half of them, two for the others
    # (groups of 3, whose two copies may be further apart than the threshold but both near the
    # original), so 1.5 copies each.
    originals = int(round(n / (1 + 1.5 * duplicate_fraction)))
    copies = n - originals
    with_copies = rng.choice(originals, size=min(originals, -(-copies * 2 // 3)), replace=False)
    copies_of = np.concatenate([with_copies, with_copies[: copies - len(with_copies)]])
    directions = _unit(rng.standard_normal((centers, dim)).astype(np.float32))
    center = rng.integers(0, centers, originals)
    base = _unit(directions[center] + rng.standard_normal((originals, dim)).astype(np.float32) / np.sqrt(dim))
    noise = rng.uniform(*_COPY_NOISE, len(copies_of)).astype(np.float32)[:, None]
    near = _unit(base[copies_of] + noise * rng.standard_normal((copies, dim)).astype(np.float32) / np.sqrt(dim))
    vectors = np.concatenate([base, near])
    group = np.full(originals, -1, np.int64)
    group[copies_of] = copies_of
    group = np.concatenate([group, copies_of])
    order = rng.permutation(n)
    return PlantedEmbeddings(
        clip_ids=[f"clip-{i:09d}" for i in range(n)],
        vectors=vectors[order].astype(np.float16),
        group=group[order],
        aesthetic=rng.uniform(3, 7, n).astype(np.float32),
        duration=rng.uniform(2, 20, n).round(3),
    )


def write_embedded_manifest(folder: str | Path, planted: PlantedEmbeddings, parts: int = 1) -> Path:
    """A finished curation-style output of the planted clips: ``clips/`` and ``embeddings/`` in
    ``parts`` files of the same names, a ``run.json`` with its counts, and ``_SUCCESS``."""
    folder = Path(folder)
    n = len(planted.clip_ids)
    fps = 24.0
    frames = np.round(planted.duration * fps).astype(np.int64)
    columns = {
        "clip_id": pa.array(planted.clip_ids),
        "source_uri": pa.array([f"s3://synthetic/videos/{i // 4:08d}.mp4" for i in range(n)]),
        "source_dataset": pa.array(["synthetic"] * n),
        "caption": pa.array(["a synthetic clip with an embedding"] * n),
        "caption_words": pa.array(np.full(n, 6, np.int32)),
        "start_frame": pa.array(np.zeros(n, np.int64)),
        "end_frame": pa.array(frames),
        "num_frames": pa.array(frames),
        "duration_sec": pa.array(planted.duration),
        "fps": pa.array(np.full(n, fps)),
        "width": pa.array(np.full(n, 1280, np.int32)),
        "height": pa.array(np.full(n, 720, np.int32)),
        "aesthetic_score": pa.array(planted.aesthetic),
    }
    clips = pa.table({
        name: columns.get(name, pa.nulls(n, CLIP_SCHEMA.field(name).type)) for name in CLIP_SCHEMA.names
    }).cast(CLIP_SCHEMA)  # fmt: skip
    (folder / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    (folder / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
    per_part = -(-n // parts)
    for i in range(parts):
        rows = slice(i * per_part, min(n, (i + 1) * per_part))
        name = f"part-{i:05d}.parquet"
        pq.write_table(clips.slice(rows.start, rows.stop - rows.start), folder / CLIPS_DIR / name)
        pq.write_table(embeddings_table(planted.clip_ids[rows], planted.vectors[rows]), folder / EMBEDDINGS_DIR / name)
    run = {"counts": {"inputs": -(-n // 4), "inputs_rejected": 0, "clips_detected": n, "clips_kept": n, "clips_rejected": 0}}
    (folder / RUN_FILE).write_text(json.dumps(run))
    (folder / SUCCESS_FILE).touch()
    return folder
