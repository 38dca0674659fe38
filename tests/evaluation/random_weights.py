"""Random networks in the published layouts, for the evaluation tests (imported by name: pytest puts
this folder on the path)."""

from __future__ import annotations

import torch

from evaluation.i3d import InceptionI3d


def random_i3d(seed: int = 0) -> InceptionI3d:
    """An I3D whose every weight and batch-norm statistic is random (a fresh batch norm is the
    identity, which would hide a mis-mapped statistic). He-initialised convolutions keep the
    signal alive through the 20 layers, so different videos get clearly different features
    (PyTorch's default initialisation shrinks it to features that differ by 1e-7)."""
    torch.manual_seed(seed)
    model = InceptionI3d().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model
