"""The DeepSpeed engine as `lavie train` builds it, in this process (one rank over gloo): optimizer
offload, gradient accumulation, activation checkpointing, the temporal-only subset."""

from __future__ import annotations

import os

import pytest
import torch

from cascade.models import BaseUNet3DModel
from training.checkpointing import export_checkpoint, save_checkpoint
from training.config import TrainConfig, public_dump
from training.ema import ShardedEMA
from training.engine import initialize, select_trainable, skip_cpu_shared_memory_op
from training.objective import joint_loss
from training.specs.base_model import BaseModelSpec
from training.trainer import save_probe


@pytest.fixture(scope="module")
def single_rank():
    import deepspeed

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29600 + os.getpid() % 300), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():  # fmt: skip
        os.environ.setdefault(key, value)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    skip_cpu_shared_memory_op()
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    yield
    torch.set_num_threads(threads)


def _inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 5, 8, 8, generator=g)
    return sample, torch.tensor([500]), torch.randn(1, 5, 77, 32, generator=g), torch.randn(1, 4, 5, 8, 8, generator=g)


def test_offload_accumulation_checkpointing_and_temporal_subset(make_config, single_rank):
    config = TrainConfig.model_validate(
        make_config(
            deepspeed={"zero_stage": 2, "offload_optimizer": True, "grad_accum": 2, "activation_checkpointing": True,
                       "bf16": False},
            scaling={"num_workers": 1}, trainable="temporal",
        )
    )  # fmt: skip
    torch.manual_seed(0)
    unet = BaseModelSpec(config).build_model()
    names = select_trainable(unet, config.trainable)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    engine = initialize(config, unet, on_gpu=False)
    assert engine.zero_optimization_stage() == 2 and engine.zero_cpu_offload()
    assert unet.gradient_checkpointing
    assert type(engine.optimizer.optimizer).__name__ == "AdamW"  # torch's: nothing to compile on CPU
    sample, timestep, context, target = _inputs(unet)
    for micro in range(4):
        out = engine(sample, timestep, context, num_image_frames=1).sample
        engine.backward(joint_loss(out, target, 4, 1.0).total)
        boundary = engine.is_gradient_accumulation_boundary()
        engine.step()
        assert boundary == (micro % 2 == 1)
        if micro == 0:  # no optimizer step inside an accumulation window
            assert all(torch.equal(p, before[n]) for n, p in unet.named_parameters())
    assert engine.global_steps == 2
    changed = {n for n, p in unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(names)  # only temporal layers moved
    assert all("attn_temp" in n or "norm_temp" in n for n in changed)


@pytest.mark.parametrize(("stage", "bf16"), [(1, False), (2, False), (3, False), (1, True), (3, True)])
def test_export_of_a_partly_frozen_model_holds_the_frozen_weights(stage, bf16, make_config, single_rank, tmp_path):
    """The export holds the frozen (spatial) weights bit-identical at every ZeRO stage (ZeRO-1
    keeps them out of zero_to_fp32's part of the checkpoint) and under bf16 (the engine holds them
    rounded), and the EMA only covers the trained ones."""
    config = TrainConfig.model_validate(
        make_config(deepspeed={"zero_stage": stage, "bf16": bf16}, scaling={"num_workers": 1}, trainable="temporal")
    )
    torch.manual_seed(0)
    unet = BaseModelSpec(config).build_model()
    select_trainable(unet, config.trainable)
    frozen = {n: p.detach().clone() for n, p in unet.named_parameters() if not p.requires_grad}
    engine = initialize(config, unet, on_gpu=False)
    ema = ShardedEMA(engine.module, 0.5, rank=0, world_size=1)
    dtype = torch.bfloat16 if bf16 else torch.float32
    sample, timestep, context, target = _inputs(unet)
    for step in range(2):
        out = engine(sample.to(dtype), timestep, context.to(dtype), num_image_frames=1).sample
        engine.backward(joint_loss(out.float(), target, 4, 1.0).total)
        engine.step()
        ema.update(step)
    folder = tmp_path / "checkpoint"
    state = {"step": 2, "unet_config": dict(unet.config), "run": "t", "ema_enabled": True, "zero_stage": stage,
             "config": public_dump(config)}  # fmt: skip
    save_checkpoint(folder, engine=engine, step=2, rank=0, ema=ema, data_state={}, trainer_state=state)
    save_probe(engine, BaseModelSpec(config).probe_inputs(unet), folder, 0, dtype, torch.device("cpu"))
    info = export_checkpoint(folder, str(tmp_path / "export"))
    assert info["step"] == 2 and info["probe_max_abs_diff"] <= 1e-6
    raw = BaseUNet3DModel.from_pretrained(tmp_path / "export" / "raw").state_dict()
    ema_weights = BaseUNet3DModel.from_pretrained(tmp_path / "export" / "ema").state_dict()
    assert all(torch.equal(raw[n], w) and torch.equal(ema_weights[n], w) for n, w in frozen.items())
    trained = [n for n in raw if n not in frozen]
    assert trained and any(not torch.equal(raw[n], ema_weights[n]) for n in trained)
