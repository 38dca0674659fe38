"""Video sets (folder, manifest, generation output) and how captions attach to them: one-line errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.sets import attach_captions, open_set
from lavie.core.errors import UserError


def test_a_folder_set_lists_its_videos_recursively_with_stable_keys(video_sets):
    videos = open_set(str(video_sets.real))
    assert len(videos) == 6 and videos.layout == "folder"
    assert [i.uri.rsplit("/", 1)[1] for i in videos.items][:2] == ["v_ApplyEyeMakeup_g01_c01.mp4", "v_ApplyEyeMakeup_g02_c01.mp4"]
    assert open_set(str(video_sets.real)).fingerprint() == videos.fingerprint()
    assert len({i.key for i in videos.items}) == 6
    drawn = videos.sample(3, seed=1)
    assert len(drawn) == 3 and drawn == videos.sample(3, seed=1) and set(drawn.items) <= set(videos.items)


def test_a_manifest_set_keeps_frame_ranges_and_captions(video_sets, tmp_path):
    uri = str(video_sets.fake / "sample0.mp4")
    table = pa.table({"source_uri": [uri, uri], "start_frame": [0, 4], "end_frame": [20, 24], "caption": ["a", "b"]})
    pq.write_table(table, tmp_path / "clips.parquet")
    videos = open_set(str(tmp_path / "clips.parquet"))
    assert videos.layout == "manifest"
    assert [(i.start_frame, i.end_frame, i.caption) for i in videos.items] == [(0, 20, "a"), (4, 24, "b")]
    assert videos.items[1].label == f"{uri} [4, 24)"


def test_a_generation_output_is_a_set_captioned_with_its_prompts(video_sets, tmp_path):
    out = tmp_path / "gen"
    (out / "videos").mkdir(parents=True)
    for k in range(2):
        (out / "videos" / f"id{k}.mp4").write_bytes((video_sets.fake / f"sample{k}.mp4").read_bytes())
    rows = {"id": ["id0", "id1"], "prompt": ["a cat", "a dog"], "seed": [0, 1], "path": ["videos/id0.mp4", "videos/id1.mp4"]}
    pq.write_table(pa.table(rows), out / "manifest.parquet")
    videos = open_set(str(out))
    assert videos.layout == "generated"
    assert [(i.uri, i.caption) for i in videos.items] == [(str(out / "videos/id0.mp4"), "a cat"), (str(out / "videos/id1.mp4"), "a dog")]


def test_captions_match_by_any_trailing_part_of_the_path(video_sets, tmp_path):
    captions = tmp_path / "captions.csv"
    captions.write_text("video,caption\nsample0,a\nfake/sample1.mp4,b\nsample2.mp4,c\n" + f"{video_sets.fake / 'sample3.mp4'},d\n")
    videos = attach_captions(open_set(str(video_sets.fake)), str(captions))
    assert [i.caption for i in videos.items] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("video,caption\nsample0,a\nsample1,b\nsample2,c\nsample9,d\n", "'sample9' (row 4) matches no video of"),
        ("video,caption\nsample0,a\nsample1,b\nsample2,c\n", "1 video(s) of"),
        ("video,caption\nsample0,a\nsample0,z\nsample1,b\nsample2,c\nsample3,d\n", "has more than one caption (row 2)"),
        ("video,caption\nsample0,\n", "row 1 (sample0) has an empty caption"),
        ("name,text\nsample0,a\n", "missing column 'video'"),
    ],
)
def test_captions_that_do_not_match_the_videos_are_one_line_errors(video_sets, tmp_path, text, message):
    captions = tmp_path / "captions.csv"
    captions.write_text(text)
    with pytest.raises(UserError) as caught:
        attach_captions(open_set(str(video_sets.fake)), str(captions))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(captions))


def test_what_is_not_a_set_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="the folder holds no video file"):
        open_set(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no such file or folder"):
        open_set(str(tmp_path / "nope"))
