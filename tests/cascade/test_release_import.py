"""`lavie import-release`: tiny checkpoints in the release's key layout (lavie.synthetic, written from
the documented layout) become cascade.models folders, strictly, and bad checkpoints are one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel

from cascade.errors import ModelLoadError
from cascade.models import BaseUNet3DModel, InterpolationUNet3DModel, VSRUNet3DModel
from cascade.models.release import import_release
from cascade.models.release.checkpoint import read_state_dict
from cascade.models.release.importer import build_empty, convert_state_dict, release_stage
from lavie.cli import main
from lavie.synthetic import TINY_UNET_CONFIG, TINY_UPSCALER_UNET_CONFIG
from lavie.synthetic.release_checkpoints import release_state_dict

# Two heads per attention (16 and 32 wide), so that rotary and relative bias have room to matter.
TINY_SD_CONFIG = {**TINY_UNET_CONFIG, "attention_head_dim": 2}
TINY_X4_CONFIG = {**TINY_UPSCALER_UNET_CONFIG, "attention_head_dim": 2, "num_class_embeds": 10}
UNET_2D_CONFIGS = {"base": TINY_SD_CONFIG, "interpolation": TINY_SD_CONFIG, "vsr": TINY_X4_CONFIG}
MODEL_CLASSES = {"base": BaseUNet3DModel, "interpolation": InterpolationUNet3DModel, "vsr": VSRUNet3DModel}
#: The release's architectures (DESIGN.md, "The release's architectures") as option values.
RELEASE_OPTIONS = {
    "base": {"group_norm_over_frames": True, "temporal_rope": True, "temporal_relative_bias": True,
             "temporal_attention": "before_ff", "sparse_causal_attention": False, "temporal_convs": "none"},
    "interpolation": {"group_norm_over_frames": True, "temporal_rope": False, "temporal_relative_bias": False,
                      "temporal_attention": "after_ff", "sparse_causal_attention": True, "temporal_convs": "none"},
    "vsr": {"group_norm_over_frames": True, "temporal_rope": True, "temporal_relative_bias": True,
            "temporal_attention": "before_ff", "sparse_causal_attention": False, "temporal_convs": "lavie_vsr"},
}  # fmt: skip
BLOCK = "down_blocks.0.attentions.0.transformer_blocks.0"  # tiny SD: attention in the first level
X4_BLOCK = "down_blocks.1.attentions.0.transformer_blocks.0"  # tiny x4: in the second
#: Release key -> this project's key, for one of each kind of renamed weight.
RENAMED = {
    "base": {
        f"{BLOCK}.attn_temp.to_out.0.weight": f"{BLOCK}.attn_temp.to_out.weight",
        f"{BLOCK}.attn_temp.time_rel_pos_bias.relative_attention_bias.weight": f"{BLOCK}.attn_temp.rel_pos_bias.weight",
        f"{BLOCK}.norm_temp.weight": f"{BLOCK}.norm_temp.weight",
    },
    "interpolation": {
        f"{BLOCK}.attn_temp.to_out.0.bias": f"{BLOCK}.attn_temp.to_out.bias",
        f"{BLOCK}.attn_temp.to_q.weight": f"{BLOCK}.attn_temp.to_q.weight",
    },
    "vsr": {
        f"{X4_BLOCK}.attn_temporal.to_k.weight": f"{X4_BLOCK}.attn_temp.to_k.weight",
        f"{X4_BLOCK}.attn_temporal.to_out.0.weight": f"{X4_BLOCK}.attn_temp.to_out.weight",
        f"{X4_BLOCK}.norm_temporal.bias": f"{X4_BLOCK}.norm_temp.bias",
        "down_blocks.1.attentions.0.resblock_temporal.conv1.weight":
            "down_blocks.1.attentions.0.temp_resnet.conv1.weight",
        "down_temporal_blocks.1.resblocks_3d_t.time_emb_proj.weight":
            "down_blocks.1.temp_module.temporal_resnet.time_emb_proj.weight",
        "mid_temporal_block.resblocks_3d_s.conv2.weight": "mid_block.temp_module.spatial_resnet.conv2.weight",
        "up_temporal_blocks.0.shift_conv.weight": "up_blocks.0.temp_module.shift_conv.weight",
    },
}  # fmt: skip


def _unet_config_file(folder: Path, stage: str) -> Path:
    path = folder / f"{stage}_unet_config.json"
    path.write_text(json.dumps({"_class_name": "UNet2DConditionModel", **UNET_2D_CONFIGS[stage]}))
    return path


def _write(path: Path, content: Any) -> Path:
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, dict[str, torch.Tensor]]]:
    """Per stage: checkpoint file, 2D config file, the state dict written."""
    folder = tmp_path_factory.mktemp("release")
    written = {}
    for seed, stage in enumerate(UNET_2D_CONFIGS):
        state = release_state_dict(stage, UNET_2D_CONFIGS[stage], seed=seed)
        written[stage] = (_write(folder / f"lavie_{stage}.pt", {"ema": state}), _unet_config_file(folder, stage), state)
    return written


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("imported")
    return {stage: import_release(stage, ckpt, config, folder / stage) for stage, (ckpt, config, _) in release.items()}


def _inputs(stage: str, frames: int = 3) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(7)
    inputs = {
        "sample": torch.randn(1, 4, frames, 8, 8, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 5, 32, generator=generator),
    }
    if stage == "interpolation":
        inputs["added_cond"] = torch.randn(1, 4, frames, 8, 8, generator=generator)
    if stage == "vsr":
        inputs["added_cond"] = torch.randn(1, 3, frames, 8, 8, generator=generator)
        inputs["class_labels"] = torch.tensor([5])
    return inputs


def _run(model: torch.nn.Module, stage: str) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**_inputs(stage)).sample


# ---------------------------------------------------------------------------- key layout
@pytest.mark.parametrize("stage", ["base", "interpolation", "vsr"])
def test_every_release_key_maps_to_its_place(stage, release, imported):
    _, _, state = release[stage]
    model = MODEL_CLASSES[stage].from_pretrained(imported[stage])
    config = json.loads((imported[stage] / "config.json").read_text())
    assert config["_class_name"] == MODEL_CLASSES[stage].__name__
    assert {name: config[name] for name in RELEASE_OPTIONS[stage]} == RELEASE_OPTIONS[stage]

    ours = model.state_dict()
    with torch.device("meta"):
        keys_2d = UNet2DConditionModel(**UNET_2D_CONFIGS[stage]).state_dict().keys()
    for key in keys_2d:  # diffusers names: unchanged
        assert torch.equal(ours[key], state[key]), key
    for release_key, key in RENAMED[stage].items():
        assert torch.equal(ours[key], state[release_key]), release_key
    # Every weight is used exactly once: the same tensors (fingerprinted) on both sides.
    weights = [tensor for key, tensor in state.items() if not key.endswith("rotary_emb.freqs")]
    fingerprint = sorted((t.numel(), round(t.double().sum().item(), 6)) for t in weights)
    assert fingerprint == sorted((t.numel(), round(t.double().sum().item(), 6)) for t in ours.values())


def test_interpolation_takes_eight_input_channels(imported):
    model = InterpolationUNet3DModel.from_pretrained(imported["interpolation"])
    assert model.config.in_channels == 8 and model.num_condition_channels == 4


def test_import_uses_the_mapped_tensors_without_copying(release):
    """The model's parameters are the checkpoint's (memory-mapped) tensors themselves."""
    checkpoint, config_file, _ = release["base"]
    spec = release_stage("base")
    state = read_state_dict(checkpoint)
    model = build_empty(spec, json.loads(config_file.read_text()), config_file)
    model.load_state_dict(convert_state_dict(spec, state, model, checkpoint), assign=True)
    key = f"{BLOCK}.attn_temp.to_out.0.weight"
    assert model.get_parameter(spec.our_key(key)).data_ptr() == state[key].data_ptr()
    assert model.get_parameter("conv_in.weight").data_ptr() == state["conv_in.weight"].data_ptr()


@pytest.mark.parametrize("wrap", [lambda sd: {"state_dict": sd}, lambda sd: sd], ids=["state_dict", "bare"])
def test_other_checkpoint_wrappings_import(wrap, release, imported, tmp_path):
    _, config, state = release["base"]
    checkpoint = _write(tmp_path / "ckpt.pt", wrap(state))
    out = import_release("base", checkpoint, config, tmp_path / "out")
    reference = BaseUNet3DModel.from_pretrained(imported["base"])
    assert torch.equal(_run(BaseUNet3DModel.from_pretrained(out), "base"), _run(reference, "base"))


# ---------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("stage", ["base", "interpolation", "vsr"])
def test_round_trip_import_save_load_gives_the_same_output(stage, release, imported, tmp_path):
    checkpoint, config_file, _ = release[stage]
    spec = release_stage(stage)
    in_memory = build_empty(spec, json.loads(config_file.read_text()), config_file)
    in_memory.load_state_dict(convert_state_dict(spec, read_state_dict(checkpoint), in_memory, checkpoint), assign=True)
    loaded = MODEL_CLASSES[stage].from_pretrained(imported[stage])
    loaded.save_pretrained(tmp_path / "again")
    reloaded = MODEL_CLASSES[stage].from_pretrained(tmp_path / "again")
    expected = _run(in_memory, stage)
    assert expected.isfinite().all() and expected.abs().sum() > 0
    assert torch.equal(_run(loaded, stage), expected)
    assert torch.equal(_run(reloaded, stage), expected)


# ---------------------------------------------------------------------------- bad checkpoints
def _edited(state: dict[str, torch.Tensor], **changes: Any) -> dict[str, torch.Tensor]:
    state = dict(state)
    for key in changes.pop("drop", ()):
        del state[key]
    state.update(changes.pop("put", {}))
    return state


BAD_CHECKPOINTS = {
    "pickled object": (
        "base", lambda s: {"ema": s, "args": argparse.Namespace(lr=1e-4)},
        "refused, it holds a pickled argparse.Namespace",
    ),
    "missing key": (
        "base", lambda s: {"ema": _edited(s, drop=[f"{BLOCK}.attn_temp.to_out.0.weight"])},
        f"missing key {BLOCK}.attn_temp.to_out.0.weight",
    ),
    "missing VSR key": (
        "vsr", lambda s: {"ema": _edited(s, drop=["mid_temporal_block.resblocks_3d_t.conv1.bias"])},
        "missing key mid_temporal_block.resblocks_3d_t.conv1.bias",
    ),
    "unexpected key": ("base", lambda s: {"ema": _edited(s, put={"pos_embed.weight": torch.ones(3)})},
                       "unexpected key pos_embed.weight"),
    "wrong shape": (
        "base",
        lambda s: {"ema": _edited(s, put={f"{BLOCK}.attn_temp.time_rel_pos_bias.relative_attention_bias.weight":
                                          torch.ones(16, 2)})},
        f"{BLOCK}.attn_temp.time_rel_pos_bias.relative_attention_bias.weight has shape (16, 2)",
    ),
    "wrong rotary frequencies": (
        "base", lambda s: {"ema": _edited(s, put={f"{BLOCK}.attn_temp.rotary_emb.freqs": torch.ones(4)})},
        "is not the rotary frequencies",
    ),
    "not a state dict": ("base", lambda s: [s], "holds a list, not a state dict"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_one_line(case, release, tmp_path):
    stage, make, expected = BAD_CHECKPOINTS[case]
    _, config, state = release[stage]
    checkpoint = _write(tmp_path / "bad.pt", make(state))
    with pytest.raises(ModelLoadError) as error:
        import_release(stage, checkpoint, config, tmp_path / "out")
    message = str(error.value)
    assert expected in message and "\n" not in message and str(checkpoint) in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("given", "as_stage", "expected"),
    [
        ("vsr", "base", "the release's vsr checkpoint"),
        ("base", "interpolation", "the release's base checkpoint"),
        ("interpolation", "base", "the release's interpolation checkpoint"),
    ],
)
def test_checkpoint_of_another_stage_is_one_line(given, as_stage, expected, release, tmp_path):
    checkpoint, _, _ = release[given]
    with pytest.raises(ModelLoadError, match=f"{expected} .*, not {as_stage}$"):
        import_release(as_stage, checkpoint, release[as_stage][1], tmp_path / "out")


def test_a_2d_unet_state_dict_is_not_a_release_checkpoint(tmp_path):
    checkpoint = _write(tmp_path / "sd.pt", UNet2DConditionModel(**TINY_SD_CONFIG).state_dict())
    with pytest.raises(ModelLoadError, match="not a LaVie release checkpoint .*no temporal attention keys"):
        import_release("base", checkpoint, _unet_config_file(tmp_path, "base"), tmp_path / "out")


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_an_archive_holding_code_is_refused(release, tmp_path):
    checkpoint = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), checkpoint)
    with pytest.raises(ModelLoadError, match="refused, it is an archive holding code"):
        import_release("base", checkpoint, release["base"][1], tmp_path / "out")


def test_a_file_that_is_not_a_checkpoint_is_one_line(release, tmp_path):
    checkpoint = tmp_path / "notes.pt"
    checkpoint.write_text("not a checkpoint\n")
    with pytest.raises(ModelLoadError, match="cannot read as a torch checkpoint"):
        import_release("base", checkpoint, release["base"][1], tmp_path / "out")


# ---------------------------------------------------------------------------- command line
def test_cli_imports_one_stage(release, tmp_path, capsys):
    checkpoint, config, _ = release["vsr"]
    out = tmp_path / "vsr"
    code = main(["import-release", "vsr", str(checkpoint), "--unet-config", str(config), "--out", str(out)])
    assert code == 0 and (tmp_path / "vsr" / "config.json").is_file()
    assert VSRUNet3DModel.from_pretrained(tmp_path / "vsr").architecture.temporal_convs == "lavie_vsr"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["base", "{vsr}", "--unet-config", "{config}"], "the release's vsr checkpoint"),
        (["base", "{base}"], "needs CHECKPOINT and --unet-config"),
        (["base", "{base}", "--unet-config", "{config}", "--sd", "x"], "--sd belongs to the other form"),
        (["cascade", "--base", "{base}"], "needs --sd"),
    ],
)
def test_cli_errors_are_one_line(arguments, expected, release, tmp_path, capsys):
    values = {"vsr": release["vsr"][0], "base": release["base"][0], "config": release["base"][1]}
    argv = ["import-release", *(arg.format(**values) for arg in arguments), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
