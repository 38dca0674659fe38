"""The fixed bins of every histogram in the report, chosen once so that reports compare.

A histogram with boundaries ``b0 < b1 < ... < bn`` has ``n + 1`` bins: below ``b0``, between
consecutive boundaries, and from ``bn`` up. A value equal to a boundary goes to the bin above it
(bins are ``[a, b)``) unless that boundary is listed in ``closed_below``, where it stays in the bin
below (``(a, b]``). Nothing is clipped: the first and last bins are open-ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Bins:
    name: str
    unit: str
    boundaries: tuple[float, ...]
    labels: tuple[str, ...]
    closed_below: frozenset[float] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.boundaries) + 1:
            raise ValueError(f"{self.name}: {len(self.boundaries)} boundaries need {len(self.boundaries) + 1} labels")
        if list(self.boundaries) != sorted(set(self.boundaries)):
            raise ValueError(f"{self.name}: boundaries must increase strictly")

    def assign(self, values: np.ndarray) -> np.ndarray:
        """The bin index of each value (values must be finite)."""
        index = np.zeros(len(values), dtype=np.int64)
        for boundary in self.boundaries:
            index += (values > boundary) if boundary in self.closed_below else (values >= boundary)
        return index

    def describe(self) -> dict:
        """The bin definition as written into stats.json."""
        return {
            "unit": self.unit,
            "boundaries": list(self.boundaries),
            "labels": list(self.labels),
            "closed_below": sorted(self.closed_below),
            "rule": "a value equal to a boundary goes to the bin above it, "
            "except for boundaries in closed_below, where it stays in the bin below",
        }


# Clip duration in seconds, [a, b) bins. The finest bins cover the 2-10 s where most
# single-scene clips fall; the curation floor of 16 frames is about 0.5-0.7 s.
DURATION_BINS = Bins(
    name="duration_sec",
    unit="seconds",
    boundaries=(2, 4, 6, 8, 10, 15, 20, 30, 60),
    labels=("< 2 s", "2–4 s", "4–6 s", "6–8 s", "8–10 s", "10–15 s", "15–20 s", "20–30 s", "30–60 s", "≥ 60 s"),
)

# Caption length in words, [a, b) bins on integers. 3 is the curation minimum, so the first bin
# holds exactly the captions curation would drop; 9–11 is centred on the paper's typical 10 words.
CAPTION_WORD_BINS = Bins(
    name="caption_words",
    unit="words",
    boundaries=(3, 6, 9, 12, 15, 20, 25, 30, 40),
    labels=("0–2", "3–5", "6–8", "9–11", "12–14", "15–19", "20–24", "25–29", "30–39", "≥ 40"),
)

# The paper's aesthetic buckets (Fig. 7a): below 4, from 4 to 6 inclusive, above 6.
AESTHETIC_BINS = Bins(
    name="aesthetic_score",
    unit="LAION aesthetic score",
    boundaries=(4, 6),
    labels=("< 4", "4–6", "> 6"),
    closed_below=frozenset({6}),
)

# Height classes (Fig. 7b), named after the largest standard height a clip reaches: 360p is
# [360, 480), 480p is [480, 720), 720p is [720, 1080), 1080p is [1080, 1440) so that 1088- or
# 1200-high encodes count as 1080p, and > 1080p starts at 1440 (QHD, 4K...). Classes go by the
# stored height, as the curation's resolution filter does, so a portrait 1080×1920 clip is > 1080p.
HEIGHT_BINS = Bins(
    name="height",
    unit="pixels",
    boundaries=(360, 480, 720, 1080, 1440),
    labels=("< 360p", "360p", "480p", "720p", "1080p", "> 1080p"),
)

# Motion score (curation.steps.motion: mean displacement / (width + height)). The first boundary is
# NeMo Curator's static-clip threshold, 0.00098; the others double roughly, up to fast pans.
MOTION_BINS = Bins(
    name="motion_score",
    unit="mean motion / (width + height)",
    boundaries=(0.00098, 0.002, 0.005, 0.01, 0.02),
    labels=("< 0.00098 (static)", "0.00098–0.002", "0.002–0.005", "0.005–0.01", "0.01–0.02", "≥ 0.02"),
)

# Overlay score: the classifier's probability of overlaid text or a watermark, in tenths and fifths.
OVERLAY_BINS = Bins(
    name="overlay_score",
    unit="probability of overlaid text or watermark",
    boundaries=(0.1, 0.3, 0.5, 0.7, 0.9),
    labels=("< 0.1", "0.1–0.3", "0.3–0.5", "0.5–0.7", "0.7–0.9", "≥ 0.9"),
)

ALL_BINS = (DURATION_BINS, CAPTION_WORD_BINS, AESTHETIC_BINS, HEIGHT_BINS, MOTION_BINS, OVERLAY_BINS)
