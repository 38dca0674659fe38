"""Many curation inputs, cheaply: hard links of a few small videos, and a listing of them.

Scale tests and ``benchmarks/bench_curation_scale.py`` need thousands to hundreds of thousands of
inputs. Each input is a hard link (its own path, so its own URI and clip ids) to one of a few
small videos of different lengths and cuts, spread over folders of at most 1,000 files; the
listing (Parquet) gives each its caption and category, as ``lavie curate --inputs-from`` reads it.
Every input's outcome is its base video's, known in advance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lavie.synthetic.videos import write_scene_video

#: (scene lengths in frames, width, height) of the base videos; input i links to base i % len.
BASE_VIDEOS: tuple[tuple[tuple[int, ...], int, int], ...] = (
    ((24, 20), 128, 72),
    ((40,), 160, 96),
    ((20, 18, 30), 128, 72),
    ((60,), 96, 64),
)
FILES_PER_FOLDER = 1000


@dataclass(frozen=True)
class LinkedInputs:
    root: Path
    listing: Path
    count: int

    def base_of(self, index: int) -> tuple[tuple[int, ...], int, int]:
        return BASE_VIDEOS[index % len(BASE_VIDEOS)]

    def clips_of(self, index: int) -> int:
        return len(self.base_of(index)[0])

    @property
    def clips(self) -> int:
        """Scenes over all inputs: the clips + clip rejects a run must produce, no more, no less."""
        return sum(self.clips_of(i) for i in range(self.count))


def input_path(root: Path, index: int) -> Path:
    return root / "videos" / f"{index // FILES_PER_FOLDER:05d}" / f"v{index:07d}.mp4"


def write_linked_inputs(root: str | Path, count: int) -> LinkedInputs:
    """``count`` inputs under ``root/videos`` and their listing ``root/listing.parquet``."""
    root = Path(root)
    bases = []
    for number, (scenes, width, height) in enumerate(BASE_VIDEOS):
        base = root / "base" / f"base{number}.mp4"
        if not base.exists():
            write_scene_video(base, scenes, width, height, seed=number)
        bases.append(base)
    videos, captions, categories = [], [], []
    for index in range(count):
        path = input_path(root, index)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(bases[index % len(bases)], path)
        videos.append(str(path))
        captions.append(f"synthetic input number {index} with moving shapes")
        categories.append(("Travel", "Sports", "Music")[index % 3])
    listing = root / "listing.parquet"
    table = pa.table({"video": videos, "caption": captions, "category": categories})
    pq.write_table(table, listing, row_group_size=10_000)  # a reader holds one row group at a time
    return LinkedInputs(root, listing, count)
