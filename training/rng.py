"""Randomness keyed by what it is for: (seed, stream, step, rank, micro-step).

Every random draw of a training step (caption dropout, VAE posterior sample, noise, timesteps)
comes from a generator seeded by its position, so a run resumed at step ``s`` (after a stop or a
worker failure) draws exactly what the uninterrupted run drew at step ``s``; no generator state
needs checkpointing. Same scheme as :mod:`training.data.rng`.
"""

from __future__ import annotations

import numpy as np
import torch

# Streams: one per purpose, so that adding a draw to one never shifts another.
CAPTION_DROPOUT = 11
VAE_SAMPLE = 12
NOISE = 13
TIMESTEPS = 14
PROBE = 15
INIT = 16


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
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))
