"""benchmarks/gpu_check.py: the dry run (every section at tiny sizes on the CPU, ZeRO-3 on the
session's Ray cluster) writes its JSON and table, and bad input fails in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
SECTIONS = ["i3d", "scorer", "train", "models", "sampling", "cascade", "cascade_offload", "zero3"]


def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=timeout)


def test_dry_run_measures_every_section_and_writes_json_and_markdown(ray_cluster, tmp_path):
    # A budget far over the dry run's, so that a loaded CI machine does not turn sections into time-outs;
    # two sections at a time (their processes mostly import), the cascade ones after the models one.
    result = run("--dry-run", "--out", str(tmp_path / "out"), "--ray-address", ray_cluster, "--budget", "600", "--jobs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["dry_run"] is True and list(report["sections"]) == SECTIONS
    failed = {name: s.get("reason") for name, s in report["sections"].items() if s["status"] != "ok"}
    assert not failed, failed
    figures = {name: s["figures"] for name, s in report["sections"].items()}
    assert figures["train"]["zero_stage"] == 2 and figures["train"]["model_tflop_per_step"] >= 0
    assert figures["zero3"]["zero_stage"] == 3 and figures["zero3"]["world_size"] == 2
    assert figures["i3d"]["videos_per_s"] > 0 and figures["scorer"]["clips_per_s"] > 0
    assert figures["cascade"]["offload"] is False and figures["cascade_offload"]["offload"] is True
    # 2 base frames become 5, then x4 in space: the whole cascade ran
    assert figures["cascade"]["output"] == "5x64x128" and set(figures["cascade"]["stage_seconds"]) >= {"base", "interpolation", "vsr"}
    table = (tmp_path / "out" / "gpu_check.md").read_text().splitlines()
    assert table[2] == "| section | status | seconds | figures |" and len(table) == 4 + len(SECTIONS)


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path):
    # the cascade sections need the models section's folder: without it they say so and the run goes on
    result = run("--dry-run", "--out", str(tmp_path), "--sections", "i3d,sampling", "--budget", "120")
    assert result.returncode == 0, result.stderr[-2000:]
    sections = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]
    assert sections["i3d"]["status"] == "ok"
    assert sections["sampling"] == {"title": sections["sampling"]["title"], "status": "skipped",
                                    "reason": "no cascade folder (models section not run)"}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sections", "i3d,warp"], "gpu_check: error: unknown section 'warp'"),
        (["--budget", "0"], "gpu_check: error: --budget must be positive"),
        (["--cascade-steps", "0"], "gpu_check: error: --cascade-steps must be at least 1"),
        (["--jobs", "0"], "gpu_check: error: --jobs must be 1, or more with --dry-run (got 0)"),
    ],
)
def test_bad_input_fails_in_one_line(tmp_path, argv, message):
    result = run("--dry-run", "--out", str(tmp_path), *argv, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    result = run("--dry-run", "--out", str(tmp_path / "file"), timeout=60)
    assert result.returncode == 2 and result.stderr == f"gpu_check: error: --out {tmp_path / 'file'}: exists and is not a folder\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    result = run("--out", str(tmp_path), timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no CUDA GPU" in result.stderr
    assert not (tmp_path / "gpu_check.json").exists()
