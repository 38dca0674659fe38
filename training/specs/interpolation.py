"""The temporal interpolation model (paper, sections 4.2 and 5.2): N key frames → 4(N-1)+1 frames.

A sample is a window of ``data.num_frames`` = 4(N-1)+1 consecutive frames at the high frame rate
``data.target_fps`` (61 frames at 24 fps for the paper's 16 key frames). Clips too short for the
window are skipped (``too_short``), and so are clips slower than ``target_fps`` (``low_fps``):
repeated frames would teach the model to stutter; both are counted per source. A random
``patch_size`` window of the frames is trained on (the model runs on whole 320x512 frames at
inference). The frozen VAE encodes all frames; the key frames (every 4th, from the first) give
their posterior means, laid onto the output grid by :func:`cascade.models.build_interpolation_condition`
(the ``added_cond`` input, as the interpolation pipeline builds it), and the loss covers all the
frames, each newly generated. Text conditioning with caption dropout, as the base model.

Starting model: a base model (``model.unet``: a base export or an imported release base), its
input convolution widened with zero weights; or an interpolation folder to continue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cascade.models import InterpolationUNet3DModel, build_interpolation_condition
from cascade.models.interpolation import INTERPOLATION_FACTOR
from lavie.core.config import StrictModel
from lavie.core.errors import UserError
from training.conditioning import UNetInputs
from training.patches import crop_patches
from training.specs.from_base import FromBaseSpec
from training.specs.patched import check_patch_fits, check_patch_training, patch_generator
from training.specs.spec import DrawKey, ModelInfo

if TYPE_CHECKING:
    from training.config import TrainConfig


class InterpolationOptions(StrictModel):
    """``model.options``: the training patch, (height, width) in pixels (the paper: 256x256)."""

    patch_size: tuple[int, int] = (256, 256)


class InterpolationModelSpec(FromBaseSpec):
    kind = "interpolation"
    model_class = InterpolationUNet3DModel
    Options = InterpolationOptions
    distinct_frames = True

    @classmethod
    def validate_config(cls, config: TrainConfig) -> None:
        super().validate_config(config)
        data = config.data
        if data.target_fps is None:
            raise UserError("data.target_fps: the interpolation model learns one frame rate; set it (the paper: 24)")
        if data.num_frames < INTERPOLATION_FACTOR + 1 or (data.num_frames - 1) % INTERPOLATION_FACTOR:
            raise UserError(
                f"data.num_frames: the interpolation model makes {INTERPOLATION_FACTOR}(N-1)+1 frames of N key "
                f"frames (61 of 16), got {data.num_frames}"
            )
        check_patch_training(config)

    def check(self) -> ModelInfo:
        info = super().check()
        check_patch_fits(self.options.patch_size, self.config)
        check_frame_rate(self.config)
        return info

    def frame_size(self) -> tuple[int, int]:
        return self.options.patch_size

    def pixels(self, batch: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        return crop_patches(dict(batch), self.options.patch_size, patch_generator(key))

    def unet_inputs(self, inputs: UNetInputs, pixels: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        key_frames = inputs.mean_latents[:, :, ::INTERPOLATION_FACTOR]
        return {"added_cond": build_interpolation_condition(key_frames)}


def check_frame_rate(config: TrainConfig) -> None:
    """Every clip source has clips at ``data.target_fps`` or faster (the manifests' fps column)."""
    from training.data.manifests import index_manifest, max_fps

    data = config.data
    for source in data.video_sources:
        fastest = max_fps(index_manifest(source.name, source.manifest, "video", data.storage_options))
        if fastest is None or fastest < data.target_fps:
            found = "no frame rate" if fastest is None else f"at most {fastest:g} fps"
            raise UserError(
                f"data.target_fps: {data.target_fps:g} fps is more than the clips of source '{source.name}' "
                f"give ({found}); the interpolation model needs consecutive frames at that rate"
            )
