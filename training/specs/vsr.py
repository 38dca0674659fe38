"""The video super-resolution model (paper, sections 4.3 and 5.2): the x4 upscaler made temporal.

Starting model: a local ``stable-diffusion-x4-upscaler`` folder (``model.pretrained``), its 2D
UNet inflated with zero-initialised temporal layers; or ``model.unet``, a VSR folder (an imported
release VSR, an earlier export). Only the temporal layers train (``trainable`` defaults to
``temporal``): the spatial layers are frozen and stay bit-identical.

A sample is a clip of high-resolution frames, of which a random ``patch_size`` window is kept
(the paper: 320x320). Its VAE latents (the upscaler's VAE, x4) are the target's clean latents. The
low-resolution input is the patch downsampled x4 (:func:`training.patches.downsample_x4`: 4x4
box means, RGB in [-1, 1]), noised by the folder's ``low_res_scheduler`` at a noise level drawn
uniformly in ``[0, max_noise_level]`` per sample, and that level is the class label (as the
VSR pipeline does at inference, at its fixed level). Objective: v-prediction on the upscaler's
schedule (``scheduler/``). Images join as clips filmed by a simulated hand-held camera
(``data.image_clips``, :mod:`training.data.camera`), mixed with the videos by the curriculum;
``data.min_image_side`` keeps large images only (the paper: 1024).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from cascade.models import VSRUNet3DModel
from cascade.models.vsr import LOW_RES_CHANNELS
from lavie.core.config import StrictModel, read_mapping
from lavie.core.errors import UserError
from training import rng
from training.conditioning import UNetInputs
from training.patches import crop_patches, downsample_x4
from training.specs.base_model import BaseModelSpec
from training.specs.patched import check_patch_fits, check_patch_training, patch_generator
from training.specs.spec import DrawKey, ModelInfo

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.latent_store import LatentStore

#: What an x4-upscaler folder holds beyond a Stable Diffusion folder's parts.
UPSCALER_PARTS = ("low_res_scheduler", "model_index.json")


class VSROptions(StrictModel):
    """``model.options`` of the VSR model."""

    # The high-resolution training patch, (height, width) in pixels (the paper: 320x320).
    patch_size: tuple[int, int] = (320, 320)
    # Noise levels are drawn in [0, max_noise_level]; unset: the folder's model_index.json (350).
    max_noise_level: int | None = Field(None, ge=0)


@dataclass
class LowResInput:
    """The low-resolution conditioning of a batch: the x4 downsample, its noise level, noised."""

    clean: torch.Tensor  # (B, 3, F, h, w) in [-1, 1]
    noise_level: torch.Tensor  # (B,) int64
    noisy: torch.Tensor  # (B, 3, F, h, w)


class VSRModelSpec(BaseModelSpec):
    kind = "vsr"
    model_class = VSRUNet3DModel
    Options = VSROptions
    default_trainable = "temporal"
    default_prediction_type = "v_prediction"

    @classmethod
    def validate_config(cls, config: TrainConfig) -> None:
        super().validate_config(config)
        check_patch_training(config)
        if config.objective.prediction_type == "epsilon":
            raise UserError("objective.prediction_type: the x4 upscaler is a v-prediction model; leave it unset")

    # ------------------------------------------------------------------ driver side
    def check_folder(self, root: Path) -> None:
        missing = [part for part in UPSCALER_PARTS if not (root / part).exists()]
        if missing:
            raise UserError(
                f"model.pretrained: {root} is not an x4-upscaler folder (it lacks {', '.join(missing)}); the VSR "
                "model starts from a local stable-diffusion-x4-upscaler folder"
            )
        super().check_folder(root)

    def condition_channels(self, latent_channels: int) -> int:
        return LOW_RES_CHANNELS

    def frame_size(self) -> tuple[int, int]:
        return self.options.patch_size

    def check(self) -> ModelInfo:
        info = super().check()
        check_patch_fits(self.options.patch_size, self.config)
        classes = info.model_config.get("num_class_embeds")
        if classes is not None and self.max_noise_level() >= classes:
            raise UserError(
                f"model.options.max_noise_level: {self.max_noise_level()} is not a class of the UNet's "
                f"noise-level embedding ({classes} classes)"
            )
        return info

    def max_noise_level(self) -> int:
        if self.options.max_noise_level is not None:
            return self.options.max_noise_level
        index = Path(self.config.model.pretrained) / "model_index.json"
        level = read_mapping(index, f"model.pretrained: {index}").get("max_noise_level")
        if not isinstance(level, int):
            raise UserError(f"model.pretrained: {index} has no max_noise_level; set model.options.max_noise_level")
        return level

    # ------------------------------------------------------------------ worker side
    def prepare(
        self, device: torch.device, frozen_dtype: torch.dtype, model_dtype: torch.dtype, latents: LatentStore | None
    ) -> None:
        from diffusers import DDPMScheduler

        super().prepare(device, frozen_dtype, model_dtype, latents)
        self.device = device
        self.low_res_scheduler = DDPMScheduler.from_pretrained(Path(self.config.model.pretrained) / "low_res_scheduler")
        self.top_noise_level = self.max_noise_level()

    def pixels(self, batch: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        return crop_patches(dict(batch), self.options.patch_size, patch_generator(key))

    def low_res_input(self, pixels: Mapping[str, Any], key: DrawKey) -> LowResInput:
        """The x4 downsample of the batch's patches, noised at a random level per sample."""
        frames = torch.cat([pixels["video"], pixels["images"]], dim=1)  # (B, F, 3, H, W) uint8
        clean = downsample_x4(frames.to(self.device)).transpose(1, 2).contiguous()
        levels = torch.randint(
            0, self.top_noise_level + 1, (clean.shape[0],),
            generator=rng.keyed_generator(key.seed, rng.NOISE_LEVEL, key.step, key.rank, key.micro),
        ).to(self.device)  # fmt: skip
        noise = torch.randn(
            clean.shape,
            generator=rng.keyed_generator(
                key.seed, rng.LOW_RES_NOISE, key.step, key.rank, key.micro, device=self.device
            ),
            device=self.device,
        )
        noisy = self.low_res_scheduler.add_noise(clean, noise, levels)
        return LowResInput(clean=clean, noise_level=levels, noisy=noisy)

    def unet_inputs(self, inputs: UNetInputs, pixels: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        low_res = self.low_res_input(pixels, key)
        return {
            "added_cond": low_res.noisy,
            "class_labels": low_res.noise_level,
            "num_image_frames": inputs.num_image_frames,
        }

    def probe_inputs(self, model: torch.nn.Module) -> dict[str, Any]:
        return {**super().probe_inputs(model), "class_labels": torch.tensor([self.config.run.seed % 300 + 20])}
