"""Curriculum mix: which source each sample's clip and images come from, as a function of step.

Sample ``i`` of a rank belongs to step ``i // samples_per_step``. Its clip source is drawn from
the clip sources' weights at that step (the video sources, plus the image sources when images
become clips), and each of its M images independently from the image
sources' weights. The draws come from generators keyed by (seed, rank, block of samples), so the
plan for any range of samples is a pure, vectorised function: replaying the plan (to rebuild
shard cursors at a step) costs microseconds per step and no I/O.
"""

from __future__ import annotations

import numpy as np

from training.data.config import DataConfig, SourceConfig
from training.rng import keyed_numpy

_PLAN_STREAM = 3
_BLOCK = 1024  # samples per keyed generator


class Curriculum:
    """Source plan of one rank's sample stream."""

    def __init__(self, config: DataConfig, rank: int, samples_per_step: int) -> None:
        if samples_per_step < 1:
            raise ValueError(f"samples_per_step must be >= 1, got {samples_per_step}")
        self.clip_sources = [s.name for s in config.clip_sources]
        self.image_sources = [s.name for s in config.image_sources]
        self.images_per_sample = config.images_per_sample
        self.samples_per_step = samples_per_step
        self._clip_knots = [_knots(s) for s in config.clip_sources]
        self._image_knots = [_knots(s) for s in config.image_sources]
        self._seed = config.seed
        self._rank = rank
        self._cached: tuple[int, np.ndarray] | None = None

    def clip_weights(self, steps: np.ndarray) -> np.ndarray:
        """Unnormalised weights, shape (clip sources, len(steps))."""
        return _weights(self._clip_knots, steps)

    def image_weights(self, steps: np.ndarray) -> np.ndarray:
        """Unnormalised weights, shape (image sources, len(steps))."""
        return _weights(self._image_knots, steps)

    def plan(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Source indices for samples [start, stop): clips (n,) and images (n, M)."""
        n = stop - start
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros((0, self.images_per_sample), np.int64)
        uniforms = np.concatenate(
            [self._uniforms(b) for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1)]
        )
        offset = start % _BLOCK
        uniforms = uniforms[offset : offset + n]
        steps = np.arange(start, stop, dtype=np.int64) // self.samples_per_step
        videos = _choose(self.clip_weights(steps), uniforms[:, 0])
        if self.images_per_sample == 0:
            return videos, np.zeros((n, 0), np.int64)
        image_weights = self.image_weights(steps)
        images = np.stack(
            [_choose(image_weights, uniforms[:, 1 + j]) for j in range(self.images_per_sample)],
            axis=1,
        )
        return videos, images

    def _uniforms(self, block: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != block:
            rng = keyed_numpy(self._seed, _PLAN_STREAM, self._rank, block)
            self._cached = (block, rng.random((_BLOCK, 1 + self.images_per_sample)))
        return self._cached[1]


def _knots(source: SourceConfig) -> tuple[np.ndarray, np.ndarray]:
    steps, weights = zip(*source.schedule)
    return np.asarray(steps, np.float64), np.asarray(weights, np.float64)


def _weights(knots: list[tuple[np.ndarray, np.ndarray]], steps: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(steps, xs, ys) for xs, ys in knots])


def _choose(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Index of the source whose cumulative-weight interval holds ``uniform * total``.

    Zero-weight sources have empty intervals and are never chosen.
    """
    cumulative = np.cumsum(weights, axis=0)
    total = cumulative[-1]
    if np.any(total <= 0):
        raise RuntimeError("all source weights are zero at some step (run validate_sources first)")
    chosen = (uniforms * total >= cumulative).sum(axis=0)
    # uniform * total can round up to total; fall back to the last source with positive weight.
    last_positive = weights.shape[0] - 1 - np.argmax(weights[::-1] > 0, axis=0)
    return np.minimum(chosen, last_positive).astype(np.int64)
