"""The interface of a model spec: everything the trainer needs to know about one network.

The trainer (:mod:`training.trainer`) owns what is the same for every network: the DeepSpeed
engine, the EMA, checkpoints, metrics, the Ray reports and the export. A spec owns the rest:

* driver side: :meth:`ModelSpec.validate_config` (at config load) and :meth:`ModelSpec.check`
  (pre-flight of the model folders, no weights loaded);
* worker side: :meth:`build_model` (built or inflated, with weights), :attr:`trainable` (its
  default trainable set), :meth:`build_dataset` (what a sample holds), :meth:`prepare` and
  :meth:`loss` (frozen encoders and the objective: a batch → a loss), :meth:`probe_inputs` (a
  fixed model input, to check the export against the engine);
* export: :meth:`model_config` (what the checkpoint records to rebuild the network),
  :meth:`export_model` (the network rebuilt from consolidated weights) and :meth:`save_export`
  (the folder it writes: a ``cascade.models`` folder, or a LoRA adapter).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from lavie.core.config import StrictModel, validate
from training import rng
from training.engine import select_trainable
from training.model_files import public_config
from training.objective import LossParts

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import DataConfig
    from training.latent_store import LatentStore


@dataclass(frozen=True)
class ModelInfo:
    """What the pre-flight check learnt about the model folders."""

    model_config: dict[str, Any]
    num_parameters: int
    num_trainable: int
    latent_channels: int
    vae_downscale: int  # pixels per latent, per side
    unet_downscale: int  # latent size / the UNet's smallest feature map, per side


@dataclass(frozen=True)
class DrawKey:
    """Where a micro-step sits, which keys every random draw it makes (see :mod:`training.rng`):
    a restarted run draws exactly what the uninterrupted one drew."""

    seed: int
    step: int
    rank: int
    micro: int


@dataclass
class StepLoss:
    """The loss of one micro-batch and what the metrics count of it."""

    parts: LossParts
    samples: int
    dropped_captions: int = 0
    captions: int = 0


class NoOptions(StrictModel):
    """A kind without options of its own (``model.options`` must be empty)."""


class ModelSpec(ABC):
    kind: ClassVar[str]
    #: The ``cascade.models`` class the network is, and its export loads with.
    model_class: ClassVar[type[torch.nn.Module]]
    #: What trains when the config's ``trainable`` is unset.
    default_trainable: ClassVar[str] = "all"
    #: The pydantic model of ``model.options`` for this kind.
    Options: ClassVar[type[StrictModel]] = NoOptions
    #: The objective's target when ``objective.prediction_type`` is unset.
    default_prediction_type: ClassVar[str] = "epsilon"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.options = validate(self.Options, config.model.options, "model.options")

    @classmethod
    def validate_config(cls, config: TrainConfig) -> None:
        """Checks of the whole config that this kind needs, at load time (one-line UserError)."""
        validate(cls.Options, config.model.options, "train config: model.options")

    @property
    def trainable(self) -> str:
        return self.config.trainable or self.default_trainable

    @property
    def prediction_type(self) -> str:
        return self.config.objective.prediction_type or self.default_prediction_type

    # ------------------------------------------------------------------ driver side
    @abstractmethod
    def check(self) -> ModelInfo:
        """Pre-flight: the model folders fit each other and the data, no weights loaded."""

    def data_config(self) -> DataConfig:
        """The data stream's config: ``data`` as written (a kind may fix some of its settings)."""
        return self.config.data

    # ------------------------------------------------------------------ worker side
    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """The network with its starting weights, in fp32 on the CPU."""

    def starting_model(self) -> torch.nn.Module:
        """:meth:`build_model` as training starts: its new layers drawn from the run's seed (the
        same on every rank, and again at export) and its trainable set selected."""
        torch.manual_seed(rng.key_seed(self.config.run.seed, rng.INIT))
        model = self.build_model()
        select_trainable(model, self.trainable)
        return model

    @abstractmethod
    def build_dataset(self, rank: int, world_size: int, start_step: int, latents: LatentStore | None) -> Any:
        """This rank's sample stream from ``start_step`` on: iterable, with ``batch_size``,
        ``state_dict``/``load_state_dict`` and ``counters`` (see ``training.data``)."""

    @abstractmethod
    def prepare(
        self, device: torch.device, frozen_dtype: torch.dtype, model_dtype: torch.dtype, latents: LatentStore | None
    ) -> None:
        """Load what :meth:`loss` needs besides the network (frozen encoders, the objective)."""

    @abstractmethod
    def loss(self, model: Any, batch: Mapping[str, Any], key: DrawKey) -> StepLoss:
        """The loss of one collated micro-batch through ``model`` (the DeepSpeed engine)."""

    @abstractmethod
    def probe_inputs(self, model: torch.nn.Module) -> dict[str, Any]:
        """A small fixed input (``model(**inputs)``), the same on every rank, to compare the
        trained engine with the exported folder."""

    # ------------------------------------------------------------------ export
    def model_config(self, model: torch.nn.Module) -> dict[str, Any]:
        """What the checkpoint records to rebuild the network at export (its diffusers config)."""
        return dict(model.config)

    @classmethod
    def save_export(cls, model: torch.nn.Module, folder: Path) -> None:
        """Write one exported network (``raw/`` or ``ema/``) into ``folder``."""
        model.save_pretrained(folder)

    @classmethod
    def export_model(cls, model_config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        """The network rebuilt from a consolidated checkpoint, ready for ``save_pretrained``."""
        model = cls.model_class.from_config(public_config(model_config))
        model.load_state_dict(dict(state_dict), strict=True)
        return model.eval()
