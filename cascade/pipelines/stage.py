"""What every stage pipeline shares: its parts, loading from a cascade folder, prompts and sizes."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cascade.encoders import decode_latents, encode_prompts
from cascade.errors import CascadeError, ModelLoadError
from cascade.models import registry
from cascade.models.unet_3d import BaseUNet3DModel
from cascade.pipelines.denoise import uses_guidance
from cascade.pipelines.folder import CascadeFolder
from cascade.pipelines.output import OutputType, VideoPipelineOutput, format_frames
from cascade.pipelines.runtime import Runtime
from lavie.core.config import read_mapping
from lavie.core.errors import first_line

SCHEDULERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler"}


def load_unet(folder: Path, expected: type[BaseUNet3DModel], dtype: torch.dtype) -> BaseUNet3DModel:
    """The 3D model in ``folder``, which must be an ``expected`` (or a subclass)."""
    config = read_mapping(folder / "config.json")
    cls = registry.model_class(str(config.get("_class_name")))
    if cls is None or not issubclass(cls, expected):
        raise ModelLoadError(f"{folder}: holds a {config.get('_class_name')}, expected a {expected.__name__}")
    model = cls.from_pretrained(folder).eval().requires_grad_(False)
    # nn.Module.to, not ModelMixin.to: the latter warns about an (empty) list of fp32-only modules.
    return nn.Module.to(model, dtype) if dtype != torch.float32 else model


def load_text_parts(folder: Path, text_encoder: str, tokenizer: str, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        encoder = CLIPTextModel.from_pretrained(folder / text_encoder, dtype=dtype).eval().requires_grad_(False)
        return encoder, CLIPTokenizer.from_pretrained(folder / tokenizer)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot load {text_encoder}/ or {tokenizer}/: {first_line(exc)}") from None


def load_vae(folder: Path, name: str, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKL

    try:
        return AutoencoderKL.from_pretrained(folder / name, torch_dtype=dtype).eval().requires_grad_(False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot load {name}/: {first_line(exc)}") from None


def load_scheduler(folder: Path, kind: str | None = None) -> Any:
    """The scheduler config in ``folder``, as its own class or as ``kind`` (ddpm, ddim, euler)."""
    import diffusers

    config = diffusers.DDPMScheduler.load_config(folder)
    if kind is not None and kind not in SCHEDULERS:
        raise CascadeError(f"scheduler {kind!r} is not one of {', '.join(SCHEDULERS)}")
    class_name = SCHEDULERS[kind] if kind else config["_class_name"]
    return getattr(diffusers, class_name).from_config(config)


def as_prompt_list(prompt: str | Sequence[str], what: str = "prompt") -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise CascadeError(f"{what}: no prompts given")
    return prompts


def halvings(config: Mapping[str, Any]) -> int:
    """Size factor of a UNet's or VAE's levels: one halving per block but the last."""
    return 2 ** (len(config["block_out_channels"]) - 1)


def check_size(unet_config: Mapping[str, Any], height: int, width: int, per_latent: int, stage: str) -> None:
    """``height``×``width`` pixels (``per_latent`` pixels per latent pixel) fit the UNet's levels."""
    multiple = halvings(unet_config) * per_latent
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise CascadeError(
            f"{stage}: size {height}x{width} cannot be taken by this model: height and width must be positive "
            f"multiples of {multiple} (VAE x{per_latent}, UNet x{halvings(unet_config)})"
        )


def check_latent_size(unet: BaseUNet3DModel, height: int, width: int, per_latent: int, stage: str) -> None:
    check_size(unet.config, height, width, per_latent, stage)


def vae_scale(vae: Any) -> int:
    """Pixels per latent pixel, per side."""
    return halvings(vae.config)


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal latents drawn on the CPU (the same seed gives the same video on any device)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


class StagePipeline:
    """A stage: its UNet, text encoder, tokenizer, VAE and scheduler, on a :class:`Runtime`."""

    stage: ClassVar[str]
    model_class: ClassVar[type[BaseUNet3DModel]]
    #: Cascade folder names of the stage's parts.
    parts: ClassVar[dict[str, str]] = {
        "text_encoder": "text_encoder", "tokenizer": "tokenizer", "vae": "vae", "scheduler": "scheduler"
    }  # fmt: skip
    vae_dtype: ClassVar[torch.dtype | None] = None  # None: the runtime's dtype

    def __init__(self, unet: BaseUNet3DModel, text_encoder: Any, tokenizer: Any, vae: Any, scheduler: Any,
                 runtime: Runtime) -> None:  # fmt: skip
        self.unet, self.text_encoder, self.tokenizer, self.vae, self.scheduler = unet, text_encoder, tokenizer, vae, scheduler
        self.runtime = runtime
        self.progress: dict[str, Any] = {}
        for module in self.modules():
            module.to(runtime.home)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        offload: bool = False,
        scheduler: str | None = None,
        shared: dict[str, Any] | None = None,
    ) -> StagePipeline:
        """Load the stage from a cascade folder. ``scheduler`` replaces the folder's sampler (ddpm,
        ddim, euler) on the same schedule; ``shared`` reuses parts already loaded by another stage
        (by cascade-folder name), as :class:`~cascade.pipelines.cascade.CascadePipeline` does."""
        cascade = CascadeFolder.open(folder)
        runtime = Runtime.create(device, dtype, offload)
        model_dir = cascade.stage_model(cls.stage)
        shared = shared if shared is not None else {}
        names = cls.parts
        if names["text_encoder"] not in shared:
            shared[names["text_encoder"]], shared[names["tokenizer"]] = load_text_parts(
                cascade.path, names["text_encoder"], names["tokenizer"], runtime.dtype
            )
        if names["vae"] not in shared:
            shared[names["vae"]] = load_vae(cascade.path, names["vae"], cls.vae_dtype or runtime.dtype)
        pipeline = cls(
            load_unet(model_dir, cls.model_class, runtime.dtype),
            shared[names["text_encoder"]],
            shared[names["tokenizer"]],
            shared[names["vae"]],
            load_scheduler(cascade.part(names["scheduler"]), scheduler),
            runtime,
        )
        pipeline.configure(cascade)
        return pipeline

    def configure(self, cascade: CascadeFolder) -> None:
        """Settings a stage reads from the cascade folder beyond its parts (none by default)."""

    def modules(self) -> list[nn.Module]:
        return [self.unet, self.text_encoder, self.vae]

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """tqdm keywords for the per-step bar (``disable=True`` silences it)."""
        self.progress = kwargs

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def output(
        self, latents: torch.Tensor, output_type: OutputType, decode_chunk_size: int | None, started: float
    ) -> VideoPipelineOutput:
        """The stage's result: its final latents, decoded unless ``output_type`` is ``latent``, and
        its seconds since ``started``."""
        frames = latents if output_type == "latent" else format_frames(
            decode_latents(self.vae, latents, decode_chunk_size), output_type
        )  # fmt: skip
        return VideoPipelineOutput(frames, latents, {self.stage: time.perf_counter() - started})

    def encode_prompt(
        self, prompts: list[str], negative_prompt: str | Sequence[str] | None, guidance_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text context ``(B, L, D)`` of the prompts and, when guidance is on, of the negatives."""
        if any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise CascadeError(f"{self.stage}: prompts must be non-empty text")
        context = encode_prompts(self.tokenizer, self.text_encoder, prompts, self.device)
        if not uses_guidance(guidance_scale):
            return context, None
        negatives = [negative_prompt or ""] * len(prompts) if isinstance(negative_prompt, (str, type(None))) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise CascadeError(f"{self.stage}: {len(negatives)} negative prompts for {len(prompts)} prompts")
        return context, encode_prompts(self.tokenizer, self.text_encoder, negatives, self.device)
