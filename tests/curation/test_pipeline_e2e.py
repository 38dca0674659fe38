"""End to end on generated videos with known cuts, sizes and captions, on a real local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from curation.config import build_config
from curation.pipeline import CurationRequest, run_curation
from lavie.core.manifest import CLIP_SCHEMA, REJECT_SCHEMA, clip_id_for

pytestmark = pytest.mark.slow


def _request(corpus, out: Path, **config) -> CurationRequest:
    return CurationRequest(
        inputs=(str(corpus.folder), str(corpus.folder / "missing.mp4")),
        out=str(out),
        metadata=str(corpus.metadata),
        config=build_config({"videos_per_shard": 2, **config}),
    )


def _tables(out: Path):
    clips = pads.dataset(out / "clips", format="parquet").to_table()
    rejects = pads.dataset(out / "rejects", format="parquet").to_table()
    return clips, rejects


def _rel(uri: str, corpus) -> str:
    return os.path.relpath(uri, corpus.folder)


@pytest.fixture(scope="module")
def finished_run(ray_cluster, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    record = run_curation(_request(corpus, out))
    return out, record


def test_every_clip_and_input_has_its_expected_outcome(finished_run, corpus):
    out, record = finished_run
    clips, rejects = _tables(out)
    assert clips.schema.equals(CLIP_SCHEMA) and rejects.schema.equals(REJECT_SCHEMA)
    outcomes = {}
    for row in clips.to_pylist():
        outcomes[(_rel(row["source_uri"], corpus), row["start_frame"], row["end_frame"])] = "kept"
    whole_inputs = {}
    for row in rejects.to_pylist():
        key = f"{row['stage']}/{row['reason']}"
        if row["clip_id"] is None:
            whole_inputs[os.path.basename(row["source_uri"])] = key
        else:
            outcomes[(_rel(row["source_uri"], corpus), row["start_frame"], row["end_frame"])] = key
    # Exact cut frames, and every filter acting on exactly the rows it should.
    assert outcomes == corpus.clips
    assert whole_inputs == corpus.inputs
    # Every input accounted for: kept + rejected = all.
    counts = record["counts"]
    assert counts["inputs"] == len({k[0] for k in corpus.clips} | set(corpus.inputs)) == 10
    assert counts["clips_kept"] + counts["clips_rejected"] == counts["clips_detected"] == len(corpus.clips)
    assert (out / "_SUCCESS").exists()


def test_clip_rows_carry_metadata_timing_and_stable_ids(finished_run, corpus):
    out, _ = finished_run
    rows = {(_rel(r["source_uri"], corpus), r["start_frame"]): r for r in _tables(out)[0].to_pylist()}
    beach = rows[("sub/beach.mp4", 0)]
    assert beach["caption"] == "waves rolling onto a sandy beach at sunset"  # per-scene caption
    assert beach["caption_words"] == 8
    assert (beach["width"], beach["height"], beach["fps"], beach["codec"]) == (1920, 1080, 24.0, "h264")
    city = rows[("city.mp4", 40)]
    assert city["num_frames"] == 24 and city["end_frame"] == 64
    assert city["start_sec"] == pytest.approx(40 / 24) and city["duration_sec"] == pytest.approx(1.0)
    assert city["category"] == "Travel" and city["source_dataset"] == "vimeo25m"
    assert city["clip_id"] == clip_id_for(city["source_uri"], 40)
    assert city["aesthetic_score"] is None and city["clip_score"] is None


def test_run_json_reports_counts_config_and_skipped_scoring(finished_run):
    out, _ = finished_run
    run = json.loads((out / "run.json").read_text())
    assert run["rejects_by_stage"]["probe"] == {"empty_file": 1, "unreadable": 1, "no_video_stream": 1}
    assert run["rejects_by_stage"]["input"] == {"not_found": 1}
    assert run["scoring"]["aesthetic"] is False and "clip_checkpoint" in run["scoring"]["skipped_reason"]
    assert run["config"]["filters"] == {"min_frames": 16, "min_caption_words": 3, "min_height": 720}
    assert run["versions"]["scenedetect"].startswith("0.")
    assert set(run["timings"]["stage_cpu_sec"]) >= {"probe", "scene_detect"}


def test_rerun_of_finished_job_does_no_work(finished_run, corpus):
    out, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    record = run_curation(_request(corpus, out))
    assert record["already_complete"] is True
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_resume_with_other_arguments_is_refused(finished_run, corpus):
    from lavie.core.errors import UserError

    out, _ = finished_run
    with pytest.raises(UserError, match="other inputs or config"):
        run_curation(_request(corpus, out, filters={"min_height": 360}))


def test_thresholds_are_config_values(ray_cluster, corpus, tmp_path):
    record = run_curation(_request(corpus, tmp_path / "out", filters={"min_height": 360, "min_frames": 8}))
    clips, _ = _tables(tmp_path / "out")
    kept = {(_rel(r["source_uri"], corpus), r["start_frame"]) for r in clips.to_pylist()}
    assert {("small.mp4", 0), ("small.mp4", 20), ("city.mp4", 114)} <= kept
    assert record["counts"]["clips_kept"] == 7


def test_driver_killed_mid_run_then_resumed_matches_uninterrupted_run(ray_cluster, finished_run, corpus, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "lavie.cli", "curate", str(corpus.folder), str(corpus.folder / "missing.mp4"),
        "--out", str(out), "--metadata", str(corpus.metadata), "--videos-per-shard", "2",
        "--address", ray_cluster, "--quiet",
    ]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / "_progress"
    deadline = time.monotonic() + 120
    # Kill the driver as soon as the first video shard is recorded, i.e. mid-run.
    while time.monotonic() < deadline and not list(progress.glob("shard-0000[0-3].json")):
        assert driver.poll() is None, "driver finished before it could be interrupted"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "_SUCCESS").exists()
    done_before = len(list(progress.glob("shard-*.json")))
    assert 1 <= done_before < 6

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference_clips, reference_rejects = _tables(finished_run[0])
    clips, rejects = _tables(out)
    assert clips.equals(reference_clips)  # same rows, same order: nothing duplicated or lost
    assert rejects.equals(reference_rejects)
