"""`lavie eval ucf101`: the paper's zero-shot UCF-101 FVD (Table 1: LaVie 526.30).

1. The classes are read from the real set: a UCF-101 file is named ``v_<Class>_g<group>_c<clip>``
   (the class folder is used when a name does not follow that pattern). ``classes`` restricts
   the run to some of them, and then the real set to their videos.
2. Each class name becomes a prompt (CamelCase split into lower-case words: ``ApplyEyeMakeup`` →
   ``apply eye makeup``), sampled ``per_class`` times (100 in the paper: 10,100 videos) at 16×320×512
   by the base model, seeds ``seed``, ``seed + 1``, … in class order.
3. FVD of the generated videos against the real ones (:func:`evaluation.fvd.compute_fvd`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import Field

from evaluation.features import PoolOptions, connect_once
from evaluation.fvd import FvdProtocol, compute_fvd, load_networks
from evaluation.generation import GenerationOptions, check_cascade, generate_set
from evaluation.sets import VideoItem, open_set
from lavie.core.config import StrictModel
from lavie.core.errors import UserError

_UCF_NAME = re.compile(r"^v_([A-Za-z]+)_g\d+_c\d+$")
_CAMEL_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
PROMPT_RULE = "the class name with its CamelCase split into lower-case words (ApplyEyeMakeup -> apply eye makeup)"


class Ucf101Protocol(StrictModel):
    per_class: int = Field(100, ge=1)
    classes: list[str] | None = None  # None: every class of the real set (101 for UCF-101)
    seed: int = 0


def class_of(item: VideoItem) -> str:
    """The UCF-101 class of a video: from its file name, else its folder's name."""
    stem = posixpath.splitext(posixpath.basename(item.uri))[0]
    match = _UCF_NAME.match(stem)
    return match.group(1) if match else posixpath.basename(posixpath.dirname(item.uri))


def class_prompt(name: str) -> str:
    """``ApplyEyeMakeup`` → ``apply eye makeup``; ``YoYo`` → ``yo yo``."""
    return " ".join(word.lower() for word in _CAMEL_WORD.findall(name)) or name


def class_prompts(classes: Sequence[str], per_class: int, seed: int) -> list[tuple[str, int]]:
    """(prompt, seed) for every sample: ``per_class`` per class, consecutive seeds in class order."""
    return [(class_prompt(name), seed + i * per_class + k) for i, name in enumerate(classes) for k in range(per_class)]


def measure_ucf101(
    real: str,
    models: str,
    *,
    i3d: str | None = None,
    out: str,
    videomae: str | None = None,
    features: Sequence[str] | None = None,
    protocol: Ucf101Protocol | None = None,
    fvd: FvdProtocol | None = None,
    generation: GenerationOptions | None = None,
    stats_cache: str | None = "default",
    pool: PoolOptions | None = None,
    storage_options: Mapping[str, Any] | None = None,
    connect: Callable[[], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate the class-prompted videos and measure their FVD against ``real``; writes
    ``out/result.json`` and ``out/report.html`` (generated videos in ``out/generated``).
    ``i3d``, ``videomae``, ``features``: the feature networks, as :func:`~evaluation.fvd.compute_fvd`."""
    protocol = protocol or Ucf101Protocol()
    generation = generation or GenerationOptions()
    check_cascade(models, generation)
    real_set = open_set(real, storage_options)
    by_class: dict[str, list[VideoItem]] = {}
    for item in real_set.items:
        by_class.setdefault(class_of(item), []).append(item)
    classes = sorted(by_class) if protocol.classes is None else list(protocol.classes)
    unknown = [name for name in classes if name not in by_class]
    if unknown:
        raise UserError(f"{real}: no video of class '{unknown[0]}' (classes: {', '.join(sorted(by_class)[:5])}, ...)")
    if protocol.classes is not None:
        real_set = replace(real_set, items=tuple(item for name in classes for item in by_class[name]))
    real_set.require(2, "FVD (real set)")
    load_networks(i3d, videomae, features, fvd or FvdProtocol())  # a bad checkpoint fails now, not after hours of generation
    ensure_ray = connect_once(connect, "ucf101")
    prompts = class_prompts(classes, protocol.per_class, protocol.seed)
    fake_set, generated = generate_set(models, prompts, out, generation, ensure_ray, on_progress)
    benchmark = {
        "benchmark": "ucf101",
        "classes": len(classes),
        "per_class": protocol.per_class,
        "seed": protocol.seed,
        "prompts": PROMPT_RULE,
        "generation": generated,
    }
    return compute_fvd(
        real_set, fake_set, i3d=i3d, videomae=videomae, features=features, out=out, protocol=fvd, stats_cache=stats_cache, pool=pool,
        storage_options=storage_options, connect=ensure_ray, on_progress=on_progress, extra={"benchmark": benchmark},
    )  # fmt: skip
