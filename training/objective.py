"""The diffusion objective of the base model (paper, eq. 3) on the DDPM schedule of the SD folder.

    L = E ||target - model(z_t, t, c_V)||^2 over the video frames
        + alpha * E ||target - model(x_t, t, c_I)||^2 over the image frames

``target`` is the noise (ε-prediction, SD 1.x) or the velocity ``alpha_t * eps - sigma_t * z_0``
(v-prediction). Each sample draws one timestep shared by its video frames and its images; noise is
independent per frame. Draws come from generators keyed by (seed, step, rank, micro-step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from training import rng

PredictionType = Literal["epsilon", "v_prediction"]


@dataclass
class LossParts:
    total: torch.Tensor
    video: torch.Tensor
    image: torch.Tensor  # zero when the batch has no image frames


def joint_loss(
    prediction: torch.Tensor, target: torch.Tensor, num_video_frames: int, image_loss_weight: float
) -> LossParts:
    """MSE over the first ``num_video_frames`` frames + ``image_loss_weight`` x MSE over the rest,
    for ``(B, C, F, H, W)`` tensors; computed in float32."""
    prediction, target = prediction.float(), target.float()
    video = F.mse_loss(prediction[:, :, :num_video_frames], target[:, :, :num_video_frames])
    if prediction.shape[2] > num_video_frames:
        image = F.mse_loss(prediction[:, :, num_video_frames:], target[:, :, num_video_frames:])
    else:
        image = prediction.new_zeros(())
    return LossParts(total=video + image_loss_weight * image, video=video, image=image)


class DiffusionObjective:
    """Noise, timesteps and targets from diffusers' ``DDPMScheduler``."""

    def __init__(
        self,
        scheduler_folder: str | Path,
        prediction_type: PredictionType = "epsilon",
        image_loss_weight: float = 1.0,
    ) -> None:
        from diffusers import DDPMScheduler

        # The folder's own prediction_type describes the 2D model it came with; the trainer's
        # objective is a training choice, so it overrides it.
        self.scheduler = DDPMScheduler.from_pretrained(scheduler_folder, prediction_type=prediction_type)
        self.prediction_type = prediction_type
        self.image_loss_weight = image_loss_weight
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)

    def noised(
        self, latents: torch.Tensor, *, seed: int, step: int, rank: int, micro: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noisy latents, timesteps (B,), target)`` for clean ``latents`` ``(B, C, F, h, w)``."""
        device = latents.device
        noise = torch.randn(
            latents.shape,
            generator=rng.keyed_generator(seed, rng.NOISE, step, rank, micro, device=device),
            device=device,
            dtype=latents.dtype,
        )
        timesteps = torch.randint(
            0,
            self.num_train_timesteps,
            (latents.shape[0],),
            generator=rng.keyed_generator(seed, rng.TIMESTEPS, step, rank, micro, device=device),
            device=device,
        )
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        target = noise if self.prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, timesteps)
        return noisy, timesteps, target

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, num_video_frames: int) -> LossParts:
        return joint_loss(prediction, target, num_video_frames, self.image_loss_weight)
