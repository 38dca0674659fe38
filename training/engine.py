"""The DeepSpeed engine, assembled from the config, around whatever model a spec built.

* :func:`select_trainable` — ``all``, ``temporal`` (temporal layers), or a regular expression
  searched in parameter names; the rest is frozen.
* :func:`deepspeed_config` / :func:`initialize` — the DeepSpeed config dict and engine (ZeRO 1/2/3,
  optimizer/parameter offload, bf16, clipping, accumulation; AdamW; warm-up + constant / linear /
  cosine learning rate as a client scheduler, saved in DeepSpeed's checkpoints).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cascade.models.blocks import is_temporal_key
from training.config import DeepSpeedSection, LRScheduleSection, TrainConfig


def trainable_predicate(spec: str) -> Callable[[str], bool]:
    if spec == "all":
        return lambda name: True
    if spec == "temporal":
        return is_temporal_key
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


def skip_cpu_shared_memory_op() -> None:
    """Keep DeepSpeed on the CPU from building its shared-memory all-reduce op.

    On the CPU, gloo runs the training collectives; the op only serves DeepSpeed's inference
    all-reduce, yet DeepSpeed JIT-compiles it when its communication backend starts: ~45 s of g++
    on every new machine or virtual environment. DeepSpeed keeps its table of usable ops in one
    dict so that edits to it hold. Call before ``deepspeed.init_distributed`` or ``initialize``."""
    import deepspeed

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def initialize(config: TrainConfig, unet: torch.nn.Module, *, on_gpu: bool) -> Any:
    """``deepspeed.initialize`` over the trainable parameters; returns the engine."""
    import deepspeed
    from torch.optim.lr_scheduler import LambdaLR

    if config.deepspeed.activation_checkpointing:
        unet.enable_gradient_checkpointing()
    if not on_gpu:
        skip_cpu_shared_memory_op()
    params = [p for p in unet.parameters() if p.requires_grad]
    schedule = LRLambda(config.lr_schedule, config.total_lr_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=unet,
        model_parameters=params,
        config=deepspeed_config(config, on_gpu=on_gpu),
        lr_scheduler=lambda optimizer: LambdaLR(optimizer, schedule),
    )
    return engine
