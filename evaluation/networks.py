"""What the FVD feature networks (:mod:`evaluation.i3d`, :mod:`evaluation.videomae`) share: the
record of a loaded network, and the check of a state dict against the layout a network expects.

A loaded network says what it computes and how (``lineage``, ``settings``): two runs whose
checkpoint bytes are the same but whose computation differs (the I3D's batch-norm eps) must not
share work files or cached statistics, so :attr:`FeatureNetwork.identity` covers all three.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavie.core.errors import UserError

#: A key that only one known layout has, and what to say when it turns up in the wrong place.
_KNOWN_LAYOUTS = {
    "Conv3d_1a_7x7.conv3d.weight": "an I3D in the pytorch-i3d layout (give it as --i3d)",
    "patch_embed.proj.weight": "a VideoMAE-v2 ViT (give it as --videomae)",
    "RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w": "a TensorFlow I3D (convert it to the pytorch-i3d layout)",
}


@dataclass
class FeatureNetwork(ABC):
    """A network loaded for FVD: ``features(videos)`` gives ``(B, dim)`` float32 features."""

    module: nn.Module
    path: str
    format: str  # "state_dict" or "torchscript"
    sha256: str
    lineage: str  # how it computes, e.g. "pytorch-i3d"
    computation: str  # the lineage in words
    settings: dict[str, Any] = field(default_factory=dict)  # what else changes its numbers (bn_eps)
    device: torch.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> FeatureNetwork:
        self.module.to(device)
        self.device = torch.device(device)
        return self

    @property
    def identity(self) -> str:
        """The checkpoint's bytes and how they compute: the key of work files and cached statistics."""
        return json.dumps({"sha256": self.sha256, "lineage": self.lineage, **self.settings}, sort_keys=True)

    def describe(self) -> dict[str, Any]:
        """The network for result.json and the report."""
        return {"path": self.path, "sha256": self.sha256, "format": self.format, "lineage": self.lineage,
                **self.settings, "computation": self.computation}  # fmt: skip

    @abstractmethod
    def features(self, videos: torch.Tensor) -> torch.Tensor: ...


def other_layout(state: dict[str, torch.Tensor], own_marker: str) -> str:
    """``"; the file is <what>"`` when a key of ``state`` marks another known network, else ``""``."""
    what = next((what for key, what in _KNOWN_LAYOUTS.items() if key in state and key != own_marker), None)
    return f"; the file is {what}" if what and own_marker not in state else ""


def check_layout(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path | str, layout: str,
    *, optional: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:  # fmt: skip
    """A one-line :class:`UserError` unless ``state`` has exactly the keys and shapes of
    ``expected`` (``optional`` keys may be absent). It names the first key of the file that does
    not fit (else the first missing key, else the first wrong shape), and what the file is when
    it is another known network. ``layout`` completes "not ...", e.g. "an I3D checkpoint in the
    pytorch-i3d layout"."""
    where = f"{path}: not {layout}"
    unexpected = [key for key in state if key not in expected]
    missing = [key for key in expected if key not in state and key not in optional]
    hint = other_layout(state, next(iter(expected)))  # a network's first key marks its own layout
    if unexpected:
        first_missing = f", the first missing is '{missing[0]}'" if missing else ""
        raise UserError(f"{where}: key '{unexpected[0]}' does not fit ({len(unexpected)} unexpected, "
                        f"{len(missing)} missing{first_missing}){hint}")  # fmt: skip
    if missing:
        raise UserError(f"{where}: missing key '{missing[0]}' ({len(missing)} missing){hint}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise UserError(f"{where}: '{key}' has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
