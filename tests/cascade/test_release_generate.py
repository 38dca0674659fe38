"""A tiny imported cascade runs `lavie generate` end to end: three checkpoints in the release's key
layout + tiny SD and x4-upscaler folders -> `lavie import-release cascade` -> every stage."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from lavie.cli import main
from lavie.synthetic import write_tiny_sd, write_tiny_upscaler
from lavie.synthetic.release_checkpoints import write_release_checkpoint

TINY_FLAGS = ["--num-frames", "4", "--height", "32", "--width", "32", "--steps", "2", "--interp-steps", "2",
              "--vsr-steps", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def imported_cascade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("release-cascade")
    sd = write_tiny_sd(root / "sd", seed=0)
    upscaler = write_tiny_upscaler(root / "upscaler", seed=1)
    checkpoints = {}
    for seed, (stage, folder) in enumerate({"base": sd, "interpolation": sd, "vsr": upscaler}.items()):
        config = json.loads((folder / "unet" / "config.json").read_text())
        checkpoints[stage] = root / f"lavie_{stage}.pt"
        write_release_checkpoint(checkpoints[stage], stage, config, seed=seed, std=0.05)
    out = root / "cascade"
    argv = ["import-release", "cascade", "--sd", str(sd), "--upscaler", str(upscaler), "--out", str(out)]
    for stage, checkpoint in checkpoints.items():
        argv += [f"--{stage}", str(checkpoint)]
    assert main(argv) == 0
    return out


def test_imported_cascade_holds_the_release_models_and_schedule(imported_cascade):
    index = json.loads((imported_cascade / "model_index.json").read_text())
    assert index["stages"] == ["base", "interpolation", "vsr"]
    scheduler = json.loads((imported_cascade / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["beta_schedule"], scheduler["beta_start"], scheduler["beta_end"]) == ("linear", 0.0001, 0.02)
    config = json.loads((imported_cascade / "vsr" / "config.json").read_text())
    assert (config["_class_name"], config["temporal_convs"]) == ("VSRUNet3DModel", "lavie_vsr")
    assert not list(imported_cascade.parent.glob(".*release-models*"))  # the staging folder is gone


def test_imported_cascade_runs_lavie_generate(imported_cascade, tmp_path, capsys):
    code = main(["generate", "--models", str(imported_cascade), "--prompt", "a cat", "--stages", "base,interp,vsr",
                 "--out", str(tmp_path), *TINY_FLAGS])  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["generated"] == 1
    row = pq.read_table(result["manifest"]).to_pylist()[0]
    with av.open(str(tmp_path / row["path"])) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert (len(frames), stream.width, stream.height) == (13, 128, 128)  # 4 -> 13 frames, x4
    assert max(float(frame.std()) for frame in frames) > 0  # the pipeline produced an image, not a constant
