"""The FVD crop-and-resize rule and frame choice, to the pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.preprocess import (
    GENERATED_CROP,
    centre_square,
    crop_resize,
    evenly_spaced,
    first_frames,
    fvd_rule,
    i3d_input,
)


def coordinate_frames(frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, 3) frames whose channels hold row % 251, column % 251 and the frame index."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([y % 251, x % 251, t], axis=-1).astype(np.uint8)


def test_generated_320x512_frames_lose_25_rows_and_121_columns_on_each_side():
    assert centre_square(320, 512, GENERATED_CROP) == (25, 121, 270)


def test_real_frames_keep_their_largest_centred_square():
    assert centre_square(240, 320, 1.0) == (0, 40, 240)  # UCF-101's 320×240
    assert centre_square(512, 320, 1.0) == (96, 0, 320)  # portrait


def test_the_crop_takes_exactly_the_centre_pixels():
    frames = coordinate_frames(2, 320, 512)
    crop = crop_resize(frames, GENERATED_CROP, 270)  # no resize: the crop itself
    assert crop.shape == (2, 3, 270, 270)
    expected = torch.from_numpy(frames[:, 25:295, 121:391]).permute(0, 3, 1, 2).float()
    assert torch.equal(crop, expected)
    assert crop[0, 0, 0, 0] == 25 and crop[0, 1, 0, 0] == 121 and crop[1, 2, 0, 0] == 1


def test_the_crop_is_then_resized_bilinearly_to_224():
    frames = coordinate_frames(2, 320, 512)
    resized = crop_resize(frames, GENERATED_CROP, 224)
    assert resized.shape == (2, 3, 224, 224)
    crop = torch.from_numpy(frames[:, 25:295, 121:391]).permute(0, 3, 1, 2).float()
    expected = F.interpolate(crop, size=(224, 224), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(resized, expected)
    # Bilinear with half-pixel centres: output column 0 samples crop column (0.5 · 270/224 − 0.5).
    assert resized[0, 1, 100, 0].item() == pytest.approx(121 + 0.5 * 270 / 224 - 0.5, abs=1e-4)


def test_i3d_input_is_channels_first_over_time_in_minus_one_to_one():
    frames = np.zeros((16, 320, 512, 3), np.uint8)
    frames[:, :, 256:] = 255
    x = i3d_input(frames, GENERATED_CROP)
    assert x.shape == (3, 16, 224, 224) and x.dtype == torch.float32
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    torch.testing.assert_close(x[:, :, :, 0], torch.full((3, 16, 224), -1.0))  # black: -1
    torch.testing.assert_close(x[:, :, :, -1], torch.full((3, 16, 224), 1.0))  # white: 1 (up to bilinear rounding)


def test_frame_choice():
    assert first_frames(0, 24, 16) == list(range(16))
    assert first_frames(30, 46, 16) == list(range(30, 46))
    assert first_frames(30, 45, 16) is None  # 15 frames: never padded
    assert evenly_spaced(0, 10, None) == list(range(10))
    assert evenly_spaced(0, 10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(5, 8, 4) == [5, 6, 7]


def test_the_rule_names_the_filter():
    assert fvd_rule(GENERATED_CROP, 224) == (
        "centre square crop of 0.84375 x the short side, then resize to 224x224: "
        "bilinear (torch.nn.functional.interpolate, align_corners=False, antialias=False)"
    )
