"""What the kinds that train on random patches share (interpolation, VSR): their checks and the
generator that places a step's patches (:func:`training.patches.crop_patches` cuts them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lavie.core.errors import UserError
from training import rng
from training.specs.spec import DrawKey

if TYPE_CHECKING:
    from training.config import TrainConfig


def patch_generator(key: DrawKey) -> torch.Generator:
    """Where the step's patches are cut: keyed like every other draw of the step."""
    return rng.keyed_generator(key.seed, rng.PATCH, key.step, key.rank, key.micro)


def check_patch_training(config: TrainConfig) -> None:
    """What training on patches rules out: extra images (clips only) and stored latents."""
    kind = config.model.kind
    if config.data.images_per_sample:
        raise UserError(f"data.images_per_sample: the {kind} model trains on clips only; set it to 0")
    if config.loader.latent_cache is not None:
        raise UserError(f"loader.latent_cache: the {kind} model encodes random patches, which cannot be stored")


def check_patch_fits(patch: tuple[int, int], config: TrainConfig) -> None:
    data = config.data
    if patch[0] > data.height or patch[1] > data.width:
        raise UserError(
            f"model.options.patch_size: {patch[0]}x{patch[1]} does not fit the {data.height}x{data.width} frames"
        )
