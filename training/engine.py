"""The model and its DeepSpeed engine, assembled from the config.

* :func:`inspect_model` — driver-side pre-flight: folder structure, configs, every weight's shape
  (read from safetensors headers and compared with the model built on the ``meta`` device, so no
  weights are loaded), compatibility of UNet, VAE, text encoder and frame size, the trainable
  pattern. Every problem is a one-line :class:`UserError`.
* :func:`build_unet` — ``UNet3DConditionModel`` inflated from the SD folder's 2D UNet
  (``from_pretrained_2d``: temporal layers new, their output projections zero), or loaded from a
  ``cascade.models`` 3D folder.
* :func:`select_trainable` — ``all``, ``temporal`` (temporal attention and its norm), or a regular
  expression searched in parameter names; the rest is frozen.
* :func:`deepspeed_config` / :func:`initialize` — the DeepSpeed config dict and engine (ZeRO 1/2/3,
  optimizer/parameter offload, bf16, clipping, accumulation; AdamW; warm-up + constant / linear /
  cosine learning rate as a client scheduler, saved in DeepSpeed's checkpoints).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from curation.errors import UserError, message_line
from training.config import DeepSpeedSection, LRScheduleSection, ModelSection, TrainConfig

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_WEIGHT_FILES = {
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "text_encoder": ("model.safetensors", "pytorch_model.bin"),
}


@dataclass(frozen=True)
class ModelInfo:
    """What the pre-flight check learnt about the model folders."""

    unet_config: dict[str, Any]
    vae_downscale: int
    unet_downscale: int
    latent_channels: int
    num_parameters: int
    num_trainable: int


# --------------------------------------------------------------------------- pre-flight
def inspect_model(config: TrainConfig) -> ModelInfo:
    """Check the model folders against each other and the data config without loading weights."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from cascade.models import UNet3DConditionModel

    section = config.model
    root = Path(section.pretrained)
    if not root.is_dir():
        raise UserError(f"model.pretrained: {root} is not a folder")
    missing = [c for c in SD_COMPONENTS if not (root / c).is_dir()]
    if missing:
        raise UserError(
            f"model.pretrained: {root} lacks {', '.join(f'{m}/' for m in missing)} "
            f"(expected a Stable Diffusion folder with {', '.join(SD_COMPONENTS)})"
        )
    for name in ("vocab.json", "merges.txt"):
        if not (root / "tokenizer" / name).is_file() and not (root / "tokenizer" / "tokenizer.json").is_file():
            raise UserError(f"model.pretrained: {root / 'tokenizer'} has no {name} (nor tokenizer.json)")
    if not (root / "scheduler" / "scheduler_config.json").is_file():
        raise UserError(f"model.pretrained: {root / 'scheduler'} has no scheduler_config.json")

    # UNet: the 2D folder to inflate, or a 3D folder to continue from.
    if section.unet is not None:
        unet_dir = Path(section.unet)
        unet_config = _read_json(unet_dir / "config.json", "model.unet")
        if unet_config.get("_class_name") != UNet3DConditionModel.__name__:
            raise UserError(
                f"model.unet: {unet_dir} holds a {unet_config.get('_class_name')} config, expected "
                f"{UNet3DConditionModel.__name__} (a cascade.models folder); leave model.unet unset to "
                "inflate model.pretrained's 2D unet/"
            )
        where, may_miss = "model.unet", lambda key: False
    else:
        unet_dir = root / "unet"
        unet_config = _read_json(unet_dir / "config.json", "model.pretrained")
        where, may_miss = "model.pretrained", _is_temporal
    unet = _on_meta(lambda: UNet3DConditionModel.from_config(_public(unet_config)), where, unet_dir)
    _check_weights(unet, unet_dir, _WEIGHT_FILES["unet"], where, may_miss=may_miss, strict=True)

    vae_config = _read_json(root / "vae" / "config.json", "model.pretrained")
    vae = _on_meta(lambda: AutoencoderKL.from_config(_public(vae_config)), "model.pretrained", root / "vae")
    _check_weights(
        vae, root / "vae", _WEIGHT_FILES["vae"], "model.pretrained", may_miss=lambda k: False, strict=False,
        key_map=_legacy_vae_key,
    )  # fmt: skip

    try:
        text_config = CLIPTextConfig.from_pretrained(root / "text_encoder")
    except Exception as exc:  # transformers raises OSError/ValueError/... for bad folders
        raise UserError(f"model.pretrained: {root / 'text_encoder'}: {message_line(exc)}") from None
    text = _on_meta(lambda: CLIPTextModel(text_config), "model.pretrained", root / "text_encoder")
    _check_weights(
        text, root / "text_encoder", _WEIGHT_FILES["text_encoder"], "model.pretrained", may_miss=lambda k: False,
        strict=False, key_map=lambda key: key.removeprefix("text_model."),
    )  # fmt: skip

    # Compatibility of the pieces.
    if unet.config.cross_attention_dim != text_config.hidden_size:
        raise UserError(
            f"model: the UNet's cross_attention_dim is {unet.config.cross_attention_dim} but the text "
            f"encoder's hidden_size is {text_config.hidden_size}"
        )
    latent_channels = int(vae.config.latent_channels)
    if unet.config.in_channels != latent_channels or unet.config.out_channels != latent_channels:
        raise UserError(
            f"model: the UNet takes {unet.config.in_channels} and returns {unet.config.out_channels} "
            f"channels but the VAE's latents have {latent_channels}"
        )
    vae_down = 2 ** (len(vae.config.block_out_channels) - 1)
    unet_down = 2 ** (len(unet.config.block_out_channels) - 1)
    multiple = vae_down * unet_down
    if config.data.height % multiple or config.data.width % multiple:
        raise UserError(
            f"data: height and width must be multiples of {multiple} (VAE x{vae_down}, UNet x{unet_down}), "
            f"got {config.data.height}x{config.data.width}"
        )
    names = [n for n, _ in unet.named_parameters()]
    trainable = [n for n in names if trainable_predicate(config.trainable)(n)]
    if not trainable:
        raise UserError(f"trainable: '{config.trainable}' matches no parameter of the UNet")
    return ModelInfo(
        unet_config=dict(unet.config),
        vae_downscale=vae_down,
        unet_downscale=unet_down,
        latent_channels=latent_channels,
        num_parameters=sum(p.numel() for p in unet.parameters()),
        num_trainable=sum(p.numel() for n, p in unet.named_parameters() if n in set(trainable)),
    )


def _is_temporal(key: str) -> bool:
    from cascade.models.blocks import is_temporal_key

    return is_temporal_key(key)


def _public(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _read_json(path: Path, where: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{where}: {path} does not exist")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: {path} is not valid JSON ({message_line(exc)})") from None
    if not isinstance(value, dict):
        raise UserError(f"{where}: {path} does not hold a JSON object")
    return value


def _on_meta(build: Any, where: str, folder: Path) -> torch.nn.Module:
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


_LEGACY_VAE_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _legacy_vae_key(key: str) -> str:
    """Older diffusers VAE files (SD 1.4's among them) name the attention projections
    query/key/value/proj_attn; diffusers renames them on load, and so does this check."""
    for old, new in _LEGACY_VAE_ATTENTION.items():
        key = key.replace(old, new)
    return key


def _same_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal, up to trailing singleton dimensions (1x1 conv vs linear attention projections)."""
    def strip(shape: tuple[int, ...]) -> tuple[int, ...]:
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
        return shape

    return a == b or strip(a) == strip(b)


def _check_weights(
    model: torch.nn.Module,
    folder: Path,
    candidates: Iterable[str],
    where: str,
    *,
    may_miss: Any,
    strict: bool,
    key_map: Any = None,
) -> None:
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


# --------------------------------------------------------------------------- model
def build_unet(section: ModelSection) -> torch.nn.Module:
    """The 3D UNet with loaded weights (fp32, on CPU)."""
    from cascade.models import UNet3DConditionModel

    if section.unet is not None:
        return UNet3DConditionModel.from_pretrained(section.unet)
    return UNet3DConditionModel.from_pretrained_2d(section.pretrained)


def trainable_predicate(spec: str) -> Any:
    if spec == "all":
        return lambda name: True
    if spec == "temporal":
        return _is_temporal
    pattern = re.compile(spec)
    return lambda name: pattern.search(name) is not None


def select_trainable(model: torch.nn.Module, spec: str) -> list[str]:
    """Freeze every parameter not selected by ``spec``; return the trainable names."""
    predicate = trainable_predicate(spec)
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(bool(predicate(name)))
        if param.requires_grad:
            names.append(name)
    return names


# --------------------------------------------------------------------------- DeepSpeed
def deepspeed_config(config: TrainConfig, *, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed config dict; ``deepspeed.config`` entries are merged in last."""
    ds: DeepSpeedSection = config.deepspeed
    torch_adam = config.optimizer.torch_adam if config.optimizer.torch_adam is not None else not on_gpu
    # On GPUs: contiguous gradient buffers (less fragmentation), reduce-scatter (half the traffic
    # of all-reduce), overlap with the backward pass. On CPU (gloo) these cost more per-parameter
    # Python work in the gradient hooks than they save (measured: benchmarks/bench_trainer.py).
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "contiguous_gradients": on_gpu,
        "overlap_comm": on_gpu,
        "reduce_scatter": on_gpu,
    }
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    result: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.loader.micro_batch_size,
        "gradient_accumulation_steps": ds.grad_accum,
        "train_batch_size": config.global_batch_size,
        "gradient_clipping": ds.grad_clip or 0.0,
        "bf16": {"enabled": ds.bf16},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": config.optimizer.lr,
                "betas": list(config.optimizer.betas),
                "eps": config.optimizer.eps,
                "weight_decay": config.optimizer.weight_decay,
                "torch_adam": torch_adam,
            },
        },
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if torch_adam:
        # torch.optim.AdamW's fused kernel (CPU and CUDA): one pass over the flat ZeRO partition
        # instead of a dozen (measured on CPU: optimizer step 41 -> 18 ms for 6M parameters).
        result["optimizer"]["params"]["fused"] = True
        if ds.offload_optimizer:
            result["zero_force_ds_cpu_optimizer"] = False
    return _merge(result, ds.config)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class LRLambda:
    """Multiplier of the base learning rate at optimizer step ``n`` (a picklable callable, so
    ``LambdaLR.state_dict`` keeps it)."""

    def __init__(self, section: LRScheduleSection, total_steps: int) -> None:
        self.kind = section.kind
        self.warmup = section.warmup_steps
        self.total = total_steps
        self.min_ratio = section.min_ratio

    def __call__(self, n: int) -> float:
        if self.warmup and n < self.warmup:
            return (n + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (n - self.warmup) / max(1, self.total - self.warmup))
        if self.kind == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def initialize(config: TrainConfig, unet: torch.nn.Module, *, on_gpu: bool) -> Any:
    """``deepspeed.initialize`` over the trainable parameters; returns the engine."""
    import deepspeed
    from torch.optim.lr_scheduler import LambdaLR

    if config.deepspeed.activation_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    schedule = LRLambda(config.lr_schedule, config.total_lr_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=unet,
        model_parameters=params,
        config=deepspeed_config(config, on_gpu=on_gpu),
        lr_scheduler=lambda optimizer: LambdaLR(optimizer, schedule),
    )
    return engine
