"""`lavie generate` and `lavie cascade assemble` end to end: files read back with PyAV, the
gallery in headless Chromium, bad input as one line, and the Ray batch mode with a resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lavie.cli import main
from tests.browser import open_page

TINY_FLAGS = ["--num-frames", "4", "--height", "32", "--width", "32", "--steps", "2", "--interp-steps", "2",
              "--vsr-steps", "2"]  # fmt: skip


def generate(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["generate", *args])
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1] if captured.out.strip() else None
    return code, json.loads(last) if last else None, captured.err


def read_back(path: Path) -> tuple[int, int, int, float]:
    """Frames, width, height and frame rate of a video file, as PyAV decodes it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(stream.average_rate)


@pytest.mark.parametrize(
    ("stages", "frames", "size", "fps"),
    [
        ("base", 4, 32, 8.0),
        ("base,interp", 13, 32, 24.0),
        ("base,vsr", 4, 128, 8.0),
        ("base,interp,vsr", 13, 128, 24.0),
    ],
)
def test_every_stage_combination_writes_the_right_video(cascade_folder, tmp_path, capsys, stages, frames, size, fps):
    code, out, _ = generate(capsys, "--models", str(cascade_folder), "--prompt", "a cat", "--stages", stages,
                            "--out", str(tmp_path), *TINY_FLAGS)  # fmt: skip
    assert code == 0 and out["generated"] == 1
    row = pq.read_table(out["manifest"]).to_pylist()[0]
    assert read_back(tmp_path / row["path"]) == (frames, size, size, fps)
    assert (row["num_frames"], row["width"], row["fps"]) == (frames, size, fps)
    for stage in ("base", "interpolation", "vsr"):
        assert (row[f"seconds_{stage}"] is not None) == (stage in stages.replace("interp", "interpolation").split(","))
    assert json.loads(row["settings"])["stages"] == stages.replace("interp", "interpolation").split(",")


def test_stages_after_the_base_take_an_input_video(cascade_folder, tmp_path, capsys):
    code, out, _ = generate(capsys, "--models", str(cascade_folder), "--prompt", "a cat", "--out", str(tmp_path / "a"),
                            *TINY_FLAGS)  # fmt: skip
    video = tmp_path / "a" / pq.read_table(out["manifest"]).to_pylist()[0]["path"]
    for stages, frames, size, fps in (("interp", 13, 32, 24.0), ("vsr", 4, 128, 8.0), ("interp,vsr", 13, 128, 24.0)):
        code, result, _ = generate(capsys, "--models", str(cascade_folder), "--prompt", "a cat", "--video", str(video),
                                   "--stages", stages, "--out", str(tmp_path / stages), *TINY_FLAGS)  # fmt: skip
        assert code == 0
        assert read_back(Path(result["video"])) == (frames, size, size, fps), stages


def test_text_to_image_writes_a_png_of_the_right_size(cascade_folder, tmp_path, capsys):
    code, out, _ = generate(capsys, "--models", str(cascade_folder), "--prompt", "a red car", "--mode", "image",
                            "--height", "32", "--width", "48", "--steps", "2", "--out", str(tmp_path))  # fmt: skip
    row = pq.read_table(out["manifest"]).to_pylist()[0]
    assert code == 0 and row["path"].endswith(".png")
    assert Image.open(tmp_path / row["path"]).size == (48, 32)


def test_long_mode_and_png_frames(cascade_folder, tmp_path, capsys):
    code, out, _ = generate(capsys, "--models", str(cascade_folder), "--prompt", "a wave", "--mode", "long",
                            "--segments", "3", "--stages", "base,interp", "--png", "--out", str(tmp_path), *TINY_FLAGS)  # fmt: skip
    row = pq.read_table(out["manifest"]).to_pylist()[0]
    key_frames = 4 + 2 * 3  # F + (N - 1)(F - 1)
    assert read_back(tmp_path / row["path"])[0] == 4 * (key_frames - 1) + 1
    assert len(list((tmp_path / "frames" / row["id"]).glob("*.png"))) == 37


def test_jsonl_prompts_carry_their_seeds_and_a_rerun_skips_finished_ones(cascade_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a cat", "seed": 3}\n{"prompt": "a cat", "seed": 4}\n')
    code, out, _ = generate(capsys, "--models", str(cascade_folder), "--prompts", str(prompts), "--out",
                            str(tmp_path / "run"), *TINY_FLAGS)  # fmt: skip
    rows = pq.read_table(out["manifest"]).to_pylist()
    assert [r["seed"] for r in rows] == [3, 4] and out["generated"] == 2
    code, again, _ = generate(capsys, "--models", str(cascade_folder), "--prompts", str(prompts), "--out",
                              str(tmp_path / "run"), *TINY_FLAGS)  # fmt: skip
    assert (again["generated"], again["skipped"]) == (0, 2)


BAD_INPUTS = [
    (["--models", "{tmp}/nowhere", "--prompt", "a cat"], r"/nowhere: no such cascade folder"),
    (["--models", "{base_only}", "--prompt", "a cat", "--stages", "base,interp"],
     r"this cascade has no interpolation model \(stages present: base\)"),
    (["--models", "{cascade}", "--prompt", "a cat", "--stages", "interp", "--video", "{tmp}/broken.mp4"],
     r"cannot read input video .*broken.mp4"),
    (["--models", "{cascade}", "--prompt", "a cat", "--stages", "vsr", "--video", "{tmp}/broken.mp4"],
     r"cannot read input video .*broken.mp4"),
    (["--models", "{cascade}", "--prompt", "a cat", "--height", "36", "--width", "32"], r"size 36x32 cannot be taken by this model"),
    (["--models", "{cascade}", "--prompts", "{tmp}/empty.txt"], r"empty.txt: the prompt file is empty"),
    (["--models", "{cascade}", "--prompt", "a cat", "--lora", "{tmp}/other-adapter"],
     r"adapter was made for another architecture"),
    (["--models", "{cascade}", "--prompt", "a cat", "--stages", "vsr,base"], r"stages must be distinct and in the order"),
    (["--models", "{cascade}", "--prompts", "{tmp}/bad.jsonl"], r"bad.jsonl:2: prompt: missing"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_input_is_one_line(cascade_folder, base_only_cascade, other_adapter, tmp_path, capsys, args, message):
    (tmp_path / "broken.mp4").write_text("not a video")
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a cat"}\n{"seed": 1}\n')
    shutil.copytree(other_adapter, tmp_path / "other-adapter")
    filled = [a.format(tmp=tmp_path, cascade=cascade_folder, base_only=base_only_cascade) for a in args]
    code, _, err = generate(capsys, *filled, "--out", str(tmp_path / "out"), "--num-frames", "2", "--steps", "1")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("lavie generate: error: ")
    assert re.search(message, lines[0]), lines[0]


@pytest.fixture(scope="module")
def other_adapter(cascade_parts, tmp_path_factory) -> Path:
    from cascade.models import BaseUNet3DModel, add_spatial_lora, save_spatial_lora

    config = json.loads((cascade_parts["base"] / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    other = BaseUNet3DModel.from_config({**config, "block_out_channels": [16, 32], "cross_attention_dim": 16})
    add_spatial_lora(other, rank=2)
    return save_spatial_lora(other, tmp_path_factory.mktemp("adapter") / "adapter").parent


def test_assemble_from_a_training_export_uses_its_ema_weights(cascade_parts, tmp_path, capsys):
    export = tmp_path / "export"
    for kind in ("raw", "ema"):
        shutil.copytree(cascade_parts["base"], export / kind)
    (export / "export_info.json").write_text(json.dumps({"step": 3, "ema": True, "prediction_type": "v_prediction"}))
    code = main(["cascade", "assemble", "--out", str(tmp_path / "c"), "--sd", str(cascade_parts["sd"]),
                 "--base", str(export)])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["stages"] == ["base"]
    index = json.loads((tmp_path / "c" / "model_index.json").read_text())
    assert index["models"]["base"] == str(export)
    assert (tmp_path / "c" / "base" / "config.json").samefile(export / "ema" / "config.json")
    scheduler = json.loads((tmp_path / "c" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"  # the objective the model trained with
    code = main(["cascade", "assemble", "--out", str(tmp_path / "d"), "--sd", str(cascade_parts["sd"]),
                 "--interpolation", str(export)])  # fmt: skip
    assert code == 2
    assert "holds a BaseUNet3DModel, but the interpolation stage needs a InterpolationUNet3DModel" in capsys.readouterr().err


GALLERY_JS = """
const videos = Array.from(document.querySelectorAll('video'));
return Promise.all(videos.map(v => v.readyState >= 2 ? v.readyState : new Promise(done => {
  v.addEventListener('loadeddata', () => done(v.readyState));
  v.addEventListener('error', () => done(-1));
}))).then(states => ({states, captions: Array.from(document.querySelectorAll('.prompt')).map(e => e.textContent),
                      images: Array.from(document.querySelectorAll('img')).map(i => i.naturalWidth)}));
"""


def test_gallery_plays_every_video_in_headless_chromium(cascade_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat on the road\na dog <b>at</b> night\n")
    code, out, _ = generate(capsys, "--models", str(cascade_folder), "--prompts", str(prompts), "--out",
                            str(tmp_path / "run"), *TINY_FLAGS)  # fmt: skip
    page = open_page(Path(out["gallery"]), tmp_path / "profile", GALLERY_JS)
    assert page.severe == []
    assert page.result["states"] == [4, 4] or all(state >= 2 for state in page.result["states"]), page.result
    assert page.result["captions"] == ["a cat on the road", "a dog <b>at</b> night"]


@pytest.mark.slow
def test_ray_batch_over_two_workers_resumes_after_an_interruption(cascade_folder, ray_cluster, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(6)))
    out = tmp_path / "batch"
    command = [sys.executable, "-m", "lavie.cli", "generate", "--models", str(cascade_folder), "--prompts", str(prompts),
               "--out", str(out), "--address", ray_cluster, "--workers", "2", *TINY_FLAGS, "--steps", "6"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list((out / "rows").glob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.json")}
    assert 2 <= len(finished) < 6, "the interruption came too late to test a resume"
    assert not (out / "manifest.parquet").exists()

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["generated"], summary["skipped"]) == (6 - len(finished), len(finished))
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["prompt"] for r in rows] == [f"prompt number {i}" for i in range(6)]
    assert all(r["status"] == "ok" and read_back(out / r["path"])[0] == 4 for r in rows)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.json") if p.name in finished} == finished
