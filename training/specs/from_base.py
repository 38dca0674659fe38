"""The kinds that start from a trained base model and add latent condition channels (interpolation,
long video): ``model.unet`` names a base model (a `lavie train` export or an imported release
base), whose input convolution gains zero-initialised channels for the conditioning latents
(``LatentConditionedUNet3DModel.from_base``: the new model starts out computing what the base
does); or a folder of the kind's own class, to continue training it."""

from __future__ import annotations

from pathlib import Path

import torch

from cascade.models import BaseUNet3DModel
from cascade.models.exports import model_folder
from lavie.core.errors import UserError
from training.model_files import check_unet, folder_class, on_meta, public_config
from training.specs.base_model import BaseModelSpec


class FromBaseSpec(BaseModelSpec):
    """A :class:`BaseModelSpec` whose network takes the latents' channels again as condition."""

    def condition_channels(self, latent_channels: int) -> int:
        return latent_channels

    def _start_folder(self) -> tuple[Path, str]:
        """The starting folder and the class it holds; a one-line error if it cannot start this kind."""
        name, kind = self.model_class.__name__, self.kind
        if self.config.model.unet is None:
            raise UserError(
                f"model.unet: the {kind} model starts from a base model; set it to a base export or an "
                f"imported release base (a BaseUNet3DModel folder), or to a {name} folder"
            )
        folder = model_folder(Path(self.config.model.unet))
        found = folder_class(folder, "model.unet")
        if found not in (name, BaseUNet3DModel.__name__):
            raise UserError(
                f"model.unet: {folder} holds a {found}, but the {kind} model starts from a BaseUNet3DModel "
                f"(a base export or an imported release base) or a {name}"
            )
        return folder, found

    def check_unet(self) -> torch.nn.Module:
        folder, found = self._start_folder()
        if found == self.model_class.__name__:
            return super().check_unet()
        base = check_unet(folder, "model.unet", BaseUNet3DModel, class_name=found, may_miss=lambda key: False)
        config = public_config(base.config)
        config["in_channels"] = base.config.in_channels + base.config.out_channels
        return on_meta(lambda: self.model_class.from_config(config), "model.unet", folder)

    def build_model(self) -> torch.nn.Module:
        folder, found = self._start_folder()
        if found == self.model_class.__name__:
            return self.model_class.from_pretrained(folder)
        return self.model_class.from_base(BaseUNet3DModel.from_pretrained(folder))
