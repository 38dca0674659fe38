"""`lavie eval fvd` and `lavie eval clipsim` on Ray (2 actors), checked against in-process
computations; resuming after an interruption; the report in headless Chromium; bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from browser import open_page

from evaluation.features import PoolOptions
from evaluation.frechet import FeatureStats, frechet_distance
from evaluation.fvd import compute_fvd
from evaluation.i3d import LINEAGES, load_i3d
from evaluation.preprocess import GENERATED_CROP, i3d_input
from lavie.cli import main


def decode(path: str | Path) -> np.ndarray:
    """Every frame of a video, RGB uint8, by PyAV directly (not the platform's reader)."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def in_process_features(i3d: Path, folder: Path, crop: float) -> np.ndarray:
    model = load_i3d(i3d)
    paths = sorted(folder.rglob("*.mp4"))
    return np.stack([model.features(i3d_input(decode(p)[:16], crop)[None])[0].numpy() for p in paths])


@pytest.fixture(scope="module")
def fvd_run(ray_cluster, video_sets, i3d_files, tmp_path_factory):
    """One `lavie eval fvd` run of the 4 fake videos against the 6 real ones on 2 actors."""
    root = tmp_path_factory.mktemp("fvd")
    argv = ["eval", "fvd", str(video_sets.real), str(video_sets.fake), "--i3d", str(i3d_files["state_dict"]),
            "--out", str(root / "out"), "--stats-cache", str(root / "cache"), "--actors", "2", "--batch-size", "2",
            "--quiet"]  # fmt: skip
    code, stdout, stderr = run_cli(*argv)
    assert code == 0, stderr
    return {"root": root, "argv": argv, "stdout": stdout, "out": root / "out"}


def test_fvd_equals_the_distance_of_features_computed_in_process(fvd_run, video_sets, i3d_files):
    result = json.loads((fvd_run["out"] / "result.json").read_text())
    real = in_process_features(i3d_files["state_dict"], video_sets.real, 1.0)
    fake = in_process_features(i3d_files["state_dict"], video_sets.fake, GENERATED_CROP)
    expected = frechet_distance(FeatureStats.of(real), FeatureStats.of(fake))
    assert expected > 1.0  # the sets differ, and the random network sees it
    assert result["value"] == pytest.approx(expected, rel=1e-4)
    assert fvd_run["stdout"].splitlines()[0] == f"lavie eval fvd: {result['value']:.2f}"


def test_the_result_records_every_choice(fvd_run, i3d_files):
    from lavie.core.weights import file_sha256

    result = json.loads((fvd_run["out"] / "result.json").read_text())
    protocol = result["protocol"]
    assert protocol["num_frames"] == 16 and protocol["fake_crop"] == GENERATED_CROP and protocol["real_crop"] == 1.0
    assert "bilinear" in protocol["fake_rule"] and protocol["frames"].startswith("the first 16 consecutive frames")
    assert result["i3d"] == {"path": str(i3d_files["state_dict"]), "sha256": file_sha256(i3d_files["state_dict"]),
                             "format": "state_dict", "lineage": "pytorch-i3d", "bn_eps": 1e-5,
                             "computation": LINEAGES["pytorch-i3d"], "input": "[-1, 1] (x / 127.5 - 1), (B, 3, T, 224, 224)",
                             "features": "I3D Kinetics-400 logits averaged over time (400-d)"}  # fmt: skip
    assert result["features"] == "i3d" and result["fvd"] == {"i3d": result["value"]}
    assert result["sets"]["real"]["used"] == 6 and result["sets"]["fake"]["used"] == 4
    assert result["sets"]["real"]["statistics"] == "computed" and result["sets"]["real"]["computed"] == 6
    assert {"torch", "numpy", "python"} <= result["versions"].keys()
    assert [row["value"] for row in result["paper"]["rows"] if row["method"] == "LaVie"] == [526.30]


def test_a_rerun_reuses_the_work_and_the_cached_real_statistics(fvd_run):
    first = json.loads((fvd_run["out"] / "result.json").read_text())
    assert list((fvd_run["root"] / "cache").glob("*.npz"))
    code, _, stderr = run_cli(*fvd_run["argv"])
    assert code == 0, stderr
    again = json.loads((fvd_run["out"] / "result.json").read_text())
    assert again["value"] == first["value"]
    assert again["sets"]["real"]["statistics"] == "cache"
    assert (again["sets"]["fake"]["computed"], again["sets"]["fake"]["reused"]) == (0, 4)


def test_the_tf_hub_eps_shares_no_work_files_or_cached_statistics(fvd_run, tmp_path):
    """The same checkpoint with --i3d-bn-eps 1e-3, into a copy of the first run's folder and the
    same statistics cache: every feature is computed again, and the FVD differs."""
    import shutil

    first = json.loads((fvd_run["out"] / "result.json").read_text())
    shutil.copytree(fvd_run["out"], tmp_path / "out")
    argv = [tmp_path / "out" if arg == str(fvd_run["out"]) else arg for arg in fvd_run["argv"]]
    code, _, stderr = run_cli(*map(str, argv), "--i3d-bn-eps", "1e-3")
    assert code == 0, stderr
    tf = json.loads((tmp_path / "out" / "result.json").read_text())
    assert (tf["i3d"]["lineage"], tf["i3d"]["bn_eps"], tf["protocol"]["i3d_bn_eps"]) == ("tf-hub", 1e-3, 1e-3)
    assert tf["sets"]["real"]["statistics"] == "computed" and tf["sets"]["real"]["computed"] == 6
    assert (tf["sets"]["fake"]["computed"], tf["sets"]["fake"]["reused"]) == (4, 0)
    assert tf["value"] != pytest.approx(first["value"], rel=1e-3)


def test_an_interrupted_run_resumes_where_it_stopped(fvd_run, video_sets, i3d_files, tmp_path):
    first = json.loads((fvd_run["out"] / "result.json").read_text())

    def stop_after_the_first_video(name: str, done: int, total: int) -> None:
        if name == "fake" and done >= 1:
            raise KeyboardInterrupt

    options = {"i3d": str(i3d_files["state_dict"]), "out": str(tmp_path / "out"), "stats_cache": str(fvd_run["root"] / "cache"),
               "pool": PoolOptions(batch_size=1, actors=2)}  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        compute_fvd(str(video_sets.real), str(video_sets.fake), on_progress=stop_after_the_first_video, **options)
    assert not (tmp_path / "out" / "result.json").exists()
    resumed = compute_fvd(str(video_sets.real), str(video_sets.fake), **options)
    fake = resumed["sets"]["fake"]
    assert fake["reused"] >= 1 and fake["computed"] + fake["reused"] == 4
    assert resumed["value"] == pytest.approx(first["value"], rel=1e-6)


@pytest.mark.browser
def test_the_report_shows_the_metric_beside_the_paper_and_a_sample_grid(fvd_run, tmp_path):
    script = """
    const rows = Array.from(document.querySelectorAll('#paper tr')).map(r => r.innerText);
    const images = Array.from(document.querySelectorAll('#samples img')).filter(i => i.complete && i.naturalWidth > 0);
    return {metric: document.getElementById('metric-value').innerText, rows: rows, images: images.length};
    """
    page = open_page(fvd_run["out"] / "report.html", tmp_path / "profile", script)
    result = json.loads((fvd_run["out"] / "result.json").read_text())
    assert page.severe == []
    assert page.title == f"lavie eval fvd: {result['value']:.2f}"
    assert page.result["metric"] == f"{result['value']:.2f}"
    assert any("LaVie" in row and "526.30" in row for row in page.result["rows"])
    assert any("this run" in row for row in page.result["rows"]) and len(page.result["rows"]) == 9
    assert page.result["images"] == 8 * 3  # 4 real and 4 fake videos, first, middle and last frames


def test_clipsim_equals_the_hand_computed_normalised_dot_product(ray_cluster, video_sets, clip_files, tmp_path):
    import open_clip

    captions = tmp_path / "captions.jsonl"
    texts = ["a red car", "a cat on the sea", "a city at night", "waves"]
    captions.write_text("".join(json.dumps({"video": f"sample{k}.mp4", "caption": t}) + "\n" for k, t in enumerate(texts)))
    code, stdout, stderr = run_cli(
        "eval", "clipsim", str(video_sets.fake), str(captions), "--clip-model", clip_files["clip_model"],
        "--clip-checkpoint", clip_files["clip_checkpoint"], "--out", str(tmp_path / "out"), "--actors", "2",
        "--batch-size", "1", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())

    from PIL import Image
    from safetensors.torch import load_file

    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=None, load_weights=False)
    model.load_state_dict(load_file(clip_files["clip_checkpoint"]), strict=False)
    model.eval()
    tokenizer = open_clip.get_tokenizer("tiny-clip")
    per_video = []
    with torch.no_grad():
        for k, text in enumerate(texts):
            frames = decode(video_sets.fake / f"sample{k}.mp4")
            image = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames])).numpy()
            caption = model.encode_text(tokenizer([text]))[0].numpy()
            cosines = (image @ caption) / (np.linalg.norm(image, axis=1) * np.linalg.norm(caption))
            per_video.append(cosines.mean())
    assert result["value"] == pytest.approx(float(np.mean(per_video)), abs=1e-5)
    assert -1 < result["value"] < 1  # a raw cosine, not × 100
    assert stdout.splitlines()[0] == f"lavie eval clipsim: {result['value']:.4f}"
    assert result["protocol"]["frames"] == "every frame of each video (or clip)"


# --- bad input: one line each ---------------------------------------------------------------


def assert_one_line(code: int, stderr: str, *parts: str) -> None:
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("lavie eval: error: "), stderr
    for part in parts:
        assert part in stderr, stderr


def test_missing_or_foreign_checkpoints(video_sets, clip_files, i3d_files, tmp_path):
    common = ["--out", str(tmp_path / "out"), "--quiet"]
    code, _, err = run_cli("eval", "fvd", str(video_sets.real), str(video_sets.fake), "--i3d", str(tmp_path / "none.pt"), *common)
    assert_one_line(code, err, f"{tmp_path / 'none.pt'}: I3D checkpoint not found")
    code, _, err = run_cli("eval", "fvd", str(video_sets.real), str(video_sets.fake), "--i3d", clip_files["clip_checkpoint"], *common)
    assert_one_line(code, err, "not an I3D checkpoint in the i3d_pretrained_400.pt (pytorch-i3d) layout: key", "does not fit")
    captions = tmp_path / "c.csv"
    captions.write_text("video,caption\n" + "".join(f"sample{k},x\n" for k in range(4)))
    code, _, err = run_cli("eval", "clipsim", str(video_sets.fake), str(captions), "--clip-model", clip_files["clip_model"],
                           "--clip-checkpoint", str(i3d_files["state_dict"]), *common)  # fmt: skip
    assert_one_line(code, err, "does not fit open_clip 'tiny-clip': missing key")
    assert not (tmp_path / "out").exists()


def test_fewer_than_two_videos(video_sets, i3d_files, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.mp4").write_bytes((video_sets.fake / "sample0.mp4").read_bytes())
    code, _, err = run_cli("eval", "fvd", str(video_sets.real), str(tmp_path / "one"), "--i3d", str(i3d_files["state_dict"]),
                           "--out", str(tmp_path / "out"), "--quiet")  # fmt: skip
    assert_one_line(code, err, f"{tmp_path / 'one'}: 1 video(s); FVD (fake set) needs at least 2")


def test_videos_shorter_than_16_frames(ray_cluster, video_sets, i3d_files, tmp_path):
    code, _, err = run_cli("eval", "fvd", str(video_sets.short), str(video_sets.fake), "--i3d", str(i3d_files["state_dict"]),
                           "--out", str(tmp_path / "out"), "--stats-cache", "none", "--quiet")  # fmt: skip
    assert_one_line(code, err, f"{video_sets.short}: 1 of 3 video(s) cannot be measured: {video_sets.short / 'short.mp4'}: 12 frames, FVD needs 16")


def test_captions_that_do_not_match_the_videos(video_sets, clip_files, tmp_path):
    captions = tmp_path / "c.csv"
    captions.write_text("video,caption\nsample0,a\nsample1,b\nsample2,c\nvideo7020,d\n")
    code, _, err = run_cli("eval", "clipsim", str(video_sets.fake), str(captions), "--clip-model", clip_files["clip_model"],
                           "--clip-checkpoint", clip_files["clip_checkpoint"], "--out", str(tmp_path / "out"), "--quiet")  # fmt: skip
    assert_one_line(code, err, f"{captions}: 'video7020' (row 4) matches no video of {video_sets.fake}")


def test_a_torchscript_file_that_is_not_an_i3d(ray_cluster, video_sets, tmp_path):
    class Pooling(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3, 4))

    torch.jit.save(torch.jit.script(Pooling()), str(tmp_path / "pooling.pt"))
    code, _, err = run_cli("eval", "fvd", str(video_sets.short), str(video_sets.fake), "--i3d", str(tmp_path / "pooling.pt"),
                           "--out", str(tmp_path / "out"), "--stats-cache", "none", "--quiet")  # fmt: skip
    assert_one_line(code, err, "cannot be measured", "pooling.pt: the network gives features of shape", "expected (B, 400)")
