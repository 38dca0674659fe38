"""Where and in what precision a pipeline runs, and model offload between stages.

``dtype=None`` picks bf16 on a GPU (the release's models were trained in mixed precision and bf16
keeps fp32's range) and fp32 on the CPU, where half precision is slow and inexact. With
``offload=True`` a stage's networks live on the CPU and move to the GPU only while the stage runs,
so the cascade's peak memory is that of its largest stage, not of all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from cascade.errors import CascadeError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}  # fmt: skip


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise CascadeError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


@dataclass(frozen=True)
class Runtime:
    """The device a pipeline computes on, its network dtype, and whether stages offload."""

    device: torch.device
    dtype: torch.dtype
    offload: bool = False

    @classmethod
    def create(
        cls, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None, offload: bool = False
    ) -> Runtime:
        resolved = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise CascadeError(f"device {resolved} asked for, but this machine has no CUDA GPU")
        return cls(resolved, resolve_dtype(dtype, resolved), offload and resolved.type == "cuda")

    @property
    def home(self) -> torch.device:
        """Where networks wait while their stage is not running."""
        return torch.device("cpu") if self.offload else self.device

    @contextmanager
    def running(self, modules: Iterable[nn.Module]) -> Iterator[None]:
        """Put ``modules`` on the compute device for the duration of a stage (and back home after)."""
        modules = list(modules)
        if not self.offload:
            yield
            return
        for module in modules:
            module.to(self.device)
        try:
            yield
        finally:
            for module in modules:
                module.to(self.home)
            torch.cuda.empty_cache()
