"""Inputs read from and the manifest written to an S3 bucket served by moto on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.dataset as pads
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture()
def s3(s3_server):
    fs = s3_server.bucket("lavie-data")
    yield fs, s3_server.options()
    fs.rm("lavie-data", recursive=True)


def test_curate_from_bucket_to_bucket(ray_cluster, corpus, s3, s3_server):
    fs, options = s3
    for name in ("city.mp4", "small.mp4", "corrupt.mp4"):
        fs.put(str(corpus.folder / name), f"lavie-data/raw/{name}")
    fs.put(str(corpus.metadata), "lavie-data/raw/metadata.csv")
    cmd = [
        sys.executable, "-m", "lavie.cli", "curate", "s3://lavie-data/raw/", "--out", "s3://lavie-data/curated",
        "--metadata", "s3://lavie-data/raw/metadata.csv", "--address", ray_cluster, "--quiet",
        "--storage-option", f"endpoint_url={s3_server.endpoint}", "--storage-option", "key=testing",
        "--storage-option", "secret=testing",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    fs.invalidate_cache()
    assert fs.exists("lavie-data/curated/_SUCCESS")
    clips = pads.dataset("lavie-data/curated/clips", filesystem=fs, format="parquet").to_table().to_pylist()
    assert sorted((c["source_uri"], c["start_frame"], c["end_frame"]) for c in clips) == [
        ("s3://lavie-data/raw/city.mp4", 0, 40), ("s3://lavie-data/raw/city.mp4", 40, 64),
        ("s3://lavie-data/raw/city.mp4", 64, 114),
    ]
    rejects = pads.dataset("lavie-data/curated/rejects", filesystem=fs, format="parquet").to_table().to_pylist()
    reasons = sorted((r["source_uri"].removeprefix("s3://lavie-data/raw/"), r["stage"], r["reason"]) for r in rejects)
    assert reasons == sorted([
        ("city.mp4", "min_frames", "too_short"),
        ("corrupt.mp4", "probe", "unreadable"),
        ("missing.mp4", "input", "not_found"),
        ("small.mp4", "resolution", "too_small"),
        ("small.mp4", "resolution", "too_small"),
        ("sub/beach.mp4", "input", "not_found"),
        ("url.mp4", "input", "not_found"),
    ])
    run = json.loads(fs.cat("lavie-data/curated/run.json"))
    assert run["counts"]["clips_kept"] == 3
    assert "secret" not in json.dumps(run)  # storage options never land in run.json
