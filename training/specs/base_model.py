"""The base text-to-video model (paper, sections 4.1 and 5.2): joint image-video training.

Built by inflating a Stable Diffusion folder's 2D UNet (temporal layers new, their output
projections zero) or loaded from an exported 3D folder (``model.unet``). A sample is T video
frames plus M images with their own captions (:class:`training.data.JointVideoImageDataset`);
the frozen CLIP text encoder and VAE turn it into latents and text embeddings
(:class:`training.conditioning.Conditioner`), and the loss is MSE(video) + α·MSE(images) on the
SD folder's DDPM schedule (:class:`training.objective.DiffusionObjective`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cascade.models import BaseUNet3DModel
from cascade.models.blocks import is_temporal_key
from lavie.core.errors import UserError
from training import rng
from training.engine import trainable_predicate
from training.latent_store import LatentStore
from training.model_files import check_sd_folder, check_text_encoder, check_unet, check_vae
from training.specs.spec import DrawKey, ModelInfo, ModelSpec, StepLoss


class BaseModelSpec(ModelSpec):
    kind = "base"
    model_class = BaseUNet3DModel

    # ------------------------------------------------------------------ driver side
    def check(self) -> ModelInfo:
        section, data = self.config.model, self.config.data
        root = Path(section.pretrained)
        check_sd_folder(root, "model.pretrained")
        if section.unet is not None:
            unet = check_unet(
                Path(section.unet), "model.unet", self.model_class, class_name=self.model_class.__name__,
                may_miss=lambda key: False,
            )  # fmt: skip
        else:
            unet = check_unet(
                root / "unet", "model.pretrained", self.model_class, class_name="UNet2DConditionModel",
                may_miss=is_temporal_key,
            )  # fmt: skip
        vae = check_vae(root / "vae", "model.pretrained")
        text_config = check_text_encoder(root / "text_encoder", "model.pretrained")
        if unet.config.cross_attention_dim != text_config.hidden_size:
            raise UserError(
                f"model: the UNet's cross_attention_dim is {unet.config.cross_attention_dim} but the text "
                f"encoder's hidden_size is {text_config.hidden_size}"
            )
        latent_channels = int(vae.config.latent_channels)
        if unet.config.out_channels != latent_channels or unet.num_condition_channels:
            raise UserError(
                f"model: the UNet takes {unet.config.in_channels} and returns {unet.config.out_channels} "
                f"channels but the VAE's latents have {latent_channels}"
            )
        vae_down = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_down = 2 ** (len(unet.config.block_out_channels) - 1)
        multiple = vae_down * unet_down
        if data.height % multiple or data.width % multiple:
            raise UserError(
                f"data: height and width must be multiples of {multiple} (VAE x{vae_down}, UNet x{unet_down}), "
                f"got {data.height}x{data.width}"
            )
        selected = trainable_predicate(self.trainable)
        trainable = [param for name, param in unet.named_parameters() if selected(name)]
        if not trainable:
            raise UserError(f"trainable: '{self.trainable}' matches no parameter of the UNet")
        return ModelInfo(
            model_config=dict(unet.config),
            num_parameters=sum(p.numel() for p in unet.parameters()),
            num_trainable=sum(p.numel() for p in trainable),
            latent_channels=latent_channels,
            vae_downscale=vae_down,
            unet_downscale=unet_down,
        )

    # ------------------------------------------------------------------ worker side
    def build_model(self) -> torch.nn.Module:
        section = self.config.model
        if section.unet is not None:
            return self.model_class.from_pretrained(section.unet)
        return self.model_class.from_pretrained_2d(section.pretrained)

    def build_dataset(self, rank: int, world_size: int, start_step: int, latents: LatentStore | None) -> Any:
        from training.data import JointVideoImageDataset

        return JointVideoImageDataset(
            self.config.data,
            rank,
            world_size,
            start_step,
            batch_size=self.config.loader.micro_batch_size,
            grad_accum_steps=self.config.deepspeed.grad_accum,
            latents=latents,
        )

    def prepare(
        self, device: torch.device, frozen_dtype: torch.dtype, model_dtype: torch.dtype, latents: LatentStore | None
    ) -> None:
        from training.conditioning import Conditioner
        from training.objective import DiffusionObjective

        config = self.config
        self.model_dtype = model_dtype
        self.conditioner = Conditioner(
            config.model.pretrained,
            device=device,
            dtype=frozen_dtype,
            vae_batch_frames=config.loader.vae_batch_frames,
            latent_store=latents,
        )
        self.objective = DiffusionObjective(
            Path(config.model.pretrained) / "scheduler",
            config.objective.prediction_type,
            config.objective.image_loss_weight,
        )

    def loss(self, model: Any, batch: Mapping[str, Any], key: DrawKey) -> StepLoss:
        inputs = self.conditioner.prepare(
            batch, seed=key.seed, step=key.step, rank=key.rank, micro=key.micro,
            caption_dropout=self.config.data.caption_dropout,
        )  # fmt: skip
        noisy, timesteps, target = self.objective.noised(
            inputs.latents, seed=key.seed, step=key.step, rank=key.rank, micro=key.micro
        )
        prediction = model(
            noisy.to(self.model_dtype),
            timesteps,
            inputs.context.to(self.model_dtype),
            num_image_frames=inputs.num_image_frames,
        ).sample
        samples = inputs.latents.shape[0]
        return StepLoss(
            parts=self.objective.loss(prediction, target, inputs.num_video_frames),
            samples=samples,
            dropped_captions=inputs.dropped_captions,
            captions=samples * (1 + inputs.num_image_frames),
        )

    def probe_inputs(self, model: torch.nn.Module) -> dict[str, Any]:
        """At the smallest latent size the UNet takes, so the probe stays cheap."""
        config, data = model.config, self.config.data
        generator = rng.keyed_generator(self.config.run.seed, rng.PROBE)
        frames = data.num_frames + data.images_per_sample
        side = 2 ** (len(config.block_out_channels) - 1) * 2
        return {
            "sample": torch.randn(1, config.in_channels, frames, side, side, generator=generator),
            "timestep": torch.tensor([self.config.run.seed % 997 + 1]),
            "encoder_hidden_states": torch.randn(1, frames, 8, config.cross_attention_dim, generator=generator),
            "num_image_frames": data.images_per_sample,
        }
