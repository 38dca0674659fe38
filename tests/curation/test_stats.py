"""`lavie stats` on hand-built manifests whose every figure is known."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from browser import open_page

from curation.stats.accumulate import ClipStats
from curation.stats.bins import AESTHETIC_BINS, HEIGHT_BINS
from curation.stats.charts import PALETTE
from curation.stats.compute import scan
from lavie.cli import main
from lavie.core.manifest import (
    CLIP_SCHEMA,
    CLIPS_DIR,
    REJECT_SCHEMA,
    REJECTS_DIR,
    RUN_FILE,
    SUCCESS_FILE,
    clip_id_for,
    open_manifest,
)

# The figures alone: examples and their previews (Ray) are tested in test_stats_samples.py.
NO_SAMPLES = ("--samples", "0")

# (source, category, caption_words, duration_sec, height, aesthetic_score, motion_score,
#  overlay_score); two files.
VIMEO_FILES = [
    [
        ("v1", "Travel", 10, 1.5, 1080, 6.5, 0.0005, 0.05),
        ("v1", "Travel", 3, 2.0, 1080, 6.0, 0.00098, 0.1),  # 6 is in the 4–6 bucket; 0.00098, 0.1 in the bins above
        ("v2", "Sports", 2, 4.0, 720, 4.0, 0.003, 0.5),  # 4 is in the 4–6 bucket
        ("v2", "Music", 12, 10.0, 1440, 3.99, 0.03, 0.95),
        ("v3", None, 40, 109.5, 2160, None, None, None),
    ],
    [
        ("v3", "Travel", 9, 7.5, 719, 5.5, 0.0001, 0.2),
        ("v4", "Sports", 5, 30.0, 360, 7.25, 0.015, 0.72),
        ("v4", "Travel", 25, 0.5, 359, 2.0, 0.007, 0.3),
        ("v1", "Travel", 11, 15.0, 480, 8.0, 0.002, None),  # v1 again, in another file
        ("v5", "Music", None, None, None, 4.5, 0.001, 0.05),
    ],
]
# (source, clip_id is null, stage, reason, rows)
VIMEO_REJECTS = [
    ("gone.mp4", True, "input", "not_found", 1),
    ("bad1.mp4", True, "probe", "unreadable", 1),
    ("bad2.mp4", True, "probe", "unreadable", 1),
    ("flat.mp4", True, "scene_detect", "no_scene", 1),
    ("v1", False, "min_frames", "too_short", 3),
    ("v2", False, "caption", "too_few_words", 2),
    ("v6", False, "caption", "missing", 1),
    ("v4", False, "resolution", "below_min_height", 4),
]
VIMEO_COUNTS = {"inputs": 10, "inputs_rejected": 4, "clips_detected": 20, "clips_kept": 10, "clips_rejected": 10}
# A WebVid-like plain Parquet file: no category, no aesthetic_score, no rejects or run.json.
WEBVID_ROWS = [("w1", 8, 10.0, 240), ("w1", 12, 20.0, 336), ("w2", 15, 5.0, 360), ("w3", 4, 5.0, 480)]

EXPECTED_VIMEO = {
    "kind": "curation_output",
    "finished": True,
    "totals": {"videos": 5, "clips": 10, "hours": 0.05, "duration_sec": 180.0},
    "category": {
        "available": True,
        "labels": ["Travel", "Music", "Sports"],
        "counts": [5, 2, 2],
        "percent": [55.56, 22.22, 22.22],
        "missing": 1,
    },
    "duration_sec": {
        "available": True,
        "labels": ["< 2 s", "2–4 s", "4–6 s", "6–8 s", "8–10 s", "10–15 s", "15–20 s", "20–30 s", "30–60 s", "≥ 60 s"],
        "counts": [2, 1, 1, 1, 0, 1, 1, 0, 1, 1],
        "percent": [22.22, 11.11, 11.11, 11.11, 0.0, 11.11, 11.11, 0.0, 11.11, 11.11],
        "missing": 1,
    },
    "caption_words": {
        "available": True,
        "labels": ["0–2", "3–5", "6–8", "9–11", "12–14", "15–19", "20–24", "25–29", "30–39", "≥ 40"],
        "counts": [1, 2, 0, 3, 1, 0, 0, 1, 0, 1],
        "percent": [11.11, 22.22, 0.0, 33.33, 11.11, 0.0, 0.0, 11.11, 0.0, 11.11],
        "missing": 1,
    },
    "aesthetic_score": {
        "available": True,
        "labels": ["< 4", "4–6", "> 6"],
        "counts": [2, 4, 3],
        "percent": [22.22, 44.44, 33.33],
        "missing": 1,
    },
    "resolution": {
        "available": True,
        "labels": ["< 360p", "360p", "480p", "720p", "1080p", "> 1080p"],
        "counts": [1, 1, 2, 1, 2, 2],
        "percent": [11.11, 11.11, 22.22, 11.11, 22.22, 22.22],
        "missing": 1,
    },
    "motion_score": {
        "available": True,
        "labels": ["< 0.00098 (static)", "0.00098–0.002", "0.002–0.005", "0.005–0.01", "0.01–0.02", "≥ 0.02"],
        "counts": [2, 2, 2, 1, 1, 1],
        "percent": [22.22, 22.22, 22.22, 11.11, 11.11, 11.11],
        "missing": 1,
    },
    "overlay_score": {
        "available": True,
        "labels": ["< 0.1", "0.1–0.3", "0.3–0.5", "0.5–0.7", "0.7–0.9", "≥ 0.9"],
        "counts": [2, 2, 1, 1, 1, 1],
        "percent": [25.0, 25.0, 12.5, 12.5, 12.5, 12.5],
        "missing": 2,
    },
    "funnel": {
        "available": True,
        "run_counts": VIMEO_COUNTS,
        "stages": [
            {"stage": "input", "title": "file found", "inputs_dropped": 1, "clips_dropped": 0, "reasons": {"not_found": 1}},
            {"stage": "probe", "title": "probe", "inputs_dropped": 2, "clips_dropped": 0, "reasons": {"unreadable": 2}},
            {
                "stage": "scene_detect",
                "title": "scene detection",
                "inputs_dropped": 1,
                "clips_dropped": 0,
                "reasons": {"no_scene": 1},
            },
            {"stage": "min_frames", "title": "clip length", "inputs_dropped": 0, "clips_dropped": 3, "reasons": {"too_short": 3}},
            {
                "stage": "caption",
                "title": "caption",
                "inputs_dropped": 0,
                "clips_dropped": 3,
                "reasons": {"too_few_words": 2, "missing": 1},
            },
            {
                "stage": "resolution",
                "title": "resolution",
                "inputs_dropped": 0,
                "clips_dropped": 4,
                "reasons": {"below_min_height": 4},
            },
            {"stage": "scoring", "title": "scoring", "inputs_dropped": 0, "clips_dropped": 0, "reasons": {}},
        ],
        "inputs_remaining": [
            {"step": "all inputs", "count": 10, "percent": 100.0},
            {"step": "file found", "count": 9, "percent": 90.0},
            {"step": "probe", "count": 7, "percent": 70.0},
            {"step": "scene detection", "count": 6, "percent": 60.0},
        ],
        "clips_remaining": [
            {"step": "all clips", "count": 20, "percent": 100.0},
            {"step": "clip length", "count": 17, "percent": 85.0},
            {"step": "caption", "count": 14, "percent": 70.0},
            {"step": "resolution", "count": 10, "percent": 50.0},
            {"step": "scoring", "count": 10, "percent": 50.0},
        ],
        "warnings": [],
    },
}

EXPECTED_WEBVID = {
    "kind": "parquet_dataset",
    "finished": None,
    "totals": {"videos": 3, "clips": 4, "hours": 0.0111, "duration_sec": 40.0},
    "category": {"available": False, "note": "no categories", "why": "no 'category' column"},
    "duration_sec": {
        "available": True,
        "labels": EXPECTED_VIMEO["duration_sec"]["labels"],
        "counts": [0, 0, 2, 0, 0, 1, 0, 1, 0, 0],
        "percent": [0.0, 0.0, 50.0, 0.0, 0.0, 25.0, 0.0, 25.0, 0.0, 0.0],
        "missing": 0,
    },
    "caption_words": {
        "available": True,
        "labels": EXPECTED_VIMEO["caption_words"]["labels"],
        "counts": [0, 1, 1, 0, 1, 1, 0, 0, 0, 0],
        "percent": [0.0, 25.0, 25.0, 0.0, 25.0, 25.0, 0.0, 0.0, 0.0, 0.0],
        "missing": 0,
    },
    "aesthetic_score": {"available": False, "note": "not scored", "why": "no 'aesthetic_score' column"},
    "resolution": {
        "available": True,
        "labels": EXPECTED_VIMEO["resolution"]["labels"],
        "counts": [2, 1, 1, 0, 0, 0],
        "percent": [50.0, 25.0, 25.0, 0.0, 0.0, 0.0],
        "missing": 0,
    },
    "motion_score": {"available": False, "note": "motion not measured", "why": "no 'motion_score' column"},
    "overlay_score": {"available": False, "note": "no overlay score", "why": "no 'overlay_score' column"},
    "funnel": {"available": False, "note": "not available", "why": "no run.json and no rejects/"},
}


def _clip_row(source: str, start: int, category, words, duration, height, aesthetic, motion, overlay) -> dict:
    return {
        "clip_id": clip_id_for(source, start),
        "source_uri": source,
        "source_dataset": "hand-built",
        "category": category,
        "caption": None if words is None else " ".join(["word"] * words),
        "caption_words": words,
        "start_frame": start,
        "end_frame": start + 48,
        "num_frames": 48,
        "duration_sec": duration,
        "width": None if height is None else height * 16 // 9,
        "height": height,
        "aesthetic_score": aesthetic,
        "motion_score": motion,
        "motion_method": None if motion is None else "motion_vectors",
        "overlay_score": overlay,
    }


def write_vimeo(root: Path, counts: dict = VIMEO_COUNTS) -> Path:
    (root / CLIPS_DIR).mkdir(parents=True)
    start = 0
    for i, rows in enumerate(VIMEO_FILES):
        clips = []
        for row in rows:
            clips.append(_clip_row(row[0], start, *row[1:]))
            start += 100
        pq.write_table(pa.Table.from_pylist(clips, schema=CLIP_SCHEMA), root / CLIPS_DIR / f"part-{i:05d}.parquet")
    (root / CLIPS_DIR / SUCCESS_FILE).write_text("")  # a stray marker file must be ignored
    rejects = []
    for source, input_level, stage, reason, n in VIMEO_REJECTS:
        for k in range(n):
            clip_id = None if input_level else clip_id_for(source, 10_000 + k)
            rejects.append({"source_uri": source, "clip_id": clip_id, "stage": stage, "reason": reason})
    (root / REJECTS_DIR).mkdir()
    pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), root / REJECTS_DIR / "part-00000.parquet")
    steps = ["probe", "scene_detect", "min_frames", "caption", "resolution", "scoring"]  # a run without captioner
    (root / RUN_FILE).write_text(json.dumps({"counts": counts, "steps": steps, "rejects_by_stage": {}, "config": {}}))
    (root / SUCCESS_FILE).write_text("")
    return root


def write_webvid(path: Path) -> Path:
    names = ("clip_id", "source_uri", "caption_words", "duration_sec", "height")
    schema = pa.schema([CLIP_SCHEMA.field(n) for n in names])
    rows = [
        {"clip_id": clip_id_for(s, i), "source_uri": s, "caption_words": w, "duration_sec": d, "height": h}
        for i, (s, w, d, h) in enumerate(WEBVID_ROWS)
    ]
    path.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path / "webvid.parquet")
    return path


def _replace(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path, Path, str]:
    """One CLI run over both hand-built datasets: (vimeo dir, webvid dir, report dir, stdout)."""
    base = tmp_path_factory.mktemp("stats")
    vimeo = write_vimeo(base / "vimeo25m")
    webvid = write_webvid(base / "webvid10m")
    out = base / "report"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["stats", *NO_SAMPLES, str(vimeo), str(webvid), "--out", str(out)]) == 0
    return vimeo, webvid, out, stdout.getvalue()


def test_stats_json_matches_every_known_figure(report):
    vimeo, webvid, out, _ = report
    stats = json.loads((out / "stats.json").read_text())
    assert [d["label"] for d in stats["datasets"]] == ["vimeo25m", "webvid10m"]
    assert stats["datasets"][0] == {"label": "vimeo25m", "uri": str(vimeo), **EXPECTED_VIMEO}
    assert stats["datasets"][1] == {"label": "webvid10m", "uri": str(webvid), **EXPECTED_WEBVID}
    assert stats["bins"]["aesthetic_score"]["boundaries"] == [4, 6]
    assert stats["bins"]["aesthetic_score"]["closed_below"] == [6]
    assert stats["bins"]["height"]["boundaries"] == [360, 480, 720, 1080, 1440]


def test_terminal_summary(report):
    *_, stdout = report
    lines = stdout.splitlines()
    assert lines[0].startswith("lavie stats: wrote ") and lines[0].endswith("stats.json")
    assert lines[1] == (
        "  vimeo25m: 5 videos, 10 clips, 0.05 h; aesthetic < 4 22.22% / 4–6 44.44% / > 6 33.33%; "
        "mostly 480p (22.22%); 3 categories; 22.22% static"
    )
    assert lines[2] == (
        "  webvid10m: 3 videos, 4 clips, 0.0111 h; aesthetic: not scored; mostly < 360p (50.00%); no categories"
    )


def test_page_is_self_contained_and_names_missing_panels(report):
    *_, out, _ = report
    page = (out / "report.html").read_text()
    assert page.count('<svg class="chart"') == 9  # 7 distributions + inputs and clips funnels
    for needle in ("src=", "<link", "<script", "@import", "url("):
        assert needle not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "webvid10m: not scored" in page
    assert "webvid10m: no categories" in page
    assert "webvid10m: funnel not available" in page
    assert "too_few_words: 2; missing: 1" in page


def test_a_dataset_keeps_its_colour_in_charts_it_is_alone_in(report, tmp_path):
    vimeo, webvid, *_ = report
    assert main(["stats", *NO_SAMPLES, str(webvid), str(vimeo), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    aesthetic = page[page.index('id="chart-aesthetic-score"') :].split("</svg>")[0]
    assert f'fill="{PALETTE[1]}"' in aesthetic and f'fill="{PALETTE[0]}"' not in aesthetic


def test_per_file_accumulators_merge_to_the_whole(tmp_path):
    manifest = open_manifest(str(write_vimeo(tmp_path / "m")))
    whole = ClipStats(manifest.columns)
    for batch in scan(manifest.table, whole.projection()):
        whole.add_batch(batch)
    merged = ClipStats(manifest.columns)
    for fragment in manifest.table.get_fragments():
        part = ClipStats(manifest.columns)
        for batch in fragment.to_batches(columns=part.projection()):
            part.add_batch(batch)
        merged.merge(part)
    assert merged.to_json() == whole.to_json()
    assert merged.to_json()["totals"]["videos"] == 5


def test_dictionary_and_large_string_columns_give_the_same_figures(tmp_path):
    table = ds.dataset(str(write_vimeo(tmp_path / "m") / CLIPS_DIR)).to_table()
    recoded = _replace(table, "category", table["category"].dictionary_encode())
    recoded = _replace(recoded, "source_uri", recoded["source_uri"].cast(pa.large_string()))
    (tmp_path / "recoded").mkdir()
    pq.write_table(recoded, tmp_path / "recoded" / "all.parquet", row_group_size=3)
    stats = {}
    for name in ("m", "recoded"):
        manifest = open_manifest(str(tmp_path / name))
        acc = ClipStats(manifest.columns)
        for batch in scan(manifest.table, acc.projection()):
            acc.add_batch(batch)
        stats[name] = acc.to_json()
    assert stats["recoded"] == stats["m"]


def test_all_null_optional_columns_say_so(tmp_path):
    rows = [_clip_row("a", 0, None, 5, 3.0, 720, None, None, None), _clip_row("b", 0, None, 7, 4.0, 1080, None, None, None)]
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=CLIP_SCHEMA), tmp_path / "d" / "x.parquet")
    manifest = open_manifest(str(tmp_path / "d"))
    acc = ClipStats(manifest.columns)
    for batch in scan(manifest.table, acc.projection()):
        acc.add_batch(batch)
    figures = acc.to_json()
    assert figures["aesthetic_score"] == {
        "available": False,
        "note": "not scored",
        "why": "'aesthetic_score' is null on every clip",
        "missing": 2,
    }
    assert figures["category"]["note"] == "no categories"


def test_files_may_lack_optional_columns_and_a_corrupt_file_is_named(tmp_path, capsys):
    rows = [_clip_row("a", 0, "Travel", 5, 3.0, 720, 5.0, None, None), _clip_row("b", 0, "Music", 7, 4.0, 1080, 6.5, None, None)]
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:1], schema=CLIP_SCHEMA), tmp_path / "d" / "a.parquet")
    second = pa.Table.from_pylist(rows[1:], schema=CLIP_SCHEMA).drop_columns(["aesthetic_score", "category"])
    pq.write_table(second, tmp_path / "d" / "b.parquet")
    assert main(["stats", *NO_SAMPLES, str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 0
    figures = json.loads((tmp_path / "r" / "stats.json").read_text())["datasets"][0]
    assert (figures["aesthetic_score"]["counts"], figures["aesthetic_score"]["missing"]) == ([0, 1, 0], 1)
    assert (figures["category"]["labels"], figures["category"]["missing"]) == (["Travel"], 1)
    assert figures["resolution"]["counts"] == [0, 0, 0, 1, 1, 0]

    (tmp_path / "d" / "c.parquet").write_bytes(b"PAR1 truncated")
    assert main(["stats", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'd' / 'c.parquet'}: cannot be read as Parquet" in err


def test_empty_rejects_folder_means_nothing_dropped_and_unscored_runs_say_why(tmp_path, capsys):
    vimeo = write_vimeo(tmp_path / "v")
    (vimeo / REJECTS_DIR / "part-00000.parquet").unlink()
    run = json.loads((vimeo / RUN_FILE).read_text())
    run["scoring"] = {"aesthetic": False, "clip_score": False, "skipped_reason": "no scoring weights given"}
    (vimeo / RUN_FILE).write_text(json.dumps(run))
    table = pq.read_table(vimeo / CLIPS_DIR / "part-00000.parquet")
    unscored = _replace(table, "aesthetic_score", pa.nulls(len(table), pa.float32()))
    pq.write_table(unscored, vimeo / CLIPS_DIR / "part-00000.parquet")
    (vimeo / CLIPS_DIR / "part-00001.parquet").unlink()
    assert main(["stats", *NO_SAMPLES, str(vimeo), "--out", str(tmp_path / "r")]) == 0
    figures = json.loads((tmp_path / "r" / "stats.json").read_text())["datasets"][0]
    assert figures["aesthetic_score"]["why"] == "run.json: no scoring weights given"
    assert all(s["inputs_dropped"] == s["clips_dropped"] == 0 for s in figures["funnel"]["stages"])
    assert "run.json counts inputs_rejected=4, but rejects/ holds 0" in figures["funnel"]["warnings"]
    assert "v: not scored (run.json: no scoring weights given)" in (tmp_path / "r" / "report.html").read_text()


def test_inconsistent_run_json_is_reported(tmp_path, capsys):
    counts = dict(VIMEO_COUNTS, clips_kept=11)
    vimeo = write_vimeo(tmp_path / "v", counts=counts)
    assert main(["stats", *NO_SAMPLES, str(vimeo), "--out", str(tmp_path / "r")]) == 0
    assert "warning (v): run.json counts clips_kept=11, but clips/ holds 10" in capsys.readouterr().out


def test_bin_edges():
    assert list(AESTHETIC_BINS.assign(pa.array([3.999, 4.0, 6.0, 6.001], pa.float32()).to_numpy())) == [0, 1, 1, 2]
    heights = [0, 359, 360, 479, 480, 719, 720, 1079, 1080, 1088, 1200, 1439, 1440, 2160]
    classes = [HEIGHT_BINS.labels[i] for i in HEIGHT_BINS.assign(pa.array(heights).to_numpy())]
    assert classes == ["< 360p"] * 2 + ["360p"] * 2 + ["480p"] * 2 + ["720p"] * 2 + ["1080p"] * 4 + ["> 1080p"] * 2


def _not_a_table(path: Path) -> None:
    path.mkdir()
    (path / "notes.parquet").write_text("not parquet")


def _missing_columns(path: Path) -> None:
    path.mkdir()
    pq.write_table(pa.table({"source_uri": ["a"], "height": [720]}), path / "x.parquet")


def _empty_clips(path: Path) -> None:
    (path / CLIPS_DIR).mkdir(parents=True)


def _wrong_type(path: Path) -> None:
    path.mkdir()
    table = pa.table({"source_uri": ["a"], "duration_sec": ["long"], "caption_words": [3], "height": [720]})
    pq.write_table(table, path / "x.parquet")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "no such file or folder"),
        (lambda p: p.mkdir(), "not a manifest: no clips/ folder and no Parquet files"),
        (_not_a_table, "not a manifest: not a Parquet dataset"),
        (_missing_columns, "not a manifest: missing column(s) duration_sec, caption_words"),
        (_empty_clips, "clips: not a manifest: no Parquet files"),
        (_wrong_type, "column 'duration_sec' has type string, expected a number"),
    ],
)
def test_a_path_that_is_not_a_manifest_is_a_one_line_error(tmp_path, capsys, make, message):
    target = tmp_path / "thing"
    if make is not None:
        make(target)
    assert main(["stats", str(target), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lavie stats: error: {target}")
    assert message in err
    assert not (tmp_path / "r").exists()


def test_label_errors(tmp_path, capsys):
    a = write_webvid(tmp_path / "a" / "same")
    b = write_webvid(tmp_path / "b" / "same")
    assert main(["stats", str(a), str(b), "--out", str(tmp_path / "r")]) == 2
    assert "label 'same' is also the label of" in capsys.readouterr().err
    assert main(["stats", str(a), str(b), "--label", "x", "--out", str(tmp_path / "r")]) == 2
    assert "--label given 1 times for 2 manifests" in capsys.readouterr().err
    assert main(["stats", *NO_SAMPLES, str(a), str(b), "--label", "x", "--label", "y", "--out", str(tmp_path / "r")]) == 0
    assert [d["label"] for d in json.loads((tmp_path / "r" / "stats.json").read_text())["datasets"]] == ["x", "y"]


def test_console_script_reports_a_bad_path_in_one_line(tmp_path):
    lavie = Path(sys.executable).with_name("lavie")  # installed by `make test` (pip install -e .)
    assert lavie.exists(), f"no console script at {lavie}"
    command = [str(lavie), "stats", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"lavie stats: error: {tmp_path / 'nope'}: no such file or folder\n"


def test_s3_manifest_round_trip(tmp_path, monkeypatch, capsys, s3_server):
    import s3fs

    try:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": s3_server.endpoint,
        }.items():
            monkeypatch.setenv(key, value)
        fs = s3_server.bucket("bucket")
        fs.put(str(write_vimeo(tmp_path / "vimeo25m")), "bucket/runs/vimeo25m", recursive=True)
        s3fs.S3FileSystem.clear_instance_cache()
        assert main(["stats", *NO_SAMPLES, "s3://bucket/runs/vimeo25m", "--out", "s3://bucket/reports/r1"]) == 0
        stats = json.loads(fs.cat("bucket/reports/r1/stats.json"))
        assert stats["datasets"][0] == {"label": "vimeo25m", "uri": "s3://bucket/runs/vimeo25m", **EXPECTED_VIMEO}
        assert fs.exists("bucket/reports/r1/report.html")

        monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint given on the command line instead
        s3fs.S3FileSystem.clear_instance_cache()
        endpoint = f"--storage-option=endpoint_url={s3_server.endpoint}"
        assert main(["stats", *NO_SAMPLES, "s3://bucket/runs/vimeo25m", "--out", "s3://bucket/reports/r2", endpoint]) == 0
        assert json.loads(fs.cat("bucket/reports/r2/stats.json")) == stats
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


# --- the page in a real browser ----------------------------------------------------------------

DRAWN_JS = """
return Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = Array.from(svg.querySelectorAll('rect.bar')).filter(r => {
    const b = r.getBoundingClientRect(); return b.width > 0 && b.height > 0;
  });
  return {id: svg.id, width: box.width, height: box.height, marks: marks.length};
});
"""


@pytest.mark.browser
def test_report_loads_in_headless_chromium_with_every_plot_drawn(report, tmp_path):
    *_, out, _ = report
    page = open_page(out / "report.html", tmp_path / "chromium-profile", DRAWN_JS)
    assert page.title == "lavie stats: vimeo25m, webvid10m"
    assert page.severe == []
    charts = page.result
    assert [c["id"] for c in charts] == [
        "chart-category",
        "chart-duration-sec",
        "chart-caption-words",
        "chart-aesthetic-score",
        "chart-resolution",
        "chart-motion-score",
        "chart-overlay-score",
        "chart-inputs-remaining",
        "chart-clips-remaining",
    ]
    for chart in charts:
        assert chart["width"] > 0 and chart["height"] > 0 and chart["marks"] >= 1, chart
