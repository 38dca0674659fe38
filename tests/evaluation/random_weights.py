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


# --- cd-fvd's own networks (the reference the project's I3D and VideoMAE are checked against) ---
# Built from cd-fvd's modules directly: its `cdfvd.fvd.cdfvd` class and `load_*_model` helpers
# download the published weights when no file is given.


def calibrated_cdfvd_i3d(seed: int = 0) -> torch.nn.Module:
    """cd-fvd's ``InceptionI3d`` (the pytorch-i3d code, batch-norm eps 1e-5) with random weights
    and batch-norm statistics measured on data, in eval mode.

    Statistics from data make every layer matter: each batch norm normalises what really arrives
    there, so no layer's output is drowned or dead. Each convolution's output channels are scaled
    by factors from 1e-2 to 1 (log-spaced, shuffled), so the measured variances reach down to
    about 3e-5 (3 in 10 under 1e-3), as in a trained network where some channels are nearly
    constant: there the eps (1e-5 against 1e-3) decides the result, and a wrong eps cannot go
    unnoticed.
    """
    from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d as CdfvdI3d

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = CdfvdI3d(400, in_channels=3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                scales = torch.logspace(-2, 0, module.out_channels)[torch.randperm(module.out_channels, generator=generator)]
                module.weight.mul_(scales.view(-1, 1, 1, 1, 1))
                if module.bias is not None:
                    module.bias.normal_(0, 0.1, generator=generator)
            elif isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
                module.reset_running_stats()
                module.momentum = None  # a cumulative average: the statistics of the calibration batch
        calibration = torch.rand(2, 3, 16, 224, 224, generator=generator) * 2 - 1
        model.train()(calibration)
    return model.eval()


def random_cdfvd_videomae(seed: int = 0) -> torch.nn.Module:
    """cd-fvd's VideoMAE-v2 fine-tuning ``VisionTransformer`` as cd-fvd builds ViT-g (patch 14,
    tubelet 2, q/v biases, LayerNorm eps 1e-6, mean pooling, 16 frames at 224) but ViT-S wide
    (384, 6 heads), 2 blocks deep and MLP ratio 2, so a test runs in seconds; every weight
    random (LayerNorms and biases too, so a mis-mapped one shows), in eval mode."""
    from functools import partial

    from cdfvd.third_party.VideoMAEv2.videomaev2_finetune import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(
        img_size=224, patch_size=14, embed_dim=384, depth=2, num_heads=6, mlp_ratio=2.0, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_classes=174, all_frames=16, tubelet_size=2,
        use_mean_pooling=True,
    )  # fmt: skip
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.05)
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("fc_norm.weight"):
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0, 0.2)
    return model.eval()
