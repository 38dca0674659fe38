"""Base-model variants conditioned on extra latent channels (interpolation, long video)."""

from __future__ import annotations

from typing import TypeVar

import torch

from cascade.errors import ModelConfigError
from cascade.models.unet_3d import BaseUNet3DModel

Conditioned = TypeVar("Conditioned", bound="LatentConditionedUNet3DModel")


class LatentConditionedUNet3DModel(BaseUNet3DModel):
    """The base architecture with ``out_channels`` extra input channels for conditioning latents.

    The conditioning latents arrive as ``added_cond`` (same shape as ``sample``) and are
    concatenated after the noisy latents, the input convolution taking both.
    """

    def _expected_condition_channels(self) -> int | None:
        return self.config.out_channels

    @classmethod
    def from_base(cls: type[Conditioned], base: BaseUNet3DModel) -> Conditioned:
        """Initialise from a base model: same weights, conditioning input channels set to zero.

        With zero conditioning weights the new model computes exactly what the base model does,
        whatever the conditioning input (paper, section 5.2: the TI model starts from the base).
        """
        if base.num_condition_channels:
            raise ModelConfigError(
                f"from_base needs an unconditioned base model, got one with {base.num_condition_channels} "
                "condition channels"
            )
        config = {key: value for key, value in base.config.items() if not key.startswith("_")}
        config["in_channels"] = base.config.in_channels + base.config.out_channels
        model = cls.from_config(config)
        state = base.state_dict()
        conv_in = state["conv_in.weight"]
        zeros = conv_in.new_zeros(conv_in.shape[0], base.config.out_channels, *conv_in.shape[2:])
        state["conv_in.weight"] = torch.cat([conv_in, zeros], dim=1)
        model.load_state_dict(state)
        # nn.Module.to: ModelMixin.to warns about an (empty) list of fp32-only modules on any dtype.
        return torch.nn.Module.to(model, device=base.device, dtype=base.dtype)
