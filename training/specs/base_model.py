"""The base text-to-video model (paper, sections 4.1 and 5.2): joint image-video training.

Built by inflating a Stable Diffusion folder's 2D UNet (temporal layers new, their output
projections zero) or loaded from an exported 3D folder (``model.unet``). A sample is T video
frames plus M images with their own captions (:class:`training.data.JointVideoImageDataset`);
the frozen CLIP text encoder and VAE turn it into latents and text embeddings
(:class:`training.conditioning.Conditioner`), and the loss is MSE(video) + α·MSE(images) on the
SD folder's DDPM schedule (:class:`training.objective.DiffusionObjective`).

The other kinds build on this spec through its hooks: :meth:`BaseModelSpec.check_folder` (the
pretrained folder), :meth:`~BaseModelSpec.check_unet` (the starting network, on the meta device),
:attr:`~BaseModelSpec.condition_channels`, :meth:`~BaseModelSpec.frame_size` (what the UNet sees
per frame) and :meth:`~BaseModelSpec.unet_inputs` (a prepared batch → the UNet's keyword inputs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cascade.models import BaseUNet3DModel
from cascade.models.blocks import is_temporal_key
from cascade.models.exports import model_folder
from lavie.core.errors import UserError
from training import rng
from training.conditioning import UNetInputs
from training.engine import trainable_predicate
from training.latent_store import LatentStore
from training.model_files import check_sd_folder, check_text_encoder, check_unet, check_vae
from training.specs.spec import DrawKey, ModelInfo, ModelSpec, StepLoss

if TYPE_CHECKING:
    from training.config import TrainConfig


class BaseModelSpec(ModelSpec):
    kind = "base"
    model_class = BaseUNet3DModel

    @classmethod
    def validate_config(cls, config: TrainConfig) -> None:
        super().validate_config(config)
        if not config.data.clip_sources:
            raise UserError(
                f"data.sources: the {cls.kind} model trains on clips and no source gives one "
                "(a source of kind 'video', or image sources with data.image_clips set)"
            )

    # ------------------------------------------------------------------ driver side
    def check_folder(self, root: Path) -> None:
        """``model.pretrained`` holds what the kind needs (here: a Stable Diffusion folder)."""
        check_sd_folder(root, "model.pretrained")

    def check_unet(self) -> torch.nn.Module:
        """The starting network on the meta device, its weights checked against it."""
        section = self.config.model
        if section.unet is not None:
            return check_unet(
                model_folder(Path(section.unet)), "model.unet", self.model_class,
                class_name=self.model_class.__name__, may_miss=lambda key: False,
            )  # fmt: skip
        return check_unet(
            Path(section.pretrained) / "unet", "model.pretrained", self.model_class,
            class_name="UNet2DConditionModel", may_miss=is_temporal_key,
        )  # fmt: skip

    def condition_channels(self, latent_channels: int) -> int:
        """Input channels beyond the latents that the network takes as ``added_cond``."""
        return 0

    def frame_size(self) -> tuple[int, int]:
        """Pixels per side of the frames the network trains on."""
        return self.config.data.height, self.config.data.width

    def check(self) -> ModelInfo:
        root = Path(self.config.model.pretrained)
        self.check_folder(root)
        unet = self.check_unet()
        if self.config.data.images_per_sample and unet.config.get("group_norm_over_frames"):
            logging.getLogger(__name__).warning(
                "[train] warning: model.unet pools GroupNorm statistics over all frames (group_norm_over_frames), "
                "so in joint image-video training the images' statistics mix with the video's"
            )
        vae = check_vae(root / "vae", "model.pretrained")
        text_config = check_text_encoder(root / "text_encoder", "model.pretrained")
        if unet.config.cross_attention_dim != text_config.hidden_size:
            raise UserError(
                f"model: the UNet's cross_attention_dim is {unet.config.cross_attention_dim} but the text "
                f"encoder's hidden_size is {text_config.hidden_size}"
            )
        latent_channels = int(vae.config.latent_channels)
        condition = self.condition_channels(latent_channels)
        if unet.config.out_channels != latent_channels or unet.num_condition_channels != condition:
            extra = f" + {condition} condition" if condition else ""
            raise UserError(
                f"model: the UNet takes {unet.config.in_channels} and returns {unet.config.out_channels} "
                f"channels but the VAE's latents have {latent_channels} (expected {latent_channels}{extra} in)"
            )
        vae_down = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_down = 2 ** (len(unet.config.block_out_channels) - 1)
        multiple = vae_down * unet_down
        height, width = self.frame_size()
        if height % multiple or width % multiple:
            raise UserError(
                f"data: the training frames must be multiples of {multiple} per side (VAE x{vae_down}, "
                f"UNet x{unet_down}), got {height}x{width}"
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
            return self.model_class.from_pretrained(model_folder(Path(section.unet)))
        return self.model_class.from_pretrained_2d(section.pretrained)

    def build_dataset(self, rank: int, world_size: int, start_step: int, latents: LatentStore | None) -> Any:
        from training.data import JointVideoImageDataset

        return JointVideoImageDataset(
            self.data_config(),
            rank,
            world_size,
            start_step,
            batch_size=self.config.loader.micro_batch_size,
            grad_accum_steps=self.config.deepspeed.grad_accum,
            latents=latents,
            distinct_frames=self.distinct_frames,
        )

    #: Whether clips slower than ``data.target_fps`` are skipped rather than repeat frames.
    distinct_frames: bool = False

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
            self.prediction_type,
            config.objective.image_loss_weight,
        )

    def pixels(self, batch: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        """The batch as the network sees its frames (the patch kinds cut patches here)."""
        return dict(batch)

    def unet_inputs(self, inputs: UNetInputs, pixels: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        """Keyword inputs of the network besides the noisy latents, timesteps and text."""
        return {"num_image_frames": inputs.num_image_frames}

    def loss(self, model: Any, batch: Mapping[str, Any], key: DrawKey) -> StepLoss:
        pixels = self.pixels(batch, key)
        inputs = self.conditioner.prepare(
            pixels, seed=key.seed, step=key.step, rank=key.rank, micro=key.micro,
            caption_dropout=self.config.data.caption_dropout,
        )  # fmt: skip
        noisy, timesteps, target = self.objective.noised(
            inputs.latents, seed=key.seed, step=key.step, rank=key.rank, micro=key.micro
        )
        extra = {
            name: value.to(self.model_dtype) if torch.is_tensor(value) and value.is_floating_point() else value
            for name, value in self.unet_inputs(inputs, pixels, key).items()
        }
        prediction = model(noisy.to(self.model_dtype), timesteps, inputs.context.to(self.model_dtype), **extra).sample
        samples = inputs.latents.shape[0]
        return StepLoss(
            parts=self.objective.loss(prediction, target, inputs.num_video_frames),
            samples=samples,
            dropped_captions=inputs.dropped_captions,
            captions=samples * (1 + inputs.num_image_frames),
        )

    def probe_inputs(self, model: torch.nn.Module) -> dict[str, Any]:
        """At the smallest latent size the UNet takes, so the probe stays cheap."""
        config, data = model.config, self.data_config()
        generator = rng.keyed_generator(self.config.run.seed, rng.PROBE)
        frames = data.num_frames + data.images_per_sample
        side = 2 ** (len(config.block_out_channels) - 1) * 2
        latent = config.out_channels
        inputs = {
            "sample": torch.randn(1, latent, frames, side, side, generator=generator),
            "timestep": torch.tensor([self.config.run.seed % 997 + 1]),
            "encoder_hidden_states": torch.randn(1, frames, 8, config.cross_attention_dim, generator=generator),
            "num_image_frames": data.images_per_sample,
        }
        if model.num_condition_channels:
            shape = (1, model.num_condition_channels, frames, side, side)
            inputs["added_cond"] = torch.randn(shape, generator=generator)
        return inputs
