"""Overlaid text and watermark detection with a local image-classification model.

Any transformers ``AutoModelForImageClassification`` folder works (a ViT, ConvNeXt or EfficientNet
fine-tuned to tell frames with burnt-in text or a watermark from clean ones); the user names the
label that means "overlay". :func:`check_overlay_model` reads only the folder's config, so a wrong
folder or label fails on the driver before any work starts; :class:`OverlayClassifier` loads the
weights where the frames are scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavie.core.errors import UserError, message_line


def _model_config(model_path: str) -> Any:
    from transformers import AutoConfig

    if not (Path(model_path) / "config.json").is_file():
        raise UserError(f"{model_path}: not a transformers model folder (no config.json)")
    try:
        return AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{model_path}: cannot read the model config: {message_line(exc)}") from None


def check_overlay_model(model_path: str, label: str) -> int:
    """The index of ``label`` in the image classifier at ``model_path``; a one-line UserError when
    the folder is not an image classifier or has no such label."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    config = _model_config(model_path)
    architectures = [name for name in (config.architectures or []) if name.endswith("ForImageClassification")]
    if config.model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES or (config.architectures and not architectures):
        described = ", ".join(config.architectures or []) or config.model_type
        raise UserError(f"{model_path}: not an image-classification model ({described})")
    labels = {name: int(index) for index, name in config.id2label.items()}
    if label not in labels:
        raise UserError(f"{model_path}: the model has no label {label!r} (its labels: {', '.join(map(repr, labels))})")
    return labels[label]


class OverlayClassifier:
    """The probability of the overlay label for each frame."""

    def __init__(self, model_path: str, label: str, device: str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.label_index = check_overlay_model(model_path, label)
        try:
            self.model = AutoModelForImageClassification.from_pretrained(model_path).to(device).eval()
            self.processor = AutoImageProcessor.from_pretrained(model_path)
        except (OSError, ValueError) as exc:
            raise UserError(f"{model_path}: cannot load the image classifier: {message_line(exc)}") from None
        self.device = device
        # A multi-label classifier scores each label on its own (sigmoid); a single-label one
        # shares the probability among its labels (softmax).
        self.multi_label = self.model.config.problem_type == "multi_label_classification"

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``(n,)`` probabilities of the overlay label for ``(n, H, W, 3)`` uint8 RGB images."""
        pixels = self.processor(images=list(images), return_tensors="pt").pixel_values.to(self.device)
        logits = self.model(pixel_values=pixels).logits.float()
        probabilities = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probabilities[:, self.label_index].cpu().numpy()
