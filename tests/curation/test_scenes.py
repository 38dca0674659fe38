"""Scene detection: exact cuts on generated videos, agreement with PySceneDetect's command line."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curation.config import SceneDetectionConfig
from curation.steps.scenes import detect_scenes
from lavie.synthetic import write_scene_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_scene_video(tmp_path_factory.mktemp("scenes") / "v.mp4", (45, 30, 60, 25), 960, 540, seed=7)


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cuts_are_exact(video, detector):
    detected = detect_scenes(str(video.path), SceneDetectionConfig(detector=detector))
    assert detected.scenes == video.scenes == [(0, 45), (45, 75), (75, 135), (135, 160)]
    assert (detected.decoded, detected.failures) == (160, 0)
    assert detected.span(45, 75) == pytest.approx((45 / 24, 75 / 24)) and detected.end_time == pytest.approx(160 / 24)


def test_scenes_shorter_than_min_scene_len_are_merged(tmp_path):
    short = write_scene_video(tmp_path / "s.mp4", (40, 8, 40), 640, 360, seed=3)
    scenes = detect_scenes(str(short.path), SceneDetectionConfig(min_scene_len=15)).scenes
    assert len(scenes) == 2 and scenes[0][0] == 0 and scenes[-1][1] == 88


def test_same_cut_list_as_the_scenedetect_command_line(video, tmp_path):
    cli = shutil.which("scenedetect", path=str(Path(sys.executable).parent))
    assert cli, "the scenedetect command ships with the scenedetect package"
    subprocess.run([cli, "-q", "-i", str(video.path), "-o", str(tmp_path), "detect-content", "list-scenes", "-f", "cuts.csv"],
                   check=True, capture_output=True)
    with open(tmp_path / "cuts.csv") as f:
        rows = list(csv.reader(f))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "Scene Number")
    cli_starts = [int(r[1]) - 1 for r in rows[header + 1 :] if r]  # the CLI numbers frames from 1
    ours = [start for start, _ in detect_scenes(str(video.path), SceneDetectionConfig()).scenes]
    assert len(cli_starts) == len(ours)
    assert all(abs(a - b) <= 1 for a, b in zip(cli_starts, ours))
