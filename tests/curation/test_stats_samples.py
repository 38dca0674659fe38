"""`lavie stats --samples`: example clips beside every chart, their previews decoded on Ray, and the
clip index, over a small curation output of generated videos whose every row is known."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from browser import open_page
from PIL import Image

from curation.stats.compute import build_stats, scan
from curation.stats.inputs import open_for_report
from curation.stats.previews import PREVIEW_FRAMES, PREVIEW_WIDTH, preview_size
from curation.stats.report import create_report
from curation.stats.samples import SampleDraw, SampleOptions, row_hashes, score_columns
from lavie.cli import main
from lavie.core.manifest import REJECT_SCHEMA, REJECTS_DIR, RUN_FILE, clip_id_for, open_manifest
from lavie.synthetic import write_scene_video
from lavie.synthetic.manifests import clip_row, write_clip_manifest

EVIL_CAPTION = "<script>window.evil = 1</script><b>bold</b> & a cat"
CATEGORIES = ("Travel", "Music", "Sports")


def _videos(folder: Path) -> dict[str, Path]:
    videos = {name: write_scene_video(folder / f"{name}.mp4", (24, 24), 96, 64, fps=12, seed=i).path
              for i, name in enumerate(("a", "b", "c"))}  # fmt: skip
    (folder / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    videos["broken"] = folder / "broken.mp4"
    return videos


def _clips(videos: dict[str, Path]) -> list[dict]:
    """18 clips: 16 in the good videos (aesthetic from 2.0 to 7.6, clip_score rising), one in the
    unreadable file, one whose range runs past its video's end."""
    rows = []
    for k in range(16):
        name = "abc"[k % 3]
        start = (k // 3) * 8
        size = (1620, 1080) if name == "a" else (96, 64)  # what the manifest says; every file is 96 x 64
        row = clip_row(str(videos[name]), start, start + 8, 12.0, *size, f"clip number {k} of {name}")
        row.update(category=CATEGORIES[k % 3], aesthetic_score=2.0 + 0.375 * k, clip_score=0.1 + 0.01 * k)
        rows.append(row)
    rows[0]["caption"] = EVIL_CAPTION  # the lowest clip_score: always among the examples
    broken = clip_row(str(videos["broken"]), 0, 8, 12.0, 96, 64, "a clip of a broken file")
    late = clip_row(str(videos["a"]), 41, 90, 12.0, 1620, 1080, "a clip past the end")
    for row, score in ((broken, 5.0), (late, 5.1)):
        row.update(category="Travel", aesthetic_score=score, clip_score=0.5)
    return rows + [broken, late]


def _write_manifest(root: Path, videos: dict[str, Path]) -> Path:
    write_clip_manifest(root, _clips(videos), files=2)
    rejects = [
        {"source_uri": str(root / "missing.mp4"), "clip_id": None, "stage": "input", "reason": "not_found"},
        {"source_uri": str(videos["c"]), "clip_id": None, "stage": "scene_detect", "reason": "no_scene"},
        {"source_uri": str(videos["b"]), "clip_id": clip_id_for(str(videos["b"]), 30), "start_frame": 30,
         "end_frame": 40, "stage": "caption", "reason": "too_few_words", "caption": "two words"},
        {"source_uri": str(videos["c"]), "clip_id": clip_id_for(str(videos["c"]), 2), "start_frame": 2, "end_frame": 20,
         "stage": "training_decode", "reason": "undecodable_for_training", "detail": "frame 19 did not decode"},
    ]  # fmt: skip
    (root / REJECTS_DIR).mkdir()
    pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), root / REJECTS_DIR / "part-00000.parquet")
    counts = {"inputs": 5, "inputs_rejected": 2, "clips_detected": 20, "clips_kept": 18, "clips_rejected": 2}
    (root / RUN_FILE).write_text(json.dumps({"counts": counts}))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("samples")
    videos = _videos(base / "videos")
    return {"videos": base / "videos", "curated": _write_manifest(base / "curated", videos), "base": base}


@pytest.fixture(scope="module")
def report(corpus, ray_cluster) -> tuple[Path, dict, str]:
    """One CLI run over the curation output and a plain copy of its clips (comparison mode)."""
    plain = corpus["base"] / "plain"
    plain.mkdir()
    table = pq.read_table(corpus["curated"] / "clips").drop_columns(["clip_score"])
    pq.write_table(table, plain / "clips.parquet")
    out = corpus["base"] / "report"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["stats", str(corpus["curated"]), str(plain), "--out", str(out), "--samples", "2", "--seed", "7",
                     "--index-clips", "50"])  # fmt: skip
    assert code == 0
    return out, json.loads((out / "stats.json").read_text()), stdout.getvalue()


def _ids(rows: list[dict]) -> list[str]:
    return [row.get("clip_id") or f"{row['source_uri']}#{row.get('stage')}" for row in rows]


def test_every_group_shows_clips_of_that_group(report):
    _, stats, stdout = report
    samples = stats["samples"]
    assert (samples["per_group"], samples["seed"], samples["index_clips"]) == (2, 7, 50)
    curated, plain = samples["datasets"]
    assert [d["label"] for d in samples["datasets"]] == ["curated", "plain"]
    aesthetic = {g["label"]: g["clips"] for g in curated["panels"]["aesthetic_score"]}
    assert all(0 < len(rows) <= 2 for rows in aesthetic.values())
    assert all(r["aesthetic_score"] < 4 for r in aesthetic["< 4"])
    assert all(4 <= r["aesthetic_score"] <= 6 for r in aesthetic["4–6"])
    assert all(r["aesthetic_score"] > 6 for r in aesthetic["> 6"])
    resolution = {g["label"]: g["clips"] for g in curated["panels"]["resolution"]}
    assert all(r["height"] == 1080 for r in resolution["1080p"]) and len(resolution["1080p"]) == 2
    assert [g["label"] for g in curated["panels"]["category"]] == ["Travel", "Music", "Sports"]
    assert all(r["category"] == g["label"] for g in curated["panels"]["category"] for r in g["clips"])
    # Rejects in funnel order (pipeline stages), each with its reason and detail.
    assert [(g["stage"], g["reason"]) for g in curated["rejects"]] == [
        ("input", "not_found"), ("scene_detect", "no_scene"), ("caption", "too_few_words"),
        ("training_decode", "undecodable_for_training"),
    ]  # fmt: skip
    assert curated["rejects"][3]["clips"][0]["detail"] == "frame 19 did not decode"
    # The lowest and highest clip_score (the plain copy has no such column).
    (extremes,) = curated["scores"]
    assert extremes["column"] == "clip_score"
    assert [round(r["clip_score"], 2) for r in extremes["lowest"]] == [0.1, 0.11]
    assert [round(r["clip_score"], 2) for r in extremes["highest"]] == [0.5, 0.5]
    assert plain["scores"] == [] and plain["rejects"] == []
    assert len(curated["index"]) == 22 and len(plain["index"]) == 18  # 25 each: every clip and reject
    assert "clips drawn (seed 7)" in stdout and "clip index clips.html" in stdout


def test_previews_are_small_animations_and_bad_videos_get_a_reason(report):
    out, stats, _ = report
    rows = [r for d in stats["samples"]["datasets"] for r in d["index"]]
    by_source = {}
    for row in rows:
        by_source.setdefault(Path(row["source_uri"]).name, []).append(row)
    for row in by_source["a.mp4"] + by_source["b.mp4"]:
        if row["end_frame"] > 48:  # the clip past the end of a.mp4
            assert row["preview"] is None and "ends at frame 90, the video has 48" in row["preview_error"]
            continue
        assert row["preview_error"] is None, row
        with Image.open(out / row["preview"]) as image:
            assert image.format == "WEBP" and image.is_animated
            assert image.n_frames == min(PREVIEW_FRAMES, row["end_frame"] - row["start_frame"])
            height, width = preview_size(row.get("width"), row.get("height")) or (64, 96)
            assert image.size == (width, height) and max(image.size) <= PREVIEW_WIDTH
    broken = by_source["broken.mp4"]
    assert broken and all(r["preview"] is None and r["preview_error"].startswith("cannot open the video") for r in broken)
    missing = next(g for g in stats["samples"]["datasets"][0]["rejects"] if g["reason"] == "not_found")["clips"][0]
    assert missing["preview"] is None and "missing.mp4" in missing["preview_error"]
    # A whole-input reject of a readable video shows its first frames (2 s at 12 fps: 24, of which 12).
    (no_scene,) = [r for r in by_source["c.mp4"] if r["kind"] == "reject" and r["start_frame"] is None]
    with Image.open(out / no_scene["preview"]) as image:
        assert image.n_frames == PREVIEW_FRAMES
    page = (out / "report.html").read_text()
    assert page.count("no preview: cannot open the video") >= 1


def test_html_in_captions_is_escaped(report):
    out, stats, _ = report
    drawn = [r for d in stats["samples"]["datasets"] for r in d["index"]]
    assert any(r["caption"] == EVIL_CAPTION for r in drawn)
    for name in ("report.html", "clips.html"):
        page = (out / name).read_text()
        assert "<script>window.evil" not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;window.evil = 1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; a cat" in page


def test_the_same_seed_draws_the_same_clips_and_another_seed_others(report, corpus):
    _, stats, _ = report
    manifests = [open_for_report(str(corpus["curated"]))]
    again = build_stats(manifests, SampleOptions(per_group=2, index_clips=50, seed=7))["samples"]["datasets"][0]
    first = stats["samples"]["datasets"][0]
    for key in ("aesthetic_score", "duration_sec", "category", "resolution"):
        assert [_ids(g["clips"]) for g in again["panels"][key]] == [_ids(g["clips"]) for g in first["panels"][key]]
    other = build_stats(manifests, SampleOptions(per_group=2, index_clips=50, seed=8))["samples"]["datasets"][0]
    assert [_ids(g["clips"]) for g in other["panels"]["category"]] != [_ids(g["clips"]) for g in first["panels"]["category"]]


def _draw(manifest, batches, per_group=3, index=5, seed=3) -> SampleDraw:
    reject_columns = frozenset(manifest.rejects.schema.names)
    draw = SampleDraw(per_group, index, seed, manifest.columns, score_columns(manifest.table.schema), reject_columns)
    for batch in batches:
        draw.add_clips(batch)
    return draw


def test_the_draw_is_the_smallest_hashes_whatever_the_batches_and_merges(corpus):
    manifest = open_manifest(str(corpus["curated"]))
    probe = _draw(manifest, [])
    whole = pa.Table.from_batches(list(scan(manifest.table, probe.projection())))
    figures = {"category": {"available": True, "labels": list(CATEGORIES)}}
    one = _draw(manifest, whole.to_batches())
    small = _draw(manifest, whole.to_batches(max_chunksize=2))
    reversed_order = _draw(manifest, reversed(whole.to_batches(max_chunksize=3)))
    halves = _draw(manifest, whole.slice(0, 9).to_batches())
    halves.merge(_draw(manifest, whole.slice(9).to_batches()))
    expected = one.to_json(figures, [])
    for draw in (small, reversed_order, halves):
        assert draw.to_json(figures, []) == expected
    # What the draw keeps: the 3 smallest hash(seed, clip_id) of each category.
    hashes = dict(zip(whole["clip_id"].to_pylist(), row_hashes(whole["clip_id"], 3)))
    for group in expected["panels"]["category"]:
        members = [c for c, cat in zip(whole["clip_id"].to_pylist(), whole["category"].to_pylist()) if cat == group["label"]]
        assert [r["clip_id"] for r in group["clips"]] == sorted(members, key=hashes.get)[:3]
    assert len(expected["index"]) == 5
    assert all(len(rows) <= 3 for reservoir in one.panels.values() for rows in reservoir.groups.values())


def test_negative_samples_is_a_one_line_error(corpus, tmp_path, capsys):
    assert main(["stats", str(corpus["curated"]), "--out", str(tmp_path / "r"), "--samples", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "lavie stats: error: --samples must be 0 or more (got -1)\n"
    assert not (tmp_path / "r").exists()


def test_no_samples_means_no_ray_and_no_examples(corpus, tmp_path):
    def refuse() -> None:
        raise AssertionError("connected to Ray without preview work")

    stats, report_uri, _ = create_report([str(corpus["curated"])], None, str(tmp_path / "r"),
                                         samples=SampleOptions(per_group=0), connect=refuse)  # fmt: skip
    assert stats["samples"] == {"per_group": 0, "index_clips": 0, "seed": 0}
    assert "<img" not in Path(report_uri).read_text() and not (tmp_path / "r" / "clips.html").exists()


# --- the pages in a real browser ----------------------------------------------------------------

IMAGES_JS = """
const images = Array.from(document.querySelectorAll('img.preview'));
return {
  images: images.length,
  broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
  evil: window.evil === undefined ? null : window.evil,
  sections: Array.from(document.querySelectorAll('details.examples h3')).map(h => h.textContent),
};
"""

SORT_JS = """
const table = document.getElementById('clips');
const column = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent.startsWith('aesthetic_score'));
const values = () => Array.from(table.tBodies[0].rows).map(r => r.cells[column].getAttribute('data-v'));
const before = values();
table.tHead.rows[0].cells[column].click();
const ascending = values();
table.tHead.rows[0].cells[column].click();
const descending = values();
const select = document.querySelector('select[data-filter="data-status"]');
select.value = 'caption: too_few_words';
select.dispatchEvent(new Event('change'));
const shown = Array.from(table.tBodies[0].rows).filter(r => !r.hidden).map(r => r.getAttribute('data-status'));
const images = Array.from(document.querySelectorAll('img.preview'));
return {before, ascending, descending, shown, images: images.length,
        broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
        captions: Array.from(document.querySelectorAll('td.caption b')).length};
"""


@pytest.mark.browser
def test_report_and_clip_index_in_headless_chromium(report, tmp_path):
    out, *_ = report
    page = open_page(out / "report.html", tmp_path / "profile-report", IMAGES_JS)
    assert page.severe == []
    assert page.result["images"] > 10 and page.result["broken"] == []
    assert page.result["evil"] is None
    assert "curated" in page.result["sections"] and "plain" in page.result["sections"]  # examples per manifest

    index = open_page(out / "clips.html", tmp_path / "profile-index", SORT_JS)
    assert index.severe == []
    result = index.result
    assert result["images"] > 10 and result["broken"] == 0 and result["captions"] == 0
    numbers = [float(v) for v in result["ascending"] if v]
    assert numbers == sorted(numbers) and result["ascending"] != result["before"]
    assert [float(v) for v in result["descending"] if v] == sorted(numbers, reverse=True)
    assert result["ascending"][-1] == ""  # rejects have no score: last
    assert result["shown"] == ["caption: too_few_words"]
