"""Captioners: turn a clip's frame into a caption, in place of (or to fill gaps in) metadata captions.

``Captioner`` is the interface; ``TransformersCaptioner`` runs any local transformers
image-to-text model folder (BLIP, GIT, VisionEncoderDecoder, ...) through ``generate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lavie.core.errors import UserError, message_line


class Captioner(Protocol):
    def caption(self, images: list[np.ndarray]) -> list[str]:
        """One caption per RGB uint8 (H, W, 3) image."""


class TransformersCaptioner:
    def __init__(self, model_path: str, max_new_tokens: int = 30, device: str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise UserError(f"{model_path}: not a transformers model folder (no config.json)")
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(path).to(device).eval()
            self.image_processor = AutoImageProcessor.from_pretrained(path)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"{model_path}: cannot load image-to-text model: {message_line(exc)}") from None
        self.device = device
        self.max_new_tokens = max_new_tokens

    @torch.inference_mode()
    def caption(self, images: list[np.ndarray]) -> list[str]:
        pixels = self.image_processor(images=list(images), return_tensors="pt").pixel_values.to(self.device)
        tokens = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens)
        return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
