"""Joint image-video objective and conditioning on the tiny SD, in-process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade.models import BaseUNet3DModel
from cascade.models.blocks import is_temporal_key
from training import rng
from training.conditioning import Conditioner, drop_captions
from training.latent_store import LatentStore, vae_fingerprint
from training.objective import DiffusionObjective, joint_loss
from training.rng import keyed_generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def unet(train_data) -> BaseUNet3DModel:
    torch.manual_seed(0)
    model = BaseUNet3DModel.from_pretrained_2d(train_data["sd"])
    with torch.no_grad():  # trained-looking temporal layers (their output projections start at 0)
        for name, param in model.named_parameters():
            if is_temporal_key(name):
                param.normal_(0.0, 0.2)
    return model


@pytest.fixture(scope="module")
def conditioner(train_data) -> Conditioner:
    return Conditioner(train_data["sd"])


def _batch(frames: int = 4, images: int = 2, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(5)
    return {
        "video": torch.randint(0, 256, (2, frames, 3, size, size), generator=g, dtype=torch.uint8),
        "images": torch.randint(0, 256, (2, images, 3, size, size), generator=g, dtype=torch.uint8),
        "video_caption": ["a red car on the road", "a wave over the sea"],
        "image_captions": [["a cat", "a dog"], ["the sky", ""]][:2],
        "clip_id": ["c0", "c1"],
        "frame_indices": torch.tensor([[0, 2, 4, 6], [1, 3, 5, 7]]),
        "image_ids": [["i0", "i1"], ["i2", "i3"]],
    }


def _forward(unet, inputs, objective, **key):
    noisy, timesteps, target = objective.noised(inputs.latents, **key)
    out = unet(noisy, timesteps, inputs.context, num_image_frames=inputs.num_image_frames).sample
    return out, target


def test_inputs_lay_out_video_frames_then_images_with_their_captions(conditioner):
    inputs = conditioner.prepare(_batch(), seed=0, step=0, rank=0, micro=0, caption_dropout=0.0)
    assert inputs.latents.shape == (2, 4, 6, 8, 8) and inputs.num_video_frames == 4 and inputs.num_image_frames == 2
    assert inputs.context.shape == (2, 6, 77, 32)
    text = conditioner.encode_text(["a red car on the road", "a cat", "a dog"])
    assert torch.equal(inputs.context[0, 0], text[0]) and torch.equal(inputs.context[0, 3], text[0])
    assert torch.equal(inputs.context[0, 4], text[1]) and torch.equal(inputs.context[0, 5], text[2])
    # Latents: a sample of each frame's VAE posterior (keyed generator), scaled, frames in order.
    batch = _batch()
    frames = torch.cat([batch["video"], batch["images"]], dim=1).flatten(0, 1)
    moments = conditioner.moments(frames)
    expected = conditioner.sample(moments, rng.keyed_generator(0, rng.VAE_SAMPLE, 0, 0, 0))
    assert torch.allclose(inputs.latents, expected.unflatten(0, (2, 6)).transpose(1, 2), atol=1e-5)
    mean = moments.chunk(2, dim=1)[0] * conditioner.scaling_factor
    assert not torch.allclose(inputs.latents, mean.unflatten(0, (2, 6)).transpose(1, 2), atol=1e-3)


def test_randomness_is_keyed_by_seed_step_rank_micro(conditioner, train_data):
    objective = DiffusionObjective(train_data["sd"] / "scheduler")
    a = conditioner.prepare(_batch(), seed=1, step=3, rank=0, micro=0, caption_dropout=0.5)
    b = conditioner.prepare(_batch(), seed=1, step=3, rank=0, micro=0, caption_dropout=0.5)
    c = conditioner.prepare(_batch(), seed=1, step=3, rank=1, micro=0, caption_dropout=0.5)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.context, b.context)
    assert not torch.equal(a.latents, c.latents)
    na = objective.noised(a.latents, seed=1, step=3, rank=0, micro=0)
    nb = objective.noised(a.latents, seed=1, step=3, rank=0, micro=0)
    nc = objective.noised(a.latents, seed=1, step=4, rank=0, micro=0)
    assert all(torch.equal(x, y) for x, y in zip(na, nb)) and not torch.equal(na[0], nc[0])
    assert torch.equal(torch.randn(3, generator=keyed_generator(0, 1, 2)), torch.randn(3, generator=keyed_generator(0, 1, 2)))


def test_caption_dropout_rate():
    captions = [f"caption {i}" for i in range(20000)]
    kept, dropped = drop_captions(captions, 0.1, np.random.default_rng(0))
    assert dropped == sum(1 for c in kept if c == "") and abs(dropped / 20000 - 0.1) < 0.01
    assert drop_captions(captions[:5], 0.0, np.random.default_rng(0)) == (captions[:5], 0)


def test_image_frames_gradients_never_reach_temporal_layers(unet, conditioner, train_data):
    objective = DiffusionObjective(train_data["sd"] / "scheduler")
    inputs = conditioner.prepare(_batch(), seed=0, step=0, rank=0, micro=0, caption_dropout=0.0)
    out, target = _forward(unet, inputs, objective, seed=0, step=0, rank=0, micro=0)
    parts = joint_loss(out, target, inputs.num_video_frames, 1.0)
    unet.zero_grad(set_to_none=True)
    parts.image.backward(retain_graph=True)
    temporal = {n: p.grad for n, p in unet.named_parameters() if is_temporal_key(n)}
    assert temporal and all(g is None or not g.any() for g in temporal.values())
    spatial = [p.grad for n, p in unet.named_parameters() if not is_temporal_key(n) and p.grad is not None]
    assert spatial and any(g.any() for g in spatial)
    unet.zero_grad(set_to_none=True)
    parts.video.backward()
    assert any(p.grad is not None and p.grad.any() for n, p in unet.named_parameters() if is_temporal_key(n))
    unet.zero_grad(set_to_none=True)


def test_alpha_scales_the_image_term(unet, conditioner, train_data):
    inputs = conditioner.prepare(_batch(), seed=0, step=0, rank=0, micro=0, caption_dropout=0.0)
    objective = DiffusionObjective(train_data["sd"] / "scheduler", image_loss_weight=0.0)
    with torch.no_grad():
        out, target = _forward(unet, inputs, objective, seed=0, step=0, rank=0, micro=0)
    video = torch.mean((out[:, :, :4] - target[:, :, :4]) ** 2)
    image = torch.mean((out[:, :, 4:] - target[:, :, 4:]) ** 2)
    for alpha in (0.0, 0.5, 2.0):
        parts = joint_loss(out, target, 4, alpha)
        assert torch.allclose(parts.video, video) and torch.allclose(parts.image, image)
        assert torch.allclose(parts.total, video + alpha * image)
    no_images = joint_loss(out[:, :, :4], target[:, :, :4], 4, 3.0)
    assert no_images.image == 0 and torch.allclose(no_images.total, video)


def test_v_prediction_target(conditioner, train_data):
    inputs = conditioner.prepare(_batch(), seed=0, step=0, rank=0, micro=0, caption_dropout=0.0)
    eps = DiffusionObjective(train_data["sd"] / "scheduler", "epsilon")
    v = DiffusionObjective(train_data["sd"] / "scheduler", "v_prediction")
    noisy, t, noise = eps.noised(inputs.latents, seed=0, step=0, rank=0, micro=0)
    noisy_v, t_v, velocity = v.noised(inputs.latents, seed=0, step=0, rank=0, micro=0)
    assert torch.equal(noisy, noisy_v) and torch.equal(t, t_v)
    alpha = eps.scheduler.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
    sigma = (1 - eps.scheduler.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1, 1)
    assert torch.allclose(velocity, alpha * noise - sigma * inputs.latents, atol=1e-5)
    assert torch.allclose(noisy, alpha * inputs.latents + sigma * noise, atol=1e-5)


def test_latent_store_gives_the_same_inputs(train_data, tmp_path):
    store = LatentStore(tmp_path / "latents", vae_fingerprint(str(train_data["sd"])), 32, 32)
    plain = Conditioner(train_data["sd"])
    stored = Conditioner(train_data["sd"], latent_store=store)
    a = plain.prepare(_batch(), seed=0, step=2, rank=0, micro=0, caption_dropout=0.1)
    b = stored.prepare(_batch(), seed=0, step=2, rank=0, micro=0, caption_dropout=0.1)  # encodes, stores
    assert len(list(store.root.rglob("*.pt"))) == 2 + 4
    # As the data stream delivers stored items: moments in place of pixels.
    batch = _batch()
    batch["video"] = [
        store.get(LatentStore.clip_key(clip, indices.tolist())) for clip, indices in zip(batch["clip_id"], batch["frame_indices"])
    ]
    batch["images"] = [[store.get(LatentStore.image_key(i)) for i in ids] for ids in batch["image_ids"]]
    assert batch["video"][0].shape == (4, 8, 8, 8) and batch["images"][0][0].shape == (8, 8, 8)
    c = stored.prepare(batch, seed=0, step=2, rank=0, micro=0, caption_dropout=0.1)
    assert torch.allclose(a.latents, b.latents, atol=1e-6) and torch.equal(b.latents, c.latents)
    assert torch.equal(a.context, c.context)
