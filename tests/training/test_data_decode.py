"""Video and image decoding on real H.264 files and PNG/JPEG images: exact frames, sizes, crops."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
import torch

from lavie.synthetic import index_level, level_index, write_image, write_pattern_video
from training.data.decode import (
    ClipSpec,
    SkipSample,
    cover_size,
    load_clip,
    load_image,
    plan_frames,
)

H, W = 96, 160  # source videos
FRAMES = 40


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    video = write_pattern_video(root / "v24.mp4", FRAMES, H, W, fps=24)
    truncated = root / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    garbage = root / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    return {
        "video": video,
        "video30": write_pattern_video(root / "v30.mp4", FRAMES, H, W, fps=30),
        "truncated": truncated,
        "garbage": garbage,
        "png": write_image(root / "i.png", 100, 150, level=90),
        "jpg": write_image(root / "i.jpg", 400, 600, level=150),
    }


def _levels(video: torch.Tensor) -> list[int]:
    """Frame indices read back from the grey centre of each frame."""
    h, w = video.shape[-2:]
    return [level_index(v) for v in video[:, :, h // 2, w // 2].float().mean(dim=1).tolist()]


def _has(frames: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """Mask of pixels close to ``colour``, shape (..., H, W)."""
    target = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1)
    return (frames.float() - target).abs().amax(dim=-3) < 60


def test_frame_planning_by_stride_and_by_fps():
    spec = ClipSpec(num_frames=4, height=8, width=8, frame_stride=3)
    assert plan_frames(spec, 5, 15, None, 0.0) == [5, 8, 11, 14]  # span 10, no slack
    assert plan_frames(spec, 5, 20, None, 0.0) == [5, 8, 11, 14]
    assert plan_frames(spec, 5, 20, None, 0.999) == [10, 13, 16, 19]  # last window that fits
    with pytest.raises(SkipSample) as caught:
        plan_frames(spec, 5, 14, None, 0.0)
    assert caught.value.reason == "too_short"
    by_fps = ClipSpec(num_frames=5, height=8, width=8, target_fps=12)
    assert plan_frames(by_fps, 0, 11, 30.0, 0.0) == [0, 2, 5, 7, 10]  # 2.5 source frames apart
    assert plan_frames(by_fps, 0, 20, 12.0, 0.0) == [0, 1, 2, 3, 4]


def test_cover_size_preserves_aspect_and_covers():
    assert cover_size(720, 1280, 320, 512) == (320, 569)
    assert cover_size(1080, 1080, 320, 512) == (512, 512)
    assert cover_size(96, 160, 48, 64) == (48, 80)
    assert cover_size(96, 160, 32, 96) == (58, 96)


def test_decodes_exactly_the_strided_frames_resized_and_centre_cropped(media):
    spec = ClipSpec(num_frames=6, height=48, width=64, frame_stride=3)
    video, indices = load_clip(str(media["video"]), 4, 4 + 16, 24.0, (H, W), spec, 0.0)
    assert indices == [4, 7, 10, 13, 16, 19]
    assert video.dtype == torch.uint8 and video.shape == (6, 3, 48, 64) and video.is_contiguous()
    assert _levels(video) == indices
    # 96x160 -> 48x80 -> crop 8 px off each side: the 4 px red side bands are gone, the blue
    # top/bottom bands (no vertical crop) are still there.
    assert not _has(video, (255, 0, 0)).any()
    assert _has(video[:, :, :1], (0, 0, 255)).float().mean() > 0.9
    assert _has(video[:, :, -1:], (0, 0, 255)).float().mean() > 0.9


def test_vertical_crop(media):
    spec = ClipSpec(num_frames=2, height=32, width=96, frame_stride=1)
    video, _ = load_clip(str(media["video"]), 0, FRAMES, 24.0, (H, W), spec, 0.5)
    assert video.shape == (2, 3, 32, 96)
    assert not _has(video, (0, 0, 255)).any()  # 96x160 -> 58x96: 13 rows off the top and bottom
    assert _has(video[..., :1], (255, 0, 0)).float().mean() > 0.9  # no horizontal crop


def test_decodes_at_target_fps(media):
    spec = ClipSpec(num_frames=8, height=48, width=64, target_fps=12)
    video, indices = load_clip(str(media["video30"]), 10, 10 + 18, 30.0, (H, W), spec, 0.0)
    assert indices == [10, 12, 15, 17, 20, 22, 25, 27]
    assert _levels(video) == indices


def test_unknown_source_size_or_fps_falls_back_to_probing(media):
    spec = ClipSpec(num_frames=4, height=48, width=64, target_fps=8)
    video, indices = load_clip(str(media["video"]), 0, 10, None, (None, None), spec, 0.0)
    assert indices == [0, 3, 6, 9] and _levels(video) == indices
    assert video.shape == (4, 3, 48, 64) and not _has(video, (255, 0, 0)).any()


@pytest.mark.parametrize(
    ("name", "start", "end", "detail"),
    [
        ("missing", 0, 16, "missing.mp4"),
        ("garbage", 0, 16, "garbage.mp4"),
        ("truncated", 0, 16, "truncated.mp4"),
        ("video", 30, 50, "clip ends at frame 50, file has 40"),
        ("video", -5, 10, "invalid frame range [-5, 10)"),
    ],
)
def test_undecodable_clips_raise_skip(media, name, start, end, detail):
    uri = str(media.get(name, media["video"].parent / "missing.mp4"))
    spec = ClipSpec(num_frames=4, height=48, width=64, frame_stride=1)
    with pytest.raises(SkipSample) as caught:
        load_clip(uri, start, end, 24.0, (H, W), spec, 0.0)
    assert caught.value.reason == "undecodable"
    assert detail in caught.value.detail and "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "level"), [("png", 90), ("jpg", 150)])
def test_images_are_resized_and_centre_cropped(media, name, level):
    image = load_image(str(media[name]), 48, 64)
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 64)
    assert abs(image[:, 24, 32].float().mean().item() - level) < 4
    assert not _has(image, (255, 0, 0)).any()  # side bands cropped away


def test_bad_images_raise_skip(media):
    for uri in (str(media["video"].parent / "missing.png"), str(media["garbage"])):
        with pytest.raises(SkipSample) as caught:
            load_image(uri, 48, 64)
        assert caught.value.reason == "undecodable"


def test_remote_uris_go_through_fsspec(media):
    fs = fsspec.filesystem("memory")
    fs.pipe("/decode-test/v.mp4", media["video"].read_bytes())
    fs.pipe("/decode-test/i.png", media["png"].read_bytes())
    try:
        spec = ClipSpec(num_frames=3, height=48, width=64, frame_stride=2)
        video, indices = load_clip("memory://decode-test/v.mp4", 1, 6, 24.0, (H, W), spec, 0.0)
        assert indices == [1, 3, 5] and _levels(video) == indices
        assert load_image("memory://decode-test/i.png", 48, 64).shape == (3, 48, 64)
    finally:
        fs.rm("/decode-test", recursive=True)


def test_level_encoding_round_trips():
    assert [level_index(index_level(k)) for k in range(FRAMES)] == list(range(FRAMES))
