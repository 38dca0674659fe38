"""The long-video model (paper, section 5.6): a clip conditioned on its first frame.

A sample is a clip of the data stream; the frozen VAE's posterior mean of its first frame, put on
every frame by :func:`cascade.models.build_first_frame_condition`, is the ``added_cond`` input
(at inference, the last frame of the previous clip: long videos are generated clip after clip).
The loss, text conditioning and data are the base model's, on clips only (no extra images).

Starting model: a base model (``model.unet``), its input convolution widened with zero weights,
or a long-video folder to continue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cascade.models import LongVideoUNet3DModel, build_first_frame_condition
from lavie.core.errors import UserError
from training.conditioning import UNetInputs
from training.specs.from_base import FromBaseSpec
from training.specs.spec import DrawKey

if TYPE_CHECKING:
    from training.config import TrainConfig


class LongVideoModelSpec(FromBaseSpec):
    kind = "long_video"
    model_class = LongVideoUNet3DModel

    @classmethod
    def validate_config(cls, config: TrainConfig) -> None:
        super().validate_config(config)
        if config.data.images_per_sample:
            raise UserError("data.images_per_sample: the long_video model trains on clips only; set it to 0")
        if config.data.num_frames < 2:
            raise UserError("data.num_frames: the long_video model continues a first frame; it needs at least 2")

    def unet_inputs(self, inputs: UNetInputs, pixels: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        first = inputs.mean_latents[:, :, 0]
        return {"added_cond": build_first_frame_condition(first, inputs.num_video_frames)}
