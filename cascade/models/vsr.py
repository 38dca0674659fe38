"""Video super-resolution model (paper, section 4.3): the x4 upscaler UNet with temporal layers.

Build it from a diffusers ``stable-diffusion-x4-upscaler`` UNet folder with
``VSRUNet3DModel.from_pretrained_2d(path)``. Inputs: the noisy latents as ``sample``, the low-res
RGB video in [-1, 1] (at latent resolution) as ``added_cond``, the noise level of that video as
``class_labels``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from torch import nn

from cascade.errors import ModelConfigError
from cascade.models.options import ArchitectureOptions
from cascade.models.unet_3d import BaseUNet3DModel

#: Channels of the low-resolution RGB conditioning video.
LOW_RES_CHANNELS = 3


class VSRUNet3DModel(BaseUNet3DModel):
    """x4 upscaler UNet + temporal attention in each transformer block and a temporal 3D conv stack
    after each resnet, all zero-initialised; only those are trained (spatial layers stay fixed).
    (The release's VSR layout of temporal convolutions is ``temporal_convs="lavie_vsr"``.)"""

    default_options: ClassVar[ArchitectureOptions] = ArchitectureOptions(temporal_convs="after_resnets")

    def _expected_condition_channels(self) -> int | None:
        return LOW_RES_CHANNELS

    def _check_variant_config(self) -> None:
        super()._check_variant_config()
        if self.class_embedding is None:
            raise ModelConfigError("VSRUNet3DModel needs a class embedding for the noise level (num_class_embeds)")

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the VSR model trains: the inserted temporal layers only."""
        return self.temporal_parameters()
