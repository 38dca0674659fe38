"""LoRA personalisation (paper, section 5.6): spatial LoRA adapters on a trained base model.

Starting model: ``model.unet``, a base model (a base export or an imported release base; unset:
``model.pretrained``'s 2D UNet inflated). peft adapters of ``model.options.rank`` go on the
spatial attention projections (:func:`cascade.models.add_spatial_lora`); only they train, every
other weight, the temporal layers included, is frozen.

Data: an image manifest (e.g. a few dozen captioned images of one subject); video sources are
refused. A sample is one image with its caption, given to the network as an image frame (no
temporal attention, as images in the base model's joint training): the data stream is the image
sources as one-frame still clips, so ``data.num_frames``, ``images_per_sample`` and
``image_clips`` are set by the kind. Loss and text conditioning are the base model's.

Export: the adapter alone, ``raw/`` and ``ema/`` each a peft safetensors file
(:func:`cascade.models.save_spatial_lora`), which ``load_spatial_lora`` (and ``lavie generate
--lora``) applies onto the base model it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from cascade.models import BaseUNet3DModel, add_spatial_lora, save_spatial_lora
from lavie.core.config import StrictModel
from lavie.core.errors import UserError
from training.conditioning import UNetInputs
from training.data.camera import CameraMotion
from training.model_files import public_config
from training.specs.base_model import BaseModelSpec
from training.specs.spec import DrawKey

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import DataConfig

#: The parameters of the peft adapters: what a LoRA run trains.
LORA_PARAMETERS = r"\.lora_[AB]\."
#: The data settings the kind fixes (module docstring).
SET_BY_KIND = ("num_frames", "images_per_sample", "image_clips")


class LoRAOptions(StrictModel):
    """``model.options``: the adapter's rank and scale numerator (unset: the rank, scale 1)."""

    rank: int = Field(4, ge=1)
    alpha: float | None = Field(None, gt=0)


class LoRAModelSpec(BaseModelSpec):
    kind = "lora"
    model_class = BaseUNet3DModel
    Options = LoRAOptions
    default_trainable = LORA_PARAMETERS

    @classmethod
    def validate_config(cls, config: TrainConfig) -> None:
        super(BaseModelSpec, cls).validate_config(config)  # the options; not the clip sources
        data = config.data
        if data.video_sources:
            raise UserError(
                f"data.sources: LoRA personalisation trains on an image manifest, but '{data.video_sources[0].name}' "
                "is a video source"
            )
        fixed = [name for name in SET_BY_KIND if name in data.model_fields_set]
        if fixed:
            raise UserError(f"data.{fixed[0]}: a LoRA sample is one image; the kind sets it, leave it unset")
        if config.trainable is not None:
            raise UserError("trainable: a LoRA run trains its adapter only; leave trainable unset")

    def data_config(self) -> DataConfig:
        return self.config.data.model_copy(
            update={"num_frames": 1, "images_per_sample": 0, "image_clips": CameraMotion(max_shift=0)}
        )

    def check_unet(self) -> torch.nn.Module:
        unet = super().check_unet()
        with torch.device("meta"):
            add_spatial_lora(unet, self.options.rank, self.options.alpha)
        return unet

    def build_model(self) -> torch.nn.Module:
        model = super().build_model()
        add_spatial_lora(model, self.options.rank, self.options.alpha)
        return model

    def unet_inputs(self, inputs: UNetInputs, pixels: Mapping[str, Any], key: DrawKey) -> dict[str, Any]:
        return {"num_image_frames": inputs.latents.shape[2]}

    # ------------------------------------------------------------------ export
    def model_config(self, model: torch.nn.Module) -> dict[str, Any]:
        """The base model's config and the adapter's (``_lora``; bookkeeping keys are not passed
        to the model's constructor)."""
        return {**dict(model.config), "_lora": {"rank": self.options.rank, "alpha": self.options.alpha}}

    @classmethod
    def export_model(cls, model_config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        model = cls.model_class.from_config(public_config(model_config))
        add_spatial_lora(model, **model_config["_lora"])
        model.load_state_dict(dict(state_dict), strict=True)
        return model.eval()

    @classmethod
    def save_export(cls, model: torch.nn.Module, folder: Path) -> None:
        save_spatial_lora(model, folder)
