"""`lavie eval ucf101` and `lavie eval msrvtt` end to end: a tiny random cascade generates on 2 Ray
workers, random I3D / CLIP weights measure on 2 actors, and an interrupted run resumes."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import pytest

from cascade.models import BaseUNet3DModel
from cascade.pipelines import assemble_cascade
from evaluation.generation import GenerationOptions
from evaluation.msrvtt import measure_msrvtt
from evaluation.ucf101 import Ucf101Protocol, class_prompt, measure_ucf101
from lavie.cli import main
from lavie.synthetic import write_tiny_sd

# 16 frames as the protocol, at 32×64 (8×16 latents of the tiny 4× VAE), 2 steps: seconds per video.
TINY = ["--height", "32", "--width", "64", "--steps", "2", "--workers", "2", "--actors", "2", "--batch-size", "1", "--quiet"]
TINY_OPTIONS = GenerationOptions(height=32, width=64, steps=2, workers=2)


@pytest.fixture(scope="module")
def cascade(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cascade")
    sd = write_tiny_sd(root / "sd", seed=0)
    BaseUNet3DModel.from_pretrained_2d(sd / "unet").save_pretrained(root / "base")
    return assemble_cascade(root / "cascade", sd=sd, base=root / "base")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def interrupt_at(stage: str):
    def stop(name: str, done: int, total: int) -> None:
        if name == stage and done >= 1:
            raise KeyboardInterrupt

    return stop


def test_class_names_become_prompts():
    assert class_prompt("ApplyEyeMakeup") == "apply eye makeup"
    assert class_prompt("YoYo") == "yo yo"
    assert class_prompt("PlayingDaf") == "playing daf"


def test_ucf101_generates_per_class_and_resumes_after_an_interruption(ray_cluster, cascade, video_sets, i3d_files, tmp_path):
    out = tmp_path / "ucf"
    with pytest.raises(KeyboardInterrupt):
        measure_ucf101(str(video_sets.real), str(cascade), i3d=str(i3d_files["state_dict"]), out=str(out), stats_cache=None,
                   protocol=Ucf101Protocol(per_class=2), generation=TINY_OPTIONS, on_progress=interrupt_at("generate"))  # fmt: skip
    assert not (out / "result.json").exists()
    code, stdout, stderr = run_cli(
        "eval", "ucf101", "--real", str(video_sets.real), "--models", str(cascade), "--per-class", "2",
        "--i3d", str(i3d_files["state_dict"]), "--out", str(out), "--stats-cache", "none", *TINY,
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    benchmark = result["benchmark"]
    assert (benchmark["classes"], benchmark["per_class"]) == (2, 2)
    generation = benchmark["generation"]
    assert generation["reused"] >= 1 and generation["generated"] + generation["reused"] == 4
    assert generation["settings"]["stages"] == ["base"] and generation["settings"]["num_frames"] == 16
    fake = result["sets"]["fake"]
    assert (fake["layout"], fake["used"], result["sets"]["real"]["used"]) == ("generated", 4, 6)
    assert result["value"] > 0
    assert stdout.splitlines()[0] == f"lavie eval fvd: {result['value']:.2f}"
    prompts = sorted(row["prompt"] for row in _generated_rows(out))
    assert prompts == ["apply eye makeup"] * 2 + ["yo yo"] * 2
    assert 'id="benchmark"' in (out / "report.html").read_text()


def _generated_rows(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / "generated" / "rows").glob("*.json")]


def test_msrvtt_draws_one_caption_per_test_video_and_resumes(ray_cluster, cascade, clip_files, tmp_path):
    annotations = {
        "videos": [{"video_id": f"video{k}", "split": "train" if k == 9 else "test"} for k in (7000, 7001, 7002, 9)],
        "sentences": [{"video_id": f"video{k}", "caption": f"caption {j} of video {k}"} for k in (7000, 7001, 7002, 9) for j in range(3)],
    }  # fmt: skip
    captions = tmp_path / "test_videodatainfo.json"
    captions.write_text(json.dumps(annotations))
    out = tmp_path / "msrvtt"
    with pytest.raises(KeyboardInterrupt):
        measure_msrvtt(str(captions), str(cascade), out=str(out), generation=TINY_OPTIONS, on_progress=interrupt_at("clipsim"),
                   **clip_files)  # fmt: skip
    code, stdout, stderr = run_cli(
        "eval", "msrvtt", "--captions", str(captions), "--models", str(cascade), "--clip-model", clip_files["clip_model"],
        "--clip-checkpoint", clip_files["clip_checkpoint"], "--out", str(out), *TINY,
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    drawn = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert [d["video"] for d in drawn] == ["video7000", "video7001", "video7002"]  # the train video is left out
    for d in drawn:
        assert d["caption"] == random.Random(f"0:{d['video']}").choice([f"caption {j} of video {d['video'][5:]}" for j in range(3)])
    assert result["benchmark"]["videos"] == 3 and result["benchmark"]["generation"]["reused"] == 3
    videos = result["sets"]["videos"]
    assert videos["reused"] >= 1 and videos["computed"] + videos["reused"] == 3
    assert -1 < result["value"] < 1
    assert stdout.splitlines()[0] == f"lavie eval clipsim: {result['value']:.4f}"


def test_bad_benchmark_inputs_fail_in_one_line_before_any_generation(cascade, video_sets, i3d_files, clip_files, tmp_path):
    out = ["--out", str(tmp_path / "out"), "--quiet"]
    code, _, err = run_cli("eval", "ucf101", "--real", str(video_sets.real), "--models", str(tmp_path),
                           "--i3d", str(i3d_files["state_dict"]), *out)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and str(tmp_path) in err, err
    code, _, err = run_cli("eval", "ucf101", "--real", str(video_sets.real), "--models", str(cascade),
                           "--i3d", str(tmp_path / "i3d.pt"), *out)  # fmt: skip
    assert code == 2 and err == f"lavie eval: error: {tmp_path / 'i3d.pt'}: I3D checkpoint not found\n"
    code, _, err = run_cli("eval", "ucf101", "--real", str(video_sets.real), "--models", str(cascade), "--classes", "Surfing",
                           "--i3d", str(i3d_files["state_dict"]), *out)  # fmt: skip
    assert code == 2 and "no video of class 'Surfing'" in err and err.count("\n") == 1, err
    captions = tmp_path / "captions.csv"
    captions.write_text("video,caption\nvideo1,a cat\n")
    code, _, err = run_cli("eval", "msrvtt", "--captions", str(captions), "--models", str(cascade), "--clip-model",
                           clip_files["clip_model"], "--clip-checkpoint", str(i3d_files["state_dict"]), *out)  # fmt: skip
    assert code == 2 and "does not fit open_clip 'tiny-clip'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "generated").exists()
