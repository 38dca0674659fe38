"""The motion step on generated clips of known motion (a still image, a slow pan, a fast pan),
encoded with codecs that carry motion vectors (H.264 with B-frames, MPEG-4 Part 2) and without
(MJPEG, all-I-frame H.264): the scores order the clips, and the two methods agree."""

from __future__ import annotations

import json

import pytest

from curation.config import CurationConfig, MotionConfig, SceneDetectionConfig
from curation.executor import run_map_step, run_split_step
from curation.rows import METADATA, MOTION, new_row
from curation.steps import STEPS, StepContext
from curation.steps.motion import MOTION_VECTORS, OPTICAL_FLOW
from curation.steps.probe import probe_video
from lavie.core.errors import UserError
from lavie.synthetic import write_pan_video

STEP = {step.name: step for step in STEPS}
WIDTH, HEIGHT, FRAMES = 320, 240, 48
SPEEDS = {"still": 0.0, "slow": 0.5, "fast": 4.0}  # pixels per frame
CODECS = {
    "h264": {"codec": "libx264", "preset": "veryfast", "gop": 12},  # B-frames; keyframes on the 2 fps grid
    "mpeg4": {"codec": "mpeg4"},
    "mjpeg": {"codec": "mjpeg", "pix_fmt": "yuvj420p"},  # intra-only: no motion vectors
    "h264_all_intra": {"codec": "libx264", "preset": "veryfast", "gop": 1},
}


@pytest.fixture(scope="module")
def pans(tmp_path_factory):
    root = tmp_path_factory.mktemp("pans")
    return {
        (codec, speed): write_pan_video(root / f"{codec}-{speed}.{'avi' if codec == 'mjpeg' else 'mp4'}", FRAMES, HEIGHT, WIDTH, SPEEDS[speed], **encoding)
        for codec, encoding in CODECS.items()
        for speed in SPEEDS
    }  # fmt: skip


def _clip(path, motion: MotionConfig = MotionConfig()) -> dict:
    """The video's one clip after probe, scene detection and the motion step, as the executor
    runs them (scene detection samples the motion vectors when the motion step uses them)."""
    vector_fps = motion.sample_fps if motion.method == "auto" else None
    context = StepContext(motion_vector_fps=vector_fps)
    row = new_row(source_uri=str(path), **{METADATA: json.dumps({})})
    run_map_step(row, step=STEP["probe"], config=None, context=context)
    [clip] = run_split_step(row, step=STEP["scene_detect"], config=SceneDetectionConfig(), context=context)
    assert clip["reject_stage"] is None, clip
    run_map_step(clip, step=STEP["motion"], config=motion, context=context)
    context.close_source()
    assert MOTION not in clip  # the sampled vectors do not travel on
    return clip


@pytest.mark.parametrize("codec", CODECS)
def test_scores_order_still_slow_fast_with_the_method_the_codec_allows(pans, codec):
    clips = {speed: _clip(pans[codec, speed]) for speed in SPEEDS}
    expected = MOTION_VECTORS if codec in ("h264", "mpeg4") else OPTICAL_FLOW
    assert {clip["motion_method"] for clip in clips.values()} == {expected}
    scores = [clips[speed]["motion_score"] for speed in SPEEDS]
    assert scores[0] < scores[1] < scores[2], scores
    assert scores[0] < 0.00098  # static by NeMo Curator's threshold, whatever the codec's noise
    assert scores[2] > 0.00098


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_motion_vectors_and_optical_flow_agree_on_the_order(pans, codec):
    flow = MotionConfig(method="optical_flow")
    by_vectors = [_clip(pans[codec, speed])["motion_score"] for speed in SPEEDS]
    by_flow = [_clip(pans[codec, speed], flow) for speed in SPEEDS]
    assert {clip["motion_method"] for clip in by_flow} == {OPTICAL_FLOW}
    by_flow = [clip["motion_score"] for clip in by_flow]
    assert sorted(range(3), key=by_vectors.__getitem__) == sorted(range(3), key=by_flow.__getitem__) == [0, 1, 2]


def test_the_scores_measure_the_pan_speed_over_width_plus_height(pans):
    """The fast pan moves 4 px a frame: 4 / (320 + 240) by flow and by MPEG-4's one-frame vectors."""
    expected = SPEEDS["fast"] / (WIDTH + HEIGHT)
    assert _clip(pans["mpeg4", "fast"])["motion_score"] == pytest.approx(expected, rel=0.15)
    assert _clip(pans["mjpeg", "fast"])["motion_score"] == pytest.approx(expected, rel=0.15)


def test_min_and_max_motion_reject_under_the_motion_stage(pans):
    still = _clip(pans["h264", "still"], MotionConfig(min_motion=0.00098))
    assert (still["reject_stage"], still["reject_reason"]) == ("motion", "static")
    assert "< 0.00098 (motion_vectors)" in still["reject_detail"]
    fast = _clip(pans["mjpeg", "fast"], MotionConfig(max_motion=0.004))
    assert (fast["reject_stage"], fast["reject_reason"]) == ("motion", "too_much_motion")
    slow = _clip(pans["h264", "slow"], MotionConfig(min_motion=0.0002, max_motion=0.004))
    assert slow["reject_stage"] is None and slow["motion_score"] > 0


def test_without_thresholds_nothing_is_filtered_and_the_score_is_kept(pans):
    clip = _clip(pans["h264", "still"])
    assert clip["reject_stage"] is None and clip["motion_score"] is not None


@pytest.mark.parametrize(
    ("motion", "problem"),
    [
        ({"min_motion": -0.1}, "motion.min_motion"),
        ({"max_motion": 2}, "motion.max_motion"),
        ({"min_motion": 0.01, "max_motion": 0.001}, "min_motion 0.01 must be below max_motion 0.001"),
        ({"method": "farneback"}, "motion.method"),
    ],
)
def test_thresholds_out_of_range_are_one_line_errors(motion, problem):
    from curation.config import build_config

    with pytest.raises(UserError) as error:
        build_config({"motion": motion})
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_the_motion_step_is_on_by_default_and_can_be_turned_off():
    from curation.executor import active_steps

    assert "motion" in [step.name for step in active_steps(CurationConfig())]
    off = CurationConfig.model_validate({"motion": {"enabled": False}})
    assert "motion" not in [step.name for step in active_steps(off)]
