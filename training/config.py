"""The training config: plain data, validated on load (pydantic, unknown keys rejected).

A YAML file maps one-to-one onto :class:`TrainConfig`; every section but ``model``, ``data`` and
``run`` has defaults::

    model:      {kind: base, pretrained: sd-folder, unet: null, options: {}}
    data:       {...}                                  # training.data.DataConfig, unchanged
    loader:     {micro_batch_size: 1, num_workers: 0}
    objective:  {prediction_type: null, image_loss_weight: 1.0}    # null: the kind's default
    optimizer:  {lr: 1.0e-4, betas: [0.9, 0.999], eps: 1.0e-8, weight_decay: 0.01}
    lr_schedule: {kind: constant, warmup_steps: 0}
    deepspeed:  {zero_stage: 2, offload_optimizer: false, bf16: true, grad_clip: 1.0, grad_accum: 1}
    ema:        {enabled: true, decay: 0.9999}
    trainable:  null                                   # all | temporal | a regex; null: the spec's default
    scaling:    {num_workers: 1, use_gpu: false}
    run:        {name: base, storage_path: runs, max_steps: 1000, checkpoint_every: 100}

Caption dropout for classifier-free guidance is ``data.caption_dropout`` (default 0.1).

Paths. Relative local paths (``model.*``, ``data.sources[].manifest``, ``loader.latent_cache``,
``run.storage_path``, ``run.export_path``) are resolved against a root directory: ``--root`` on the command line, else
the current directory. URLs (``s3://...``) are left alone.

Overrides. ``--set KEY=VALUE`` (repeatable) sets a dotted key before validation; VALUE is parsed
as YAML (``--set run.max_steps=10``, ``--set deepspeed.zero_stage=3``,
``--set data.sources.1.manifest=/data/laion``, ``--set 'trainable=temporal'``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lavie.core.config import StrictModel as _Strict
from lavie.core.config import load_config, one_of, parse_override
from lavie.core.storage import SealedOptions, is_local, local_path, normalize_options, split_secrets
from training.data.config import DataConfig
from training.latent_store import LatentStore, vae_fingerprint
from training.specs import SPECS, spec_class


class ModelSection(_Strict):
    """Which network trains (``kind``, one of :data:`training.specs.SPECS`) and where its weights
    come from. ``pretrained``: a Stable Diffusion folder in the diffusers layout (``unet/ vae/
    text_encoder/ tokenizer/ scheduler/``); its 2D UNet is inflated to 3D unless ``unet`` names a
    ``cascade.models`` 3D folder (an earlier export) to start from. ``options``: settings of the
    kind, validated by its spec."""

    kind: str = "base"
    pretrained: str = Field(min_length=1)
    unet: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return one_of(value, SPECS, "a trainable network")


class LoaderSection(_Strict):
    """Per-rank micro-batch and the DataLoader processes that decode it."""

    micro_batch_size: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    # VAE encodes at most this many frames at once (memory bound on GPUs).
    vae_batch_frames: int = Field(64, ge=1)
    # Precomputed latents (training.latent_store): a local or shared folder of VAE moments, filled
    # by `lavie train --precompute-latents` or on first use; stored items are never decoded again.
    latent_cache: str | None = None


class ObjectiveSection(_Strict):
    """L = MSE(video frames) + image_loss_weight * MSE(image frames) on the DDPM schedule of the
    SD folder's ``scheduler/`` config (paper, eq. 3). ``prediction_type`` unset: the kind's own
    (v-prediction for the VSR model, as its x4 upscaler; ε-prediction otherwise)."""

    prediction_type: Literal["epsilon", "v_prediction"] | None = None
    image_loss_weight: float = Field(1.0, ge=0.0)


class OptimizerSection(_Strict):
    """AdamW. ``torch_adam``: DeepSpeed's choice of implementation; ``null`` picks torch's (its
    fused kernel) on CPU, where DeepSpeed's fused and CPU-Adam ops need a compiler, and DeepSpeed's
    fused one on GPUs."""

    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    torch_adam: bool | None = None


class LRScheduleSection(_Strict):
    """Linear warm-up, then constant, linear decay or cosine decay to ``min_ratio * lr`` at
    ``total_steps`` (default: ``run.max_steps``)."""

    kind: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    total_steps: int | None = Field(None, ge=1)
    min_ratio: float = Field(0.0, ge=0.0, le=1.0)


class DeepSpeedSection(_Strict):
    """ZeRO stage, offload, precision, clipping and accumulation. ``config`` is merged last into
    the generated DeepSpeed config dict, for settings not covered here (bucket sizes...)."""

    zero_stage: Literal[1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_param: bool = False
    bf16: bool = True
    grad_clip: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    activation_checkpointing: bool = False
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _offload_param_needs_zero3(self) -> DeepSpeedSection:
        if self.offload_param and self.zero_stage != 3:
            raise ValueError("offload_param needs zero_stage 3")
        return self


class EMASection(_Strict):
    """Exponential moving average of the trained weights, updated after every optimizer step from
    ``start_step`` on (before it, the average tracks the weights)."""

    enabled: bool = True
    decay: float = Field(0.9999, ge=0.0, lt=1.0)
    start_step: int = Field(0, ge=0)


class ScalingSection(_Strict):
    """Ray Train workers: one DeepSpeed rank each; several nodes when the cluster has them."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class RunSection(_Strict):
    """Run identity, length and bookkeeping. The run lives in ``storage_path/name`` (local or a
    bucket URL): Ray's checkpoints, ``logs/`` (TensorBoard + metrics JSONL) and ``export/``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage_path: str = "runs"
    max_steps: int = Field(ge=1)
    checkpoint_every: int = Field(100, ge=1)
    keep_checkpoints: int | None = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = Field(0, ge=0)
    max_failures: int = Field(3, ge=-1)
    export: bool = True
    export_path: str | None = None
    # Storage options for a bucket URL (fsspec / pyarrow), e.g. {"endpoint_url": ...}.
    storage_options: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    """Everything one `lavie train` run needs; see the module docstring for the YAML shape."""

    model: ModelSection
    data: DataConfig
    loader: LoaderSection = Field(default_factory=LoaderSection)
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    lr_schedule: LRScheduleSection = Field(default_factory=LRScheduleSection)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    ema: EMASection = Field(default_factory=EMASection)
    # all | temporal | a regular expression; unset: the model spec's default.
    trainable: str | None = Field(None, min_length=1)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection

    @field_validator("trainable")
    @classmethod
    def _trainable_compiles(cls, value: str | None) -> str | None:
        if value is not None and value not in ("all", "temporal"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"'{value}' is neither all, temporal nor a valid regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lr_schedule.warmup_steps > self.total_lr_steps:
            raise ValueError(
                f"lr_schedule.warmup_steps ({self.lr_schedule.warmup_steps}) exceeds the schedule's "
                f"{self.total_lr_steps} steps"
            )
        return self

    @property
    def total_lr_steps(self) -> int:
        return self.lr_schedule.total_steps or self.run.max_steps

    @property
    def samples_per_step(self) -> int:
        """Samples one rank consumes per optimizer step."""
        return self.loader.micro_batch_size * self.deepspeed.grad_accum

    @property
    def global_batch_size(self) -> int:
        return self.samples_per_step * self.scaling.num_workers

    def run_uri(self) -> str:
        """The run's folder in storage (Ray's experiment directory)."""
        return f"{self.run.storage_path.rstrip('/')}/{self.run.name}"

    def export_uri(self) -> str:
        return self.run.export_path or f"{self.run_uri()}/export"

    def latent_store(self) -> LatentStore | None:
        """The store of precomputed latents for this model and frame size, if configured."""
        if self.loader.latent_cache is None:
            return None
        fingerprint = vae_fingerprint(self.model.pretrained)
        return LatentStore(self.loader.latent_cache, fingerprint, self.data.height, self.data.width)

    def digest(self) -> str:
        """Hash of what must not change across a resume (data layout, model, batch, world); not
        storage options, whose credentials may be rotated between the runs."""
        keep = {
            "model": self.model.model_dump(),
            "data": self.data.model_dump(exclude={"storage_options"}),
            "micro_batch_size": self.loader.micro_batch_size,
            "grad_accum": self.deepspeed.grad_accum,
            "zero_stage": self.deepspeed.zero_stage,
            "num_workers": self.scaling.num_workers,
            "trainable": self.trainable,
            "seed": self.run.seed,
        }
        return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading
def load_train_config(
    path: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    root: str | Path | None = None,
) -> TrainConfig:
    """Read a YAML config (or take a mapping), apply ``--set KEY=VALUE`` overrides, resolve
    relative paths against ``root`` (default: the current directory) and validate, the model
    spec's own checks included.

    Every problem is a one-line :class:`UserError` naming the file or key.
    """
    where = "train config" if isinstance(path, Mapping) else f"train config {path}"
    config = load_config(TrainConfig, path, [parse_override(item) for item in overrides], where=where)
    config = resolve_paths(config, Path(root) if root is not None else Path.cwd())
    spec_class(config.model.kind).validate_config(config)
    return config


def resolve_paths(config: TrainConfig, root: Path) -> TrainConfig:
    """Make relative local paths absolute against ``root``."""

    def fix(value: str | None) -> str | None:
        if value is None or not is_local(value):
            return value
        path = Path(local_path(value)).expanduser()
        return str(path if path.is_absolute() else (root / path).resolve())

    model = config.model.model_copy(update={"pretrained": fix(config.model.pretrained), "unet": fix(config.model.unet)})
    sources = [s.model_copy(update={"manifest": fix(s.manifest)}) for s in config.data.sources]
    data = config.data.model_copy(update={"sources": sources})
    loader = config.loader.model_copy(update={"latent_cache": fix(config.loader.latent_cache)})
    run = config.run.model_copy(
        update={"storage_path": fix(config.run.storage_path), "export_path": fix(config.run.export_path)}
    )
    return config.model_copy(update={"model": model, "data": data, "loader": loader, "run": run})


# --------------------------------------------------------------------------- to Ray workers
def public_dump(config: TrainConfig) -> dict[str, Any]:
    """The config as plain data without the credentials of its storage options (what may be
    shown or stored: Ray's train state, the checkpoints' trainer state)."""
    public = config.model_dump(mode="json")
    for section in ("data", "run"):
        public[section]["storage_options"] = split_secrets(normalize_options(public[section]["storage_options"]))[0]
    return public


def seal(config: TrainConfig) -> dict[str, Any]:
    """The config as it travels to Ray (Train workers, actors): :func:`public_dump`, the
    credentials sealed apart (:class:`lavie.core.storage.SealedOptions`), so that Ray's train
    state and dashboard show none. Rebuild it with :func:`unseal`."""
    data = SealedOptions.seal(config.data.storage_options)
    run = SealedOptions.seal(config.run.storage_options)
    return {"config": public_dump(config), "data_storage": data, "run_storage": run}


def unseal(sealed: Mapping[str, Any]) -> TrainConfig:
    config = TrainConfig.model_validate(sealed["config"])
    data = config.data.model_copy(update={"storage_options": sealed["data_storage"].open()})
    run = config.run.model_copy(update={"storage_options": sealed["run_storage"].open()})
    return config.model_copy(update={"data": data, "run": run})


def packaged_config(name: str) -> Path | None:
    """A config shipped in ``training/configs`` by name (``tiny-cpu`` or ``tiny-cpu.yaml``)."""
    folder = Path(__file__).parent / "configs"
    for candidate in (folder / name, folder / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    return None
