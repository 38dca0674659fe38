"""Every kept clip is trainable: curation and the training stream agree frame for frame on real-world
encodings (H.264 with constant and irregular timestamps, HEVC 10-bit, VP9, AV1, ProRes, MPEG-4
part 2, a 90-degree display rotation, an odd frame size), and `lavie check` finds what is not."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from curation.config import build_config
from curation.pipeline import CurationRequest, run_curation
from curation.rows import new_row
from curation.steps import Reject, StepContext
from curation.steps.training_decode import check_trainable
from lavie.cli import main as lavie
from lavie.core.manifest import CLIP_SCHEMA
from lavie.core.video import open_video
from lavie.synthetic import clip_row, scene_frames, write_clip_manifest, write_scene_video
from training.data.decode import ClipSpec, load_clip_row

SCENES = (24, 30, 20)
WIDTH, HEIGHT = 256, 144
RNG = np.random.default_rng(7)
#: Irregular timestamps: frame gaps from 20 to 70 ms, as phones and screen recorders write them.
JITTER = np.concatenate([[0.0], np.cumsum(RNG.uniform(0.02, 0.07, sum(SCENES) - 1))]).tolist()
#: Two timestamp regimes with a hard cut between them: 30 frames at 30 fps, then 30 at about 12 fps.
REGIMES = np.concatenate([np.arange(30) / 30, 1.0 + np.cumsum(np.r_[0.0, RNG.uniform(0.06, 0.11, 29)])]).tolist()

CASES: dict[str, dict] = {
    "h264.mp4": {},
    "h264_vfr.mp4": {"timestamps": JITTER},
    "hevc10.mp4": {"codec": "libx265", "pix_fmt": "yuv420p10le", "options": {"x265-params": "log-level=error"}},
    "vp9.webm": {"codec": "libvpx-vp9", "options": {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}},
    "av1.mp4": {"codec": "libsvtav1", "options": {"crf": "24", "preset": "10"}},
    "prores.mov": {"codec": "prores_ks", "pix_fmt": "yuv422p10le"},
    "mpeg4.mp4": {"codec": "mpeg4", "options": {"qscale": "2"}},
    "rotated.mp4": {"rotation": 90},
    "odd.mp4": {"size": (255, 143), "pix_fmt": "yuv444p"},
}
CAPTION = "a generated video of moving squares"
#: Mean absolute difference from the encoded frame, in grey levels, that a codec may leave.
TOLERANCE = 8.0
#: ... and from the frame curation decoded: the same decoder library, another scaler (or none).
SAME_DECODE = 2.0


def _write(path: Path, scenes: tuple[int, ...], **case) -> None:
    width, height = case.pop("size", (WIDTH, HEIGHT))
    write_scene_video(path, scenes, width, height, fps=24, seed=3, crf=18, **case)


@pytest.fixture(scope="module")
def curated(ray_cluster, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("codecs")
    for name, case in CASES.items():
        _write(root / "videos" / name, SCENES, **dict(case))
    _write(root / "videos" / "regimes.mp4", (30, 30), timestamps=REGIMES)
    names = [*CASES, "regimes.mp4"]
    (root / "meta.csv").write_text("video,caption\n" + "".join(f"{n},{CAPTION}\n" for n in names))
    request = CurationRequest(
        inputs=(str(root / "videos"),), out=str(root / "out"), metadata=str(root / "meta.csv"),
        config=build_config({"filters": {"min_height": 100}}),
    )  # fmt: skip
    record = run_curation(request)
    clips = pads.dataset(root / "out" / "clips").to_table().to_pylist()
    rejects = pads.dataset(root / "out" / "rejects").to_table().to_pylist()
    by_video: dict[str, list[dict]] = {}
    for clip in sorted(clips, key=lambda c: c["start_frame"]):
        by_video.setdefault(Path(clip["source_uri"]).name, []).append(clip)
    return {"root": root, "record": record, "clips": by_video, "rejects": rejects}


def _expected_frames(name: str, start: int, end: int) -> list[np.ndarray]:
    width, height = CASES.get(name, {}).get("size", (WIDTH, HEIGHT))
    frames = list(scene_frames(SCENES if name in CASES else (30, 30), width, height, seed=3))[start:end]
    return [np.rot90(f, 1) for f in frames] if name == "rotated.mp4" else frames  # upright: as FFmpeg shows it


def test_every_encoding_gives_exactly_the_encoded_cuts(curated):
    assert curated["rejects"] == []
    for name in CASES:
        ranges = [(c["start_frame"], c["end_frame"]) for c in curated["clips"][name]]
        assert ranges == [(0, 24), (24, 54), (54, 74)], name
    assert [(c["start_frame"], c["end_frame"]) for c in curated["clips"]["regimes.mp4"]] == [(0, 30), (30, 60)]


def test_sizes_are_as_displayed_and_times_are_the_real_ones(curated):
    assert {(c["width"], c["height"]) for c in curated["clips"]["rotated.mp4"]} == {(HEIGHT, WIDTH)}
    assert {(c["width"], c["height"]) for c in curated["clips"]["odd.mp4"]} == {(255, 143)}
    for clip in curated["clips"]["h264.mp4"]:  # constant rate: frame / fps, and the nominal rate
        assert clip["start_sec"] == pytest.approx(clip["start_frame"] / 24) and clip["fps"] == 24.0
    for name, stamps in (("h264_vfr.mp4", JITTER), ("regimes.mp4", REGIMES)):
        for clip in curated["clips"][name]:
            start, end = clip["start_frame"], clip["end_frame"]
            assert clip["start_sec"] == pytest.approx(stamps[start], abs=1e-4)
            if end < len(stamps):
                assert clip["end_sec"] == pytest.approx(stamps[end], abs=1e-4)
            assert clip["fps"] == pytest.approx(clip["num_frames"] / clip["duration_sec"], rel=1e-5)
    slow, fast = curated["clips"]["regimes.mp4"][1]["fps"], curated["clips"]["regimes.mp4"][0]["fps"]
    assert fast == pytest.approx(30, rel=0.01) and 9 < slow < 17  # each clip its own average rate


def _as_curation_decoded(path: Path) -> list[np.ndarray]:
    """The frames in the order curation's scene detection decodes them (PyAV, one after the
    other), turned upright."""
    with av.open(str(path)) as container:
        return [np.rot90(f.to_ndarray(format="rgb24"), int(f.rotation // 90)).astype(int) for f in container.decode(video=0)]


def test_every_kept_clip_decodes_in_the_training_stream_to_the_frames_curation_saw(curated):
    for name, clips in curated["clips"].items():
        seen = _as_curation_decoded(curated["root"] / "videos" / name)
        for clip in clips:
            spec = ClipSpec(num_frames=clip["num_frames"], height=clip["height"], width=clip["width"], frame_stride=1)
            frames, indices = load_clip_row(clip, spec, 0.0)
            assert indices == list(range(clip["start_frame"], clip["end_frame"])), name
            encoded = _expected_frames(name, clip["start_frame"], clip["end_frame"])
            decoded = frames.permute(0, 2, 3, 1).numpy().astype(int)
            for k, got in enumerate(decoded):
                index = indices[k]
                assert np.abs(got - seen[index]).mean() < SAME_DECODE, f"{name} frame {index} is not the one curation saw"
                error = np.abs(got - encoded[k]).mean()
                assert error < TOLERANCE, f"{name} frame {index}: {error:.1f} grey levels from what was encoded"
                for n in (index - 1, index + 1):  # the right frame, not a neighbour: judged where they differ
                    if 0 <= n < len(seen):
                        moved = np.abs(seen[index] - seen[n]).sum(-1) > 90
                        if moved.sum() > 50:
                            here, there = np.abs(got - seen[index])[moved].mean(), np.abs(got - seen[n])[moved].mean()
                            assert here < there, f"{name} frame {index} looks like frame {n}"


def test_decord_is_used_where_it_can_and_pyav_reads_the_rest(curated):
    videos = curated["root"] / "videos"
    with open_video(str(videos / "av1.mp4")) as av1, open_video(str(videos / "h264_vfr.mp4")) as vfr:
        assert (av1.backend, vfr.backend) == ("pyav", "decord")
        assert len(av1) == len(vfr) == sum(SCENES)


# --------------------------------------------------------------------------- kept means trainable
def test_the_training_decode_step_rejects_what_the_trainer_cannot_read(tmp_path):
    video = write_scene_video(tmp_path / "v.mp4", (20,), WIDTH, HEIGHT).path
    (tmp_path / "broken.mp4").write_bytes(video.read_bytes()[:2000])
    check_trainable(new_row(source_uri=str(video), start_frame=0, end_frame=20), None, StepContext())
    with pytest.raises(Reject) as past_the_end:
        check_trainable(new_row(source_uri=str(video), start_frame=10, end_frame=25), None, StepContext())
    assert past_the_end.value.reason == "undecodable_for_training"
    assert "ends at frame 25, the trainer's reader finds 20" in past_the_end.value.detail
    with pytest.raises(Reject) as broken:
        check_trainable(new_row(source_uri=str(tmp_path / "broken.mp4"), start_frame=0, end_frame=20), None, StepContext())
    assert broken.value.reason == "undecodable_for_training" and "broken.mp4" in broken.value.detail


# --------------------------------------------------------------------------- lavie check
def test_lavie_check_finds_the_undecodable_and_the_out_of_range_rows(curated, ray_cluster, tmp_path, capsys):
    videos = curated["root"] / "videos"
    (tmp_path / "garbage.mp4").write_bytes(b"not a video" * 300)
    good = clip_row(str(videos / "av1.mp4"), 24, 54, 24.0, WIDTH, HEIGHT, CAPTION)
    past_end = clip_row(str(videos / "h264.mp4"), 60, 90, 24.0, WIDTH, HEIGHT, CAPTION)
    garbage = clip_row(str(tmp_path / "garbage.mp4"), 0, 16, 24.0, WIDTH, HEIGHT, CAPTION)
    ours = write_clip_manifest(tmp_path / "ours", [good, past_end, garbage])
    # A WebVid-style manifest made elsewhere: a video and its caption, a time range or none.
    webvid = tmp_path / "webvid.parquet"
    pq.write_table(pa.table({
        "source_uri": [str(videos / "vp9.webm"), str(videos / "regimes.mp4"), str(tmp_path / "gone.mp4")],
        "caption": [CAPTION] * 3, "start_sec": [None, 1.0, None], "end_sec": [None, 2.0, None],
    }), webvid)  # fmt: skip
    out = tmp_path / "report"
    code = lavie(["check", str(ours), str(webvid), str(curated["root"] / "out"), "--out", str(out),
                  "--address", ray_cluster, "--quiet"])  # fmt: skip
    assert code == 1  # a clip failed
    failures = pq.read_table(out / "failures.parquet").to_pylist()
    found = {(Path(f["source_uri"]).name, f["start_frame"], f["end_frame"], f["reason"]) for f in failures}
    assert found == {("h264.mp4", 60, 90, "out_of_range"), ("garbage.mp4", 0, 16, "unreadable"),
                     ("gone.mp4", None, None, "unreadable")}  # fmt: skip
    assert all(f["detail"] for f in failures)
    summary = json.loads((out / "summary.json").read_text())
    curated_clips = sum(len(c) for c in curated["clips"].values())
    assert summary["clips"] == 3 + 3 + curated_clips and summary["ok"] == summary["clips"] - 3
    assert summary["failed"] == {"out_of_range": 1, "unreadable": 2}
    assert [s["count"] for s in summary["funnel"]] == [summary["clips"], summary["clips"] - 2, summary["clips"] - 2,
                                                       summary["clips"] - 3, summary["clips"] - 3]  # fmt: skip
    printed = capsys.readouterr()
    assert '"failed": 3' in printed.out and "decoded as the trainer does" in printed.err


def test_lavie_check_refuses_what_is_not_a_clip_manifest(tmp_path, capsys):
    pq.write_table(pa.table({"uri": ["/i.png"], "caption": ["an image"]}), tmp_path / "images.parquet")
    assert lavie(["check", str(tmp_path / "images.parquet"), "--out", str(tmp_path / "r")]) == 2
    assert "not a manifest: missing column(s) source_uri" in capsys.readouterr().err
    pq.write_table(pa.Table.from_pylist([], schema=CLIP_SCHEMA), tmp_path / "empty.parquet")
    assert lavie(["check", str(tmp_path / "empty.parquet"), "--out", str(tmp_path / "r")]) == 2
    assert "no clips to check" in capsys.readouterr().err
