"""The scoring models: CLIP (open_clip) and the LAION improved aesthetic predictor.

Weights are local files only (no hub): an open_clip checkpoint and the predictor's state dict,
read through :mod:`lavie.core.weights` (tensors only, one-line errors). The CLIP architecture is an
open_clip model name (e.g. ``ViT-L-14``) or the path of an open_clip model-config JSON, which is
how tests build tiny models through this same code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lavie.core.errors import UserError
from lavie.core.weights import load_open_clip, load_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class AestheticPredictor(nn.Module):
    """LAION's improved aesthetic predictor: an MLP over the L2-normalised CLIP image embedding.

    Layer indices match the released state dict (``layers.{0,2,4,6,7}.*``); dropout sits at the
    odd indices and is inactive at inference.
    """

    def __init__(self, input_dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding).squeeze(-1)


def load_aesthetic_predictor(path: str | Path) -> AestheticPredictor:
    state = load_state_dict(path)
    if "layers.0.weight" not in state:
        raise UserError(f"{path}: not an aesthetic predictor state dict (no 'layers.0.weight')")
    model = AestheticPredictor(input_dim=state["layers.0.weight"].shape[1])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path}: aesthetic predictor weights do not fit: {str(exc).splitlines()[1].strip()}") from None
    return model.eval()


def load_clip(clip_model: str, checkpoint: str | Path):
    """(model, tokenizer, image_size) for an open_clip architecture with local weights."""
    import open_clip

    model, name = load_open_clip(clip_model, checkpoint)
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
    return model, open_clip.get_tokenizer(name), int(image_size)


@dataclass(frozen=True)
class ClipScores:
    """What :meth:`ClipScorer.score` gives for B clips."""

    aesthetic: torch.Tensor  # (B,)
    similarity: torch.Tensor  # (B,), NaN for a clip without caption
    embedding: torch.Tensor  # (B, D), unit length: what near-duplicate search compares


class ClipScorer:
    """Aesthetic score and text-frame similarity of clips, from a few RGB frames per clip."""

    def __init__(self, clip_model: str, clip_checkpoint: str, aesthetic_mlp: str, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.clip, self.tokenizer, self.image_size = load_clip(clip_model, clip_checkpoint)
        self.predictor = load_aesthetic_predictor(aesthetic_mlp)
        embed_dim = self.clip.text_projection.shape[-1] if hasattr(self.clip, "text_projection") else None
        mlp_dim = self.predictor.layers[0].in_features
        if embed_dim is not None and embed_dim != mlp_dim:
            raise UserError(
                f"{aesthetic_mlp}: predictor takes {mlp_dim}-d embeddings but CLIP '{clip_model}' gives {embed_dim}-d"
            )
        self.clip.to(self.device)
        self.predictor.to(self.device)
        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) → normalised float (N, 3, S, S)."""
        x = frames.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def score(self, frames: torch.Tensor, captions: list[str | None]) -> ClipScores:
        """frames (B, K, H, W, 3) uint8, one caption per clip → the clips' :class:`ClipScores`.

        The aesthetic score and clip_score are means over the K frames; clip_score is the cosine
        similarity of the caption's and each frame's CLIP embeddings (NaN where a clip has no
        caption). The clip's embedding is the normalised mean of its frames' normalised embeddings.
        """
        b, k = frames.shape[:2]
        image = F.normalize(self.clip.encode_image(self._pixels(frames.flatten(0, 1))).float(), dim=-1)
        aesthetic = self.predictor(image).view(b, k).mean(dim=1)
        texts = [c or "" for c in captions]
        text = F.normalize(self.clip.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)
        similarity = (image.view(b, k, -1) * text[:, None, :]).sum(-1).mean(dim=1)
        has_caption = torch.tensor([c is not None for c in captions], device=self.device)
        similarity = torch.where(has_caption, similarity, torch.full_like(similarity, float("nan")))
        embedding = F.normalize(image.view(b, k, -1).mean(dim=1), dim=-1)
        return ClipScores(aesthetic.cpu(), similarity.cpu(), embedding.cpu())
