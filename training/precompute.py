"""`lavie train CONFIG --precompute-latents`: fill the latent store before training, on Ray Data.

Every row group of every source's manifest is one task. A pool of encoder actors (one per
training worker of the config, each asking for a GPU when the config trains on GPUs) reads its
rows, decodes every window of each clip (``data.windows_per_clip`` of them, the same windows
the data stream draws from) and each image exactly as the trainer would, encodes them with the
frozen VAE, and writes the moments to the store (:mod:`training.latent_store`). Items already
stored are skipped, so an interrupted job re-run picks up where it stopped. Unusable rows are
counted by reason, as the trainer counts them.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lavie.core.errors import UserError, require_ray
from training.config import TrainConfig, seal, unseal
from training.specs import spec_class

COUNTS = ("encoded", "stored", "too_short", "undecodable")


@dataclass
class PrecomputeResult:
    store: str
    clips: dict[str, int]  # per outcome, counted per clip window
    images: dict[str, int]  # per outcome
    seconds: float


class LatentEncoder:
    """Ray Data actor: row groups in, items encoded into the store, counts out."""

    def __init__(self, sealed: dict[str, Any]) -> None:
        import torch
        from diffusers import AutoencoderKL

        from training.data import validate_sources
        from training.data.decode import ClipSpec

        self.config = unseal(sealed)
        self.manifests = validate_sources(self.config.data)
        on_gpu = self.config.scaling.use_gpu and torch.cuda.is_available()
        self.device = torch.device("cuda" if on_gpu else "cpu")
        # The trainer's rule for its frozen models (training.trainer), so stored moments match.
        self.dtype = torch.bfloat16 if self.config.deepspeed.bf16 and on_gpu else torch.float32
        self.vae = AutoencoderKL.from_pretrained(f"{self.config.model.pretrained}/vae", torch_dtype=self.dtype)
        self.vae.to(self.device).eval().requires_grad_(False)
        self.store = self.config.latent_store()
        self.spec = ClipSpec.from_data_config(self.config.data)
        self.offsets = self.config.data.window_offsets() or []

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts: Counter[str] = Counter()
        for source, group in zip(batch["source"], batch["group"]):
            manifest = self.manifests[str(source)]
            encode = self._clip if manifest.kind == "video" else self._image
            for row in manifest.read_group(int(group)).to_pylist():
                encode(row, counts)
        return {key: np.array([counts[key]]) for key in _output_keys()}

    def _moments(self, frames: Any) -> Any:
        from cascade.encoders import vae_moments

        return vae_moments(self.vae, frames, self.config.loader.vae_batch_frames, self.device, self.dtype).cpu()

    def _clip(self, row: dict[str, Any], counts: Counter[str]) -> None:
        from training.data.decode import SkipSample, load_clip_row, planned_row_frames, row_clip_id
        from training.latent_store import LatentStore

        for offset in self.offsets:
            try:
                planned = planned_row_frames(row, self.spec, offset)
                if planned is not None and LatentStore.clip_key(row_clip_id(row), planned) in self.store:
                    counts["clip_stored"] += 1
                    continue
                frames, indices = load_clip_row(row, self.spec, offset)
            except SkipSample as skip:
                counts[f"clip_{skip.reason}"] += len(self.offsets)  # the same for every window
                return
            key = LatentStore.clip_key(row_clip_id(row), indices)
            if planned is None and key in self.store:  # frames known only after decoding
                counts["clip_stored"] += 1
                continue
            self.store.put(key, self._moments(frames))
            counts["clip_encoded"] += 1

    def _image(self, row: dict[str, Any], counts: Counter[str]) -> None:
        from training.data.decode import SkipSample, load_image, row_image_id
        from training.latent_store import LatentStore

        try:
            if row["uri"] is None:
                raise SkipSample("undecodable", "row lacks uri")
            key = LatentStore.image_key(row_image_id(row))
            if key in self.store:
                counts["image_stored"] += 1
                return
            data = self.config.data
            image = load_image(row["uri"], data.height, data.width, data.storage_options)
        except SkipSample as skip:
            counts[f"image_{skip.reason}"] += 1
            return
        self.store.put(key, self._moments(image.unsqueeze(0))[0])
        counts["image_encoded"] += 1


def _output_keys() -> list[str]:
    return [f"{kind}_{outcome}" for kind in ("clip", "image") for outcome in COUNTS]


def precompute_latents(
    config: TrainConfig, *, connect: Callable[[], None] | None = None, quiet: bool = False, stream: Any = None
) -> PrecomputeResult:
    """Check the inputs (one-line :class:`UserError`), then encode every clip window and image of
    the config's sources into ``loader.latent_cache``. ``connect`` joins the cluster once the
    checks pass; without it, Ray must already be connected."""
    from training.data import validate_sources

    stream = stream or sys.stdout
    if config.loader.latent_cache is None:
        raise UserError("--precompute-latents: set loader.latent_cache, the folder to fill")
    if config.data.windows_per_clip is None:
        raise UserError(
            "--precompute-latents: set data.windows_per_clip; with windows anywhere in a clip there is "
            "no finite set of windows to precompute"
        )
    manifests = validate_sources(config.data)
    spec_class(config.model.kind)(config).check()
    used = {s.name for s in config.data.video_sources}
    if config.data.images_per_sample:
        used |= {s.name for s in config.data.image_sources}
    manifests = {name: manifest for name, manifest in manifests.items() if name in used}
    store = config.latent_store()

    (connect or (lambda: require_ray("--precompute-latents")))()
    import ray

    tasks = [
        {"source": name, "group": group} for name, manifest in manifests.items() for group in range(len(manifest.group_rows))
    ]
    started = time.perf_counter()
    gpus = 1 if config.scaling.use_gpu else 0
    encoded = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        LatentEncoder,
        fn_constructor_kwargs={"sealed": seal(config)},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=config.scaling.num_workers),
        num_gpus=gpus,
        num_cpus=float(config.scaling.resources_per_worker.get("CPU", 1)),
    )
    totals: Counter[str] = Counter()
    live = not quiet and hasattr(stream, "isatty") and stream.isatty()
    for done, row in enumerate(encoded.iter_rows(), start=1):
        totals.update({key: int(value) for key, value in row.items()})
        if live:
            stream.write(
                f"\r[precompute] row groups {done}/{len(tasks)}: {totals['clip_encoded']} clip windows and "
                f"{totals['image_encoded']} images encoded\033[K"
            )
            stream.flush()
    if live:
        stream.write("\n")
    result = PrecomputeResult(
        store=str(store.root),
        clips={outcome: totals[f"clip_{outcome}"] for outcome in COUNTS},
        images={outcome: totals[f"image_{outcome}"] for outcome in COUNTS},
        seconds=time.perf_counter() - started,
    )
    if not quiet:
        for kind, counts in (("clip windows", result.clips), ("images", result.images)):
            print(
                f"[precompute] {kind}: {counts['encoded']} encoded, {counts['stored']} already stored, "
                f"{counts['too_short']} too short, {counts['undecodable']} undecodable",
                file=stream,
            )
        print(f"[precompute] latents in {result.store} ({result.seconds:.1f}s)", file=stream, flush=True)
    return result
