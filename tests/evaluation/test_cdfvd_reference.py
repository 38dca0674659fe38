"""`lavie eval fvd` against an independent implementation: cd-fvd (PyPI), Ge et al. 2024.

cd-fvd's own I3D (the pytorch-i3d code that VideoGPT and TATS also use) and VideoMAE-v2 ViT are
built with random weights, their state dicts saved, and `lavie eval fvd` run on two sets of
different frame sizes. The features the run wrote must equal cd-fvd's networks on the same
preprocessed input, the preprocessing must equal cd-fvd's on the cropped frames, and each FVD
must equal the Fréchet distance of cd-fvd's features computed with scipy's ``sqrtm``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.linalg
import torch
from cdfvd.third_party.i3d.utils import preprocess_i3d
from cdfvd.third_party.VideoMAEv2.utils import preprocess_videomae
from random_weights import calibrated_cdfvd_i3d, random_cdfvd_videomae

from evaluation.frechet import FeatureStats, frechet_distance
from evaluation.i3d import load_i3d
from evaluation.preprocess import GENERATED_CROP, centre_square, i3d_input, videomae_input
from evaluation.sets import open_set
from lavie.cli import main

CROPS = {"real": 1.0, "fake": GENERATED_CROP}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def decode16(path: str | Path) -> np.ndarray:
    """The first 16 frames, RGB uint8, by PyAV directly (not the platform's reader)."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(16), container.decode(video=0))]
    return np.stack(frames)


def scipy_frechet(real: np.ndarray, fake: np.ndarray) -> float:
    """FVD as the public code computes it (cd-fvd's ``compute_fvd_from_stats``: ``scipy.linalg.sqrtm``
    of the covariance product), with the unbiased covariance of this project's protocol (TATS's)."""
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """cd-fvd's networks' state dicts as files: the I3D as it saves one (with num_batches_tracked),
    the VideoMAE as VideoMAE-v2 releases wrap it (``{"model": state_dict}``)."""
    root = tmp_path_factory.mktemp("cdfvd")
    torch.save(calibrated_cdfvd_i3d().state_dict(), root / "i3d_pretrained_400.pt")
    torch.save({"model": random_cdfvd_videomae().state_dict()}, root / "vit_g_hybrid_pt_1200e_ssv2_ft.pth")
    return {"i3d": root / "i3d_pretrained_400.pt", "videomae": root / "vit_g_hybrid_pt_1200e_ssv2_ft.pth"}


@pytest.fixture(scope="module")
def run(ray_cluster, sized_sets, checkpoints, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fvd") / "out"
    code, stdout, stderr = run_cli(
        "eval", "fvd", str(sized_sets["real"]), str(sized_sets["fake"]), "--i3d", str(checkpoints["i3d"]),
        "--videomae", str(checkpoints["videomae"]), "--out", str(out), "--stats-cache", "none", "--actors", "1",
        "--batch-size", "3", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    return {"out": out, "stdout": stdout, "result": json.loads((out / "result.json").read_text())}


@pytest.fixture(scope="module")
def reference(sized_sets) -> dict:
    """Per set: the run's preprocessed inputs rebuilt in-process, and cd-fvd's features of them."""
    i3d, videomae = calibrated_cdfvd_i3d(), random_cdfvd_videomae()
    found: dict = {}
    with torch.no_grad():
        for name, folder in sized_sets.items():
            frames = [decode16(item.uri) for item in open_set(str(folder)).items]
            x_i3d = torch.stack([i3d_input(f, CROPS[name]) for f in frames])
            x_mae = torch.stack([videomae_input(f, CROPS[name]) for f in frames])
            found[name] = {"frames": frames, "i3d_input": x_i3d, "videomae_input": x_mae,
                           "i3d": i3d(x_i3d).numpy(), "videomae": videomae.forward_features(x_mae).numpy()}  # fmt: skip
    return found


def run_features(out: Path, folder: Path, dim: int) -> np.ndarray:
    """The features the run wrote for ``folder``'s videos (in set order), from the work folder
    of the network whose features have ``dim`` dimensions (I3D 400, the test's VideoMAE 384)."""
    keys = [item.key for item in open_set(str(folder)).items]
    for work in sorted((out / "work").glob("fvd-*")):
        name = "real" if "real" in folder.name else "fake"
        values = [np.load(work / name / f"{key}.npy") for key in keys]
        if values[0].shape == (dim,):
            return np.stack(values)
    raise AssertionError(f"no work folder with {dim}-d features under {out}")


def test_the_preprocessing_is_cd_fvds_on_the_cropped_frames(reference):
    """cd-fvd resizes whole frames to 224 (I3D: to [-1, 1]; VideoMAE: to [0, 1]); on the centre
    square this protocol cuts first, it must give this project's inputs (up to float rounding:
    cd-fvd scales VideoMAE's input before the resize, this project after it, 2e-6 apart)."""
    for name, entry in reference.items():
        height, width = entry["frames"][0].shape[1:3]
        top, left, side = centre_square(height, width, CROPS[name])
        assert side < min(height, width) or width > height  # the crop cuts something in each set
        cropped = np.stack([f[:, top : top + side, left : left + side] for f in entry["frames"]])
        torch.testing.assert_close(preprocess_i3d(cropped), entry["i3d_input"], rtol=0, atol=1e-5)
        torch.testing.assert_close(preprocess_videomae(cropped), entry["videomae_input"], rtol=0, atol=1e-5)


def assert_features_equal(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Equal to 1e-5, absolute or relative to the value: float32 sums in another order (another
    batch size in the actor) differ in the last bits, 1e-6 of the value."""
    assert np.abs(theirs).mean() > 0.1 and np.abs(theirs[0] - theirs[1]).mean() > 1e-2  # features carry signal
    print(f"{what}: max |difference| {np.abs(ours - theirs).max():.2e}, max |value| {np.abs(theirs).max():.3g}")
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_i3d_features_equal_cd_fvds_model_on_the_same_input(run, reference, sized_sets):
    for name, folder in sized_sets.items():
        assert_features_equal(run_features(run["out"], folder, 400), reference[name]["i3d"], f"I3D {name}")


def test_videomae_features_equal_cd_fvds_model_on_the_same_input(run, reference, sized_sets):
    for name, folder in sized_sets.items():
        assert_features_equal(run_features(run["out"], folder, 384), reference[name]["videomae"], f"VideoMAE {name}")


def test_each_fvd_equals_scipys_frechet_of_cd_fvds_features(run, reference):
    result = run["result"]
    for network in ("i3d", "videomae"):
        expected = scipy_frechet(reference["real"][network].astype(np.float64), reference["fake"][network].astype(np.float64))
        assert expected > 1e-3
        assert result["fvd"][network] == pytest.approx(expected, rel=1e-4), network
    assert result["value"] == result["fvd"]["i3d"] and result["features"] == "i3d"
    lines = run["stdout"].splitlines()
    assert lines[0] == f"lavie eval fvd: {result['fvd']['i3d']:.2f}"
    assert lines[1] == f"lavie eval fvd (videomae): {result['fvd']['videomae']:.2f}"


def test_the_result_and_report_record_the_lineage_and_both_numbers(run, checkpoints):
    result = run["result"]
    assert (result["i3d"]["lineage"], result["i3d"]["bn_eps"], result["i3d"]["format"]) == ("pytorch-i3d", 1e-5, "state_dict")
    assert "cd-fvd" in result["i3d"]["computation"] and result["protocol"]["i3d_bn_eps"] == "the checkpoint's lineage"
    assert (result["videomae"]["lineage"], result["videomae"]["width"], result["videomae"]["heads"]) == ("videomae-v2", 384, 6)
    assert result["videomae"]["input"].startswith("[0, 1]")
    networks = result["sets"]["fake"]["networks"]
    assert networks["i3d"]["computed"] == networks["videomae"]["computed"] == 4
    report = (run["out"] / "report.html").read_text()
    assert f"FVD (I3D): <b>{result['fvd']['i3d']:.2f}</b>" in report
    assert f"content-debiased FVD (VideoMAE-v2): <b>{result['fvd']['videomae']:.2f}</b>" in report
    assert 'id="model-i3d"' in report and 'id="model-videomae"' in report and "pytorch-i3d" in report


def test_the_tf_hub_eps_gives_another_fvd(run, reference, checkpoints):
    """The same weights with the TF original's eps 1e-3: the error the lineage rule prevents."""
    tf = load_i3d(checkpoints["i3d"], bn_eps=1e-3)
    with torch.no_grad():
        features = {name: tf.features(reference[name]["i3d_input"]).numpy() for name in reference}
    assert np.abs(features["real"] - reference["real"]["i3d"]).max() > 1e-2
    tf_fvd = frechet_distance(FeatureStats.of(features["real"]), FeatureStats.of(features["fake"]))
    ours = run["result"]["fvd"]["i3d"]
    print(f"FVD with eps 1e-5: {ours:.6g}, with eps 1e-3: {tf_fvd:.6g} ({abs(tf_fvd - ours) / ours:.1%} apart)")
    assert abs(tf_fvd - ours) / ours > 0.01


def test_videomae_only_is_not_set_beside_the_papers_i3d_numbers(ray_cluster, sized_sets, checkpoints, run, tmp_path):
    """Measured into a copy of the first run's work folder: the VideoMAE features are reused
    (same protocol, same network), nothing is computed again."""
    shutil.copytree(run["out"] / "work", tmp_path / "out" / "work")
    code, stdout, stderr = run_cli(
        "eval", "fvd", str(sized_sets["real"]), str(sized_sets["fake"]), "--i3d", str(checkpoints["i3d"]),
        "--videomae", str(checkpoints["videomae"]), "--features", "videomae", "--out", str(tmp_path / "out"),
        "--stats-cache", "none", "--actors", "1", "--batch-size", "4", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["features"] == "videomae" and list(result["fvd"]) == ["videomae"] and "i3d" not in result
    assert (result["sets"]["fake"]["computed"], result["sets"]["fake"]["reused"]) == (0, 4)
    assert result["value"] == pytest.approx(run["result"]["fvd"]["videomae"], rel=1e-6)
    assert stdout.splitlines()[0] == f"lavie eval fvd: {result['value']:.2f} (videomae)"
    report = (tmp_path / "out" / "report.html").read_text()
    assert "this run" not in report and "not comparable to the I3D FVDs of the paper" in report


# --- bad input: one line each ---------------------------------------------------------------


def assert_one_line(code: int, stderr: str, *parts: str) -> None:
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("lavie eval: error: "), stderr
    for part in parts:
        assert part in stderr, stderr


def test_checkpoints_given_as_the_other_network(sized_sets, checkpoints, tmp_path):
    sets = [str(sized_sets["real"]), str(sized_sets["fake"]), "--out", str(tmp_path / "out"), "--quiet"]
    code, _, err = run_cli("eval", "fvd", *sets, "--i3d", str(checkpoints["videomae"]))
    assert_one_line(code, err, f"{checkpoints['videomae']}: not an I3D checkpoint", "key 'patch_embed.proj.weight' does not fit",
                    "the file is a VideoMAE-v2 ViT (give it as --videomae)")  # fmt: skip
    code, _, err = run_cli("eval", "fvd", *sets, "--videomae", str(checkpoints["i3d"]))
    assert_one_line(code, err, f"{checkpoints['i3d']}: not a VideoMAE-v2 checkpoint", "key 'logits.conv3d.weight' does not fit",
                    "the file is an I3D in the pytorch-i3d layout (give it as --i3d)")  # fmt: skip
    state = torch.load(checkpoints["videomae"], weights_only=True)["model"]
    state["blocks.1.attn.k_bias"] = torch.zeros(384)
    torch.save(state, tmp_path / "extra.pth")
    code, _, err = run_cli("eval", "fvd", *sets, "--videomae", str(tmp_path / "extra.pth"))
    assert_one_line(code, err, "not a VideoMAE-v2 checkpoint: key 'blocks.1.attn.k_bias' does not fit (1 unexpected, 0 missing)")
    code, _, err = run_cli("eval", "fvd", *sets, "--features", "videomae", "--i3d", str(checkpoints["i3d"]))
    assert_one_line(code, err, "FVD features 'videomae' need a checkpoint (--videomae CHECKPOINT)")
    code, _, err = run_cli("eval", "fvd", *sets)
    assert_one_line(code, err, "FVD needs a feature network")
    code, _, err = run_cli("eval", "fvd", *sets, "--i3d", str(checkpoints["i3d"]), "--i3d-bn-eps", "0")
    assert_one_line(code, err, "--i3d-bn-eps: i3d_bn_eps")
    assert not (tmp_path / "out").exists()
