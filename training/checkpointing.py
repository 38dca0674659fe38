"""Checkpoints (written by every rank, reported to Ray as one checkpoint) and the model export.

A checkpoint directory (``checkpoint_<step:08d>`` in the run's storage; Ray merges the files that
each rank reports into it) holds::

    ds/latest, ds/step_<step>/...     DeepSpeed's save_checkpoint: model states, every rank's ZeRO
                                      optimizer partition, the client LR scheduler
    ema/rank_<r>.pt                   EMA shadow (ZeRO-3: one partition per rank; else rank 0's)
    data/rank_<r>.json                data-stream position of each rank (training.data state dict)
    trainer_state.json                step, config digest, world size, ZeRO stage, model kind and
                                      config, the run's config without credentials (rank 0)
    probe.pt                          final checkpoint only: a fixed input and the engine's output

:func:`export_checkpoint` consolidates the ZeRO shards into full fp32 weights with DeepSpeed's
``zero_to_fp32`` utilities (after a bf16 run, the frozen parameters are taken from the starting
model: :func:`restore_frozen_weights`), rebuilds the EMA from its partitions, and writes ``cascade.models``
folders of the model spec's class (:meth:`training.specs.spec.ModelSpec.export_model`; a LoRA run
writes its adapter alone, see :mod:`training.specs.lora`)::

    raw/      config.json + diffusion_pytorch_model.safetensors
    ema/      same, EMA weights (frozen parameters at their raw values)
    export_info.json                                              (step, run, probe check)

``<ModelClass>.from_pretrained(folder / "raw")`` (``BaseUNet3DModel`` for the base model) loads it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lavie.core.errors import UserError, message_line
from lavie.core.storage import replace_folder
from training.config import TrainConfig
from training.ema import ShardedEMA, consolidate_ema
from training.specs import spec_class

CHECKPOINT_PREFIX = "checkpoint_"
TRAINER_STATE = "trainer_state.json"
PROBE_FILE = "probe.pt"
DS_DIR = "ds"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def _rank_file(folder: Path, rank: int, suffix: str) -> Path:
    return folder / f"rank_{rank:05d}{suffix}"


# --------------------------------------------------------------------------- save / load (workers)
def save_checkpoint(
    folder: Path,
    *,
    engine: Any,
    step: int,
    rank: int,
    ema: ShardedEMA | None,
    data_state: Mapping[str, Any],
    trainer_state: Mapping[str, Any],
) -> None:
    """Write this rank's part of the checkpoint after ``step`` optimizer steps into ``folder``.

    Called on every rank (DeepSpeed's save is collective)."""
    folder.mkdir(parents=True, exist_ok=True)
    engine.save_checkpoint(str(folder / DS_DIR), tag=f"step_{step:08d}", client_state={"step": step})
    if ema is not None and ema.saves_on_this_rank():
        (folder / "ema").mkdir(exist_ok=True)
        torch.save(ema.state_dict(), _rank_file(folder / "ema", rank, ".pt"))
    (folder / "data").mkdir(exist_ok=True)
    _rank_file(folder / "data", rank, ".json").write_text(json.dumps(data_state))
    if rank == 0:
        (folder / TRAINER_STATE).write_text(json.dumps(dict(trainer_state), indent=2, default=str))


def load_checkpoint(folder: Path, *, engine: Any, rank: int, ema: ShardedEMA | None) -> tuple[int, dict[str, Any]]:
    """Restore engine (weights, optimizer, LR scheduler) and EMA; return (step, data state)."""
    state = json.loads((folder / TRAINER_STATE).read_text())
    load_path, client = engine.load_checkpoint(
        str(folder / DS_DIR), load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise RuntimeError(f"DeepSpeed found no checkpoint under {folder / DS_DIR}")
    step = int(client.get("step", state["step"]))
    if ema is not None:
        files = sorted((folder / "ema").glob("rank_*.pt"))
        if files:
            ema.load_state_dict([torch.load(f, map_location="cpu", weights_only=True) for f in files])
    data_state = json.loads(_rank_file(folder / "data", rank, ".json").read_text())
    return step, data_state


def read_trainer_state(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / TRAINER_STATE).read_text())


# --------------------------------------------------------------------------- consolidation / export
def consolidate(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trainer state, raw fp32 state dict, EMA state dict) of a checkpoint directory."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    folder = Path(folder)
    state = read_trainer_state(folder)
    raw = get_fp32_state_dict_from_zero_checkpoint(str(folder / DS_DIR))
    raw = {key: value.detach().float().contiguous() for key, value in raw.items()}
    if state.get("zero_stage") == 1:
        add_zero1_frozen_parameters(folder, raw)
    restore_frozen_weights(state, raw)
    files = sorted((folder / "ema").glob("rank_*.pt"))
    ema_part = consolidate_ema([torch.load(f, map_location="cpu", weights_only=True) for f in files])
    ema = dict(raw)
    for key, value in ema_part.items():
        if key not in raw:
            raise RuntimeError(f"EMA holds {key}, which the consolidated weights lack")
        ema[key] = value.to(raw[key].dtype).view(raw[key].shape)
    return state, raw, ema


def add_zero1_frozen_parameters(folder: Path, raw: dict[str, torch.Tensor]) -> None:
    """Add the frozen parameters that ``zero_to_fp32`` leaves out of a ZeRO-1 checkpoint.

    DeepSpeed writes frozen parameters into the ZeRO part of a checkpoint from stage 2 on only;
    at stage 1 they are in the model-states file alone, in the whole module's state dict (in the
    module's precision: exact in fp32, rounded under bf16, see :func:`restore_frozen_weights`)."""
    tag = (folder / DS_DIR / "latest").read_text().strip()
    # DeepSpeed's own file, which pickles its config objects: not loadable with weights_only.
    states = torch.load(folder / DS_DIR / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    for key, value in states["module"].items():
        if key not in raw:
            raw[key] = value.detach().float().contiguous()


def restore_frozen_weights(state: Mapping[str, Any], raw: dict[str, torch.Tensor]) -> None:
    """Put the exact starting values of the frozen parameters into ``raw`` after a bf16 run.

    Under bf16, DeepSpeed casts the whole module to bf16 and keeps fp32 master weights of the
    trained parameters only, so a checkpoint holds the frozen ones (VSR spatial layers, a LoRA
    run's base model) rounded to bf16. They never change: the starting model is rebuilt from the
    run's config as the trainer built it (:meth:`ModelSpec.starting_model`) and its values taken,
    each checked to round to the stored one, so that a starting folder changed since training is
    an error rather than a silent mix. Checkpoints of fp32 runs hold them exactly already.
    """
    recorded = state.get("config")
    if recorded is None or not recorded["deepspeed"]["bf16"]:
        return
    config = TrainConfig.model_validate(recorded)
    spec = spec_class(config.model.kind)(config)
    if spec.trainable == "all":
        return
    where = config.model.unet or config.model.pretrained
    try:
        start = spec.starting_model()
    except Exception as exc:  # noqa: BLE001 - any failure to load the folder is reported in one line
        raise UserError(
            f"export: the bf16 checkpoint rounds its frozen weights; their exact values come from the "
            f"starting model {where}, which cannot be loaded ({message_line(exc)})"
        ) from None
    for key, param in start.named_parameters():
        if param.requires_grad:
            continue
        if key not in raw:
            raise RuntimeError(f"the checkpoint lacks the frozen weight {key} of the starting model {where}")
        exact = param.detach().float().contiguous()
        if not torch.equal(exact.to(torch.bfloat16).float(), raw[key]):
            raise UserError(
                f"export: the frozen weight {key} of the starting model {where} is not the one the run "
                "trained with (the folder changed since)"
            )
        raw[key] = exact


def model_of(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(model kind, model config) of a trainer state; checkpoints of earlier versions, which
    trained the base model only, recorded its config as ``unet_config``."""
    return state.get("model_kind", "base"), state.get("model_config") or state["unet_config"]


def probe_difference(model: torch.nn.Module, probe: Mapping[str, Any]) -> float:
    """Largest absolute difference between ``model`` and the engine's recorded probe output, the
    inputs in the model's dtype (the engine of a bf16 run computed in bf16: the model cast to
    bf16 reproduces it)."""
    dtype = next(model.parameters()).dtype
    inputs = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in probe["inputs"].items()}
    with torch.no_grad():
        out = model(**inputs).sample
    return float((out.float() - probe["output"].float()).abs().max())


def export_checkpoint(checkpoint_dir: str | Path, out_uri: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Consolidate a checkpoint directory and write ``raw/`` and ``ema/`` UNet folders to ``out_uri``
    (a local path or a bucket URL). Returns the export info (also written as export_info.json)."""
    checkpoint_dir = Path(checkpoint_dir)
    state, raw, ema = consolidate(checkpoint_dir)
    info: dict[str, Any] = {
        "step": state["step"],
        "run": state.get("run"),
        "checkpoint": str(checkpoint_dir),
        "prediction_type": state.get("prediction_type"),
        "zero_stage": state.get("zero_stage"),
        "world_size": state.get("world_size"),
        "ema": state.get("ema_enabled", False),
    }
    kind, model_config = model_of(state)
    spec = spec_class(kind)
    info["model_kind"] = kind
    staging = Path(tempfile.mkdtemp(prefix="lavie-export-"))
    try:
        raw_model = spec.export_model(model_config, raw)
        spec.save_export(raw_model, staging / "raw")
        probe_path = checkpoint_dir / PROBE_FILE
        if probe_path.is_file():
            probe = torch.load(probe_path, map_location="cpu", weights_only=True)
            info["probe_max_abs_diff"] = probe_difference(raw_model.to(probe["output"].dtype), probe)
            info["probe_dtype"] = str(probe["output"].dtype)
        del raw_model
        spec.save_export(spec.export_model(model_config, ema), staging / "ema")
        (staging / "export_info.json").write_text(json.dumps(info, indent=2))
        replace_folder(staging, out_uri, storage_options)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info
