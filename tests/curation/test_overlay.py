"""The overlaid-text step with a tiny image classifier saved to disk (the real loading code runs):
its score is the highest over a clip's frames, it filters in the pipeline under its own stage, and
a wrong model folder or label fails in one line before any work starts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import torch

from curation.config import OverlayConfig, build_config
from curation.overlay import OverlayClassifier, check_overlay_model
from curation.pipeline import CurationRequest, prepare, run_curation
from curation.rows import FRAMES, new_row
from curation.steps import StepContext
from curation.steps.overlay import ScoreOverlay, filter_overlay
from lavie.core.errors import UserError

LABELS = {0: "clean", 1: "text"}


def _save_vit(folder, classifier: bool, text_logit: float = 5.0):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})  # fmt: skip
    torch.manual_seed(0)
    model = ViTForImageClassification(config) if classifier else ViTModel(config)
    if classifier:  # rigged: every frame is "text" with probability sigmoid(text_logit)
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([0.0, text_logit]))
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    return _save_vit(tmp_path_factory.mktemp("overlay"), classifier=True)


def test_the_classifier_gives_the_labels_probability(classifier_dir):
    classifier = OverlayClassifier(str(classifier_dir), "text")
    probabilities = classifier.probabilities(np.zeros((2, 40, 60, 3), np.uint8))
    assert probabilities == pytest.approx([1 / (1 + np.exp(-5.0))] * 2, abs=1e-5)


def test_the_clip_score_is_the_highest_over_its_frames(classifier_dir, monkeypatch):
    step = ScoreOverlay(OverlayConfig(model=str(classifier_dir), label="text"), StepContext(frame_positions=(0.1, 0.5, 0.9)))
    per_frame = np.array([0.1, 0.7, 0.2, 0.3, 0.3, 0.05], np.float32)
    monkeypatch.setattr(step.classifier, "probabilities", lambda frames: per_frame[: len(frames)])
    frames = np.zeros((3, 224, 224, 3), np.uint8).tobytes()
    scores = step(pa.table({FRAMES: [frames, frames]})).column("overlay_score").to_pylist()
    assert scores == pytest.approx([0.7, 0.3])


def test_the_filter_rejects_at_or_above_the_threshold():
    config = OverlayConfig(model="m", label="text", threshold=0.5)
    filter_overlay(new_row(overlay_score=0.49), config, StepContext())
    with pytest.raises(Exception, match=r"overlay 0.500 >= 0.5 \(label 'text'\)"):
        filter_overlay(new_row(overlay_score=0.5), config, StepContext())


def test_overlaid_clips_are_rejected_under_the_overlay_stage(ray_cluster, corpus, classifier_dir, tmp_path):
    config = build_config({"overlay": {"model": str(classifier_dir), "label": "text", "threshold": 0.99}})
    request = CurationRequest(inputs=(str(corpus.folder / "city.mp4"),), out=str(tmp_path / "out"),
                              metadata=str(corpus.metadata), config=config)  # fmt: skip
    record = run_curation(request)
    rejects = pads.dataset(tmp_path / "out" / "rejects").to_table().to_pylist()
    overlaid = [r for r in rejects if r["stage"] == "overlay"]
    earlier = [r for r in rejects if r["clip_id"] and r["stage"] != "overlay"]  # e.g. a clip too short
    assert record["counts"]["clips_kept"] == 0 and len(overlaid) == record["counts"]["clips_detected"] - len(earlier) > 0
    assert {r["reason"] for r in overlaid} == {"overlay"}
    assert all(r["detail"].startswith("overlay 0.993 >= 0.99") for r in overlaid)
    assert record["rejects_by_stage"]["overlay"] == {"overlay": len(overlaid)}


@pytest.mark.parametrize(
    ("kind", "label", "problem"),
    [
        ("base", "text", "not an image-classification model (ViTModel)"),
        ("classifier", "watermark", "the model has no label 'watermark' (its labels: 'clean', 'text')"),
        ("empty", "text", "not a transformers model folder (no config.json)"),
    ],
)
def test_a_wrong_model_or_label_fails_before_any_work(tmp_path, classifier_dir, kind, label, problem):
    folder = {"base": lambda: _save_vit(tmp_path / "base", classifier=False), "classifier": lambda: classifier_dir,
              "empty": lambda: tmp_path}[kind]()  # fmt: skip
    with pytest.raises(UserError) as error:
        check_overlay_model(str(folder), label)
    assert str(error.value) == f"{folder}: {problem}"
    config = build_config({"overlay": {"model": str(folder), "label": label}})
    with pytest.raises(UserError, match="no config.json|not an image-classification|no label"):
        prepare(CurationRequest(inputs=(str(tmp_path),), out=str(tmp_path / "out"), config=config))
    assert not (tmp_path / "out").exists()


def test_the_command_line_says_a_missing_label_in_one_line(classifier_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lavie.cli", "curate", str(tmp_path), "--out", str(tmp_path / "o"),
         "--overlay-model", str(classifier_dir), "--overlay-label", "logo"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == f"lavie curate: error: {classifier_dir}: the model has no label 'logo' (its labels: 'clean', 'text')"


@pytest.mark.parametrize(("threshold", "problem"), [(0, "greater than 0"), (1.5, "less than or equal to 1")])
def test_an_overlay_threshold_out_of_range_is_one_line(threshold, problem):
    with pytest.raises(UserError, match=f"overlay.threshold: Input should be {problem}"):
        build_config({"overlay": {"model": "m", "label": "text", "threshold": threshold}})
