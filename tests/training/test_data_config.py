"""Data config validation and source pre-flight checks: every bad input is a one-line UserError."""

from __future__ import annotations

from pathlib import Path

import pytest

from lavie.core.errors import UserError
from lavie.synthetic import clip_row, image_row, write_clip_manifest, write_image_manifest
from training.data import DataConfig, SourceConfig, parse_data_config, validate_sources


def _config(**overrides) -> dict:
    config = {
        "sources": [
            {"name": "webvid", "kind": "video", "manifest": "/data/webvid", "schedule": [[0, 1.0]]},
            {"name": "laion", "kind": "image", "manifest": "/data/laion", "schedule": [[0, 1.0]]},
        ]
    }
    config.update(overrides)
    return config


def _error(data) -> str:
    with pytest.raises(UserError) as caught:
        parse_data_config(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_follow_the_paper():
    config = parse_data_config(_config())
    assert (config.num_frames, config.height, config.width, config.images_per_sample) == (16, 320, 512, 4)
    assert config.frame_stride == 1 and config.target_fps is None
    assert config.caption_dropout == 0.1


def _src(name="w", kind="video", schedule=((0, 1.0),), **extra) -> dict:
    return {"name": name, "kind": kind, "manifest": "/m", "schedule": schedule, **extra}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_config(num_frame=16), "data config: num_frame: unknown key"),
        (_config(sources=[_src(weigth=1)]), "data config: sources.0.weigth: unknown key"),
        (_config(sources=[_src(kind="audio")]), "data config: sources.0.kind:"),
        (_config(height=0), "data config: height: Input should be greater than or equal to 1"),
        (_config(caption_dropout=1.5), "data config: caption_dropout:"),
        (_config(frame_stride=2, target_fps=8), "data config: data: set frame_stride or target_fps, not both"),
        (
            _config(sources=[_src(schedule=[[10, 1], [5, 0]])], images_per_sample=0),
            "data config: sources.0.schedule: knot steps must be strictly increasing, got [10, 5]",
        ),
        (_config(sources=[_src(schedule=[[0, -1]])], images_per_sample=0), "weights must be >= 0"),
        (_config(sources=[_src(schedule=[])]), "data config: sources.0.schedule:"),
        (
            _config(sources=[_src(), _src(name="i", kind="image")], image_clips={"max_shift": 4}),
            "with image_clips, images feed clips: set images_per_sample to 0",
        ),
        (_config(sources=[_src()]), "images_per_sample is 4 but no source has kind 'image'"),
        (_config(sources=[_src(), _src()], images_per_sample=0), "source names must be unique, repeated: w"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(data, expected):
    assert expected in _error(data)


def test_yaml_file_with_data_section(tmp_path: Path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "model: {}\n"
        "data:\n"
        "  target_fps: 8\n"
        "  images_per_sample: 0\n"
        "  sources:\n"
        "    - {name: webvid, kind: video, manifest: /m, schedule: [[0, 1.0], [100, 0.5]]}\n"
    )
    config = parse_data_config(path)
    assert config.target_fps == 8 and config.frame_stride is None
    assert config.sources[0].schedule == [(0, 1.0), (100, 0.5)]
    path.write_text("data:\n  sources: [\n")
    assert _error(path).startswith(f"data config {path}:")


def test_schedule_is_piecewise_linear_and_constant_outside_the_knots():
    source = SourceConfig(name="v", kind="video", manifest="/m", schedule=[(100, 0.0), (200, 1.0), (300, 0.5)])
    weights = [source.weight_at(step) for step in (0, 100, 150, 200, 250, 300, 10_000)]
    assert weights == [0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.5]


# --- validate_sources --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("manifests")
    clips = [clip_row(f"/v/{i}.mp4", 0, 32, 24.0, 640, 360, "a clip of three words") for i in range(3)]
    images = [image_row(f"/i/{i}.png", "an image caption", 64, 64) for i in range(3)]
    unfinished = write_clip_manifest(root / "unfinished", clips)
    (unfinished / "_SUCCESS").unlink()
    return {
        "webvid": write_clip_manifest(root / "webvid", clips),
        "plain_clips": write_clip_manifest(root / "plain", clips) / "clips",
        "laion": write_image_manifest(root / "laion", images),
        "empty": write_clip_manifest(root / "empty", []),
        "unfinished": unfinished,
    }


def _sources(manifests, *sources, images_per_sample=1) -> DataConfig:
    return DataConfig(
        sources=[
            {"name": name, "kind": kind, "manifest": str(manifests.get(key, key)), "schedule": schedule}
            for name, kind, key, schedule in sources
        ],
        images_per_sample=images_per_sample,
    )


def _validate_error(config: DataConfig) -> str:
    with pytest.raises(UserError) as caught:
        validate_sources(config)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_valid_sources_are_indexed(manifests):
    config = _sources(
        manifests,
        ("webvid", "video", "webvid", [[0, 1]]),
        ("vimeo", "video", "plain_clips", [[0, 0], [100, 1]]),
        ("laion", "image", "laion", [[0, 1]]),
    )
    indexed = validate_sources(config)
    assert {name: (m.kind, m.num_rows) for name, m in indexed.items()} == {
        "webvid": ("video", 3),
        "vimeo": ("video", 3),
        "laion": ("image", 3),
    }
    assert "clip_id" in indexed["webvid"].columns and "image_id" in indexed["laion"].columns


def test_missing_manifest(manifests, tmp_path):
    missing = tmp_path / "nowhere"
    config = _sources(manifests, ("webvid", "video", missing, [[0, 1]]), ("laion", "image", "laion", [[0, 1]]))
    assert _validate_error(config) == f"data source 'webvid': manifest {missing}: no such file or folder"


def test_image_manifest_given_as_video_and_vice_versa(manifests):
    config = _sources(manifests, ("webvid", "video", "laion", [[0, 1]]), ("laion", "image", "laion", [[0, 1]]))
    assert _validate_error(config).endswith("is an image manifest but the source has kind 'video'")
    config = _sources(manifests, ("webvid", "video", "webvid", [[0, 1]]), ("laion", "image", "webvid", [[0, 1]]))
    message = _validate_error(config)
    assert message.startswith("data source 'laion'")
    assert message.endswith("is a video clip manifest but the source has kind 'image'")


def test_manifest_without_rows(manifests):
    config = _sources(manifests, ("webvid", "video", "empty", [[0, 1]]), images_per_sample=0)
    assert _validate_error(config).endswith("has no rows")


def test_unfinished_curation_output(manifests):
    config = _sources(manifests, ("webvid", "video", "unfinished", [[0, 1]]), images_per_sample=0)
    assert "no _SUCCESS marker" in _validate_error(config)


def test_all_weights_zero_at_some_step(manifests):
    config = _sources(
        manifests,
        ("webvid", "video", "webvid", [[0, 1], [100, 0]]),
        ("vimeo", "video", "webvid", [[0, 0], [150, 0], [300, 1]]),
        ("laion", "image", "laion", [[0, 1]]),
    )
    assert _validate_error(config) == "data sources: every video source (webvid, vimeo) has weight 0 at step 100"
    config = _sources(
        manifests, ("webvid", "video", "webvid", [[0, 1]]), ("laion", "image", "laion", [[0, 0]])
    )
    assert _validate_error(config) == "data sources: every image source (laion) has weight 0 at step 0"
    # Image weights do not matter when samples carry no images.
    config = _sources(
        manifests, ("webvid", "video", "webvid", [[0, 1]]), ("laion", "image", "laion", [[0, 0]]), images_per_sample=0
    )
    validate_sources(config)
