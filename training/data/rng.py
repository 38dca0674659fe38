"""Counter-based randomness: every random choice is drawn from a generator keyed by what it is for.

Keying by (seed, purpose, rank, sample index, ...) instead of advancing one shared generator makes
each draw a pure function of its position in the stream, so a resumed stream, or a DataLoader
worker that skips other workers' samples, draws exactly what an uninterrupted single process
would. The "RNG state" to checkpoint is then just the seed and the sample counter.
"""

from __future__ import annotations

import numpy as np


def keyed_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator determined by ``seed`` and the non-negative integers in ``key``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))
