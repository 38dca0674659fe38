"""Aesthetic and CLIP scoring through the real loading code, with tiny random models on disk."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from curation.config import build_config
from curation.pipeline import CurationRequest, run_curation
from curation.scoring import AestheticPredictor, ClipScorer, load_aesthetic_predictor, load_clip
from curation.steps.frames import FRAME_SIZE, frame_indices
from lavie.core.errors import UserError
from lavie.core.manifest import EMBEDDINGS_DIR, embedding_matrix, embeddings_table
from lavie.synthetic.tiny_clip import write_tiny_clip


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    clip = write_tiny_clip(root, embed_dim=768)
    torch.manual_seed(0)
    mlp = AestheticPredictor(768)
    torch.save(mlp.state_dict(), root / "aesthetic.pth")
    return {**clip, "aesthetic_mlp": str(root / "aesthetic.pth"), "root": root}


@pytest.fixture(scope="module")
def scored(ray_cluster, corpus, weights, tmp_path_factory):
    """A curation output of 4 clips, scored by the tiny CLIP: (its folder, its run record)."""
    scoring = {k: weights[k] for k in ("clip_model", "clip_checkpoint", "aesthetic_mlp")}
    out = tmp_path_factory.mktemp("scored") / "out"
    request = CurationRequest(
        inputs=(str(corpus.folder / "city.mp4"), str(corpus.folder / "sub")),
        out=str(out),
        metadata=str(corpus.metadata),
        config=build_config({"scoring": {**scoring, "batch_size": 2}}),
    )
    return out, run_curation(request)


@pytest.mark.slow
def test_scores_in_the_manifest_equal_the_models_applied_to_the_clip_frames(scored, weights):
    import decord

    out, record = scored
    scoring = {k: weights[k] for k in ("clip_model", "clip_checkpoint", "aesthetic_mlp")}
    assert record["scoring"] == {"aesthetic": True, "clip_score": True, "skipped_reason": None}
    clips = pads.dataset(out / "clips").to_table().to_pylist()
    assert len(clips) == 4
    embedded = pads.dataset(out / EMBEDDINGS_DIR).to_table()
    embeddings = dict(zip(embedded.column("clip_id").to_pylist(), embedding_matrix(embedded)))
    assert sorted(embeddings) == sorted(c["clip_id"] for c in clips)
    scorer = ClipScorer(**scoring)
    for clip in clips:
        # Independent decode of the 10/50/90 % frames, shortest side 224, centre crop.
        reader = decord.VideoReader(clip["source_uri"])
        frames = reader.get_batch(frame_indices(clip["start_frame"], clip["num_frames"], (0.1, 0.5, 0.9))).asnumpy()
        h, w = frames.shape[1:3]
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        size = (FRAME_SIZE, round(w * FRAME_SIZE / h))
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
        left = (x.shape[-1] - FRAME_SIZE) // 2
        x = x[..., left : left + FRAME_SIZE].round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        scores = scorer.score(x[None], [clip["caption"]])
        aesthetic, similarity = scores.aesthetic, scores.similarity
        # Decoder-side scaling and torch's resize differ by a few grey levels; the scores agree closely.
        assert clip["aesthetic_score"] == pytest.approx(aesthetic.item(), abs=2e-2)
        assert clip["clip_score"] == pytest.approx(similarity.item(), abs=2e-2)
        assert -1.0 <= clip["clip_score"] <= 1.0
        # The embedding beside clips/ is the clip's: unit length, as the scorer gives it.
        vector = torch.from_numpy(embeddings[clip["clip_id"]].astype(np.float32))
        assert float(vector.norm()) == pytest.approx(1.0, abs=2e-3)
        assert float(vector @ scores.embedding[0]) > 0.99
    assert len({round(c["aesthetic_score"], 6) for c in clips}) > 1  # scores depend on the content


@pytest.mark.slow
def test_lavie_dedup_of_a_scored_output_is_a_manifest_that_check_and_training_read(scored, tmp_path):
    """The curated clips' embeddings drive `lavie dedup` (a clip and its exact copy, planted in
    the embeddings, become one); `lavie check` decodes what stays, and training indexes it."""
    from curation.dedup.run import DedupRequest, run_dedup
    from lavie.cli import main
    from training.data.manifests import index_manifest

    out, _ = scored
    embeddings = tmp_path / "embeddings"
    for part in (out / EMBEDDINGS_DIR).iterdir():
        table = pq.read_table(part)
        vectors = embedding_matrix(table).copy()
        if len(vectors) >= 2:
            vectors[1] = vectors[0]  # the second clip now looks exactly like the first
        embeddings.mkdir(exist_ok=True)
        pq.write_table(embeddings_table(table.column("clip_id").to_pylist(), vectors), embeddings / part.name)
    record = run_dedup(DedupRequest(str(out), str(tmp_path / "dedup"), str(embeddings)))
    assert record["dedup"]["duplicates"] >= 1 and record["counts"]["clips_kept"] == 4 - record["dedup"]["duplicates"]
    assert main(["check", str(tmp_path / "dedup"), "--out", str(tmp_path / "check"), "--quiet"]) == 0
    assert index_manifest("deduplicated", str(tmp_path / "dedup"), "video").num_rows == record["counts"]["clips_kept"]


def test_predictor_layout_matches_the_released_state_dict_keys():
    keys = set(AestheticPredictor(768).state_dict())
    assert keys == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}


def test_weights_are_loaded_without_unpickling_objects(tmp_path, weights):
    import argparse

    bad = tmp_path / "evil.pth"
    # Any non-tensor global would run code on a plain torch.load; weights_only refuses it.
    torch.save({"layers.0.weight": argparse.Namespace(payload="x")}, bad)
    with pytest.raises(UserError, match="evil.pth: cannot read weights"):
        load_aesthetic_predictor(bad)


def test_bad_weights_give_one_line_errors(tmp_path, weights):
    wrong = tmp_path / "wrong.safetensors"
    save_file({"layers.0.weight": torch.zeros(1024, 512), "layers.0.bias": torch.zeros(1024)}, str(wrong))
    with pytest.raises(UserError, match="do not fit"):
        load_aesthetic_predictor(wrong)
    small = tmp_path / "mlp512.pth"
    torch.save(AestheticPredictor(512).state_dict(), small)
    with pytest.raises(UserError, match="takes 512-d embeddings but CLIP"):
        ClipScorer(weights["clip_model"], weights["clip_checkpoint"], str(small))
    with pytest.raises(UserError, match="unexpected key|missing key"):
        load_clip(weights["clip_model"], weights["aesthetic_mlp"])
    with pytest.raises(UserError, match="nope.safetensors: CLIP checkpoint not found"):
        load_clip(weights["clip_model"], tmp_path / "nope.safetensors")
    with pytest.raises(UserError, match="unknown open_clip model"):
        load_clip("ViT-Nonexistent", weights["clip_checkpoint"])


def test_scorer_marks_uncaptioned_clips_nan(weights):
    scorer = ClipScorer(weights["clip_model"], weights["clip_checkpoint"], weights["aesthetic_mlp"])
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, 3, 224, 224, 3), dtype=np.uint8))
    scores = scorer.score(frames, ["a caption here", None])
    aesthetic, similarity = scores.aesthetic, scores.similarity
    assert torch.isfinite(aesthetic).all()
    assert torch.isfinite(similarity[0]) and torch.isnan(similarity[1])
    assert scores.embedding.shape == (2, scorer.clip.text_projection.shape[-1])
    assert torch.allclose(scores.embedding.norm(dim=-1), torch.ones(2), atol=1e-5)
