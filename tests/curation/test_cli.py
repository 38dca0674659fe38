"""`lavie curate` from the command line: bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _curate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lavie.cli", "curate", *args], capture_output=True, text=True, timeout=120)


def _assert_one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lavie curate: error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture()
def video_dir(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"\0" * 10)
    return tmp_path


def test_metadata_with_wrong_column(video_dir):
    meta = video_dir / "meta.csv"
    meta.write_text("filename,caption\na.mp4,some words here\n")
    _assert_one_line_error(_curate(str(video_dir / "v"), "--out", str(video_dir / "o"), "--metadata", str(meta)),
                           "missing required column 'video'")


def test_bad_threshold_in_config(video_dir):
    config = video_dir / "c.yaml"
    config.write_text("scenes:\n  threshold: -1\n")
    _assert_one_line_error(_curate(str(video_dir / "v"), "--out", str(video_dir / "o"), "--config", str(config)),
                           "scenes.threshold: Input should be greater than 0 (got -1)")


def test_unknown_url_scheme(video_dir):
    _assert_one_line_error(_curate("gopher://host/videos", "--out", str(video_dir / "o")), "unknown URL scheme 'gopher://'")


def test_missing_metadata_and_config_files(video_dir):
    _assert_one_line_error(_curate(str(video_dir / "v"), "--out", str(video_dir / "o"), "--metadata", "nope.csv"),
                           "nope.csv: metadata file not found")
    _assert_one_line_error(_curate(str(video_dir / "v"), "--out", str(video_dir / "o"), "--config", "nope.yaml"),
                           "nope.yaml: config file not found")


def test_bad_storage_option(video_dir):
    _assert_one_line_error(_curate(str(video_dir / "v"), "--out", str(video_dir / "o"), "--storage-option", "novalue"),
                           "expected KEY=VALUE")


def test_out_folder_of_another_tool_is_refused(video_dir):
    (video_dir / "o" / "clips").mkdir(parents=True)
    _assert_one_line_error(_curate(str(video_dir / "v"), "--out", str(video_dir / "o")), "holds files of another tool")
