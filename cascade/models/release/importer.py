"""A published LaVie checkpoint -> a ``cascade.models`` folder (``config.json`` + safetensors).

Strict: every checkpoint key is mapped to a parameter of the model (:mod:`.stages`) or is a derived
buffer whose value is checked; an unexpected key, a missing weight or a wrong shape is a one-line
:class:`~cascade.errors.ModelLoadError` naming the key as the release spells it.

Memory: the checkpoint is memory-mapped (:mod:`.checkpoint`), the model is built on the meta device
(no memory, no random initialisation), and its parameters become the mapped tensors themselves
(``load_state_dict(assign=True)``), from which safetensors writes the output: no second copy of the
weights is made (``benchmarks/bench_release_import.py``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from cascade.errors import ModelLoadError
from cascade.models.attention import TemporalAttention
from cascade.models.inflate import build_model, read_2d_config
from cascade.models.release.checkpoint import read_state_dict
from cascade.models.release.stages import DERIVED_BUFFER, RELEASE_STAGES, ReleaseStage, identify_stage
from cascade.models.rope import ROPE_MAX_DIM, rope_frequencies
from cascade.models.unet_3d import BaseUNet3DModel


def import_release(
    stage: str, checkpoint: str | os.PathLike, unet_config: str | os.PathLike, out: str | os.PathLike
) -> Path:
    """Convert the release's ``stage`` checkpoint into the ``cascade.models`` folder ``out``.

    ``unet_config``: the diffusers ``unet/config.json`` (or its folder) of the 2D UNet the stage was
    inflated from: SD 1.4's for ``base`` and ``interpolation``, the x4 upscaler's for ``vsr``.
    """
    spec = release_stage(stage)
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists():
        raise ModelLoadError(f"{out}: already exists; choose a new output folder")
    config = read_2d_config(unet_config)
    state = read_state_dict(checkpoint)
    found, evidence = identify_stage(state)
    if found != spec.name:
        what = f"the release's {found} checkpoint" if found else "not a LaVie release checkpoint"
        raise ModelLoadError(f"{checkpoint}: {what} ({evidence}), not {spec.name}")
    model = build_empty(spec, config, Path(unet_config))
    model.load_state_dict(convert_state_dict(spec, state, model, checkpoint), assign=True)
    save_folder(model, out)
    return out


def release_stage(stage: str) -> ReleaseStage:
    if stage not in RELEASE_STAGES:
        raise ModelLoadError(f"unknown release stage {stage!r}; one of {', '.join(RELEASE_STAGES)}")
    return RELEASE_STAGES[stage]


def build_empty(spec: ReleaseStage, config_2d: dict[str, Any], source: Path) -> BaseUNet3DModel:
    """The stage's model on the meta device: its config, shapes and names, and no storage."""
    # Private keys dropped: diffusers would reset those listed in ``_use_default_values``.
    config = {key: value for key, value in config_2d.items() if not key.startswith("_")}
    config.update(spec.options.to_config())
    if spec.condition_channels is not None:
        config["in_channels"] = config["out_channels"] + spec.condition_channels
    with torch.device("meta"):
        return build_model(spec.model_class, config, source)


def convert_state_dict(
    spec: ReleaseStage, state: dict[str, torch.Tensor], model: BaseUNet3DModel, source: Path
) -> dict[str, torch.Tensor]:
    """The release's state dict under the model's key names, each tensor accounted for."""
    expected = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    matched: set[str] = set()
    problems: list[str] = []
    for release_key, tensor in state.items():
        if DERIVED_BUFFER.search(release_key):
            problem = _check_rotary_frequencies(spec, model, release_key, tensor)
            if problem:
                problems.append(problem)
            continue
        key = spec.our_key(release_key)
        if key not in expected:
            problems.append(f"unexpected key {release_key}")
            continue
        matched.add(key)
        if tensor.shape != expected[key].shape:
            problems.append(
                f"{release_key} has shape {tuple(tensor.shape)} but the {spec.name} model's {key} "
                f"is {tuple(expected[key].shape)}"
            )
        else:
            converted[key] = tensor
    problems += [f"missing key {spec.release_key(key)}" for key in expected if key not in matched]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ModelLoadError(f"{source}: {problems[0]}{more}")
    return converted


def _check_rotary_frequencies(spec: ReleaseStage, model: BaseUNet3DModel, key: str, freqs: torch.Tensor) -> str | None:
    """The rotary frequencies the model computes must be the checkpoint's; a problem, or None."""
    owner = spec.our_key(key).removesuffix(".rotary_emb.freqs")
    if key.startswith("temporal_rotary_emb."):  # the VSR UNet's module, shared by its temporal attentions
        rope_dim = ROPE_MAX_DIM if spec.options.temporal_rope else 0
    else:
        try:
            attention = model.get_submodule(owner)
        except AttributeError:
            attention = None
        if not isinstance(attention, TemporalAttention):
            return f"unexpected key {key}"
        rope_dim = attention.rope_dim
    if rope_dim == 0:
        return f"unexpected key {key}: the {spec.name} model has no rotary embedding"
    computed = rope_frequencies(rope_dim)
    if freqs.shape != computed.shape or not torch.allclose(freqs.float(), computed, rtol=1e-6, atol=0.0):
        return f"{key} is not the rotary frequencies 10000 ** (-2i / {rope_dim}) that the model computes"
    return None


def save_folder(model: BaseUNet3DModel, out: Path) -> None:
    """``save_pretrained`` into a staging folder beside ``out``, renamed into place when complete."""
    staging = out.with_name(f".{out.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted import
    staging.mkdir(parents=True)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
