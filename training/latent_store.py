"""Precomputed latents: VAE posterior moments of clip windows and images, one file per item.

The store lives under ``loader.latent_cache`` (a local or shared folder), in a subfolder named by
the VAE's fingerprint and the frame size, so latents of another VAE or size are never mixed in.
An item's key is what determines its pixels: a clip's id and the source frames of its window, or
an image's id. Items are written by ``lavie train --precompute-latents`` (all windows of every
row, see :mod:`training.precompute`) or by the trainer on first use; the data stream reads a
stored item instead of decoding it (:class:`training.data.JointVideoImageDataset`).

Moments, not samples, are stored: the posterior sample is drawn per training step from the
step's generator, so a run gives the same inputs with and without the store.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from lavie.core.storage import atomic_write

_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@lru_cache(maxsize=8)
def vae_fingerprint(pretrained: str) -> str:
    """A digest of the SD folder's ``vae/`` config and weights (the whole file: a fine-tuned VAE
    with the same config must not reuse another's latents)."""
    vae = Path(pretrained) / "vae"
    digest = hashlib.sha1((vae / "config.json").read_bytes())
    for name in _WEIGHT_FILES:
        weights = vae / name
        if weights.is_file():
            with open(weights, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
            break
    return digest.hexdigest()[:16]


class LatentStore:
    """Moments ``(…, 2C, h, w)`` by key under ``folder/<vae fingerprint>-<H>x<W>/``.

    Writes are atomic (:func:`lavie.core.storage.atomic_write`), so concurrent writers of one key,
    on one machine or on a shared filesystem, are harmless; a torn or foreign file reads as missing.
    """

    def __init__(self, folder: str | Path, fingerprint: str, height: int, width: int) -> None:
        self.root = Path(folder) / f"{fingerprint}-{height}x{width}"

    @staticmethod
    def clip_key(clip_id: str, frame_indices: Sequence[int]) -> str:
        return f"clip-{clip_id}-{'-'.join(str(int(i)) for i in frame_indices)}"

    @staticmethod
    def image_key(image_id: str) -> str:
        return f"image-{image_id}"

    def _path(self, key: str) -> Path:
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.pt"

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torn or foreign: recomputed and overwritten by the caller
            return None

    def put(self, key: str, moments: torch.Tensor) -> None:
        buffer = io.BytesIO()
        torch.save(moments.detach().cpu().contiguous(), buffer)
        atomic_write(str(self._path(key)), buffer.getvalue())
