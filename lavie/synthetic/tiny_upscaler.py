"""A tiny, randomly initialised ``stable-diffusion-x4-upscaler`` folder in the diffusers layout.

``write_tiny_upscaler(folder)`` writes the parts the VSR stage reads from the real upscaler, at toy
size and with the real upscaler's schedules::

    model_index.json        StableDiffusionUpscalePipeline, max_noise_level 350
    unet/                   UNet2DConditionModel: 7 input channels (4 latent + 3 low-res RGB),
                            the noise level as a class label, cross-attention-only first level
    vae/                    AutoencoderKL, x4 downsampling, scaling_factor 0.08333
    text_encoder/, tokenizer/
    scheduler/              DDIMScheduler, v-prediction
    low_res_scheduler/      DDPMScheduler (noises the low-res input)

Used by the tests, the benchmarks and the demo; the same seed always writes the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lavie.synthetic.tiny_sd import TINY_VAE_CONFIG, write_model_index, write_tiny_clip_text

#: The x4 upscaler's layout at toy size (its noise-level embedding keeps the real 1000 classes, so
#: the real noise levels 0..350 are valid labels).
TINY_UPSCALER_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 16,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "only_cross_attention": [True, False],
    "use_linear_projection": True,
    "num_class_embeds": 1000,
    "in_channels": 7,
    "out_channels": 4,
    "sample_size": 16,
}

#: x4 VAE of the upscaler: 3 levels (x4 downsampling), 4 latent channels, its scaling factor.
TINY_UPSCALER_VAE_CONFIG: dict[str, Any] = {**TINY_VAE_CONFIG, "scaling_factor": 0.08333}

#: The upscaler's ``scheduler/scheduler_config.json``.
UPSCALER_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
}

#: The upscaler's ``low_res_scheduler/scheduler_config.json``.
UPSCALER_LOW_RES_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "prediction_type": "epsilon",
    "variance_type": "fixed_small",
}

#: ``max_noise_level`` of the upscaler's ``model_index.json``.
UPSCALER_MAX_NOISE_LEVEL = 350


def write_tiny_upscaler(folder: str | Path, seed: int = 0, *, unet_config: dict[str, Any] | None = None) -> Path:
    """Write a tiny random x4-upscaler folder at ``folder`` (created; existing files overwritten)."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet_config = unet_config or TINY_UPSCALER_UNET_CONFIG
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        UNet2DConditionModel(**unet_config).save_pretrained(folder / "unet")
        AutoencoderKL(**TINY_UPSCALER_VAE_CONFIG).save_pretrained(folder / "vae")
        write_tiny_clip_text(folder, hidden_size=unet_config["cross_attention_dim"])
    finally:
        torch.random.set_rng_state(generator_state)
    DDIMScheduler(**UPSCALER_SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
    DDPMScheduler(**UPSCALER_LOW_RES_SCHEDULER_CONFIG).save_pretrained(folder / "low_res_scheduler")
    write_model_index(folder, "StableDiffusionUpscalePipeline", {
        "low_res_scheduler": ["diffusers", "DDPMScheduler"],
        "max_noise_level": UPSCALER_MAX_NOISE_LEVEL,
        "scheduler": ["diffusers", "DDIMScheduler"],
    })  # fmt: skip
    return folder
