"""I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) for FVD, and loading its weights.

The network's parameter names are those of the checkpoint the FVD code of VideoGPT, TATS and
their successors loads, ``i3d_pretrained_400.pt`` (the Kinetics-400 weights of the TF-hub I3D
converted to PyTorch in the layout of piergiaj/pytorch-i3d): ``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1a.bn.running_mean``, ``logits.conv3d.bias``. Every convolution is followed by a
batch norm and a ReLU, except ``logits``; convolutions and max pools pad as TensorFlow's ``SAME``
does (the input size decides the padding, the larger half at the end). The network returns the
400 Kinetics logits at each remaining time step; an FVD feature is their average over time.

The computation follows the checkpoint's lineage (:data:`LINEAGES`), because the same weights
with another batch-norm eps give another FVD:

* ``pytorch-i3d``: a state dict (torch file or ``.safetensors``) with exactly these keys and
  shapes (``num_batches_tracked`` may be absent, as in the published file). It computes as every
  public implementation that loads ``i3d_pretrained_400.pt`` does (piergiaj/pytorch-i3d,
  VideoGPT's ``videogpt/fvd/pytorch_i3d.py``, TATS, cd-fvd's ``third_party/i3d/pytorch_i3d.py``):
  batch norms with eps 1e-5, so that a number here is comparable to theirs.
* ``tf-hub``: the same state dict with the TF-hub original's eps 1e-3, only on request
  (``bn_eps=1e-3``: ``--i3d-bn-eps 1e-3`` or the protocol's ``i3d_bn_eps``), to reproduce
  numbers of the TF code (StyleGAN-V's, tf-gan's).
* ``torchscript``: a TorchScript module (``torch.jit.load``), such as StyleGAN-V's export of the
  TF-hub model, ``i3d_torchscript.pt``: it computes as itself; an eps cannot be imposed on it.
  One whose ``forward`` takes ``rescale``/``resize``/``return_features`` (StyleGAN-V's) is called
  with ``rescale=False, resize=False, return_features=True``: raw logits of inputs already in
  [-1, 1] at 224×224.

Inputs are ``(B, 3, T, 224, 224)`` float in [-1, 1] (T = 16 in the FVD protocol).
"""

from __future__ import annotations

import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.networks import FeatureNetwork, check_layout
from lavie.core.errors import UserError, message_line
from lavie.core.weights import file_sha256, load_state_dict, require_file

NUM_CLASSES = 400
#: Batch-norm eps of the PyTorch implementations that load ``i3d_pretrained_400.pt``.
PYTORCH_I3D_EPS = 1e-5
#: Batch-norm eps of the TF-hub original (deepmind/kinetics-i3d: Sonnet's ``BatchNorm`` default).
TF_HUB_EPS = 1e-3
#: How a checkpoint computes, by lineage (recorded in result.json and the report).
LINEAGES = {
    "pytorch-i3d": "state dict in the pytorch-i3d layout (i3d_pretrained_400.pt), computed as VideoGPT, TATS and "
    "cd-fvd compute it: batch-norm eps 1e-5",
    "tf-hub": "state dict in the pytorch-i3d layout, computed with the TF-hub original's batch-norm eps 1e-3 "
    "(chosen explicitly)",
    "custom-eps": "state dict in the pytorch-i3d layout, computed with a batch-norm eps chosen explicitly",
    "torchscript": "TorchScript module, computed as itself",
}
#: Inception modules: (name, channels of branch 0, 1a, 1b, 2a, 2b, 3b); the output is 0 + 1b + 2b + 3b.
MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
#: Max pools that come before the named inception module: (kernel, stride).
POOL_BEFORE = {
    "Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


def same_padding(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """``x`` (B, C, T, H, W) zero-padded as TensorFlow's ``SAME``: the output has ceil(size / stride)
    positions; of an odd total padding the extra element goes at the end."""
    pads: list[int] = []
    for dim in (2, 1, 0):  # F.pad takes the last dimension first
        size = x.shape[2 + dim]
        step = stride[dim]
        total = max(kernel[dim] - (step if size % step == 0 else size % step), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Convolution (no bias), batch norm and ReLU; ``logits`` is a plain convolution with a bias."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1), *, head: bool = False, bn_eps: float = PYTORCH_I3D_EPS,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.head = head
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=head)
        self.bn = nn.Identity() if head else nn.BatchNorm3d(out_channels, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv3d(same_padding(x, self.kernel, self.stride)))
        return x if self.head else F.relu(x)


class MaxPool3dSame(nn.Module):
    """Max pool with TensorFlow ``SAME`` padding (zeros: its inputs come out of ReLUs)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_padding(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int], bn_eps: float = PYTORCH_I3D_EPS) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3D(in_channels, c0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, c1a, bn_eps=bn_eps)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, c2a, bn_eps=bn_eps)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b, bn_eps=bn_eps)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Sequential):
    """The network up to the Kinetics logits: ``(B, 3, T, H, W)`` → ``(B, 400, T')``.

    Dropout before the logits (training only) is left out: it holds no weights. The final
    average pool is 2×7×7 with stride 1, so 16 frames at 224×224 give T' = 1. ``bn_eps``: the
    batch norms' eps (see the module docstring: 1e-5 for ``i3d_pretrained_400.pt``).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, bn_eps: float = PYTORCH_I3D_EPS) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["Conv3d_1a_7x7"] = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        layers["MaxPool3d_2a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        layers["Conv3d_2b_1x1"] = Unit3D(64, 64, bn_eps=bn_eps)
        layers["Conv3d_2c_3x3"] = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        channels = 192
        for name, widths in MIXED:
            if name in POOL_BEFORE:
                pool, kernel, stride = POOL_BEFORE[name]
                layers[pool] = MaxPool3dSame(kernel, stride)
            module = InceptionModule(channels, widths, bn_eps)
            layers[name], channels = module, module.out_channels
        layers["avg_pool"] = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        layers["logits"] = Unit3D(channels, num_classes, head=True)
        super().__init__(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x.mean(dim=(3, 4))  # the spatial extent is 1×1 at 224×224


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``) rather than a ``torch.save``
    file: both are zip files, only TorchScript holds ``code/`` and ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


class I3D(FeatureNetwork):
    """A loaded I3D: ``features(videos)`` gives the FVD features, ``(B, 400)`` float32."""

    @torch.inference_mode()
    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """The logits averaged over time, for ``videos`` ``(B, 3, T, 224, 224)`` in [-1, 1]."""
        out = self.module(videos.to(self.device), **self._call_options()).float()
        if out.dim() == 3:  # (B, classes, T')
            out = out.mean(dim=2)
        if out.dim() != 2 or out.shape[0] != videos.shape[0] or out.shape[1] != NUM_CLASSES:
            raise UserError(f"{self.path}: the network gives features of shape {tuple(out.shape)}, expected (B, {NUM_CLASSES})")
        return out

    def _call_options(self) -> dict[str, bool]:
        if self.format != "torchscript":
            return {}
        names = {argument.name for argument in self.module.forward.schema.arguments}
        options = {"rescale": False, "resize": False, "return_features": True}  # StyleGAN-V's detector
        return {name: value for name, value in options.items() if name in names}


def lineage_of_eps(bn_eps: float) -> str:
    """The lineage a state dict computes in with batch-norm eps ``bn_eps``."""
    return {PYTORCH_I3D_EPS: "pytorch-i3d", TF_HUB_EPS: "tf-hub"}.get(bn_eps, "custom-eps")


def load_i3d(path: str | Path, device: str | torch.device = "cpu", bn_eps: float | None = None) -> I3D:
    """The I3D in ``path``, in eval mode, computing as its lineage does (see the module docstring).

    ``bn_eps``: None for the lineage's own (a state dict: 1e-5, as VideoGPT, TATS and cd-fvd);
    a value to compute a state dict with another eps (1e-3: the TF-hub original's). A TorchScript
    module computes as itself, so an eps for one is an error. A missing file, a foreign state dict
    (the first key that does not fit, or a wrong shape) or an unreadable file is a one-line
    :class:`UserError` naming the path.
    """
    path = require_file(path, "I3D checkpoint")
    if bn_eps is not None and not bn_eps > 0:
        raise UserError(f"{path}: the I3D batch-norm eps must be positive, got {bn_eps}")
    if is_torchscript(path):
        if bn_eps is not None:
            raise UserError(f"{path}: a TorchScript I3D computes as itself; a batch-norm eps ({bn_eps:g}) applies "
                            "only to a state dict in the pytorch-i3d layout")  # fmt: skip
        try:
            with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript; the published detectors are TorchScript
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # TorchScript raises many types for a damaged archive
            raise UserError(f"{path}: cannot load the TorchScript I3D: {message_line(exc)[:200]}") from None
        model = I3D(module.eval(), str(path), "torchscript", file_sha256(path), "torchscript", LINEAGES["torchscript"])
        return model.to(device)  # type: ignore[return-value]
    eps = PYTORCH_I3D_EPS if bn_eps is None else float(bn_eps)
    network = InceptionI3d(bn_eps=eps)
    state = load_state_dict(path, "I3D checkpoint")
    expected = network.state_dict()
    # The published file has no num_batches_tracked (unused in eval mode); every other key is checked.
    counters = {key: value for key, value in expected.items() if key.endswith("num_batches_tracked")}
    check_layout(state, expected, path, "an I3D checkpoint in the i3d_pretrained_400.pt (pytorch-i3d) layout",
                 optional=set(counters))  # fmt: skip
    network.load_state_dict({**counters, **state}, strict=True)
    lineage = lineage_of_eps(eps)
    model = I3D(network.eval(), str(path), "state_dict", file_sha256(path), lineage, LINEAGES[lineage], {"bn_eps": eps})
    return model.to(device)  # type: ignore[return-value]
