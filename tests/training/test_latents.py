"""Precomputed latents: `lavie train --precompute-latents` fills the store on Ray Data, the data
stream then reads stored items instead of decoding them, and training gets the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lavie.cli import main as lavie
from lavie.core.errors import UserError
from training.conditioning import Conditioner
from training.config import load_train_config
from training.data import JointLoader, JointVideoImageDataset
from training.launcher import train
from training.metrics import read_metrics
from training.precompute import precompute_latents

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

# The fixture's clips: 4 webvid rows [0, 16) and 4 vimeo rows [2, 16); windows of 4 frames at
# stride 2 (7 source frames) start at a quarter and three quarters of the slack: all distinct.
CLIP_WINDOWS = (4 + 4) * 2
IMAGES = 6


@pytest.fixture(scope="module")
def precomputed(config_factory, ray_cluster, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("latents")
    raw = config_factory(
        "on-latents", root / "runs", data={"windows_per_clip": 2}, loader={"latent_cache": str(root / "store")},
        run={"max_steps": 2, "log_every": 1, "checkpoint_every": 2, "export": False},
    )  # fmt: skip
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    first = precompute_latents(load_train_config(path), quiet=True)
    return {"path": path, "raw": raw, "first": first, "config": load_train_config(path)}


def test_precompute_encodes_every_window_and_image_once(precomputed, ray_cluster, capsys):
    first = precomputed["first"]
    assert first.clips == {"encoded": CLIP_WINDOWS, "stored": 0, "too_short": 0, "undecodable": 0}
    assert first.images == {"encoded": IMAGES, "stored": 0, "too_short": 0, "undecodable": 0}
    assert len(list(Path(first.store).rglob("*.pt"))) == CLIP_WINDOWS + IMAGES
    # A re-run (e.g. after an interruption) only finds what is there.
    assert lavie(["train", str(precomputed["path"]), "--precompute-latents", "--address", ray_cluster]) == 0
    out = capsys.readouterr().out
    assert f"clip windows: 0 encoded, {CLIP_WINDOWS} already stored" in out
    assert f"images: 0 encoded, {IMAGES} already stored" in out


def test_the_stream_reads_stored_latents_instead_of_decoding(precomputed, monkeypatch):
    config = precomputed["config"]
    plain = JointVideoImageDataset(config.data, rank=1, world_size=2, batch_size=2)
    expected = next(iter(JointLoader(plain)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an item whose latents are stored")

    monkeypatch.setattr("training.data.dataset.load_clip_row", no_decoding)
    monkeypatch.setattr("training.data.dataset.load_image", no_decoding)
    stored = JointVideoImageDataset(config.data, rank=1, world_size=2, batch_size=2, latents=config.latent_store())
    loader = JointLoader(stored)
    batch = next(iter(loader))
    counters = loader.counters()
    assert all(c["precomputed"] == c["drawn"] for c in counters.values()) and counters["laion"]["drawn"] == 2
    assert batch["clip_id"] == expected["clip_id"] and torch.equal(batch["frame_indices"], expected["frame_indices"])

    # The trainer's inputs are the same from stored moments as from decoded pixels.
    key = {"seed": 0, "step": 0, "rank": 1, "micro": 0, "caption_dropout": 0.1}
    from_pixels = Conditioner(config.model.pretrained).prepare(expected, **key)
    from_store = Conditioner(config.model.pretrained, latent_store=config.latent_store()).prepare(batch, **key)
    assert torch.allclose(from_pixels.latents, from_store.latents, atol=1e-5)
    assert torch.equal(from_pixels.context, from_store.context)


def test_training_on_precomputed_latents_decodes_nothing(precomputed, ray_cluster):
    config = precomputed["config"]
    result = train(config, quiet=True)
    assert result.step == 2
    last = read_metrics(config.run_uri())[-1]
    for source in ("webvid", "vimeo", "laion"):
        assert last[f"precomputed/{source}"] == last[f"count/{source}"]
    assert last["count/laion"] == 2 * 2  # 2 ranks x 2 steps x 1 image


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"data": {"windows_per_clip": 2}}, "set loader.latent_cache"),
        ({"loader": {"latent_cache": "store"}}, "set data.windows_per_clip"),
    ],
)
def test_precompute_needs_a_store_and_finite_windows(config_factory, tmp_path, sections, message):
    config = load_train_config(config_factory("x", tmp_path, **sections), root=tmp_path)
    with pytest.raises(UserError, match=message):
        precompute_latents(config, quiet=True)
