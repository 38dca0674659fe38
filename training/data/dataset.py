"""The joint video-image sample stream of one rank: a clip plus M images per sample.

Position model. Sample ``i`` of a rank belongs to step ``i // samples_per_step``. The curriculum
plan (which source each slot of sample ``i`` comes from) is a pure function of ``i``; a source's
cursor is the number of times the plan has drawn from it, and cursor ``k`` is row
``k % shard_length`` of epoch ``k // shard_length`` of that source's shuffled shard. A clip or
image that cannot be used is replaced by a random row of the same source drawn from a generator
keyed by (sample, slot, attempt), so failures never shift the cursors. Hence the stream from
step ``s`` is the same whether the run was uninterrupted, resumed from :meth:`state_dict`, or
built with ``start_step=s``; the state dict adds the counters and guards against a changed
config or manifest.

Images as clips (``data.image_clips``): a clip drawn from an image source is the image filmed by
the simulated hand-held camera of :mod:`training.data.camera`, its path drawn from the row's
keyed generator; its ``frame_indices`` are all 0.

In-process, iterating the dataset advances its own position as each sample is yielded (one
iteration at a time). Multi-process loading: under a DataLoader with K workers, worker ``w`` materialises the batches
``b`` with ``b % K == w`` (batches of ``batch_size`` samples, counted from where iteration
started) and only advances cursors through the others, so the DataLoader's round-robin output is
the single-process stream. Worker-side positions are copies; the consumer advances the
authoritative position with :meth:`observe_batch` (:class:`training.data.loader.JointLoader`
does this).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lavie.core.errors import UserError
from training.data.camera import camera_path, image_clip
from training.data.config import DataConfig
from training.data.curriculum import Curriculum
from training.data.decode import (
    ClipSpec,
    SkipSample,
    load_clip_row,
    load_image,
    planned_row_frames,
    row_clip_id,
    row_image_id,
)
from training.data.manifests import ManifestIndex, ShardReader, validate_sources
from training.latent_store import LatentStore
from training.rng import keyed_numpy

log = logging.getLogger(__name__)

STATE_VERSION = 1
_SAMPLE_STREAM = 4
_WARNINGS_PER_SOURCE = 5
_REPLAY_CHUNK = 1 << 18  # samples replayed at once when starting at a step
_PLAN_CHUNK = 64  # samples planned at once while iterating

Sample = dict[str, Any]
Row = dict[str, Any]


@dataclass
class SourceCounters:
    """Per-source counts for metrics: rows used, and rows replaced because unusable."""

    drawn: int = 0
    undecodable: int = 0
    too_short: int = 0
    low_fps: int = 0
    too_small: int = 0
    precomputed: int = 0  # items read from the latent store instead of decoded


class JointVideoImageDataset(IterableDataset):
    """Infinite stream of samples for one rank (see the module docstring for the position model).

    Each sample is a dict: ``video`` uint8 (T, 3, H, W), ``video_caption`` str, ``images`` uint8
    (M, 3, H, W), ``image_captions`` list[str], ``video_source`` str, ``image_sources`` list[str],
    ``clip_id`` str, ``image_ids`` list[str], ``frame_indices`` list[int] (source frames),
    ``sample_index`` and ``step`` int, ``skips`` list of (source, reason) replaced on the way,
    ``precomputed`` list of the sources whose item came from the latent store.

    With a :class:`LatentStore`, an item whose latents are stored is read from it, not decoded:
    the clip is float moments (T, 2C, h, w), an image (2C, h, w); ``images`` is then a list when
    its items differ in kind.
    """

    def __init__(
        self,
        config: DataConfig,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        *,
        batch_size: int = 1,
        grad_accum_steps: int = 1,
        manifests: dict[str, ManifestIndex] | None = None,
        latents: LatentStore | None = None,
        distinct_frames: bool = False,
    ) -> None:
        """``batch_size`` is the per-rank micro-batch; one optimizer step consumes
        ``batch_size * grad_accum_steps`` samples. ``manifests`` (from :func:`validate_sources`)
        saves re-reading Parquet footers when the caller has already validated.
        ``distinct_frames``: skip clips slower than ``target_fps`` (see :class:`ClipSpec`)."""
        if batch_size < 1 or grad_accum_steps < 1 or start_step < 0:
            raise ValueError("batch_size and grad_accum_steps must be >= 1, start_step >= 0")
        super().__init__()
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.samples_per_step = batch_size * grad_accum_steps
        self._latents = latents
        self._window_offsets = config.window_offsets()
        manifests = manifests if manifests is not None else validate_sources(config)
        used = config.clip_sources + (config.image_sources if config.images_per_sample else [])
        self._shards = {
            s.name: ShardReader(
                manifests[s.name], rank, world_size, config.seed, config.shuffle_rows
            )
            for s in used
        }
        self._curriculum = Curriculum(config, rank, self.samples_per_step)
        self._spec = ClipSpec.from_data_config(config, distinct_frames=distinct_frames)
        self._image_sources = {s.name for s in config.image_sources}
        self._sample_index = 0
        self._cursors = dict.fromkeys(self._shards, 0)
        self._counters = {name: SourceCounters() for name in self._shards}
        self._warned: Counter[str] = Counter()
        start = start_step * self.samples_per_step
        for lo in range(0, start, _REPLAY_CHUNK):
            self._advance(*self._curriculum.plan(lo, min(lo + _REPLAY_CHUNK, start)))
        for counters in self._counters.values():  # replayed draws were not drawn by this run
            counters.drawn = 0

    @property
    def step(self) -> int:
        """Step of the next sample."""
        return self._sample_index // self.samples_per_step

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-source counters of consumed samples, for metrics."""
        return {name: asdict(c) for name, c in self._counters.items()}

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        first = self._sample_index
        for chunk in itertools.count(first, _PLAN_CHUNK):
            videos, images = self._curriculum.plan(chunk, chunk + _PLAN_CHUNK)
            for j in range(_PLAN_CHUNK):
                i = chunk + j
                if ((i - first) // self.batch_size) % workers != worker:
                    self._advance(videos[j : j + 1], images[j : j + 1])
                    continue
                sample = self._make_sample(i, int(videos[j]), images[j])
                self._advance(videos[j : j + 1], images[j : j + 1])
                self._count(sample)
                yield sample

    def observe_batch(self, batch: dict[str, Any]) -> None:
        """Advance the position past a collated batch produced by DataLoader workers."""
        indices = [int(i) for i in batch["sample_index"]]
        expected = list(range(self._sample_index, self._sample_index + len(indices)))
        if indices != expected:
            raise RuntimeError(
                f"batch holds samples {indices[:4]}..., expected {expected[:4]}...: the "
                f"DataLoader's batch_size must equal the dataset's ({self.batch_size})"
            )
        self._advance(*self._curriculum.plan(expected[0], expected[-1] + 1))
        self._count(batch)

    def state_dict(self) -> dict[str, Any]:
        """Data position after the samples consumed so far, plus counters."""
        return {
            "version": STATE_VERSION,
            "seed": self.config.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "samples_per_step": self.samples_per_step,
            "sample_index": self._sample_index,
            "step": self.step,
            # The generators are keyed by (seed, rank, sample index): no other RNG state exists.
            "sources": {
                name: {
                    "shard_rows": shard.length,
                    "draws": self._cursors[name],
                    "epoch": self._cursors[name] // shard.length,
                    "position": self._cursors[name] % shard.length,
                }
                for name, shard in self._shards.items()
            },
            "counters": self.counters(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a saved position; the config, rank layout and manifests must be unchanged."""
        current = self.state_dict()
        for key in ("version", "seed", "rank", "world_size", "samples_per_step"):
            if state.get(key) != current[key]:
                raise UserError(
                    f"data state: {key} was {state.get(key)!r} when saved, is {current[key]!r} now"
                )
        if set(state["sources"]) != set(current["sources"]):
            raise UserError(
                f"data state: saved with sources {sorted(state['sources'])}, "
                f"config has {sorted(current['sources'])}"
            )
        for name, saved in state["sources"].items():
            if saved["shard_rows"] != current["sources"][name]["shard_rows"]:
                raise UserError(
                    f"data state: source '{name}' had {saved['shard_rows']} rows per shard when "
                    f"saved, has {current['sources'][name]['shard_rows']} now (manifest changed?)"
                )
        self._sample_index = int(state["sample_index"])
        self._cursors = {name: int(saved["draws"]) for name, saved in state["sources"].items()}
        self._counters = {name: SourceCounters(**c) for name, c in state["counters"].items()}

    def _advance(self, videos: np.ndarray, images: np.ndarray) -> None:
        """Move past planned samples: count each source's draws."""
        for names, chosen in (
            (self._curriculum.clip_sources, videos),
            (self._curriculum.image_sources, images),
        ):
            for index, count in enumerate(np.bincount(chosen.ravel(), minlength=len(names))):
                if count:
                    self._cursors[names[index]] += int(count)
                    self._counters[names[index]].drawn += int(count)
        self._sample_index += len(videos)

    def _count(self, sample_or_batch: Sample) -> None:
        for source, reason in sample_or_batch["skips"]:
            counters = self._counters[source]
            setattr(counters, reason, getattr(counters, reason) + 1)
        for source in sample_or_batch["precomputed"]:
            self._counters[source].precomputed += 1

    def _make_sample(self, i: int, video_choice: int, image_choices: np.ndarray) -> Sample:
        skips: list[tuple[str, str]] = []
        source = self._curriculum.clip_sources[video_choice]
        load_clip = self._load_image_clip if source in self._image_sources else self._load_clip
        (video, indices), row = self._draw(i, 0, source, self._cursors[source], load_clip, skips)
        precomputed = [source] if video.is_floating_point() else []
        images, captions, image_ids, image_sources = [], [], [], []
        taken: Counter[str] = Counter()  # draws of each image source earlier in this sample
        for slot, choice in enumerate(image_choices, start=1):
            name = self._curriculum.image_sources[int(choice)]
            image, image_row = self._draw(
                i, slot, name, self._cursors[name] + taken[name], self._load_image, skips
            )
            taken[name] += 1
            images.append(image)
            captions.append(image_row["caption"] or "")
            image_ids.append(row_image_id(image_row))
            image_sources.append(name)
            if image.is_floating_point():
                precomputed.append(name)
        return {
            "video": video,
            "video_caption": row["caption"] or "",
            "images": _stack_if_uniform(images)
            if images
            else torch.empty((0, 3, self.config.height, self.config.width), dtype=torch.uint8),
            "image_captions": captions,
            "video_source": source,
            "image_sources": image_sources,
            "clip_id": row_image_id(row) if source in self._image_sources else row_clip_id(row),
            "image_ids": image_ids,
            "frame_indices": indices,
            "sample_index": i,
            "step": i // self.samples_per_step,
            "skips": skips,
            "precomputed": precomputed,
        }

    def _draw(
        self,
        i: int,
        slot: int,
        source: str,
        cursor: int,
        load: Callable[[Row, np.random.Generator], Any],
        skips: list[tuple[str, str]],
    ) -> tuple[Any, Row]:
        """Load the row at ``cursor`` of ``source``; replace it by random rows while unusable."""
        shard = self._shards[source]
        epoch, position = divmod(cursor, shard.length)
        last: SkipSample | None = None
        for attempt in range(self.config.max_attempts):
            rng = keyed_numpy(self.config.seed, _SAMPLE_STREAM, self.rank, i, slot, attempt)
            if attempt:
                position = int(rng.integers(shard.length))
            row = shard.row(epoch, position)
            try:
                return load(row, rng), row
            except SkipSample as skip:
                skips.append((source, skip.reason))
                self._warn(source, skip)
                last = skip
        raise RuntimeError(
            f"data source '{source}': {self.config.max_attempts} rows in a row were unusable "
            f"(last: {last}); the source looks broken"
        )

    def _load_clip(self, row: Row, rng: np.random.Generator) -> tuple[torch.Tensor, list[int]]:
        if self._window_offsets is None:
            offset = float(rng.random())
        else:
            offset = self._window_offsets[int(rng.integers(len(self._window_offsets)))]
        if self._latents is not None:
            indices = planned_row_frames(row, self._spec, offset)
            if indices is not None:
                moments = self._latents.get(LatentStore.clip_key(row_clip_id(row), indices))
                if moments is not None:
                    return moments, indices
        return load_clip_row(row, self._spec, offset)

    def _load_image(self, row: Row, rng: np.random.Generator) -> torch.Tensor:
        self._check_image_row(row)
        if self._latents is not None:
            moments = self._latents.get(LatentStore.image_key(row_image_id(row)))
            if moments is not None:
                return moments
        return load_image(row["uri"], self.config.height, self.config.width, self.config.storage_options)

    def _load_image_clip(self, row: Row, rng: np.random.Generator) -> tuple[torch.Tensor, list[int]]:
        """An image as a clip of ``num_frames`` frames (see :mod:`training.data.camera`)."""
        self._check_image_row(row)
        motion, config = self.config.image_clips, self.config
        margin = 2 * motion.max_shift
        image = load_image(row["uri"], config.height + margin, config.width + margin, config.storage_options)
        offsets = camera_path(motion, config.num_frames, rng)
        return image_clip(image, offsets, config.height, config.width), [0] * config.num_frames

    def _check_image_row(self, row: Row) -> None:
        if row["uri"] is None:
            raise SkipSample("undecodable", "row lacks uri")
        least = self.config.min_image_side
        if least is not None:
            sides = [side for side in (row["height"], row["width"]) if side is not None]
            if len(sides) < 2:
                raise SkipSample("too_small", "row lacks the image size that min_image_side needs")
            if min(sides) < least:
                raise SkipSample("too_small", f"{row['width']}x{row['height']} is under {least} pixels")

    def _warn(self, source: str, skip: SkipSample) -> None:
        self._warned[source] += 1
        if self._warned[source] <= _WARNINGS_PER_SOURCE:
            log.warning("data source '%s': skipped %s", source, skip)
        elif self._warned[source] == _WARNINGS_PER_SOURCE + 1:
            log.warning("data source '%s': further skips are only counted", source)


def _stack_if_uniform(items: Sequence[Any]) -> Any:
    """``torch.stack(items)`` when all are tensors of one shape and dtype, else a list."""
    first = items[0]
    if all(torch.is_tensor(t) and t.shape == first.shape and t.dtype == first.dtype for t in items):
        return torch.stack(list(items))
    return list(items)


def collate_samples(samples: Sequence[Sample]) -> dict[str, Any]:
    """Batch samples: tensors stacked ((B, T, 3, H, W), (B, M, 3, H, W)), strings as lists,
    ``frame_indices``/``sample_index``/``step`` as int64 tensors, ``skips`` and ``precomputed``
    concatenated. Items read from a latent store, of another shape than frames, stay lists."""
    return {
        "video": _stack_if_uniform([s["video"] for s in samples]),
        "images": _stack_if_uniform([s["images"] for s in samples]),
        "video_caption": [s["video_caption"] for s in samples],
        "image_captions": [s["image_captions"] for s in samples],
        "video_source": [s["video_source"] for s in samples],
        "image_sources": [s["image_sources"] for s in samples],
        "clip_id": [s["clip_id"] for s in samples],
        "image_ids": [s["image_ids"] for s in samples],
        "frame_indices": torch.tensor([s["frame_indices"] for s in samples], dtype=torch.int64),
        "sample_index": torch.tensor([s["sample_index"] for s in samples], dtype=torch.int64),
        "step": torch.tensor([s["step"] for s in samples], dtype=torch.int64),
        "skips": [skip for s in samples for skip in s["skips"]],
        "precomputed": [source for s in samples for source in s["precomputed"]],
    }
