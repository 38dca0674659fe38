"""The three published LaVie networks as settings of this project's models, and their key layouts.

Each checkpoint is the state dict of the release's own model class. Its 2D keys are diffusers'
``UNet2DConditionModel`` names (SD 1.4's UNet for base and interpolation, the x4 upscaler's for
VSR) and load unchanged; its temporal keys are renamed by :attr:`ReleaseStage.renames` (``…`` is
a transformer block, ``‹a›`` a spatial transformer):

* ``….attn_temp.{to_q,to_k,to_v}.weight`` and ``….norm_temp.*``: unchanged;
* ``….attn_temp.to_out.0.*`` -> ``….attn_temp.to_out.*``;
* ``….attn_temp.time_rel_pos_bias.relative_attention_bias.weight`` -> ``….attn_temp.rel_pos_bias.weight``;
* VSR: ``….attn_temporal.*`` / ``….norm_temporal.*`` -> ``….attn_temp.*`` / ``….norm_temp.*``;
* VSR: ``‹a›.resblock_temporal.*`` -> ``‹a›.temp_resnet.*``;
* VSR: ``down_temporal_blocks.{i}.*``, ``mid_temporal_block.*``, ``up_temporal_blocks.{i}.*`` ->
  ``down_blocks.{i}.temp_module.*``, ``mid_block.temp_module.*``, ``up_blocks.{i}.temp_module.*``,
  and in those ``resblocks_3d_t.*`` / ``resblocks_3d_s.*`` -> ``temporal_resnet.*`` / ``spatial_resnet.*``.

Derived buffers, checked and dropped (:data:`DERIVED_BUFFER`): ``….rotary_emb.freqs`` of each
temporal attention and, in VSR, the UNet's ``temporal_rotary_emb.freqs`` — the rotary
frequencies ``10000 ** (-2i / 32)`` that :mod:`cascade.models.rope` computes on the fly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cascade.models.interpolation import InterpolationUNet3DModel
from cascade.models.options import ArchitectureOptions
from cascade.models.unet_3d import BaseUNet3DModel
from cascade.models.vsr import VSRUNet3DModel

#: Release keys that hold rotary frequencies, not weights.
DERIVED_BUFFER = re.compile(r"(?:^|\.)(?:temporal_)?rotary_emb\.freqs$")

#: ``(release fragment, our fragment)`` pairs, applied in order; ``{i}`` stands for a block index and
#: a leading ``^`` anchors a fragment at the start of the key.
Renames = tuple[tuple[str, str], ...]

_TEMPORAL_ATTENTION_RENAMES: Renames = (
    (".attn_temp.to_out.0.", ".attn_temp.to_out."),
    (".attn_temp.time_rel_pos_bias.relative_attention_bias.", ".attn_temp.rel_pos_bias."),
)
_VSR_RENAMES: Renames = (
    (".attn_temporal.", ".attn_temp."),
    (".norm_temporal.", ".norm_temp."),
    (".resblock_temporal.", ".temp_resnet."),
    ("^down_temporal_blocks.{i}.", "^down_blocks.{i}.temp_module."),
    ("^mid_temporal_block.", "^mid_block.temp_module."),
    ("^up_temporal_blocks.{i}.", "^up_blocks.{i}.temp_module."),
    (".temp_module.resblocks_3d_t.", ".temp_module.temporal_resnet."),
    (".temp_module.resblocks_3d_s.", ".temp_module.spatial_resnet."),
)


def _rewrite(key: str, source: str, target: str) -> str:
    pattern = ("^" if source.startswith("^") else "") + re.escape(source.lstrip("^")).replace(r"\{i\}", r"(\d+)")
    return re.sub(pattern, target.lstrip("^").replace("{i}", r"\1"), key)


@dataclass(frozen=True)
class ReleaseStage:
    """How one published checkpoint becomes a ``cascade.models`` model.

    ``condition_channels``: input channels the release adds to the 2D UNet's latent ones
    (``None``: the 2D config's ``in_channels`` stand, as for VSR, whose upscaler already takes them).
    """

    name: str
    model_class: type[BaseUNet3DModel]
    options: ArchitectureOptions
    renames: Renames
    condition_channels: int | None = None

    def our_key(self, release_key: str) -> str:
        for source, target in self.renames:
            release_key = _rewrite(release_key, source, target)
        return release_key

    def release_key(self, our_key: str) -> str:
        """The inverse of :meth:`our_key`, to name a missing weight as the release does."""
        for source, target in reversed(self.renames):
            our_key = _rewrite(our_key, target, source)
        return our_key


RELEASE_STAGES: dict[str, ReleaseStage] = {
    stage.name: stage
    for stage in (
        ReleaseStage(
            "base",
            BaseUNet3DModel,
            ArchitectureOptions(group_norm_over_frames=True, temporal_rope=True, temporal_relative_bias=True),
            _TEMPORAL_ATTENTION_RENAMES,
        ),
        ReleaseStage(
            "interpolation",
            InterpolationUNet3DModel,
            ArchitectureOptions(
                group_norm_over_frames=True,
                temporal_rope=False,
                temporal_attention="after_ff",
                sparse_causal_attention=True,
            ),
            _TEMPORAL_ATTENTION_RENAMES,
            condition_channels=4,
        ),
        ReleaseStage(
            "vsr",
            VSRUNet3DModel,
            ArchitectureOptions(
                group_norm_over_frames=True,
                temporal_rope=True,
                temporal_relative_bias=True,
                temporal_convs="lavie_vsr",
            ),
            _VSR_RENAMES + _TEMPORAL_ATTENTION_RENAMES,
        ),
    )
}


def identify_stage(keys: Iterable[str]) -> tuple[str | None, str]:
    """Which release network a checkpoint's keys belong to, and the key that tells.

    VSR alone has ``attn_temporal``; base and interpolation both have ``attn_temp``, base alone with
    a relative position bias. ``(None, reason)`` for a checkpoint with no temporal layers.
    """
    keys = list(keys)
    for stage, marker in (("vsr", ".attn_temporal."), ("base", ".attn_temp.time_rel_pos_bias.")):
        found = next((key for key in keys if marker in key), None)
        if found is not None:
            return stage, found
    found = next((key for key in keys if ".attn_temp." in key), None)
    if found is not None:
        return "interpolation", f"{found} without a relative position bias"
    return None, "no temporal attention keys (attn_temp / attn_temporal)"

#: The noise schedule the release's base and interpolation models were trained on (its sample
#: configs: linear betas 0.0001 to 0.02 over 1000 steps, epsilon prediction), not SD 1.4's.
TRAINING_SCHEDULE: dict[str, object] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
}
