"""Input resolution, metadata reading and matching, and config validation: fast, no Ray."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from curation.config import load_config
from curation.inputs import MissingInput, iter_input_files
from curation.metadata import match_metadata, read_metadata_table
from curation.rows import count_words
from lavie.core.errors import UserError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _resolve(specs):
    items = list(iter_input_files(specs))
    return [i for i in items if isinstance(i, str)], [(m.uri, m.detail) for m in items if isinstance(m, MissingInput)]


def test_folders_globs_and_files_stream_in_a_stable_order(tmp_path):
    _touch(tmp_path / "a" / "one.mp4")
    _touch(tmp_path / "a" / "deep" / "two.MOV")
    _touch(tmp_path / "a" / "notes.txt")
    _touch(tmp_path / "c" / "x" / "3.mp4")
    _touch(tmp_path / "c" / "y" / "4.mp4")
    _touch(tmp_path / "c" / "y" / "5.mkv")
    odd = _touch(tmp_path / "b" / "clip.bin")
    videos, missing = _resolve([str(tmp_path / "a"), str(odd), str(tmp_path / "c" / "*" / "*.mp4"), str(tmp_path / "gone.mp4")])
    # Arguments in the order given, each folder walked in sorted order (folders before its files'
    # subfolders as fsspec walks them), a glob matched as its fixed prefix is walked.
    assert videos == [
        str(tmp_path / "a" / "one.mp4"), str(tmp_path / "a" / "deep" / "two.MOV"), str(odd),
        str(tmp_path / "c" / "x" / "3.mp4"), str(tmp_path / "c" / "y" / "4.mp4"),
    ]  # fmt: skip
    assert missing == [(str(tmp_path / "gone.mp4"), "no such file or folder")]
    assert _resolve([str(tmp_path / "c" / "**" / "*.mkv")])[0] == [str(tmp_path / "c" / "y" / "5.mkv")]


def test_file_url_and_empty_matches(tmp_path):
    _touch(tmp_path / "v.mp4")
    assert _resolve([f"file://{tmp_path}/v.mp4"])[0] == [str(tmp_path / "v.mp4")]
    videos, missing = _resolve([str(tmp_path / "*.mkv"), str(tmp_path / "nowhere" / "*.mp4"), str(tmp_path)])
    assert [detail for _, detail in missing] == ["pattern matched no file", "pattern matched no file"]
    assert videos == [str(tmp_path / "v.mp4")]


def test_unknown_url_scheme_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^nosuch://bucket/x: unknown URL scheme 'nosuch://'$"):
        _resolve(["nosuch://bucket/x"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_metadata_formats(tmp_path, suffix):
    rows = [{"video": "a.mp4", "caption": "a cat on a mat", "category": "Animation"}]
    path = tmp_path / f"meta{suffix}"
    if suffix == ".csv":
        path.write_text("video,caption,category\na.mp4,a cat on a mat,Animation\n")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    table = read_metadata_table(str(path))
    match = match_metadata(table, ("/data/a.mp4",), str(path))
    assert match.by_uri["/data/a.mp4"].caption == "a cat on a mat"
    assert match.by_uri["/data/a.mp4"].category == "Animation"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,caption\na.mp4,x y z\n", "missing required column 'video' (has: file, caption)"),
        ("video,caption,catgory\na.mp4,x y z,A\n", "unknown column 'catgory'"),
        ("video,caption,start_sec\na.mp4,x y z,1\n", "'start_sec' and 'end_sec' must be given together"),
    ],
)
def test_metadata_with_a_wrong_column_is_one_line(tmp_path, content, message):
    path = tmp_path / "meta.csv"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        read_metadata_table(str(path))
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_metadata_matches_by_uri_then_unique_path_suffix():
    videos = ("/d/x/a.mp4", "/d/y/a.mp4", "/d/y/b.mp4", "s3://bk/raw/c.mp4")
    table = pa.Table.from_pylist([
        {"video": "x/a.mp4", "caption": "first a"},
        {"video": "a.mp4", "caption": "ambiguous"},
        {"video": "b.mp4", "caption": "just b"},
        {"video": "s3://bk/raw/c.mp4", "caption": "full uri"},
        {"video": "zzz.mp4", "caption": "nowhere"},
    ])
    match = match_metadata(table, videos, "meta.csv")
    assert {k: v.caption for k, v in match.by_uri.items()} == {
        "/d/x/a.mp4": "first a", "/d/y/b.mp4": "just b", "s3://bk/raw/c.mp4": "full uri",
    }
    assert match.unmatched == ("zzz.mp4",) and match.ambiguous == ("a.mp4",)


def test_per_scene_captions_pick_the_most_overlapping_row():
    table = pa.Table.from_pylist([
        {"video": "v.mp4", "caption": "whole video caption", "start_sec": None, "end_sec": None},
        {"video": "v.mp4", "caption": "first scene words", "start_sec": 0.0, "end_sec": 2.0},
        {"video": "v.mp4", "caption": "second scene words", "start_sec": 2.0, "end_sec": 5.0},
    ])
    meta = match_metadata(table, ("/v.mp4",), "m").by_uri["/v.mp4"]
    assert meta.caption_for(0.0, 1.9) == "first scene words"
    assert meta.caption_for(1.5, 4.0) == "second scene words"
    assert meta.caption_for(6.0, 8.0) == "whole video caption"


def test_word_counts_ignore_urls():
    assert count_words("a dog runs https://x.com/1 fast") == 4
    assert count_words("https://vimeo.com/1 www.example.com") == 0
    assert count_words("   ") == 0 and count_words(None) == 0


def test_config_defaults_are_the_papers():
    config = load_config(None)
    assert (config.filters.min_frames, config.filters.min_caption_words, config.filters.min_height) == (16, 3, 720)
    assert config.scenes.detector == "content" and config.scoring.frame_positions == (0.1, 0.5, 0.9)
    assert not config.scoring.enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("filters:\n  min_height: -5\n", "filters.min_height: Input should be greater than or equal to"),
        ("scenes:\n  threshold: lots\n", "scenes.threshold: Input should be a valid number"),
        ("filters:\n  min_hieght: 720\n", "filters.min_hieght: unknown key"),
        ("scoring:\n  frame_positions: [0.5, 1.5]\n", "scoring.frame_positions"),
        ("- a\n- list\n", "a config must be a mapping"),
    ],
)
def test_bad_config_is_one_line(tmp_path, text, message):
    path = tmp_path / "curate.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("filters:\n  min_height: 480\nscenes:\n  detector: adaptive\n")
    config = load_config(path, {"filters.min_height": 360})
    assert config.filters.min_height == 360 and config.scenes.detector == "adaptive"
