"""Interpolation, long-video and VSR variants."""

from __future__ import annotations

import copy

import pytest
import torch

from cascade.errors import InputShapeError, ModelConfigError, ModelLoadError
from cascade.models import (
    BaseUNet3DModel,
    InterpolationUNet3DModel,
    LongVideoUNet3DModel,
    VSRUNet3DModel,
    build_first_frame_condition,
    build_interpolation_condition,
    interpolation_source_frames,
)
from cascade.models.blocks import is_temporal_key

TOL = 1e-5


@pytest.fixture(scope="module")
def base(sd_folder) -> BaseUNet3DModel:
    return BaseUNet3DModel.from_pretrained_2d(sd_folder).eval()


def test_interpolation_grid_maps_16_frames_onto_61():
    index = interpolation_source_frames(16)
    assert len(index) == 61
    for k in range(16):
        assert index[4 * k] == k
    for k in range(15):
        assert (index[4 * k + 1], index[4 * k + 2], index[4 * k + 3]) == (k, k, k + 1)
    latents = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(2, 4, 16, 3, 5)
    condition = build_interpolation_condition(latents)
    assert condition.shape == (2, 4, 61, 3, 5)
    assert torch.equal(condition[0, 0, :, 0, 0], index.float())
    with pytest.raises(InputShapeError, match=r"latents must be \(B, C, N, H, W\) with N >= 2 base frames"):
        build_interpolation_condition(torch.zeros(2, 4, 16, 8))


@pytest.mark.parametrize("model_cls", [InterpolationUNet3DModel, LongVideoUNet3DModel])
def test_conditioned_model_from_base_equals_base(model_cls, base, randomize_temporal, make_inputs):
    base = copy.deepcopy(base)
    randomize_temporal(base)
    model = model_cls.from_base(base).eval()
    assert model.config.in_channels == 8 and model.num_condition_channels == 4
    assert torch.count_nonzero(model.conv_in.weight[:, 4:]) == 0
    sample, timestep, context = make_inputs(frames=5)
    with torch.no_grad():
        expected = base(sample, timestep, context).sample
        for condition in (torch.zeros_like(sample), torch.randn_like(sample)):
            out = model(sample, timestep, context, added_cond=condition).sample
            torch.testing.assert_close(out, expected, atol=TOL, rtol=0)
        # once the condition weights move, the condition matters
        model.conv_in.weight[:, 4:].normal_()
        moved = model(sample, timestep, context, added_cond=torch.randn_like(sample)).sample
    assert not torch.allclose(moved, expected, atol=1e-3)


def test_interpolation_model_end_to_end_shapes(base):
    model = InterpolationUNet3DModel.from_base(base).eval()
    latents16 = torch.randn(1, 4, 16, 8, 8)
    condition = build_interpolation_condition(latents16)
    with torch.no_grad():
        out = model(torch.randn_like(condition), 10, torch.randn(1, 5, 12), added_cond=condition).sample
    assert out.shape == (1, 4, 61, 8, 8)


def test_long_video_condition_and_errors(base):
    first = torch.randn(2, 4, 8, 8)
    condition = build_first_frame_condition(first, num_frames=6)
    assert condition.shape == (2, 4, 6, 8, 8) and torch.equal(condition[:, :, 5], first)
    model = LongVideoUNet3DModel.from_base(base)
    with pytest.raises(InputShapeError, match="takes 4 latent \\+ 4 added_cond channels, got 4 in total"):
        model(torch.zeros(2, 4, 6, 8, 8), 1, torch.zeros(2, 5, 12))
    with pytest.raises(InputShapeError, match=r"added_cond of shape \(2, 4, 5, 8, 8\) does not match sample"):
        model(torch.zeros(2, 4, 6, 8, 8), 1, torch.zeros(2, 5, 12), added_cond=torch.zeros(2, 4, 5, 8, 8))
    with pytest.raises(ModelConfigError, match="from_base needs an unconditioned base model"):
        LongVideoUNet3DModel.from_base(model)


def test_conditioned_variant_rejects_a_base_config(sd_folder):
    message = r"InterpolationUNet3DModel needs in_channels = 4 latent \+ 4 condition = 8, the config has 4$"
    with pytest.raises(ModelLoadError, match=message):
        InterpolationUNet3DModel.from_pretrained_2d(sd_folder)


@pytest.fixture(scope="module")
def vsr(x4_folder) -> VSRUNet3DModel:
    return VSRUNet3DModel.from_pretrained_2d(x4_folder).eval()


def _vsr_inputs(frames: int = 4) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 4, frames, 8, 8, generator=generator)
    low_res = torch.rand(2, 3, frames, 8, 8, generator=generator) * 2 - 1
    return latents, low_res, torch.tensor([20, 700]), torch.randn(2, 5, 12, generator=generator), torch.tensor([5, 2])


def test_vsr_reproduces_x4_upscaler_unet_frame_by_frame(vsr, x4_2d, per_frame_reference):
    latents, low_res, timestep, context, noise_level = _vsr_inputs()
    with torch.no_grad():
        out = vsr(latents, timestep, context, added_cond=low_res, class_labels=noise_level).sample
        inputs = torch.cat([latents, low_res], dim=1)
        ref = per_frame_reference(x4_2d, inputs, timestep, context, class_labels=noise_level)
    assert out.shape == latents.shape
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


def test_vsr_has_temporal_attention_and_convs_and_trains_only_them(vsr, x4_2d):
    names = {name for name, _ in vsr.named_parameters()}
    assert any(".temp_convs." in name for name in names) and any(".attn_temp." in name for name in names)
    trainable = {id(p) for p in vsr.trainable_parameters()}
    for name, param in vsr.named_parameters():
        assert (id(param) in trainable) == is_temporal_key(name), name
    temporal_count = sum(p.numel() for p in vsr.trainable_parameters())
    assert sum(p.numel() for p in vsr.parameters()) == sum(p.numel() for p in x4_2d.parameters()) + temporal_count


def test_vsr_temporal_convs_mix_frames_and_skip_images(x4_folder, randomize_temporal):
    model = VSRUNet3DModel.from_pretrained_2d(x4_folder).eval()
    randomize_temporal(model)
    latents, low_res, timestep, context, noise_level = _vsr_inputs(frames=5)
    changed = latents.clone()
    changed[:, :, 1] += 1.0
    with torch.no_grad():
        out = model(latents, timestep, context, num_image_frames=1, added_cond=low_res, class_labels=noise_level).sample
        out_changed = model(
            changed, timestep, context, num_image_frames=1, added_cond=low_res, class_labels=noise_level
        ).sample
    assert (out - out_changed)[:, :, 3].abs().max() > 1e-3  # video frame 3 sees frame 1
    assert torch.equal(out[:, :, 4], out_changed[:, :, 4])  # the image frame does not


def test_vsr_needs_the_x4_layout(sd_folder):
    with pytest.raises(ModelLoadError, match=r"VSRUNet3DModel needs in_channels = 4 latent \+ 3 condition = 7"):
        VSRUNet3DModel.from_pretrained_2d(sd_folder)


def test_vsr_round_trips_and_is_not_loaded_as_base(vsr, tmp_path):
    vsr.save_pretrained(tmp_path / "vsr")
    loaded = VSRUNet3DModel.from_pretrained(tmp_path / "vsr")
    for key, value in vsr.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(
        ModelLoadError,
        match="holds a VSRUNet3DModel config, expected BaseUNet3DModel; "
        "load it with VSRUNet3DModel.from_pretrained$",
    ):
        BaseUNet3DModel.from_pretrained(tmp_path / "vsr")


def test_vsr_gradient_checkpointing_covers_temporal_convs(x4_folder, randomize_temporal):
    model = VSRUNet3DModel.from_pretrained_2d(x4_folder).train()
    randomize_temporal(model)
    latents, low_res, timestep, context, noise_level = _vsr_inputs()

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        out = model(latents, timestep, context, num_image_frames=1, added_cond=low_res, class_labels=noise_level)
        out.sample.square().mean().backward()
        return [param.grad.clone() for param in model.trainable_parameters()]

    plain = grads()
    model.enable_gradient_checkpointing()
    for a, b in zip(plain, grads(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_vsr_compiles_without_graph_breaks(vsr):
    latents, low_res, timestep, context, noise_level = _vsr_inputs()
    torch._dynamo.reset()
    compiled = torch.compile(vsr, backend="eager", fullgraph=True)
    with torch.no_grad():
        out = compiled(latents, timestep, context, 1, low_res, class_labels=noise_level).sample
        expected = vsr(latents, timestep, context, 1, low_res, class_labels=noise_level).sample
    torch.testing.assert_close(out, expected, atol=TOL, rtol=0)
