"""VideoMAE-v2 (Wang et al., CVPR 2023) as FVD's second network: content-debiased FVD.

Ge et al. (ECCV 2024, "On the Content Bias in Fréchet Video Distance", the cd-fvd package) show
that I3D features weigh per-frame content over motion, and measure FVD on the features of a
self-supervised VideoMAE-v2 instead: ViT-g/14 pre-trained on UnlabeledHybrid and fine-tuned on
SSv2 (``vit_g_hybrid_pt_1200e_ssv2_ft.pth``). The feature is the encoder's output before the
classifier: the layer-normalised mean of the tokens (1408-d for ViT-g).

The network is the VideoMAE-v2 fine-tuning ViT, read from its state dict:

* tubelets of ``tubelet × patch × patch`` (2 × 14 × 14) embedded by a 3D convolution
  (``patch_embed.proj``), plus a fixed sine-cosine position table over the (t, h, w) token grid of
  16 frames at 224×224 (not a weight: it is rebuilt here). Another frame count resizes the table
  over time (trilinear, to ``t + 0.1`` grid steps, as VideoMAE-v2's own code does);
* ``blocks.<i>``: pre-norm transformer blocks (LayerNorm eps 1e-6; attention with a ``q_bias``
  and a ``v_bias`` but no key bias; a GELU MLP);
* ``fc_norm``: the LayerNorm of the mean token. ``head.*`` (the SSv2 classifier) may be in the
  file and is not used.

Width, depth, patch, tubelet and MLP size come from the tensors' shapes. The head count does not
show in any shape; it is VideoMAE-v2's for the width (:data:`HEADS`: ViT-S 6, B 12, L 16, H 16,
g 16).

Input: ``(B, 3, T, 224, 224)`` float RGB in [0, 1] (cd-fvd's VideoMAE input: x / 255, no mean or
std normalisation), T = 16 in the protocol.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.networks import FeatureNetwork, check_layout, other_layout
from lavie.core.errors import UserError
from lavie.core.weights import file_sha256, load_state_dict, require_file

INPUT_SIZE = 224
#: The frame count the position table is laid out for (the model's ``all_frames``).
TABLE_FRAMES = 16
LAYER_NORM_EPS = 1e-6
#: Attention heads of the VideoMAE-v2 ViTs, by width (ViT-S, B, L, H, g).
HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
LINEAGE = "videomae-v2"
COMPUTATION = ("VideoMAE-v2 ViT state dict, computed as cd-fvd's VideoMAE: mean of the last block's tokens, "
               "fc_norm (LayerNorm eps 1e-6)")  # fmt: skip
MARKER = "patch_embed.proj.weight"


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """``(1, positions, dim)``: sin at even channels, cos at odd ones, of position / 10000^(2⌊j/2⌋/dim)
    (computed in float64, as the original, then float32)."""
    angles = np.arange(positions, dtype=np.float64)[:, None] / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)
    table = np.where(np.arange(dim) % 2 == 0, np.sin(angles), np.cos(angles))
    return torch.tensor(table, dtype=torch.float32)[None]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])  # no key bias
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √head_dim) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int, tubelet: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))


class VideoMAEEncoder(nn.Module):
    """The VideoMAE-v2 ViT up to its features: ``(B, 3, T, 224, 224)`` → ``(B, dim)``."""

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, patch: int = 14, tubelet: int = 2) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.patch, self.tubelet = patch, tubelet
        self.patch_embed = PatchEmbed(dim, patch, tubelet)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.grid = (TABLE_FRAMES // tubelet, INPUT_SIZE // patch, INPUT_SIZE // patch)
        self.register_buffer("pos_embed", sinusoid_table(math.prod(self.grid), dim), persistent=False)

    def positions(self, frames: int) -> torch.Tensor:
        """The position table for ``frames`` input frames: the 16-frame table, resized over time
        (trilinear, scale (t + 0.1) / t₀ as VideoMAE-v2's code) when the token grid differs."""
        steps, (table_steps, h, w) = frames // self.tubelet, self.grid
        if steps == table_steps:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        grid = self.pos_embed.transpose(1, 2).reshape(1, dim, table_steps, h, w)
        grid = F.interpolate(grid, scale_factor=((steps + 0.1) / table_steps, 1, 1), mode="trilinear")
        return grid.reshape(1, dim, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"VideoMAE-v2 takes {INPUT_SIZE}x{INPUT_SIZE} frames, got {tuple(x.shape[-2:])}")
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = tokens + self.positions(x.shape[2]).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.fc_norm(tokens.mean(dim=1))


class VideoMAE(FeatureNetwork):
    """A loaded VideoMAE-v2: ``features(videos)`` gives ``(B, dim)`` float32 features."""

    @torch.inference_mode()
    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """The encoder's features for ``videos`` ``(B, 3, T, 224, 224)`` in [0, 1]."""
        return self.module(videos.to(self.device)).float()


def architecture(state: dict[str, torch.Tensor], path: Path) -> dict[str, int]:
    """Width, depth, heads, MLP size, patch and tubelet of a VideoMAE-v2 state dict, from its
    shapes (one line naming the key when they do not describe one)."""
    where = f"{path}: not a VideoMAE-v2 checkpoint"
    embed = state.get(MARKER)
    if embed is None:
        raise UserError(f"{where}: key '{next(iter(state))}' does not fit (no '{MARKER}'){other_layout(state, MARKER)}")
    if embed.dim() != 5 or embed.shape[1] != 3 or embed.shape[3] != embed.shape[4]:
        raise UserError(f"{where}: '{MARKER}' has shape {tuple(embed.shape)}, expected (width, 3, tubelet, patch, patch)")
    dim, _, tubelet, patch, _ = embed.shape
    if dim not in HEADS:
        known = ", ".join(str(width) for width in HEADS)
        raise UserError(f"{where}: '{MARKER}' gives width {dim}, not one of VideoMAE-v2's ({known}): its head count is unknown")
    if INPUT_SIZE % patch or TABLE_FRAMES % tubelet:
        raise UserError(f"{where}: '{MARKER}' gives patch {patch} and tubelet {tubelet}, which do not tile 16x224x224")
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    hidden = state.get("blocks.0.mlp.fc1.weight")
    if depth == 0 or hidden is None:
        raise UserError(f"{where}: missing key 'blocks.0.mlp.fc1.weight'")
    return {"dim": dim, "depth": depth, "heads": HEADS[dim], "hidden": hidden.shape[0], "patch": patch, "tubelet": tubelet}


def load_videomae(path: str | Path, device: str | torch.device = "cpu") -> VideoMAE:
    """The VideoMAE-v2 encoder in ``path`` (a state dict, see the module docstring), in eval mode.

    A missing or unreadable file, or a state dict that is not a VideoMAE-v2 ViT (the first key
    that does not fit, or a wrong shape) is a one-line :class:`UserError` naming the path.
    """
    path = require_file(path, "VideoMAE checkpoint")
    state = load_state_dict(path, "VideoMAE checkpoint")
    shape = architecture(state, path)
    network = VideoMAEEncoder(**shape)
    backbone = {key: value for key, value in state.items() if not key.startswith("head.")}  # the classifier is not used
    check_layout(backbone, network.state_dict(), path, "a VideoMAE-v2 checkpoint")
    network.load_state_dict(backbone, strict=True)
    settings = {"width": shape["dim"], "depth": shape["depth"], "heads": shape["heads"]}
    model = VideoMAE(network.eval(), str(path), "state_dict", file_sha256(path), LINEAGE, COMPUTATION, settings)
    return model.to(device)  # type: ignore[return-value]
