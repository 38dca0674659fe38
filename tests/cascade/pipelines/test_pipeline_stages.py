"""Each stage pipeline on its own: seeds, guidance branches, chunked decoding and VSR windows,
long videos and LoRA, with a tiny random cascade on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade.encoders import decode_latents
from cascade.models import add_spatial_lora, save_spatial_lora
from cascade.models.unet_3d import BaseUNet3DModel
from cascade.pipelines import (
    InterpolationPipeline,
    LongVideoPipeline,
    TextToVideoPipeline,
    VSRPipeline,
    long_video_frames,
)

SMALL = dict(num_frames=4, height=32, width=32, num_inference_steps=2)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.fixture(scope="module")
def base(cascade_folder) -> TextToVideoPipeline:
    pipeline = TextToVideoPipeline.from_pretrained(cascade_folder)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def vsr(cascade_folder) -> VSRPipeline:
    pipeline = VSRPipeline.from_pretrained(cascade_folder)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def record_batch_sizes(model: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _module, args, kwargs: sizes.append(args[0].shape[0]), with_kwargs=True)
    return sizes, handle


def test_defaults_are_the_release_settings(base, vsr, cascade_folder):
    interpolation = InterpolationPipeline.from_pretrained(cascade_folder)
    assert type(base.scheduler).__name__ == "DDPMScheduler"
    assert type(interpolation.scheduler).__name__ == "DDIMScheduler"
    assert type(vsr.scheduler).__name__ == "DDIMScheduler" and vsr.scheduler.config.prediction_type == "v_prediction"
    assert vsr.max_noise_level == 350
    defaults = {name: p.default for name, p in __import__("inspect").signature(TextToVideoPipeline.__call__).parameters.items()}
    assert (defaults["num_inference_steps"], defaults["guidance_scale"], defaults["num_frames"]) == (50, 7.5, 16)
    assert (defaults["height"], defaults["width"], defaults["negative_prompt"]) == (320, 512, "")


def test_same_seed_same_frames_other_seed_other_frames(base):
    first = base("a cat", generator=seeded(1), **SMALL).frames
    again = base("a cat", generator=seeded(1), **SMALL).frames
    other = base("a cat", generator=seeded(2), **SMALL).frames
    assert first.shape == (1, 4, 32, 32, 3) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


def test_output_types(base):
    pt = base("a dog", generator=seeded(0), output_type="pt", **SMALL).frames
    pil = base("a dog", generator=seeded(0), output_type="pil", **SMALL).frames
    latent = base("a dog", generator=seeded(0), output_type="latent", **SMALL).frames
    assert pt.shape == (1, 4, 3, 32, 32) and 0.0 <= float(pt.min()) and float(pt.max()) <= 1.0
    assert len(pil) == 1 and len(pil[0]) == 4 and pil[0][0].size == (32, 32)
    assert latent.shape == (1, 4, 4, 8, 8)


def test_guidance_one_runs_one_branch_and_guidance_runs_two(base):
    sizes, handle = record_batch_sizes(base.unet)
    try:
        base("a cat", guidance_scale=1.0, generator=seeded(0), **SMALL)
        assert sizes == [1, 1]
        sizes.clear()
        base("a cat", guidance_scale=7.5, generator=seeded(0), **SMALL)
        assert sizes == [2, 2]
    finally:
        handle.remove()


def test_callback_on_step_end_sees_and_may_replace_latents(base):
    seen = []

    def callback(pipeline, step, timestep, kwargs):
        seen.append((step, kwargs["latents"].shape))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = base("a cat", generator=seeded(0), callback_on_step_end=callback, output_type="latent", **SMALL)
    assert [step for step, _ in seen] == [0, 1]
    assert torch.count_nonzero(out.frames) == 0


def test_chunked_vae_decoding_equals_decoding_at_once(base):
    """The VAE decodes each frame on its own, so only floating-point summation order can differ
    between a batch of 1 and a batch of 4 (tolerance: 1e-5 on pixels in [-1, 1], ~1/400 of a grey
    level)."""
    latents = base("a cat", generator=seeded(3), output_type="latent", **SMALL).frames
    at_once = decode_latents(base.vae, latents, None)
    for chunk in (1, 3):
        assert torch.allclose(decode_latents(base.vae, latents, chunk), at_once, atol=1e-5, rtol=0)
    chunked = base("a cat", generator=seeded(3), decode_chunk_size=1, **SMALL).frames
    whole = base("a cat", generator=seeded(3), decode_chunk_size=None, **SMALL).frames
    assert np.abs(chunked - whole).max() < 1e-5


def test_text_to_image_is_one_frame(base):
    image = base("a red car", num_frames=1, height=32, width=48, num_inference_steps=2, generator=seeded(0)).frames
    assert image.shape == (1, 1, 32, 48, 3)


def test_a_size_the_unet_cannot_take_is_one_line(base):
    with pytest.raises(Exception, match=r"^base: size 36x32 cannot be taken by this model: .* multiples of 8") as info:
        base("a cat", num_frames=2, height=36, width=32, num_inference_steps=1)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------- interpolation
def test_interpolation_makes_4n_minus_3_frames_from_any_video(cascade_folder, base):
    interpolation = InterpolationPipeline.from_pretrained(cascade_folder)
    interpolation.set_progress_bar_config(disable=True)
    video = base("a cat", generator=seeded(0), **SMALL).frames  # (1, 4, 32, 32, 3)
    out = interpolation(video=video[0], prompt="a cat", num_inference_steps=2, generator=seeded(0)).frames
    assert out.shape == (1, 13, 32, 32, 3)
    sizes, handle = record_batch_sizes(interpolation.unet)
    try:  # 7 key frames in windows of 4 sharing an end frame: [0, 4), [3, 7) → 25 frames
        long = interpolation(video=np.concatenate([video[0], video[0][:3]]), prompt="a cat", num_inference_steps=1,
                             window_frames=4, generator=seeded(0), output_type="latent").frames  # fmt: skip
    finally:
        handle.remove()
    assert long.shape[2] == 25 and len(sizes) == 2


def test_interpolation_conditions_on_the_key_frames_on_the_release_grid(cascade_folder, base):
    interpolation = InterpolationPipeline.from_pretrained(cascade_folder)
    interpolation.set_progress_bar_config(disable=True)
    keys = base("a cat", generator=seeded(0), output_type="latent", **SMALL).frames
    seen = []
    handle = interpolation.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs["added_cond"]), with_kwargs=True
    )
    try:
        interpolation(video_latents=keys, prompt="a cat", num_inference_steps=1, guidance_scale=1.0, output_type="latent")
    finally:
        handle.remove()
    grid = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3]  # position 4k+3 holds key k+1
    assert torch.equal(seen[0], keys[:, :, grid])


# ---------------------------------------------------------------------------------- VSR
@pytest.fixture(scope="module")
def low_res(base) -> np.ndarray:
    return base("a cat", num_frames=6, height=32, width=32, num_inference_steps=2, generator=seeded(5)).frames[0]


def test_vsr_upscales_by_four_and_draws_noise_once(vsr, low_res):
    out = vsr(low_res, prompt="a cat", num_inference_steps=2, generator=seeded(0)).frames
    assert out.shape == (1, 6, 128, 128, 3)


def test_chunked_vsr_equals_the_unchunked_run(vsr, low_res):
    """This VSR model's temporal layers are at their zero initialisation, so it upscales each
    frame independently: chunks of 8 (the release's), of 4, and overlapping chunks of 4 sharing 2
    frames must equal one window of all frames, up to floating-point batch-size effects in the
    convolutions (1e-5 on pixels in [0, 1])."""
    common = dict(prompt="a cat", num_inference_steps=2, output_type="pt")
    whole = vsr(low_res, chunk_frames=None, generator=seeded(0), **common).frames
    for chunk, overlap in ((4, 0), (4, 2), (1, 0)):
        chunked = vsr(low_res, chunk_frames=chunk, chunk_overlap=overlap, generator=seeded(0), **common).frames
        assert torch.allclose(chunked, whole, atol=1e-5, rtol=0), (chunk, overlap)


def test_tiled_vsr_stays_close_to_the_untiled_run(vsr, low_res):
    """Tiles see less context than the whole frame: near a seam the UNet's receptive field is cut,
    so tiled ≠ untiled there. The bound: with 16-pixel tiles overlapping by 8 on 32×32 low-res
    frames, the tiled result differs from the untiled one by less than a quarter of what another
    seed changes (measured: about a tenth), and the overlap blending keeps seams below what
    non-overlapping tiles give (measured: 0.085 and 0.155 of the other-seed difference)."""
    common = dict(prompt="a cat", num_inference_steps=2, output_type="pt", chunk_frames=None)
    whole = vsr(low_res, generator=seeded(0), **common).frames
    tiled = vsr(low_res, tile_size=16, tile_overlap=8, generator=seeded(0), **common).frames
    other_seed = vsr(low_res, generator=seeded(1), **common).frames
    seams = vsr(low_res, tile_size=16, tile_overlap=0, generator=seeded(0), **common).frames
    tiled_error = (tiled - whole).abs().mean()
    assert tiled_error < 0.25 * (other_seed - whole).abs().mean()
    assert tiled_error < (seams - whole).abs().mean()


def test_vsr_noise_level_is_bounded_and_reaches_the_class_labels(vsr, low_res):
    seen = []
    handle = vsr.unet.register_forward_pre_hook(lambda _m, a, kw: seen.append(kw["class_labels"]), with_kwargs=True)
    try:
        vsr(low_res[:2], prompt="a cat", noise_level=120, num_inference_steps=1, guidance_scale=1.0, output_type="latent")
    finally:
        handle.remove()
    assert seen[0].tolist() == [120]
    with pytest.raises(Exception, match=r"noise_level must be in \[0, 350\], got 400"):
        vsr(low_res, prompt="a cat", noise_level=400, num_inference_steps=1)


# ---------------------------------------------------------------------------------- long video
def test_long_video_conditions_each_segment_on_the_last_frame_of_the_one_before(cascade_folder):
    pipeline = LongVideoPipeline.from_pretrained(cascade_folder)
    pipeline.set_progress_bar_config(disable=True)
    conditions = []
    handle = pipeline.continuation.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: conditions.append(kwargs["added_cond"]), with_kwargs=True
    )
    try:
        out = pipeline("a wave", num_segments=3, num_frames=4, height=32, width=32, num_inference_steps=2,
                       guidance_scale=1.0, generator=seeded(0), output_type="np")  # fmt: skip
    finally:
        handle.remove()
    assert long_video_frames(4, 3) == 10 and out.frames.shape[1] == 10
    latents = out.latents  # segment 0: frames 0-3; segment 1 adds 4-6; segment 2 adds 7-9
    segment_ends = [3, 6]
    per_segment = [conditions[0], conditions[2]]  # two steps per segment
    for condition, end in zip(per_segment, segment_ends):
        assert condition.shape == (1, 4, 4, 8, 8)
        for frame in range(4):
            assert torch.equal(condition[:, :, frame], latents[:, :, end])


# ---------------------------------------------------------------------------------- LoRA
def test_lora_changes_the_output_and_unloading_restores_it_bit_for_bit(base, cascade_parts, tmp_path):
    model = BaseUNet3DModel.from_pretrained(cascade_parts["base"])
    add_spatial_lora(model, rank=2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    adapter = save_spatial_lora(model, tmp_path / "adapter")
    before = base("a cat", generator=seeded(0), **SMALL).frames
    base.load_lora(adapter)
    with_lora = base("a cat", generator=seeded(0), **SMALL).frames
    base.load_lora(adapter, scale=0.0)
    scale_zero = base("a cat", generator=seeded(0), **SMALL).frames
    base.unload_lora()
    after = base("a cat", generator=seeded(0), **SMALL).frames
    assert np.abs(with_lora - before).mean() > 1e-3
    assert np.array_equal(scale_zero, before)
    assert np.array_equal(after, before)


def test_an_adapter_for_another_architecture_is_one_line(base, tmp_path):
    other = BaseUNet3DModel.from_config(
        {**{k: v for k, v in base.unet.config.items() if not k.startswith("_")}, "block_out_channels": [16, 32],
         "cross_attention_dim": 16}  # fmt: skip
    )
    add_spatial_lora(other, rank=2)
    adapter = save_spatial_lora(other, tmp_path / "other")
    with pytest.raises(Exception, match=r"pytorch_lora_weights.safetensors: adapter was made for another architecture \(.*lora_A.weight fits a layer of width 16, .* has 32\)") as info:
        base.load_lora(adapter)
    assert "\n" not in str(info.value)
    assert not getattr(base.unet, "peft_config", {})  # nothing half-loaded
