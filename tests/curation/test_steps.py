"""The curation steps and the executor's wrappers, without Ray: filters, probe, clip splitting,
frame sampling, the model pools' batching and a shard's tables, each on real inputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from curation.config import CurationConfig, FilterConfig, SceneDetectionConfig
from curation.executor import ModelPools, ModelStepActor, active_steps, provide_frames, run_map_step, run_split_step
from curation.metadata import SceneCaption, VideoMetadata
from curation.rows import EMBEDDING, FRAMES, METADATA, SECONDS_PREFIX, mark_rejected, new_row
from curation.shards import shard_tables
from curation.steps import CLIP_STAGES, INPUT_STAGES, STAGES, STEPS, TITLES, Reject, Step, StepContext
from curation.steps.filters import filter_caption, filter_min_frames, filter_min_height
from curation.steps.frames import FRAME_SIZE, frames_from_bytes
from curation.steps.probe import probe_video
from lavie.core.manifest import clip_id_for, embedding_matrix
from lavie.synthetic import write_scene_video

STEP = {step.name: step for step in STEPS}
CONTEXT = StepContext()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_scene_video(tmp_path_factory.mktemp("steps") / "v.mp4", (30, 20, 40), 640, 360, fps=24, seed=5)


def _video_row(uri: str, metadata: VideoMetadata | None = None) -> dict:
    return new_row(source_uri=uri, **{METADATA: json.dumps((metadata or VideoMetadata()).to_record())})


# --------------------------------------------------------------------------- declarations
def test_the_declared_steps_give_the_stages_and_the_funnel_titles():
    assert STAGES == (
        "input", "probe", "scene_detect", "min_frames", "motion", "captioner", "caption", "resolution", "training_decode",
        "overlay", "scoring",
    )  # fmt: skip
    assert INPUT_STAGES == ("input", "probe", "scene_detect") and CLIP_STAGES == STAGES[3:]
    assert len(set(TITLES.values())) == len(TITLES)  # no two funnel rows look alike
    assert [s.name for s in active_steps(CurationConfig())] == [
        "probe", "scene_detect", "min_frames", "motion", "caption", "resolution", "training_decode",
    ]  # fmt: skip
    scoring = CurationConfig.model_validate({"scoring": {"clip_checkpoint": "c", "aesthetic_mlp": "m"}})
    assert "scoring" in [s.name for s in active_steps(scoring)]
    for step in STEPS:
        assert callable(step.load())
        assert all(callable(step.load(part)) for part in ("check", "filter") if getattr(step, part))


# --------------------------------------------------------------------------- filters
@pytest.mark.parametrize(
    ("values", "stage", "reason"),
    [
        ({"num_frames": 15, "caption": "three good words", "height": 720}, "min_frames", "too_short"),
        ({"num_frames": 16, "caption": None, "height": 720}, "caption", "missing_caption"),
        ({"num_frames": 16, "caption": "  ", "height": 720}, "caption", "empty_caption"),
        ({"num_frames": 16, "caption": "https://x.io/a www.b.com", "height": 720}, "caption", "url_only_caption"),
        ({"num_frames": 16, "caption": "two words", "height": 720}, "caption", "too_few_words"),
        ({"num_frames": 16, "caption": "three good words", "height": 719}, "resolution", "too_small"),
        ({"num_frames": 16, "caption": "three good words", "height": 720}, None, None),
    ],
)
def test_filters_in_pipeline_order(values, stage, reason):
    row = new_row(**values)
    config = CurationConfig()
    for name in ("min_frames", "caption", "resolution"):
        run_map_step(row, step=STEP[name], config=config.filters, context=CONTEXT)
    assert (row["reject_stage"], row["reject_reason"]) == (stage, reason)
    assert row[SECONDS_PREFIX + "min_frames"] >= 0.0  # every step that ran is timed


def test_filters_raise_reject_with_the_threshold():
    with pytest.raises(Reject, match="too_short: 10 frames < 12"):
        filter_min_frames(new_row(num_frames=10), FilterConfig(min_frames=12), CONTEXT)
    with pytest.raises(Reject, match="too_small: height 480 < 720"):
        filter_min_height(new_row(height=480), FilterConfig(), CONTEXT)
    row = new_row(caption="a caption of five words")
    filter_caption(row, FilterConfig(min_caption_words=5), CONTEXT)
    assert row["caption_words"] == 5


def test_rejected_rows_pass_later_steps_untouched():
    row = mark_rejected(new_row(num_frames=1, caption=None, height=1), "probe", "unreadable", "x")
    before = dict(row)
    run_map_step(row, step=STEP["min_frames"], config=FilterConfig(), context=CONTEXT)
    assert row == before


def test_an_unexpected_exception_becomes_a_reject_row():
    row = new_row(num_frames=None)  # None < 16 raises TypeError inside the filter
    run_map_step(row, step=STEP["min_frames"], config=FilterConfig(), context=CONTEXT)
    assert row["reject_stage"] == "min_frames" and row["reject_reason"] == "unexpected_error"
    assert row["reject_detail"].startswith("TypeError:")


# --------------------------------------------------------------------------- probe
def test_probe_reads_the_container(video):
    row = _video_row(str(video.path))
    run_map_step(row, step=STEP["probe"], config=None, context=CONTEXT)
    assert row["reject_stage"] is None
    assert (row["width"], row["height"], row["fps"], row["num_frames"], row["codec"]) == (640, 360, 24.0, 90, "h264")
    assert row["duration_sec"] == pytest.approx(90 / 24, abs=0.05)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty_file"), (b"not a video at all" * 40, "unreadable"), (None, "unreadable")],
)
def test_probe_rejects_what_is_not_a_video(tmp_path, content, reason):
    path = tmp_path / "x.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(Reject) as rejected:
        probe_video(_video_row(str(path)), None, CONTEXT)
    assert rejected.value.reason in (reason, "not_found")


# --------------------------------------------------------------------------- clip splitting
def test_split_gives_one_row_per_scene_with_the_video_columns(video):
    metadata = VideoMetadata(caption="a whole video", category="Travel",
                             scene_captions=[SceneCaption(1.3, 2.05, "the second scene of it")])  # fmt: skip
    row = _video_row(str(video.path), metadata)
    run_map_step(row, step=STEP["probe"], config=None, context=CONTEXT)
    clips = run_split_step(row, step=STEP["scene_detect"], config=SceneDetectionConfig(), context=CONTEXT)
    assert [(c["start_frame"], c["end_frame"]) for c in clips] == video.scenes
    assert [c["caption"] for c in clips] == ["a whole video", "the second scene of it", "a whole video"]
    for clip in clips:
        assert clip["clip_id"] == clip_id_for(str(video.path), clip["start_frame"])
        assert METADATA not in clip and clip["source_dataset"] == row["source_dataset"]
        assert (clip["width"], clip["height"], clip["fps"]) == (640, 360, 24.0)
        assert clip["duration_sec"] == pytest.approx(clip["num_frames"] / 24)
    # The probe's seconds stay with the first clip, so summing over rows counts them once.
    assert clips[0][SECONDS_PREFIX + "probe"] > 0 and clips[1][SECONDS_PREFIX + "probe"] == 0.0


def test_split_of_an_undecodable_video_is_one_reject_row(tmp_path):
    path = tmp_path / "bad.mp4"
    path.write_bytes(b"\0" * 100)
    row = _video_row(str(path))
    row["num_frames"] = 10
    rows = run_split_step(row, step=STEP["scene_detect"], config=SceneDetectionConfig(), context=CONTEXT)
    assert len(rows) == 1
    assert (rows[0]["reject_stage"], rows[0]["reject_reason"]) == ("scene_detect", "decode_error")


# --------------------------------------------------------------------------- frames and model steps
def test_frames_are_sampled_at_the_configured_positions(video):
    clip = new_row(source_uri=str(video.path), start_frame=30, num_frames=20, width=640, height=360)
    provide_frames(clip, stage="scoring", context=StepContext(frame_positions=(0.0, 1.0)))
    frames = frames_from_bytes(clip[FRAMES], 2)
    assert frames.shape == (2, FRAME_SIZE, FRAME_SIZE, 3) and clip["reject_stage"] is None
    assert not np.array_equal(frames[0], frames[1])  # frames 30 and 49: the square has moved


def test_unreadable_frames_reject_the_clip_under_the_step_that_needs_them(tmp_path):
    clip = new_row(source_uri=str(tmp_path / "gone.mp4"), start_frame=0, num_frames=20, width=640, height=360)
    provide_frames(clip, stage="captioner", context=CONTEXT)
    assert (clip["reject_stage"], clip["reject_reason"], clip[FRAMES]) == ("captioner", "frame_read_error", b"")


class _Doubler:
    """A model step over the kept rows of a batch: sets ``num_frames`` to twice its value."""

    def __init__(self, config: object, context: StepContext) -> None:
        self.calls = 0

    def __call__(self, clips: pa.Table) -> pa.Table:
        self.calls += 1
        if any(n < 0 for n in clips.column("num_frames").to_pylist()):
            raise ValueError("negative frame count")
        return pa.table({"num_frames": [2 * n for n in clips.column("num_frames").to_pylist()]})


class _InProcessPools(ModelPools):
    """The executor's model pools with the actors in this process (no Ray)."""

    def submit(self, actor, batch):
        try:
            return actor(batch)
        except Exception as exc:  # noqa: BLE001 - handed to result(), as ray.get raises it
            return exc

    def result(self, call):
        if isinstance(call, Exception):
            raise call
        return call


def test_model_step_runs_on_kept_rows_only_and_writes_back_in_place(monkeypatch):
    step = Step("double", "doubling", "model", "test:_Doubler")
    monkeypatch.setattr(Step, "load", lambda self: _Doubler)
    actor = ModelStepActor(step, None, CONTEXT)
    pools = _InProcessPools({"double": [actor]}, {"double": 2})
    rows = [new_row(num_frames=n) for n in (3, 5, 7, -1, 2)]
    mark_rejected(rows[1], "probe", "unreadable")
    pools.run(step, rows, offset=0)
    # Batches of two kept rows: (3, 7) is doubled; (-1, 2) fails as a batch and is rejected.
    assert [r["num_frames"] for r in rows[:3]] == [6, 5, 14]
    assert rows[1]["reject_stage"] == "probe" and SECONDS_PREFIX + "double" not in rows[1]
    assert rows[0][SECONDS_PREFIX + "double"] > 0 and actor.model.calls == 2
    assert [(r["reject_stage"], r["reject_reason"]) for r in rows[3:]] == [("double", "model_error")] * 2
    assert "negative frame count" in rows[3]["reject_detail"]


# --------------------------------------------------------------------------- shards
def test_a_shards_rows_become_its_clips_and_rejects_tables_and_counts():
    a_clips = [new_row(source_uri="a", clip_id=f"a{i}", start_frame=i, num_frames=16) for i in range(2)]
    b_clip = mark_rejected(new_row(source_uri="b", clip_id="b0", start_frame=0, num_frames=8), "min_frames", "too_short")
    c_reject = mark_rejected(new_row(source_uri="c"), "probe", "unreadable")
    a_clips[0][EMBEDDING] = np.array([0.6, 0.8], np.float16).tobytes()  # scored; a1 was not
    b_clip[EMBEDDING] = np.array([1.0, 0.0], np.float16).tobytes()  # rejected: no embedding written
    clips, rejects, counts, embeddings = shard_tables([c_reject, a_clips[1], b_clip, a_clips[0]])
    assert embeddings.column("clip_id").to_pylist() == ["a0"]
    assert embedding_matrix(embeddings).tolist() == [[np.float16(0.6), np.float16(0.8)]]
    assert shard_tables([a_clips[1]])[3] is None
    assert clips.column("clip_id").to_pylist() == ["a0", "a1"]
    assert rejects.column("stage").to_pylist() == ["min_frames", "probe"]
    assert (counts.inputs, counts.inputs_rejected, counts.clips_detected, counts.clips_kept) == (3, 1, 3, 2)
    assert counts.rejects == {"min_frames/too_short": 1, "probe/unreadable": 1}


def test_probe_gives_the_displayed_size_which_the_resolution_filter_judges(tmp_path):
    """A phone video: stored 320x180 with a 90-degree display rotation, shown 180 wide, 320 high."""
    video = write_scene_video(tmp_path / "phone.mp4", (20,), 320, 180, rotation=90).path
    row = _video_row(str(video))
    run_map_step(row, step=STEP["probe"], config=None, context=CONTEXT)
    assert (row["width"], row["height"]) == (180, 320)
    run_map_step(row, step=STEP["resolution"], config=FilterConfig(min_height=300), context=CONTEXT)
    assert row["reject_stage"] is None  # 320 high as displayed, though stored 180 high
