"""I3D: strict loading of the published key layout, (B, 400) features, TorchScript alike; the
lineage's batch-norm eps; one-line errors. (Equality with cd-fvd's I3D: test_cdfvd_reference.py.)"""

from __future__ import annotations

import pytest
import torch
from random_weights import random_i3d

from evaluation.i3d import NUM_CLASSES, InceptionI3d, load_i3d
from lavie.core.errors import UserError


@pytest.fixture(scope="module")
def videos() -> torch.Tensor:
    """Two 16-frame 224×224 inputs in [-1, 1] (the protocol's size: I3D's last pool is 7×7 there)."""
    return torch.rand(2, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def features(i3d_files, videos) -> torch.Tensor:
    return load_i3d(i3d_files["state_dict"]).features(videos)


def test_the_published_key_layout():
    state = InceptionI3d().state_dict()
    assert tuple(state["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(state["Mixed_3b.b1a.bn.running_mean"].shape) == (96,)
    assert tuple(state["Mixed_5c.b3b.conv3d.weight"].shape) == (128, 832, 1, 1, 1)
    assert tuple(state["logits.conv3d.weight"].shape) == (NUM_CLASSES, 1024, 1, 1, 1)
    assert tuple(state["logits.conv3d.bias"].shape) == (NUM_CLASSES,)
    assert tuple(state["Mixed_4b.b1b.conv3d.weight"].shape) == (208, 96, 3, 3, 3)
    assert "logits.bn.weight" not in state


def test_a_random_checkpoint_loads_strictly_with_every_tensor_in_place(i3d_files):
    model = load_i3d(i3d_files["state_dict"])
    assert model.format == "state_dict" and len(model.sha256) == 64
    expected = random_i3d().state_dict()
    loaded = model.module.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_features_are_b_by_400_and_the_same_on_every_call(i3d_files, videos, features):
    assert features.shape == (2, NUM_CLASSES) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])
    again = load_i3d(i3d_files["state_dict"]).features(videos)
    assert torch.equal(again, features)


def test_features_average_the_logits_over_time(i3d_files):
    """24 frames leave 3 time steps before the final pool (kernel 2, stride 1): T' = 2, and the
    feature is the mean of the 2 logit vectors."""
    model = load_i3d(i3d_files["state_dict"])
    x = torch.rand(1, 3, 24, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        per_step = model.module(x)
    assert per_step.shape == (1, NUM_CLASSES, 2)
    torch.testing.assert_close(model.features(x), per_step.mean(dim=2))


def test_a_torchscript_file_gives_the_same_features(i3d_files, videos, features):
    model = load_i3d(i3d_files["torchscript"])
    assert model.format == "torchscript"
    torch.testing.assert_close(model.features(videos), features, rtol=1e-4, atol=1e-4)


def test_a_torchscript_detector_with_stylegan_v_options_gets_raw_logits(tmp_path, videos, features):
    """StyleGAN-V's i3d_torchscript.pt takes rescale/resize/return_features: called with
    rescale=False, resize=False, return_features=True (logits of inputs already prepared)."""

    class Detector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = random_i3d()

        def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
            if rescale or resize or not return_features:
                return torch.zeros(x.shape[0], 1)  # the wrong call: a shape load_i3d refuses
            return self.net(x).mean(dim=2)

    torch.jit.save(torch.jit.script(Detector().eval()), str(tmp_path / "detector.pt"))
    torch.testing.assert_close(load_i3d(tmp_path / "detector.pt").features(videos), features, rtol=1e-4, atol=1e-4)


def test_missing_and_foreign_checkpoints_are_one_line_errors(tmp_path, i3d_files):
    state = torch.load(i3d_files["state_dict"], weights_only=True)
    cases = {}
    cases["missing"] = (tmp_path / "nope.pt", "I3D checkpoint not found")
    renamed = {k.replace("Mixed_4f", "Mixed_4z"): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    cases["renamed"] = (tmp_path / "renamed.pt", "key 'Mixed_4z.b0.conv3d.weight' does not fit (30 unexpected, 30 missing, "
                        "the first missing is 'Mixed_4f.b0.conv3d.weight')")  # fmt: skip
    torch.save({k: v for k, v in state.items() if k != "Mixed_5c.b3b.bn.running_var"}, tmp_path / "partial.pt")
    cases["partial"] = (tmp_path / "partial.pt", "missing key 'Mixed_5c.b3b.bn.running_var' (1 missing)")
    torch.save({**state, "logits.conv3d.bias": torch.zeros(600)}, tmp_path / "kinetics600.pt")
    cases["shape"] = (tmp_path / "kinetics600.pt", "'logits.conv3d.bias' has shape (600,), expected (400,)")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    cases["foreign"] = (tmp_path / "other.pt", "not an I3D checkpoint in the i3d_pretrained_400.pt (pytorch-i3d) layout: "
                        "key 'fc.weight' does not fit")  # fmt: skip
    videomae = {"patch_embed.proj.weight": torch.zeros(384, 3, 2, 14, 14), "blocks.0.norm1.weight": torch.zeros(384)}
    torch.save({"model": videomae}, tmp_path / "videomae.pth")
    cases["videomae"] = (tmp_path / "videomae.pth", "key 'patch_embed.proj.weight' does not fit (2 unexpected, 287 missing, "
                         "the first missing is 'Conv3d_1a_7x7.conv3d.weight'); the file is a VideoMAE-v2 ViT (give it as --videomae)")  # fmt: skip
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint")
    cases["garbage"] = (tmp_path / "garbage.pt", "cannot read weights")
    for path, message in cases.values():
        with pytest.raises(UserError) as caught:
            load_i3d(path)
        text = str(caught.value)
        assert text.startswith(str(path)) and message in text and "\n" not in text, text


def test_a_state_dict_computes_with_eps_1e5_and_records_its_lineage(i3d_files):
    model = load_i3d(i3d_files["state_dict"])
    norms = [m for m in model.module.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(norms) == 57 and {m.eps for m in norms} == {1e-5}
    assert (model.lineage, model.settings) == ("pytorch-i3d", {"bn_eps": 1e-5})
    described = model.describe()
    assert described["lineage"] == "pytorch-i3d" and described["bn_eps"] == 1e-5 and "cd-fvd" in described["computation"]


def test_the_tf_hub_eps_on_request_gives_other_features_and_another_identity(i3d_files, videos, features):
    tf = load_i3d(i3d_files["state_dict"], bn_eps=1e-3)
    assert {m.eps for m in tf.module.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-3}
    assert (tf.lineage, tf.settings) == ("tf-hub", {"bn_eps": 1e-3})
    assert tf.identity != load_i3d(i3d_files["state_dict"]).identity  # no shared work files or cache entries
    assert (tf.features(videos) - features).abs().max() > 1e-3
    assert load_i3d(i3d_files["state_dict"], bn_eps=1e-4).lineage == "custom-eps"


def test_a_torchscript_module_computes_as_itself_and_refuses_an_eps(i3d_files):
    model = load_i3d(i3d_files["torchscript"])
    assert (model.lineage, model.settings, model.describe()["format"]) == ("torchscript", {}, "torchscript")
    with pytest.raises(UserError) as caught:
        load_i3d(i3d_files["torchscript"], bn_eps=1e-3)
    assert str(caught.value).startswith(str(i3d_files["torchscript"])) and "computes as itself" in str(caught.value)
