"""Loading weights into the 3D models: 2D -> 3D inflation and the 3D folder format.

Sources:

* a diffusers UNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` or ``.bin``),
  or a pipeline folder holding one under ``unet/``;
* a single-file LDM / Stable Diffusion checkpoint (``.safetensors``, ``.ckpt``...), converted with
  diffusers' own single-file helpers;
* a folder written by ``BaseUNet3DModel.save_pretrained`` (config + safetensors).

Every failure is a :class:`~cascade.errors.ModelLoadError` with a one-line message naming the path,
key or shapes at fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers.loaders.single_file_utils import (
    LDM_UNET_KEY,
    convert_ldm_unet_checkpoint,
    load_single_file_checkpoint,
)
from diffusers.models.model_loading_utils import load_state_dict

from cascade.errors import ModelConfigError, ModelLoadError
from cascade.models import registry
from cascade.models.blocks import is_temporal_key
from cascade.models.configs import SD1_UNET_CONFIG
from lavie.core.config import read_mapping
from lavie.core.errors import UserError, message_line

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=torch.nn.Module)

UNET_2D_CLASS = "UNet2DConditionModel"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_REQUIRED_CONFIG_KEYS = ("block_out_channels", "down_block_types", "up_block_types")


@dataclass(frozen=True)
class LoadingInfo:
    """What a load did not match by name.

    ``missing_keys``: model parameters absent from the source, left at their initialisation (for a
    2D source: the temporal layers). ``unexpected_keys``: source tensors the model has no place for.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]


def load_2d(
    cls: type[Model],
    path: str | Path,
    *,
    config: str | Path | Mapping[str, Any] | None,
    strict: bool,
) -> tuple[Model, LoadingInfo]:
    """Build ``cls`` from a 2D UNet folder or single-file checkpoint and load its weights."""
    path = Path(path)
    if path.is_file():
        unet_config = _resolve_config(config, path)
        state = _convert_single_file(path, unet_config)
    else:
        if config is not None:
            raise ModelLoadError(f"{path}: config= is only for single-file checkpoints; folders bring config.json")
        folder = _unet_folder(path)
        unet_config = _read_config(folder, UNET_2D_CLASS)
        state = _read_weights(folder)
    model = build_model(cls, unet_config, path)
    return model, _load_state(model, state, path, strict=strict, may_miss=is_temporal_key)


def load_3d(cls: type[Model], path: str | Path) -> tuple[Model, LoadingInfo]:
    """Build ``cls`` from a folder written by ``save_pretrained``; every key must match."""
    folder = _unet_folder(Path(path))
    model = build_model(cls, _read_config(folder, cls.__name__), folder)
    return model, _load_state(model, _read_weights(folder), folder, strict=True, may_miss=lambda key: False)


# ---------------------------------------------------------------------------- sources
def _unet_folder(path: Path) -> Path:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or directory")
    if path.is_dir() and not (path / "config.json").is_file() and (path / "unet" / "config.json").is_file():
        return path / "unet"
    return path


def read_2d_config(path: str | Path) -> dict[str, Any]:
    """The config of a diffusers 2D UNet: a ``config.json`` file (of any name), a UNet folder, or a
    pipeline folder with ``unet/``."""
    path = Path(path)
    if path.is_file():
        return _read_config_file(path, UNET_2D_CLASS)
    return _read_config(_unet_folder(path), UNET_2D_CLASS)


def _read_config(folder: Path, expected_class: str) -> dict[str, Any]:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{folder}: no config.json, so not a diffusers UNet folder")
    return _read_config_file(config_file, expected_class)


def _read_config_file(config_file: Path, expected_class: str) -> dict[str, Any]:
    try:
        config = read_mapping(config_file)
    except UserError as err:
        raise ModelLoadError(str(err)) from None
    class_name = registry.canonical_name(config.get("_class_name", UNET_2D_CLASS))
    if class_name != expected_class:
        if class_name == UNET_2D_CLASS:
            hint = "; inflate it with from_pretrained_2d"
        elif registry.model_class(class_name) is not None:
            hint = f"; load it with {class_name}.from_pretrained"
        else:
            hint = ""
        raise ModelLoadError(f"{config_file}: holds a {class_name} config, expected {expected_class}{hint}")
    missing = [key for key in _REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise ModelLoadError(f"{config_file}: not a UNet config, lacks {', '.join(missing)}")
    return config


def _resolve_config(config: str | Path | Mapping[str, Any] | None, checkpoint: Path) -> dict[str, Any]:
    if config is None:
        logger.info("%s: no config given, assuming Stable Diffusion 1.x", checkpoint)
        return dict(SD1_UNET_CONFIG)
    if isinstance(config, Mapping):
        return dict(config)
    return read_2d_config(config)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        weights = folder / name
        if weights.is_file():
            return _load_file(weights, load_state_dict)
    raise ModelLoadError(f"{folder}: no {' or '.join(WEIGHT_FILES)}")


def _convert_single_file(path: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    checkpoint = _load_file(path, lambda file: load_single_file_checkpoint(str(file)))
    if not any(key.startswith(LDM_UNET_KEY) for key in checkpoint):
        raise ModelLoadError(f"{path}: not a Stable Diffusion checkpoint, no '{LDM_UNET_KEY}*' keys")
    try:
        return convert_ldm_unet_checkpoint(checkpoint, config)
    except KeyError as err:
        raise ModelLoadError(f"{path}: checkpoint lacks key {err} needed by the UNet config") from err


def _load_file(path: Path, loader: Callable[[Path], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    try:
        return loader(path)
    except Exception as err:  # corrupt or foreign files raise anything from OSError to pickle errors
        raise ModelLoadError(f"{path}: cannot read weights ({message_line(err)})") from err


# ---------------------------------------------------------------------------- model
def build_model(cls: type[Model], config: Mapping[str, Any], source: Path) -> Model:
    """``cls.from_config(config)``, a bad config reported as a :class:`ModelLoadError` naming ``source``."""
    try:
        return cls.from_config(dict(config))
    except ModelConfigError as err:
        raise ModelLoadError(f"{source}: {err}") from err
    except (ValueError, TypeError) as err:
        raise ModelLoadError(f"{source}: invalid UNet config ({message_line(err)})") from err


def _load_state(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: Path,
    *,
    strict: bool,
    may_miss: Callable[[str], bool],
) -> LoadingInfo:
    expected = model.state_dict()
    mismatched = [key for key, value in expected.items() if key in state and state[key].shape != value.shape]
    if mismatched:
        key = mismatched[0]
        more = f" (and {len(mismatched) - 1} more mismatched keys)" if len(mismatched) > 1 else ""
        raise ModelLoadError(
            f"{source}: {key} has shape {tuple(state[key].shape)} in the checkpoint but "
            f"{tuple(expected[key].shape)} in the model{more}"
        )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    not_allowed = [key for key in missing if not may_miss(key)]
    if not_allowed or unexpected:
        message = f"{source}: missing keys {_names(not_allowed)}; unexpected keys {_names(unexpected)}"
        if strict:
            raise ModelLoadError(message)
        logger.warning("%s (loaded with strict=False)", message)
    model.load_state_dict(state, strict=False)
    if missing:
        logger.info("%s: %d parameters newly initialised (e.g. %s)", source, len(missing), missing[0])
    return LoadingInfo(missing_keys=missing, unexpected_keys=unexpected)


def _names(keys: list[str], limit: int = 5) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown
