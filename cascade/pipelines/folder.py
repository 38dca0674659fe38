"""The cascade folder: one directory holding every part the inference stages load.

::

    model_index.json         names the parts present (below) and the VSR's max noise level
    base/                    cascade.models folders; any of the four may be absent
    interpolation/
    vsr/
    long_video/
    text_encoder/ tokenizer/ vae/                 SD 1.x's, shared by base, interpolation, long video
    scheduler/                                    the base model's training schedule
    interpolation_scheduler/                      DDIM on the interpolation model's schedule
    vsr_text_encoder/ vsr_tokenizer/ vsr_vae/     the x4 upscaler's
    vsr_scheduler/ vsr_low_res_scheduler/

:func:`assemble_cascade` builds one from ``lavie train`` exports (or plain ``cascade.models``
folders) and local SD 1.x and x4-upscaler folders; the release importer builds the same shape from
the published checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.errors import ModelLoadError
from cascade.models import registry
from cascade.models.exports import EXPORT_INFO, model_folder
from lavie.core.config import read_mapping

MODEL_INDEX = "model_index.json"
#: Stage name → its model folder in a cascade folder, and the class that folder must hold.
STAGE_MODELS: dict[str, tuple[str, str]] = {
    "base": ("base", "BaseUNet3DModel"),
    "interpolation": ("interpolation", "InterpolationUNet3DModel"),
    "vsr": ("vsr", "VSRUNet3DModel"),
    "long_video": ("long_video", "LongVideoUNet3DModel"),
}
SD_PARTS = ("text_encoder", "tokenizer", "vae")
VSR_PARTS = {  # cascade folder name → x4 upscaler folder name
    "vsr_text_encoder": "text_encoder",
    "vsr_tokenizer": "tokenizer",
    "vsr_vae": "vae",
    "vsr_scheduler": "scheduler",
    "vsr_low_res_scheduler": "low_res_scheduler",
}
#: The x4 upscaler's default when its model_index.json does not say.
DEFAULT_MAX_NOISE_LEVEL = 350


@dataclass(frozen=True)
class CascadeFolder:
    """A cascade folder on disk, with its ``model_index.json`` read."""

    path: Path
    index: Mapping[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike) -> CascadeFolder:
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"{path}: no such cascade folder")
        index_file = path / MODEL_INDEX
        if not index_file.is_file():
            raise ModelLoadError(f"{path}: not a cascade folder (no {MODEL_INDEX}; build one with `lavie cascade assemble`)")
        return cls(path, read_mapping(index_file))

    def has_stage(self, stage: str) -> bool:
        return stage in self.index.get("stages", []) and (self.path / STAGE_MODELS[stage][0]).is_dir()

    def stage_model(self, stage: str) -> Path:
        """The model folder of ``stage``; a one-line error when the cascade has none."""
        if not self.has_stage(stage):
            present = ", ".join(s for s in STAGE_MODELS if self.has_stage(s)) or "none"
            raise ModelLoadError(f"{self.path}: this cascade has no {stage} model (stages present: {present})")
        return self.path / STAGE_MODELS[stage][0]

    def part(self, name: str) -> Path:
        """A shared part (``vae``, ``vsr_scheduler``...); a one-line error when absent."""
        folder = self.path / name
        if not folder.is_dir():
            raise ModelLoadError(f"{self.path}: cascade folder has no {name}/")
        return folder

    @property
    def max_noise_level(self) -> int:
        return int(self.index.get("vsr_max_noise_level", DEFAULT_MAX_NOISE_LEVEL))


def assemble_cascade(
    out: str | os.PathLike,
    *,
    sd: str | os.PathLike,
    upscaler: str | os.PathLike | None = None,
    base: str | os.PathLike | None = None,
    interpolation: str | os.PathLike | None = None,
    vsr: str | os.PathLike | None = None,
    long_video: str | os.PathLike | None = None,
    base_scheduler: Mapping[str, Any] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Path:
    """Build a cascade folder at ``out`` (replaced if present) from model folders and SD parts.

    Each model is a ``lavie train`` export (its ``ema/`` weights when the run kept an EMA, else
    ``raw/``) or a ``cascade.models`` folder. ``sd`` is a local SD 1.x folder (text encoder,
    tokenizer, VAE, scheduler); ``upscaler`` a local x4-upscaler folder, needed with ``vsr``.
    ``base_scheduler`` replaces the SD folder's scheduler config (the release's models trained on
    linear betas). The scheduler's ``prediction_type`` follows the base export's objective. Files
    are hard-linked where the file system allows, else copied. ``model_index.json`` records where
    each model came from: the paths given, or ``sources`` per stage (an imported checkpoint, say).
    """
    out, sd = Path(out), Path(sd)
    models = {"base": base, "interpolation": interpolation, "vsr": vsr, "long_video": long_video}
    given = {stage: Path(path) for stage, path in models.items() if path is not None}
    if not given:
        raise ModelLoadError(f"{out}: a cascade needs at least one model (base, interpolation, vsr or long_video)")
    for name in SD_PARTS + ("scheduler",):
        if not (sd / name).is_dir():
            raise ModelLoadError(f"{sd}: not a Stable Diffusion folder (no {name}/)")
    if "vsr" in given:
        if upscaler is None:
            raise ModelLoadError("a VSR model needs the x4 upscaler folder it was built from (--upscaler)")
        for name in VSR_PARTS.values():
            if not (Path(upscaler) / name).is_dir():
                raise ModelLoadError(f"{upscaler}: not an x4 upscaler folder (no {name}/)")
    resolved = {stage: _model_folder(stage, path) for stage, path in given.items()}

    staging = out.with_name(out.name + ".assembling")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for stage, (folder, _weights_info) in resolved.items():
            _link_tree(folder, staging / STAGE_MODELS[stage][0])
        for name in SD_PARTS:
            _link_tree(sd / name, staging / name)
        scheduler = dict(base_scheduler or read_mapping(sd / "scheduler" / "scheduler_config.json"))
        prediction = next((info.get("prediction_type") for _, info in resolved.values() if info.get("prediction_type")), None)
        if prediction:
            scheduler["prediction_type"] = prediction
        _write_scheduler(staging / "scheduler", scheduler, "DDPMScheduler")
        interpolation_scheduler = {k: v for k, v in scheduler.items() if k not in ("variance_type", "_class_name")}
        _write_scheduler(staging / "interpolation_scheduler", interpolation_scheduler, "DDIMScheduler")
        index: dict[str, Any] = {
            "_class_name": "LaVieCascade",
            "stages": sorted(resolved),
            "models": {stage: str(path) for stage, path in given.items()} | dict(sources or {}),
        }
        if "vsr" in resolved:
            upscaler = Path(upscaler)
            for name, source in VSR_PARTS.items():
                _link_tree(upscaler / source, staging / name)
            upscaler_index = read_mapping(upscaler / MODEL_INDEX) if (upscaler / MODEL_INDEX).is_file() else {}
            index["vsr_max_noise_level"] = int(upscaler_index.get("max_noise_level", DEFAULT_MAX_NOISE_LEVEL))
        (staging / MODEL_INDEX).write_text(json.dumps(index, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _model_folder(stage: str, path: Path) -> tuple[Path, dict[str, Any]]:
    """The ``cascade.models`` folder of an export or model folder, checked to hold ``stage``'s class."""
    if not path.is_dir():
        raise ModelLoadError(f"{path}: no such model folder for the {stage} stage")
    info = read_mapping(path / EXPORT_INFO) if (path / EXPORT_INFO).is_file() else {}
    path = model_folder(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path}: not a model folder or a lavie train export (no config.json or {EXPORT_INFO})")
    class_name = registry.canonical_name(str(read_mapping(config_file).get("_class_name")))
    expected = STAGE_MODELS[stage][1]
    if class_name != expected:
        raise ModelLoadError(f"{path}: holds a {class_name}, but the {stage} stage needs a {expected}")
    return path, info


def _link_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_scheduler(folder: Path, config: Mapping[str, Any], class_name: str) -> None:
    folder.mkdir(parents=True)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    (folder / "scheduler_config.json").write_text(json.dumps({"_class_name": class_name, **config}, indent=2))
