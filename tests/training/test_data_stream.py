"""The joint sample stream: sharding, curriculum mix, determinism, exact resume, skips, workers."""

from __future__ import annotations

import math
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lavie.core.errors import UserError
from lavie.synthetic import (
    clip_row,
    image_row,
    level_index,
    write_clip_manifest,
    write_image,
    write_image_manifest,
    write_pattern_video,
)
from training.data import (
    Curriculum,
    JointLoader,
    JointVideoImageDataset,
    ShardReader,
    collate_samples,
    index_manifest,
    parse_data_config,
)

H, W, FRAMES, FPS = 96, 160, 40, 24


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream")
    videos = [write_pattern_video(root / f"v{i}.mp4", FRAMES, H, W, fps=FPS) for i in range(4)]
    (root / "garbage.mp4").write_bytes(b"not a video" * 100)
    webvid = [
        clip_row(str(v), s, e, FPS, W, H, f"webvid clip {i} from {s}")
        for i, v in enumerate(videos)
        for s, e in ((0, 13), (13, 26), (26, 40))
    ]
    vimeo = [clip_row(str(v), 2, 38, FPS, W, H, f"vimeo clip {i}") for i, v in enumerate(videos)]
    bad = [
        clip_row(str(videos[0]), 0, 40, FPS, W, H, "good clip"),
        clip_row(str(root / "missing.mp4"), 0, 40, FPS, W, H, "missing file"),
        clip_row(str(root / "garbage.mp4"), 0, 40, FPS, W, H, "corrupt file"),
        clip_row(str(videos[1]), 20, 60, FPS, W, H, "range beyond the file"),
        clip_row(str(videos[2]), 0, 5, FPS, W, H, "too short for the window"),
    ]
    images = [
        image_row(str(write_image(root / f"i{i}.png", 40, 60, level=20 + 20 * i)), f"image {i}", 60, 40)
        for i in range(10)
    ]
    broken = [clip_row(str(root / "missing.mp4"), 0, 40, FPS, W, H, "missing")] * 3
    return {
        "root": root,
        "webvid": write_clip_manifest(root / "webvid", webvid, rows_per_group=5, files=2),
        "vimeo": write_clip_manifest(root / "vimeo", vimeo),
        "bad": write_clip_manifest(root / "bad", bad),
        "broken": write_clip_manifest(root / "broken", broken),
        "laion": write_image_manifest(root / "laion", images, rows_per_group=4),
        "laion2": write_image_manifest(root / "laion2", images[:5]),
    }


def _config(data, videos=(("webvid", [[0, 1.0]]),), images=(("laion", [[0, 1.0]]),), **overrides):
    sources = [
        {"name": name, "kind": "video", "manifest": str(data[name]), "schedule": schedule}
        for name, schedule in videos
    ] + [
        {"name": name, "kind": "image", "manifest": str(data[name]), "schedule": schedule}
        for name, schedule in images
    ]
    config = {"sources": sources, "num_frames": 4, "frame_stride": 3, "height": 48, "width": 64}
    config["images_per_sample"] = 2 if images else 0
    config.update(overrides)
    return parse_data_config(config)


def _take(dataset, n):
    stream = iter(dataset)
    return [next(stream) for _ in range(n)]


def _key(sample) -> tuple:
    return (
        sample["sample_index"],
        sample["video_source"],
        sample["clip_id"],
        tuple(sample["frame_indices"]),
        tuple(sample["image_ids"]),
        tuple(sample["image_sources"]),
    )


def test_windows_per_clip_start_windows_at_fixed_positions(data):
    dataset = JointVideoImageDataset(_config(data, windows_per_clip=2, images=()), batch_size=1)
    rows = {r["clip_id"]: r for r in pq.read_table(data["webvid"] / "clips").to_pylist()}
    span = (4 - 1) * 3 + 1
    seen = set()
    for sample in _take(dataset, 24):
        row = rows[sample["clip_id"]]
        slack = row["end_frame"] - row["start_frame"] - span
        starts = {row["start_frame"] + int(f * (slack + 1)) for f in (0.25, 0.75)}
        assert sample["frame_indices"][0] in starts
        seen.add((sample["clip_id"], sample["frame_indices"][0]))
    assert len(seen) > len({clip for clip, _ in seen})  # both windows of some clip were drawn


def test_samples_hold_the_clip_frames_and_images(data):
    dataset = JointVideoImageDataset(_config(data), batch_size=2)
    samples = _take(dataset, 4)
    rows = {r["clip_id"]: r for r in pq.read_table(data["webvid"] / "clips").to_pylist()}
    captions = {r["image_id"]: r["caption"] for r in pq.read_table(data["laion"]).to_pylist()}
    for i, sample in enumerate(samples):
        assert sample["sample_index"] == i and sample["step"] == i // 2
        assert sample["video"].dtype == torch.uint8 and sample["video"].shape == (4, 3, 48, 64)
        assert sample["images"].dtype == torch.uint8 and sample["images"].shape == (2, 3, 48, 64)
        row = rows[sample["clip_id"]]
        indices = sample["frame_indices"]
        assert sample["video_caption"] == row["caption"] and sample["video_source"] == "webvid"
        assert row["start_frame"] <= indices[0] and indices[-1] < row["end_frame"]
        assert np.diff(indices).tolist() == [3, 3, 3]
        assert [level_index(v) for v in sample["video"][:, :, 24, 32].float().mean(1).tolist()] == indices
        assert sample["image_captions"] == [captions[i] for i in sample["image_ids"]]
        assert sample["image_sources"] == ["laion", "laion"] and sample["skips"] == []
    batch = collate_samples(samples[:2])
    assert batch["video"].shape == (2, 4, 3, 48, 64) and batch["images"].shape == (2, 2, 3, 48, 64)
    assert batch["frame_indices"].shape == (2, 4) and batch["sample_index"].tolist() == [0, 1]
    assert batch["image_captions"] == [s["image_captions"] for s in samples[:2]]
    assert dataset.counters() == {
        "webvid": {"drawn": 4, "undecodable": 0, "too_short": 0, "low_fps": 0, "too_small": 0, "precomputed": 0},
        "laion": {"drawn": 8, "undecodable": 0, "too_short": 0, "low_fps": 0, "too_small": 0, "precomputed": 0},
    }


def test_shards_are_disjoint_and_cover_the_manifest(data):
    manifest = index_manifest("webvid", str(data["webvid"]), "video")
    assert manifest.num_rows == 12 and len(manifest.group_rows) == 4  # 2 files x (5 + 1) rows

    def shard(rank, world_size, epoch=0):
        reader = ShardReader(manifest, rank, world_size, seed=0, shuffle_rows=2)
        return [reader.row(epoch, p)["clip_id"] for p in range(reader.length)]

    shards = [shard(rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert len(set().union(*map(set, shards))) == 12  # disjoint and complete
    assert set(shard(1, 3, epoch=1)) == set(shards[1])  # same rows, reshuffled per epoch
    assert shard(1, 3, epoch=1) != shards[1] or shard(1, 3, epoch=2) != shards[1]
    uneven = [shard(rank, 5) for rank in range(5)]  # 12 rows over 5 ranks: 3 each, 3 padded
    assert [len(s) for s in uneven] == [3] * 5
    assert len(set().union(*map(set, uneven))) == 12
    # Each rank's stream draws only its own shard.
    config = _config(data, images=())
    for rank in range(3):
        drawn = {s["clip_id"] for s in _take(JointVideoImageDataset(config, rank, 3), 4)}
        assert drawn == set(shards[rank])


def test_curriculum_follows_the_schedule_and_is_deterministic(data):
    config = _config(
        data,
        videos=(("webvid", [[0, 1.0]]), ("vimeo", [[0, 0.0], [100, 0.0], [300, 1.0]])),
        images=(("laion", [[0, 3.0]]), ("laion2", [[0, 1.0]])),
    )
    per_step = 8
    plan = Curriculum(config, rank=0, samples_per_step=per_step)
    videos, images = plan.plan(0, 400 * per_step)
    steps = np.arange(400 * per_step) // per_step
    assert not (videos[steps < 100] == 1).any()  # vimeo not drawn before its ramp starts
    for lo, hi in ((100, 200), (200, 300), (300, 400)):
        in_window = (steps >= lo) & (steps < hi)
        p = np.clip((steps[in_window] - 100) / 200, 0, 1)
        p = p / (1 + p)  # vimeo's share: weight / (1 + weight)
        expected, sd = p.sum(), math.sqrt((p * (1 - p)).sum())
        assert abs((videos[in_window] == 1).sum() - expected) < 4 * sd + 1
    n = images.size
    assert abs((images == 0).sum() - 0.75 * n) < 4 * math.sqrt(n * 0.75 * 0.25)
    again = Curriculum(config, rank=0, samples_per_step=per_step).plan(1000, 1500)
    assert all(np.array_equal(a, b) for a, b in zip(again, (videos[1000:1500], images[1000:1500])))
    other_seed = Curriculum(config.model_copy(update={"seed": 1}), rank=0, samples_per_step=per_step)
    assert not np.array_equal(other_seed.plan(1000, 1500)[0], videos[1000:1500])
    other_rank = Curriculum(config, rank=1, samples_per_step=per_step)
    assert not np.array_equal(other_rank.plan(1000, 1500)[0], videos[1000:1500])
    # The stream itself draws clips as planned.
    dataset = JointVideoImageDataset(config, batch_size=2, grad_accum_steps=4, start_step=299)
    sources = [s["video_source"] for s in _take(dataset, 8)]
    names = np.array(["webvid", "vimeo"])
    assert sources == names[videos[299 * per_step : 300 * per_step]].tolist()


def test_resume_from_state_dict_yields_the_same_samples(data):
    config = _config(data, videos=(("webvid", [[0, 1.0]]), ("vimeo", [[0, 1.0]])), seed=7)
    first = JointVideoImageDataset(config, rank=1, world_size=2, batch_size=2, grad_accum_steps=2)
    stream = iter(first)
    head = [next(stream) for _ in range(8)]
    state = first.state_dict()
    tail = [next(stream) for _ in range(8)]
    assert state["sample_index"] == 8 and state["step"] == 2
    assert sum(s["draws"] for name, s in state["sources"].items() if name != "laion") == 8
    assert state["sources"]["laion"]["draws"] == 16
    assert state["sources"]["webvid"]["epoch"] * 6 + state["sources"]["webvid"]["position"] == (
        state["sources"]["webvid"]["draws"]
    )
    resumed = JointVideoImageDataset(config, rank=1, world_size=2, batch_size=2, grad_accum_steps=2)
    resumed.load_state_dict(state)
    again = _take(resumed, 8)
    assert [_key(s) for s in again] == [_key(s) for s in tail]
    assert all(torch.equal(a["video"], b["video"]) and torch.equal(a["images"], b["images"]) for a, b in zip(again, tail))
    assert resumed.counters() == first.counters()
    # Starting at a step replays the plan: the same stream without a state dict.
    from_step = JointVideoImageDataset(config, rank=1, world_size=2, start_step=2, batch_size=2, grad_accum_steps=2)
    assert [_key(s) for s in _take(from_step, 8)] == [_key(s) for s in tail]
    assert [_key(s) for s in head] != [_key(s) for s in tail]


def test_state_from_another_layout_is_refused_in_one_line(data):
    config = _config(data, images=())
    state = JointVideoImageDataset(config, rank=0, world_size=2).state_dict()
    for other in (
        JointVideoImageDataset(config, rank=0, world_size=3),
        JointVideoImageDataset(config.model_copy(update={"seed": 5}), rank=0, world_size=2),
        JointVideoImageDataset(config, rank=0, world_size=2, batch_size=4),
    ):
        with pytest.raises(UserError) as caught:
            other.load_state_dict(state)
        assert str(caught.value).startswith("data state: ") and "\n" not in str(caught.value)


def test_dataloader_workers_give_the_in_process_stream(data):
    config = _config(data, videos=(("webvid", [[0, 1.0]]), ("bad", [[0, 1.0]])))
    in_process = JointLoader(JointVideoImageDataset(config, batch_size=2))
    expected = [b for _, b in zip(range(5), in_process)]
    workers = JointLoader(JointVideoImageDataset(config, batch_size=2), num_workers=2)
    got = [b for _, b in zip(range(3), workers)]
    got += [b for _, b in zip(range(2), workers)]  # a new iteration resumes where consumption stopped
    for a, b in zip(got, expected):
        assert a["clip_id"] == b["clip_id"] and a["image_ids"] == b["image_ids"]
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["frame_indices"], b["frame_indices"])
    assert workers.state_dict() == in_process.state_dict()
    assert workers.counters()["bad"]["undecodable"] > 0


def test_undecodable_and_too_short_clips_are_skipped_and_counted(data):
    config = _config(data, videos=(("bad", [[0, 1.0]]),), images=())
    dataset = JointVideoImageDataset(config)
    samples = _take(dataset, 10)
    # Only the good clip can be used: every sample falls back to it, cursors keep moving.
    assert {s["video_caption"] for s in samples} == {"good clip"}
    counters = dataset.counters()["bad"]
    assert counters["drawn"] == 10
    assert counters["undecodable"] >= 6 and counters["too_short"] >= 2  # each bad row seen twice
    assert counters["undecodable"] + counters["too_short"] == sum(len(s["skips"]) for s in samples)
    assert dataset.state_dict()["sources"]["bad"]["draws"] == 10
    with pytest.raises(RuntimeError, match="data source 'broken': 4 rows in a row were unusable"):
        _take(JointVideoImageDataset(_config(data, videos=(("broken", [[0, 1.0]]),), images=(), max_attempts=4)), 1)


def test_remote_manifest_and_media(data):
    fs = fsspec.filesystem("memory")
    video = data["root"] / "v0.mp4"
    fs.pipe("/stream-test/v0.mp4", video.read_bytes())
    rows = [clip_row("memory://stream-test/v0.mp4", 0, 40, FPS, W, H, "remote clip")]
    local = write_clip_manifest(data["root"] / "remote", rows)
    fs.pipe("/stream-test/m/clips/part-0.parquet", (local / "clips" / "part-00000.parquet").read_bytes())
    fs.pipe("/stream-test/m/_SUCCESS", b"")
    try:
        config = parse_data_config(
            {
                "sources": [{"name": "s3like", "kind": "video", "manifest": "memory://stream-test/m", "schedule": [[0, 1]]}],
                "num_frames": 4, "frame_stride": 2, "height": 48, "width": 64, "images_per_sample": 0,
            }
        )  # fmt: skip
        sample = _take(JointVideoImageDataset(config), 1)[0]
        assert sample["video_caption"] == "remote clip" and sample["video"].shape == (4, 3, 48, 64)
    finally:
        fs.rm("/stream-test", recursive=True)


@pytest.fixture(scope="module")
def s3_options(s3_server):
    """A bucket ``lavie-train`` on the suite's S3 server; yields fsspec storage options for it."""
    s3_server.bucket("lavie-train")
    return s3_server.options()


def test_s3_manifest_and_media_in_workers(data, s3_options):
    fs = fsspec.filesystem("s3", **s3_options)
    fs.put(str(data["root"] / "v1.mp4"), "lavie-train/raw/v1.mp4")
    fs.put(str(data["root"] / "i3.png"), "lavie-train/raw/i3.png")
    clips = [clip_row("s3://lavie-train/raw/v1.mp4", s, s + 20, FPS, W, H, f"s3 clip {s}") for s in (0, 20)]
    images = [image_row("s3://lavie-train/raw/i3.png", "s3 image", 60, 40)]
    fs.put(str(write_clip_manifest(data["root"] / "s3clips", clips)), "lavie-train/webvid", recursive=True)
    fs.put(str(write_image_manifest(data["root"] / "s3images", images)), "lavie-train/laion", recursive=True)
    config = parse_data_config(
        {
            "sources": [
                {"name": "webvid", "kind": "video", "manifest": "s3://lavie-train/webvid", "schedule": [[0, 1]]},
                {"name": "laion", "kind": "image", "manifest": "s3://lavie-train/laion", "schedule": [[0, 1]]},
            ],
            "num_frames": 4, "frame_stride": 2, "height": 48, "width": 64, "images_per_sample": 1,
            "storage_options": s3_options,
        }
    )  # fmt: skip
    loader = JointLoader(JointVideoImageDataset(config, batch_size=2), num_workers=2)
    batch = next(iter(loader))
    assert sorted(batch["video_caption"]) == ["s3 clip 0", "s3 clip 20"]
    assert batch["image_captions"] == [["s3 image"], ["s3 image"]]
    assert batch["video"].shape == (2, 4, 3, 48, 64) and batch["skips"] == []
