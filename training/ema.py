"""Exponential moving average of the trained weights that works under every ZeRO stage.

Choice: **each rank keeps the EMA of what it owns, never gathering**.

* ZeRO-3: a rank owns one partition of every parameter (``param.ds_tensor``: the flattened
  parameter, padded to a multiple of the world size, split evenly, rank ``r`` holding elements
  ``[r * n, (r + 1) * n)``). Its EMA is a float32 copy of that partition, updated in place after
  each optimizer step: no communication, ``1 / world`` of the EMA memory per rank. Gathering with
  ``deepspeed.zero.GatheredParameters`` instead would all-gather the whole model every step.
* ZeRO-1/2: parameters are replicated, so every rank holds the same full EMA; rank 0 saves it.

Only trainable parameters have an EMA (a frozen weight's average is itself). The state saved per
rank is ``{"meta": ..., "shadow": {name: tensor}}``; :func:`consolidate_ema` rebuilds full tensors
from the files of all ranks (concatenate the partitions in rank order, drop the padding, reshape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def _partition(param: torch.nn.Parameter) -> torch.Tensor:
    """The part of ``param`` this rank owns: the ZeRO-3 partition, or the whole tensor."""
    ds_tensor = getattr(param, "ds_tensor", None)
    return ds_tensor if ds_tensor is not None else param.data


class ShardedEMA:
    """EMA of the trainable parameters of ``module`` (a DeepSpeed engine's ``module``)."""

    def __init__(self, module: torch.nn.Module, decay: float, *, rank: int, world_size: int, start_step: int = 0) -> None:
        self.decay = decay
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.params = {name: p for name, p in module.named_parameters() if p.requires_grad}
        self.zero3 = any(hasattr(p, "ds_tensor") for p in self.params.values())
        with torch.no_grad():
            self.shadow = {name: _partition(p).detach().float().clone().flatten() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimizer step ``step`` (0-based); before ``start_step`` copy."""
        weight = 1.0 if step < self.start_step else 1.0 - self.decay
        for name, param in self.params.items():
            self.shadow[name].lerp_(_partition(param).detach().float().flatten(), weight)

    def saves_on_this_rank(self) -> bool:
        return self.zero3 or self.rank == 0

    def state_dict(self) -> dict[str, Any]:
        meta = {
            name: {
                "shape": list(getattr(p, "ds_shape", p.shape)),
                "numel": int(getattr(p, "ds_numel", p.numel())),
            }
            for name, p in self.params.items()
        }
        return {
            "decay": self.decay,
            "zero3": self.zero3,
            "rank": self.rank,
            "world_size": self.world_size,
            "meta": meta,
            "shadow": {name: t.clone() for name, t in self.shadow.items()},
        }

    def load_state_dict(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Load from the saved states of all ranks (ZeRO-3: this rank's; otherwise rank 0's)."""
        by_rank = {int(s["rank"]): s for s in states}
        state = by_rank.get(self.rank if self.zero3 else 0)
        if state is None or bool(state["zero3"]) != self.zero3 or int(state["world_size"]) != self.world_size and self.zero3:
            raise RuntimeError(
                f"EMA state does not match this run (rank {self.rank}, world {self.world_size}, "
                f"zero3={self.zero3}); saved ranks: {sorted(by_rank)}"
            )
        if set(state["shadow"]) != set(self.shadow):
            raise RuntimeError("EMA state holds other parameters than the trainable ones of this run")
        for name, tensor in state["shadow"].items():
            if tensor.shape != self.shadow[name].shape:
                raise RuntimeError(f"EMA state of {name} has shape {tuple(tensor.shape)}, expected {tuple(self.shadow[name].shape)}")
            self.shadow[name].copy_(tensor)


def consolidate_ema(states: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Full EMA tensors from the states saved by all ranks."""
    if not states:
        return {}
    ordered = sorted(states, key=lambda s: int(s["rank"]))
    first = ordered[0]
    if not first["zero3"]:
        return {name: t.view(first["meta"][name]["shape"]) for name, t in first["shadow"].items()}
    world = int(first["world_size"])
    if [int(s["rank"]) for s in ordered] != list(range(world)):
        raise RuntimeError(f"EMA partitions of ranks {[s['rank'] for s in ordered]} found, expected 0..{world - 1}")
    full = {}
    for name, meta in first["meta"].items():
        flat = torch.cat([s["shadow"][name] for s in ordered])
        full[name] = flat[: meta["numel"]].view(meta["shape"]).clone()
    return full
