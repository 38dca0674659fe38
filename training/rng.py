"""Randomness keyed by what it is for: every random choice is drawn from a generator keyed by
(seed, purpose, position...), never by advancing one shared generator.

Every draw of a training step (caption dropout, VAE posterior sample, noise, timesteps) comes from
a generator keyed by (seed, stream, step, rank, micro-step), and every choice of the data stream
(shard order, curriculum, replacement rows) by (seed, purpose, rank, sample index, ...). Each draw
is then a pure function of its position: a run resumed at step ``s`` (after a stop or a worker
failure), or a DataLoader worker that skips other workers' samples, draws exactly what the
uninterrupted single process drew. No generator state needs checkpointing.
"""

from __future__ import annotations

import numpy as np
import torch

# Streams of the training step: one per purpose, so that adding a draw to one never shifts another.
CAPTION_DROPOUT = 11
VAE_SAMPLE = 12
NOISE = 13
TIMESTEPS = 14
PROBE = 15
INIT = 16
PATCH = 17  # where a sample's training patch is cut (interpolation, VSR)
NOISE_LEVEL = 18  # the VSR low-resolution input's noise level
LOW_RES_NOISE = 19  # the noise added to it


def key_seed(seed: int, *key: int) -> int:
    """A 63-bit integer seed determined by ``seed`` and the non-negative ints in ``key``."""
    state = np.random.SeedSequence([seed, *key]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def keyed_generator(seed: int, *key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` keyed by ``seed`` and ``key``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(key_seed(seed, *key))
    return generator


def keyed_numpy(seed: int, *key: int) -> np.random.Generator:
    """A numpy generator determined by ``seed`` and the non-negative integers in ``key``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))
