"""The generated side of a benchmark: prompts through the cascade's batch generation on Ray.

The benchmarks (:mod:`evaluation.ucf101`, :mod:`evaluation.msrvtt`) hand their ``(prompt, seed)``
lists to ``cascade.batch.generate_batch`` (what ``lavie generate --prompts`` runs) with the base
stage only. It writes ``<out>/generated/videos/<id>.mp4`` and a row per finished prompt, the id a
digest of prompt, seed and settings: a re-run generates only what is missing. The output opens as
a video set whose captions are the prompts (:func:`evaluation.sets.open_generated`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from cascade.batch import PromptItem, generate_batch
from cascade.pipelines.cascade import CascadePipeline
from cascade.pipelines.settings import GenerationSettings
from evaluation.sets import VideoSet, open_generated
from lavie.core.config import StrictModel
from lavie.core.errors import UserError
from lavie.core.storage import join

GENERATED_FOLDER = "generated"


class GenerationOptions(StrictModel):
    """How the base model samples. Defaults: the paper's 16×320×512; ``steps``/``guidance`` None keep
    the release's sampler settings (:class:`~cascade.pipelines.settings.GenerationSettings`)."""

    num_frames: int = Field(16, ge=1)
    height: int = Field(320, gt=0)
    width: int = Field(512, gt=0)
    steps: int | None = Field(None, ge=1)
    guidance: float | None = Field(None, ge=0)
    workers: int = Field(1, ge=1)  # generation actors (one GPU each when the cluster has GPUs)

    def settings(self) -> GenerationSettings:
        fields: dict[str, Any] = {"stages": ["base"], "num_frames": self.num_frames, "height": self.height,
                                  "width": self.width}  # fmt: skip
        if self.steps is not None:
            fields["base_steps"] = self.steps
        if self.guidance is not None:
            fields["base_guidance"] = self.guidance
        return GenerationSettings(**fields)


def check_cascade(models: str, options: GenerationOptions) -> None:
    """The cascade folder holds a base model: checked before any cluster starts (one line if not)."""
    CascadePipeline.check(models, options.settings())


def generate_set(
    models: str,
    prompts: Sequence[tuple[str, int]],
    out: str,
    options: GenerationOptions,
    ensure_ray: Callable[[], None],
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[VideoSet, dict[str, Any]]:
    """One base-model video per ``(prompt, seed)`` under ``out/generated``: the set, and what to
    record of the generation. A prompt that failed is a one-line error (a re-run retries it)."""
    settings = options.settings()
    folder = join(out, GENERATED_FOLDER)
    items = [PromptItem(prompt=prompt, seed=seed) for prompt, seed in prompts]
    done = {"rows": 0}

    def count(row: dict[str, Any]) -> None:
        done["rows"] += 1
        if on_progress:
            on_progress("generate", done["rows"], len(items))

    ensure_ray()
    result = generate_batch(models, items, folder, settings, workers=options.workers, use_ray=True, on_row=count)
    if result.failed:
        raise UserError(f"{folder}: {result.failed} of {len(items)} video(s) failed to generate (see rows/*.json); re-run to retry")
    record = {"models": str(models), "settings": settings.model_dump(mode="json"), "workers": options.workers,
              "generated": result.generated, "reused": result.skipped}  # fmt: skip
    return open_generated(folder), record
