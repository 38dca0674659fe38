"""The kinds beyond the base model, without Ray: what each feeds its network (interpolation
conditioning, the VSR low-resolution input and noise level), the patches, images as clips, the
data-stream skips, and the one-line errors of bad configs before any worker starts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from train_configs import FPS, H, W, kind_config

import training.config
from cascade.models import interpolation_source_frames
from lavie.cli import main as lavie
from lavie.cli import train as train_command
from lavie.core.errors import UserError
from lavie.synthetic import (
    clip_row,
    image_row,
    write_clip_manifest,
    write_image,
    write_image_manifest,
    write_pattern_video,
)
from training.checkpointing import restore_frozen_weights
from training.config import load_train_config
from training.data import JointLoader, JointVideoImageDataset
from training.data.camera import CameraMotion, camera_path, image_clip
from training.data.decode import ClipSpec, SkipSample, frame_step
from training.patches import crop_patches, downsample_x4
from training.specs import spec_class
from training.specs.spec import DrawKey

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEY = DrawKey(seed=5, step=3, rank=1, micro=0)


# --------------------------------------------------------------------------- pure pieces
def test_camera_translations_are_bounded_smooth_and_seeded():
    motion = CameraMotion(max_shift=6, smoothness=0.8, jitter=2.0)
    paths = [camera_path(motion, 61, np.random.default_rng(seed)) for seed in range(20)]
    for path in paths:
        assert path.shape == (61, 2) and path.dtype == np.int64
        assert (path[0] == 0).all() and np.abs(path).max() <= 6
    assert max(np.abs(path).max() for path in paths) == 6  # the bound is reached, not just respected
    assert np.array_equal(paths[3], camera_path(motion, 61, np.random.default_rng(3)))
    assert not np.array_equal(paths[3], paths[4])
    still = camera_path(CameraMotion(max_shift=0), 8, np.random.default_rng(0))
    assert not still.any()


def test_image_clip_frames_are_the_displaced_windows_of_the_image():
    image = torch.randint(0, 256, (3, 20 + 8, 24 + 8), dtype=torch.uint8)
    offsets = np.array([[0, 0], [-4, 3], [4, -4]])
    frames = image_clip(image, offsets, 20, 24)
    assert frames.shape == (3, 3, 20, 24)
    for frame, (dy, dx) in zip(frames, offsets):
        assert torch.equal(frame, image[:, 4 + dy : 24 + dy, 4 + dx : 28 + dx])


def test_downsample_x4_is_the_exact_4x4_box_mean_in_minus_one_one():
    frames = torch.randint(0, 256, (2, 3, 3, 8, 12), dtype=torch.uint8)
    low = downsample_x4(frames)
    assert low.shape == (2, 3, 3, 2, 3)
    for y in range(2):
        for x in range(3):
            block = frames[..., 4 * y : 4 * y + 4, 4 * x : 4 * x + 4].double().mean(dim=(-1, -2))
            assert torch.allclose(low[..., y, x].double(), block / 127.5 - 1, atol=1e-6)
    assert downsample_x4(torch.zeros(1, 3, 4, 4, dtype=torch.uint8)).eq(-1).all()
    assert downsample_x4(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)).eq(1).all()


def test_patches_cut_one_window_per_sample_for_all_its_frames():
    video = torch.arange(2 * 5 * 3 * 12 * 16, dtype=torch.int64).reshape(2, 5, 3, 12, 16)
    images = video[:, :2] + 1
    g = torch.Generator().manual_seed(0)
    out = crop_patches({"video": video, "images": images, "other": 1}, (8, 8), g)
    assert out["video"].shape == (2, 5, 3, 8, 8) and out["images"].shape == (2, 2, 3, 8, 8) and out["other"] == 1
    for j, (top, left) in enumerate(out["patch_corners"].tolist()):
        assert 0 <= top <= 4 and 0 <= left <= 8
        assert torch.equal(out["video"][j], video[j, ..., top : top + 8, left : left + 8])
        assert torch.equal(out["images"][j], images[j, ..., top : top + 8, left : left + 8])
    again = crop_patches({"video": video, "images": images}, (8, 8), torch.Generator().manual_seed(0))
    assert torch.equal(again["patch_corners"], out["patch_corners"])


def test_distinct_frames_skip_clips_slower_than_the_target_rate():
    spec = ClipSpec(num_frames=61, height=8, width=8, target_fps=24, distinct_frames=True)
    assert frame_step(spec, 30.0) == pytest.approx(1.25)
    with pytest.raises(SkipSample) as caught:
        frame_step(spec, 12.0)
    assert caught.value.reason == "low_fps"
    assert frame_step(ClipSpec(num_frames=61, height=8, width=8, target_fps=24), 12.0) == 0.5  # base: repeats


# --------------------------------------------------------------------------- data streams
def _stream(config, **kwargs):
    spec = spec_class(config.model.kind)(config)
    return JointVideoImageDataset(spec.data_config(), 0, 1, 0, batch_size=1, **kwargs)


def test_interpolation_windows_skip_and_count_slow_and_short_clips(cascade_data, tmp_path):
    video = write_pattern_video(tmp_path / "v.mp4", 24, H, W, fps=FPS, pattern="texture")
    rows = [
        clip_row(str(video), 0, 24, FPS, W, H, "fast enough"),
        clip_row(str(video), 0, 24, 12.0, W, H, "half the rate"),
        clip_row(str(video), 0, 6, FPS, W, H, "too short for 9 frames"),
    ]
    raw = kind_config("interpolation", cascade_data, tmp_path / "runs")
    raw["data"]["sources"] = [{"name": "mixed", "kind": "video", "manifest": str(write_clip_manifest(tmp_path / "m", rows)),
                               "schedule": [[0, 1.0]]}]  # fmt: skip
    config = load_train_config(raw)
    dataset = _stream(config, distinct_frames=True)
    samples = [sample for sample, _ in zip(dataset, range(12))]
    assert {s["video_caption"] for s in samples} == {"fast enough"}
    for sample in samples:  # 9 consecutive source frames: 24 fps from a 24 fps clip
        assert sample["video"].shape == (9, 3, 32, 32)
        assert np.diff(sample["frame_indices"]).tolist() == [1] * 8
    counters = dataset.counters()["mixed"]
    assert counters["low_fps"] > 0 and counters["too_short"] > 0


def test_images_become_translated_clips_and_small_images_are_skipped(cascade_data, tmp_path):
    rows = [image_row(str(write_image(tmp_path / f"big{i}.png", H, W, level=40 * i)), f"big {i}", W, H) for i in range(3)]
    rows.append(image_row(str(write_image(tmp_path / "small.png", 24, 24, level=9)), "small", 24, 24))
    raw = kind_config("vsr", cascade_data, tmp_path / "runs")
    raw["data"]["sources"][1]["manifest"] = str(write_image_manifest(tmp_path / "images", rows))
    raw["data"]["sources"][1]["schedule"] = [[0, 1.0]]
    raw["data"]["sources"][0]["schedule"] = [[0, 0.0]]  # image clips only
    raw["data"]["sources"] = raw["data"]["sources"][::-1]
    config = load_train_config(raw)
    dataset = _stream(config)
    samples = [sample for sample, _ in zip(dataset, range(10))]
    assert {s["video_caption"] for s in samples} <= {"big 0", "big 1", "big 2"}
    assert dataset.counters()["laion"]["too_small"] > 0
    moved = 0
    for sample in samples:
        assert sample["video"].shape == (4, 3, 32, 32) and sample["frame_indices"] == [0, 0, 0, 0]
        moved += any(not torch.equal(frame, sample["video"][0]) for frame in sample["video"][1:])
    assert moved > 0  # the hand-held camera moves
    again = [sample for sample, _ in zip(_stream(config), range(10))]
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(samples, again))  # same seed, same clips


# --------------------------------------------------------------------------- what the networks see
def _prepared(kind: str, cascade_data, tmp_path):
    config = load_train_config(kind_config(kind, cascade_data, tmp_path / "runs"))
    spec = spec_class(kind)(config)
    spec.prepare(torch.device("cpu"), torch.float32, torch.float32, None)
    batch = next(iter(JointLoader(spec.build_dataset(0, 1, 0, None))))
    return spec, batch


class Recorder:
    """Stands in for the engine: records the network's inputs, predicts zeros."""

    def __call__(self, sample, timestep, context, **kwargs):
        self.inputs = {"sample": sample, "timestep": timestep, "context": context, **kwargs}
        return SimpleNamespace(sample=torch.zeros_like(sample, requires_grad=True))


def test_interpolation_conditioning_is_the_documented_mapping_for_every_output_frame(cascade_data, tmp_path):
    spec, batch = _prepared("interpolation", cascade_data, tmp_path)
    model = Recorder()
    spec.loss(model, batch, KEY)
    condition = model.inputs["added_cond"]
    assert condition.shape == model.inputs["sample"].shape == (1, 4, 9, 4, 4)
    # The key frames are window frames 0, 4, 8; output frame 4k (and 4k+1, 4k+2) is conditioned on
    # key frame k, 4k+3 on key frame k+1: the posterior mean latent of that frame of the patch.
    patch = spec.pixels(batch, KEY)["video"][0]
    means = spec.conditioner.moments(patch).chunk(2, dim=1)[0] * spec.conditioner.scaling_factor
    expected_key = [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert interpolation_source_frames(3).tolist() == expected_key
    for frame, key_frame in enumerate(expected_key):
        assert torch.allclose(condition[0, :, frame], means[4 * key_frame], atol=1e-6)
    assert model.inputs.get("num_image_frames", 0) == 0


def test_vsr_low_res_input_is_the_x4_downsample_and_its_noise_level_reaches_the_class_embedding(cascade_data, tmp_path):
    spec, batch = _prepared("vsr", cascade_data, tmp_path)
    assert spec.prediction_type == "v_prediction" and spec.objective.prediction_type == "v_prediction"
    pixels = spec.pixels(batch, KEY)
    low = spec.low_res_input(pixels, KEY)
    patch = pixels["video"]  # (1, 4, 3, 16, 16)
    assert torch.equal(low.clean, downsample_x4(patch).transpose(1, 2))
    assert low.clean.shape == (1, 3, 4, 4, 4) and 0 <= int(low.noise_level) <= 350
    assert not torch.equal(low.noisy, low.clean)

    model = spec.build_model()
    seen = []
    model.class_embedding.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    spec.loss(model, batch, KEY)
    assert seen and torch.equal(seen[0].long(), low.noise_level.repeat_interleave(4))  # one label per frame
    model = Recorder()
    spec.loss(model, batch, KEY)
    assert torch.equal(model.inputs["added_cond"], low.noisy) and torch.equal(model.inputs["class_labels"], low.noise_level)


def test_long_video_condition_is_the_first_frame_on_every_frame(cascade_data, tmp_path):
    spec, batch = _prepared("long_video", cascade_data, tmp_path)
    model = Recorder()
    spec.loss(model, batch, KEY)
    first = spec.conditioner.moments(batch["video"][0, :1]).chunk(2, dim=1)[0] * spec.conditioner.scaling_factor
    condition = model.inputs["added_cond"]
    assert condition.shape == (1, 4, 4, 8, 8)
    for frame in range(4):
        assert torch.allclose(condition[0, :, frame], first[0], atol=1e-6)


def test_lora_samples_are_single_images_given_as_image_frames(cascade_data, tmp_path):
    spec, batch = _prepared("lora", cascade_data, tmp_path)
    assert batch["video"].shape == (1, 1, 3, 32, 32) and batch["video_caption"][0].startswith("image ")
    model = Recorder()
    spec.loss(model, batch, KEY)
    assert model.inputs["num_image_frames"] == 1


# --------------------------------------------------------------------------- bad configs
@pytest.fixture
def no_ray(monkeypatch):
    def refuse(address, **kwargs):
        raise AssertionError("Ray was started although the input is bad")

    monkeypatch.setattr(train_command, "connect", refuse)


def _slow_manifest(tmp_path: Path) -> str:
    video = write_pattern_video(tmp_path / "slow.mp4", 16, H, W, fps=8, pattern="texture")
    return str(write_clip_manifest(tmp_path / "slow", [clip_row(str(video), 0, 16, 8.0, W, H, "slow clip")]))


@pytest.mark.parametrize(
    "kind, change, expected",
    [
        ("vsr", {"model.pretrained": "sd"}, "model.pretrained: {sd} is not an x4-upscaler folder (it lacks low_res_scheduler"),
        ("lora", {"data.sources": "videos"}, "data.sources: LoRA personalisation trains on an image manifest, but 'webvid' is a video source"),
        ("interpolation", {"data.target_fps": 48}, "data.target_fps: 48 fps is more than the clips of source 'webvid' give (at most 24 fps)"),
        ("interpolation", {"data.sources.0.manifest": "slow"}, "data.target_fps: 24 fps is more than the clips of source 'webvid' give (at most 8 fps)"),
        ("interpolation", {"model.unet": "sd/unet"}, "model.unet: {sd}/unet holds a UNet2DConditionModel, but the interpolation model starts from a BaseUNet3DModel"),
        ("long_video", {"model.unet": None}, "model.unet: the long_video model starts from a base model"),
        ("vsr", {"model.unet": "base"}, "model.unet: {base} holds a BaseUNet3DModel config, expected VSRUNet3DModel"),
        ("interpolation", {"data.num_frames": 8}, "data.num_frames: the interpolation model makes 4(N-1)+1 frames of N key frames (61 of 16), got 8"),
        ("interpolation", {"data.target_fps": None, "data.frame_stride": 2}, "data.target_fps: the interpolation model learns one frame rate"),
        ("vsr", {"objective.prediction_type": "epsilon"}, "objective.prediction_type: the x4 upscaler is a v-prediction model"),
        ("vsr", {"model.options.patch_size": [64, 64]}, "model.options.patch_size: 64x64 does not fit the 32x32 frames"),
        ("lora", {"trainable": "all"}, "trainable: a LoRA run trains its adapter only"),
        ("lora", {"data.num_frames": 4}, "data.num_frames: a LoRA sample is one image"),
    ],
)  # fmt: skip
def test_bad_configs_fail_with_one_line_before_any_worker(kind, change, expected, cascade_data, tmp_path, capsys, no_ray):
    config = kind_config(kind, cascade_data, tmp_path / "runs")
    values = {"sd": str(cascade_data["sd"]), "sd/unet": str(cascade_data["sd"] / "unet"), "base": str(cascade_data["base"])}
    for dotted, value in change.items():
        if value == "videos":  # a video source beside the images
            webvid = {"name": "webvid", "kind": "video", "manifest": str(cascade_data["webvid"]), "schedule": [[0, 1.0]]}
            value = [webvid, *config["data"]["sources"]]
        elif value == "slow":
            value = _slow_manifest(tmp_path)
        else:
            value = values.get(value, value) if isinstance(value, str) else value
        *path, last = dotted.split(".")
        target = config
        for part in path:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        target[last] = value
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert lavie(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lavie train: error: ")
    assert expected.format(sd=cascade_data["sd"], base=cascade_data["base"]) in err
    assert not (tmp_path / "runs").exists()


def test_every_packaged_kind_config_validates(cascade_data):
    folder = Path(training.config.__file__).parent / "configs"
    kinds = {}
    for path in sorted(folder.glob("*.yaml")):
        kinds[load_train_config(path).model.kind] = path.name
    assert set(kinds) >= {"base", "interpolation", "vsr", "long_video", "lora"}, kinds


def test_a_bf16_export_takes_frozen_weights_from_an_unchanged_starting_model(cascade_data, tmp_path):
    config = load_train_config(kind_config("vsr", cascade_data, tmp_path, deepspeed={"bf16": True}))
    start = spec_class("vsr")(config).starting_model()
    rounded = {key: value.to(torch.bfloat16).float() for key, value in start.state_dict().items()}
    state = {"config": training.config.public_dump(config)}
    raw = dict(rounded)
    restore_frozen_weights(state, raw)  # what DeepSpeed stored for a bf16 run → the starting values
    frozen = [name for name, param in start.named_parameters() if not param.requires_grad]
    assert frozen and all(torch.equal(raw[key], start.state_dict()[key]) for key in frozen)
    assert any(not torch.equal(rounded[key], raw[key]) for key in frozen)  # bf16 had rounded them
    trained = [name for name, param in start.named_parameters() if param.requires_grad]
    assert all(raw[key] is rounded[key] for key in trained)  # trained weights come from the fp32 masters
    changed = dict(rounded)
    changed[frozen[0]] = changed[frozen[0]] + 1.0  # the folder no longer holds what the run trained with
    with pytest.raises(UserError, match=f"frozen weight {frozen[0]} .* changed since"):
        restore_frozen_weights(state, changed)
