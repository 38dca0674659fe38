"""End to end on CPU for the kinds beyond the base model: interpolation, VSR, long video and LoRA,
each a 2-worker ZeRO-2 run of a tiny model (one run per kind, shared by every check of it).

For every kind: the loss falls on a set it can overfit; frozen parameters are bit-identical
after training (the VSR and LoRA runs, which have frozen layers, train in bf16, the default); the
export loads in the matching inference pipeline (``cascade.pipelines``) and reproduces the
engine's probe output, at the engine's precision. The VSR run is also killed mid-run, restarted from its
checkpoint, and must match the uninterrupted run step for step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import fault_injection
import numpy as np
import pytest
import torch
from test_train_e2e import _fit, _max_diff, _state
from train_configs import kind_config

from cascade.models import BaseUNet3DModel, VSRUNet3DModel, load_spatial_lora
from cascade.models.blocks import is_temporal_key
from cascade.pipelines import (
    InterpolationPipeline,
    LongVideoPipeline,
    TextToVideoPipeline,
    VSRPipeline,
    assemble_cascade,
)
from training import rng
from training.checkpointing import PROBE_FILE, checkpoint_name, consolidate, probe_difference
from training.config import load_train_config
from training.data import JointLoader
from training.metrics import final_losses, read_metrics
from training.specs import spec_class
from training.specs.spec import DrawKey

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
STEPS = 12
KINDS = ("interpolation", "vsr", "long_video", "lora")


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kind-runs")


#: Kinds that train with the default bf16 (the others in fp32): DeepSpeed keeps their frozen layers
#: in bf16, and the export must still hold them bit-identical.
BF16_KINDS = ("vsr", "lora")


def settings(kind: str) -> dict[str, dict[str, Any]]:
    """The run's optimizer and precision: a rate that overfits in 12 steps (the LoRA adapter,
    0.6 % of the weights, needs a larger one)."""
    return {
        "optimizer": {"lr": 5e-2 if kind == "lora" else 5e-3, "weight_decay": 0.0},
        "deepspeed": {"bf16": kind in BF16_KINDS},
    }


@pytest.fixture(scope="module")
def runs(cascade_data, storage, ray_cluster) -> dict[str, dict[str, Any]]:
    """One finished run per kind, started on demand."""
    done: dict[str, dict[str, Any]] = {}

    def get(kind: str) -> dict[str, Any]:
        if kind not in done:
            done[kind] = _fit(kind_config(kind, cascade_data, storage, kind, **settings(kind)))
        return done[kind]

    return get


def _exported(kind: str, run: dict[str, Any], cascade_data) -> torch.nn.Module:
    raw = Path(run["result"].export_uri) / "raw"
    if kind == "lora":
        model = BaseUNet3DModel.from_pretrained(cascade_data["base"])
        load_spatial_lora(model, raw)
        return model
    return spec_class(kind).model_class.from_pretrained(raw)


def _loss_on_the_first_steps(config, model: torch.nn.Module, steps: int = 6) -> float:
    """Mean loss of ``model`` on rank 0's first batches with the draws training made for them:
    the same noise, timesteps and patches (the training curve mixes in their variance)."""
    spec = spec_class(config.model.kind)(config)
    spec.prepare(torch.device("cpu"), torch.float32, torch.float32, None)
    batches = JointLoader(spec.build_dataset(0, config.scaling.num_workers, 0, None))
    with torch.no_grad():
        losses = [
            float(spec.loss(model.eval(), batch, DrawKey(config.run.seed, step, 0, 0)).parts.total)
            for step, batch in zip(range(steps), batches)
        ]
    return float(np.mean(losses))


@pytest.mark.parametrize("kind", KINDS)
def test_the_loss_falls_and_the_export_reproduces_the_engine(kind, runs, cascade_data):
    run, config = runs(kind), runs(kind)["config"]
    assert run["result"].step == STEPS and run["rows"][-1]["checkpoint"] == checkpoint_name(STEPS)
    assert all(math.isfinite(run["losses"][s]) for s in range(1, STEPS + 1))
    export = run["result"].export
    assert export["model_kind"] == kind and export["probe_max_abs_diff"] <= 1e-5
    torch.manual_seed(rng.key_seed(config.run.seed, rng.INIT))  # the trainer's starting model
    start = spec_class(kind)(config).build_model()
    before, after = _loss_on_the_first_steps(config, start), _loss_on_the_first_steps(config, _exported(kind, run, cascade_data))
    assert after < 0.9 * before, f"{kind}: loss on the training batches {before:.4f} -> {after:.4f}"


def _probe(run: dict[str, Any]) -> dict[str, Any]:
    """The engine's output on the spec's probe input (bf16 for the bf16 kinds)."""
    return torch.load(Path(run["result"].checkpoint) / PROBE_FILE, weights_only=True)


def _reference(kind: str, run: dict[str, Any], cascade_data) -> dict[str, Any]:
    """What a pipeline's network must compute on the probe input: the engine's output for the fp32
    kinds; for the bf16 kinds, the exported network's, in bf16 in this process. (The export task
    checked that one against the engine: ``probe_max_abs_diff``, asserted above. bf16 CPU kernels
    may differ by one bf16 unit between processes: measured once, 0.006, in the full suite.)"""
    probe = _probe(run)
    if probe["output"].dtype == torch.float32:
        return probe
    with torch.no_grad():
        inputs = {k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in probe["inputs"].items()}
        output = _exported(kind, run, cascade_data).eval().to(torch.bfloat16)(**inputs).sample
    return {"inputs": probe["inputs"], "output": output}


PIPELINES = {"interpolation": InterpolationPipeline, "vsr": VSRPipeline, "long_video": LongVideoPipeline}


@pytest.mark.parametrize("kind", ["interpolation", "vsr", "long_video"])
def test_the_export_loads_in_its_pipeline(kind, runs, cascade_data, tmp_path):
    run = runs(kind)
    raw = Path(run["result"].export_uri) / "raw"  # the probe ran on the trained weights, not the EMA
    models = {kind: raw, "base": cascade_data["base"]} if kind == "long_video" else {kind: raw}  # it extends base clips
    folder = assemble_cascade(tmp_path / "cascade", sd=cascade_data["sd"], upscaler=cascade_data["upscaler"], **models)
    pipeline = PIPELINES[kind].from_pretrained(folder, dtype=_probe(run)["output"].dtype)
    unet = pipeline.continuation.unet if kind == "long_video" else pipeline.unet
    assert type(unet) is spec_class(kind).model_class
    assert probe_difference(unet.eval(), _reference(kind, run, cascade_data)) <= 1e-5


def test_the_lora_export_is_the_adapter_alone_and_the_pipeline_applies_it(runs, cascade_data, tmp_path):
    run = runs("lora")
    raw = Path(run["result"].export_uri) / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["pytorch_lora_weights.safetensors"]
    folder = assemble_cascade(tmp_path / "cascade", sd=cascade_data["sd"], base=cascade_data["base"])
    pipeline = TextToVideoPipeline.from_pretrained(folder, dtype=_probe(run)["output"].dtype)
    pipeline.load_lora(raw)
    reference = _reference("lora", run, cascade_data)
    assert probe_difference(pipeline.unet.eval(), reference) <= 1e-5
    pipeline.unload_lora()
    assert probe_difference(pipeline.unet.eval(), reference) > 1e-2  # the adapter changed the model


def test_frozen_parameters_are_bit_identical(runs, cascade_data):
    assert all(runs(kind)["config"].deepspeed.bf16 for kind in BF16_KINDS)  # the engine held them in bf16
    # VSR: the upscaler's spatial layers; only the temporal layers moved.
    _, raw, _ = consolidate(runs("vsr")["result"].checkpoint)
    start = VSRUNet3DModel.from_pretrained_2d(cascade_data["upscaler"]).state_dict()
    spatial = [key for key in start if not is_temporal_key(key)]
    assert spatial and all(torch.equal(raw[key], start[key]) for key in spatial)
    assert any(not torch.equal(raw[key], start[key]) for key in start if is_temporal_key(key))
    # LoRA: every weight of the base model, temporal layers included; only the adapter moved.
    _, raw, _ = consolidate(runs("lora")["result"].checkpoint)
    base = BaseUNet3DModel.from_pretrained(cascade_data["base"]).state_dict()
    adapted = {key.replace(".base_layer.", "."): value for key, value in raw.items() if ".lora_" not in key}
    assert adapted.keys() == base.keys() and all(torch.equal(adapted[key], base[key]) for key in base)
    model = BaseUNet3DModel.from_pretrained(cascade_data["base"])
    load_spatial_lora(model, Path(runs("lora")["result"].export_uri) / "raw")
    assert any(".lora_" in key and value.abs().sum() > 0 for key, value in model.state_dict().items())


def test_the_curriculum_mixes_videos_and_image_clips_for_vsr(runs):
    final = runs("vsr")["rows"][-1]
    assert final["count/webvid"] > 0 and final["count/laion"] > 0
    assert final["count/webvid"] + final["count/laion"] == 2 * STEPS
    assert final["skipped/laion"] == 0  # 48-pixel images pass min_image_side 48


def test_killed_vsr_worker_resumes_and_matches_the_uninterrupted_run(runs, cascade_data, storage, ray_cluster, tmp_path):
    reference = runs("vsr")
    raw = kind_config("vsr", cascade_data, storage, "vsr-killed", **settings("vsr"), run={"max_failures": 2})
    config = load_train_config(raw)
    result = fault_injection.train_killing_a_worker(config, rank=0, step=6, checkpoint_step=4, folder=tmp_path).result
    assert result.step == STEPS
    rows = read_metrics(config.run_uri())
    assert [int(r["step"]) for r in rows] == [*range(1, 7), *range(5, STEPS + 1)]
    losses = final_losses(rows)
    assert [losses[s] for s in range(1, STEPS + 1)] == [reference["losses"][s] for s in range(1, STEPS + 1)]
    for which in ("raw", "ema"):
        resumed = VSRUNet3DModel.from_pretrained(Path(result.export_uri) / which)
        uninterrupted = VSRUNet3DModel.from_pretrained(Path(reference["result"].export_uri) / which)
        assert _max_diff(_state(resumed), _state(uninterrupted)) == 0.0
