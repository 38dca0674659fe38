"""Pre-flight checks of model folders, on the driver, without loading any weight.

Models are built on the ``meta`` device from their configs and compared with the tensor shapes
read from the weight files' headers (safetensors, or a memory-mapped torch file), so a wrong
folder, a missing or extra key or a wrong shape is found in seconds, before a worker starts. A
model spec (:mod:`training.specs`) composes these checks for its network; every problem is a
one-line :class:`UserError` naming the config key and the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lavie.core.config import read_mapping
from lavie.core.errors import UserError, message_line

#: The parts of a Stable Diffusion folder in the diffusers layout that training reads.
SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

KeyFilter = Callable[[str], bool]


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers config without its bookkeeping keys (``_class_name``, ``_diffusers_version``)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def read_json(path: Path, where: str) -> dict[str, Any]:
    return read_mapping(path, f"{where}: {path}")


def on_meta(build: Callable[[], torch.nn.Module], where: str, folder: Path) -> torch.nn.Module:
    """``build()`` on the meta device: the architecture, no memory for weights."""
    try:
        with torch.device("meta"):
            return build()
    except Exception as exc:  # a config the class rejects
        raise UserError(f"{where}: {folder}/config.json: {message_line(exc)}") from None


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a weight file, from the safetensors header (or a memory-mapped torch file)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    return {key: tuple(value.shape) for key, value in state.items()}


def _same_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal, up to trailing singleton dimensions (1x1 conv vs linear attention projections)."""

    def strip(shape: tuple[int, ...]) -> tuple[int, ...]:
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
        return shape

    return a == b or strip(a) == strip(b)


def check_weights(
    model: torch.nn.Module,
    folder: Path,
    candidates: Iterable[str],
    where: str,
    *,
    may_miss: KeyFilter = lambda key: False,
    strict: bool = True,
    key_map: Callable[[str], str] | None = None,
) -> None:
    """The first of ``candidates`` in ``folder`` holds every key of ``model`` (bar ``may_miss``
    ones) at its shape, and (``strict``) nothing else."""
    file = next((folder / name for name in candidates if (folder / name).is_file()), None)
    if file is None:
        raise UserError(f"{where}: {folder} has no weights ({' or '.join(candidates)})")
    try:
        shapes = weight_shapes(file)
    except Exception as exc:
        raise UserError(f"{where}: {file}: cannot read weights ({message_line(exc)})") from None
    if key_map is not None:
        shapes = {key_map(key): shape for key, shape in shapes.items()}
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, shape in expected.items():
        if key in shapes and not _same_shape(shapes[key], shape):
            raise UserError(f"{where}: {file}: {key} has shape {shapes[key]} but the config needs {shape}")
    missing = [key for key in expected if key not in shapes and not may_miss(key)]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{where}: {file}: lacks {missing[0]}{more}")
    if strict:
        unexpected = [key for key in shapes if key not in expected]
        if unexpected:
            more = f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
            raise UserError(f"{where}: {file}: has {unexpected[0]}{more}, which the model does not")


def check_sd_folder(root: Path, where: str) -> None:
    """``root`` is a Stable Diffusion folder in the diffusers layout."""
    if not root.is_dir():
        raise UserError(f"{where}: {root} is not a folder")
    missing = [c for c in SD_COMPONENTS if not (root / c).is_dir()]
    if missing:
        raise UserError(
            f"{where}: {root} lacks {', '.join(f'{m}/' for m in missing)} "
            f"(expected a Stable Diffusion folder with {', '.join(SD_COMPONENTS)})"
        )
    for name in ("vocab.json", "merges.txt"):
        if not (root / "tokenizer" / name).is_file() and not (root / "tokenizer" / "tokenizer.json").is_file():
            raise UserError(f"{where}: {root / 'tokenizer'} has no {name} (nor tokenizer.json)")
    if not (root / "scheduler" / "scheduler_config.json").is_file():
        raise UserError(f"{where}: {root / 'scheduler'} has no scheduler_config.json")


_LEGACY_VAE_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _legacy_vae_key(key: str) -> str:
    """Older diffusers VAE files (SD 1.4's among them) name the attention projections
    query/key/value/proj_attn; diffusers renames them on load, and so does this check."""
    for old, new in _LEGACY_VAE_ATTENTION.items():
        key = key.replace(old, new)
    return key


def check_vae(folder: Path, where: str) -> torch.nn.Module:
    """The VAE of ``folder`` on the meta device, its weights checked."""
    from diffusers import AutoencoderKL

    config = read_json(folder / "config.json", where)
    vae = on_meta(lambda: AutoencoderKL.from_config(public_config(config)), where, folder)
    check_weights(vae, folder, DIFFUSERS_WEIGHTS, where, strict=False, key_map=_legacy_vae_key)
    return vae


def check_text_encoder(folder: Path, where: str) -> Any:
    """The CLIP text encoder config of ``folder``, its weights checked."""
    from transformers import CLIPTextConfig, CLIPTextModel

    try:
        text_config = CLIPTextConfig.from_pretrained(folder)
    except Exception as exc:  # transformers raises OSError/ValueError/... for bad folders
        raise UserError(f"{where}: {folder}: {message_line(exc)}") from None
    text = on_meta(lambda: CLIPTextModel(text_config), where, folder)
    check_weights(
        text, folder, TRANSFORMERS_WEIGHTS, where, strict=False, key_map=lambda key: key.removeprefix("text_model.")
    )
    return text_config


def check_unet(
    folder: Path, where: str, model_class: type[torch.nn.Module], *, class_name: str, may_miss: KeyFilter
) -> torch.nn.Module:
    """``model_class`` on the meta device from ``folder``'s config, which must name ``class_name``,
    its weights checked (keys ``may_miss`` excepted: layers the model adds to its source)."""
    config = read_json(folder / "config.json", where)
    found = folder_class(folder, where)
    if found != class_name:
        hint = "; leave model.unet unset to inflate model.pretrained's 2D unet/" if found == "UNet2DConditionModel" else ""
        raise UserError(f"{where}: {folder} holds a {found} config, expected {class_name}{hint}")
    unet = on_meta(lambda: model_class.from_config(public_config(config)), where, folder)
    check_weights(unet, folder, DIFFUSERS_WEIGHTS, where, may_miss=may_miss)
    return unet


def folder_class(folder: Path, where: str) -> str:
    """The 3D model class a model folder's ``config.json`` names (2D folders: ``UNet2DConditionModel``)."""
    from cascade.models import registry

    return registry.canonical_name(read_json(folder / "config.json", where).get("_class_name", "UNet2DConditionModel"))
