"""Loading: diffusers folders, single-file SD checkpoints, the 3D folder format, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cascade.errors import ModelLoadError
from cascade.models import BaseUNet3DModel
from cascade.models.blocks import is_temporal_key

_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP_LEVEL_TO_LDM = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def to_ldm_checkpoint(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """Write a diffusers SD UNet state dict under original LDM names, as a single-file checkpoint has."""

    def rename(key: str) -> str:
        parts = key.split(".")
        for diffusers_name, ldm_name in _TOP_LEVEL_TO_LDM.items():
            if key.startswith(diffusers_name + "."):
                return ldm_name + key[len(diffusers_name) :]
        if parts[0] == "mid_block":
            index = {"resnets": 0, "attentions": 1}[parts[1]] + 2 * int(parts[2])
            prefix, rest = f"middle_block.{index}", parts[3:]
        elif parts[0] == "down_blocks":
            block = int(parts[1])
            if parts[2] == "downsamplers":
                return f"input_blocks.{(block + 1) * (layers_per_block + 1)}.0.op." + ".".join(parts[5:])
            layer = 1 + block * (layers_per_block + 1) + int(parts[3])
            prefix, rest = f"input_blocks.{layer}.{0 if parts[2] == 'resnets' else 1}", parts[4:]
        else:
            block = int(parts[1])
            if parts[2] == "upsamplers":
                # the upsampler follows the attention (index 2) in attention levels, else the resnet
                return f"output_blocks.{block * (layers_per_block + 1) + layers_per_block}.UPS.conv." + parts[-1]
            layer = block * (layers_per_block + 1) + int(parts[3])
            prefix, rest = f"output_blocks.{layer}.{0 if parts[2] == 'resnets' else 1}", parts[4:]
        if "resnets" in key:
            rest = [_RESNET_TO_LDM.get(rest[0], rest[0]), *rest[1:]]
        return ".".join([prefix, *rest])

    renamed = {rename(key): value for key, value in state.items()}
    resolved = {}
    for key, value in renamed.items():
        if ".UPS." in key:
            layer = key.split(".")[1]
            has_attention = any(k.startswith(f"output_blocks.{layer}.1.") and ".UPS." not in k for k in renamed)
            key = key.replace(".UPS.", ".2." if has_attention else ".1.")
        resolved["model.diffusion_model." + key] = value
    return resolved


def _outputs(model: torch.nn.Module, make_inputs) -> torch.Tensor:
    sample, timestep, context = make_inputs()
    with torch.no_grad():
        return model.eval()(sample, timestep, context).sample


def test_loading_info_lists_only_temporal_keys_as_missing(sd_folder, sd_2d):
    model, info = BaseUNet3DModel.from_pretrained_2d(sd_folder, output_loading_info=True)
    assert info.unexpected_keys == []
    assert info.missing_keys and all(is_temporal_key(key) for key in info.missing_keys)
    assert set(model.state_dict()) - set(info.missing_keys) == set(sd_2d.state_dict())


def test_pipeline_folder_with_unet_subfolder(sd_folder, make_inputs):
    # sd_folder is <pipeline>/unet: the pipeline root works too.
    from_root = BaseUNet3DModel.from_pretrained_2d(sd_folder.parent)
    from_unet = BaseUNet3DModel.from_pretrained_2d(sd_folder)
    torch.testing.assert_close(_outputs(from_root, make_inputs), _outputs(from_unet, make_inputs), atol=0, rtol=0)


def test_bin_weights_load_like_safetensors(sd_folder, sd_2d, tmp_path, make_inputs):
    folder = tmp_path / "unet_bin"
    sd_2d.save_pretrained(folder, safe_serialization=False)
    assert (folder / "diffusion_pytorch_model.bin").is_file()
    torch.testing.assert_close(
        _outputs(BaseUNet3DModel.from_pretrained_2d(folder), make_inputs),
        _outputs(BaseUNet3DModel.from_pretrained_2d(sd_folder), make_inputs),
        atol=0,
        rtol=0,
    )


def test_single_file_checkpoint_loads_like_the_folder(sd_folder, sd_2d, tmp_path, make_inputs):
    checkpoint = tmp_path / "sd-tiny.safetensors"
    state = to_ldm_checkpoint(sd_2d.state_dict(), layers_per_block=sd_2d.config.layers_per_block)
    state["cond_stage_model.transformer.dummy"] = torch.zeros(1)  # other components are ignored
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    config = json.loads((sd_folder / "config.json").read_text())
    from_file = BaseUNet3DModel.from_pretrained_2d(checkpoint, config=config)
    from_folder = BaseUNet3DModel.from_pretrained_2d(sd_folder)
    for key, value in from_folder.state_dict().items():
        if not is_temporal_key(key):
            assert torch.equal(from_file.state_dict()[key], value), key
    # also via a path to the config folder, and with the .ckpt (pickle) format
    ckpt = tmp_path / "sd-tiny.ckpt"
    torch.save({"state_dict": state}, ckpt)
    torch.testing.assert_close(
        _outputs(BaseUNet3DModel.from_pretrained_2d(ckpt, config=sd_folder), make_inputs),
        _outputs(from_folder, make_inputs),
        atol=0,
        rtol=0,
    )


def test_single_file_with_wrong_shapes_names_key_and_shapes(sd_2d, tmp_path):
    checkpoint = tmp_path / "sd-tiny.safetensors"
    state = to_ldm_checkpoint(sd_2d.state_dict(), layers_per_block=1)
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    other = {**dict(sd_2d.config), "block_out_channels": [8, 32]}
    with pytest.raises(
        ModelLoadError,
        match=r"sd-tiny.safetensors: conv_in.weight has shape \(16, 4, 3, 3\) "
        r"in the checkpoint but \(8, 4, 3, 3\) in the model \(and \d+ more mismatched keys\)$",
    ):
        BaseUNet3DModel.from_pretrained_2d(checkpoint, config=other)


def test_folder_with_wrong_shapes_names_key_and_shapes(sd_2d, tmp_path):
    folder = tmp_path / "unet"
    sd_2d.save_pretrained(folder)
    state = dict(sd_2d.state_dict())
    state["conv_out.bias"] = torch.zeros(5)
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    message = r"conv_out.bias has shape \(5,\) in the checkpoint but \(4,\) in the model$"
    with pytest.raises(ModelLoadError, match=message):
        BaseUNet3DModel.from_pretrained_2d(folder)


def test_unexpected_and_missing_keys_are_named(sd_2d, tmp_path, caplog):
    folder = tmp_path / "unet"
    sd_2d.save_pretrained(folder)
    state = dict(sd_2d.state_dict())
    del state["conv_out.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelLoadError, match=r"missing keys conv_out.bias; unexpected keys extra.weight$"):
        BaseUNet3DModel.from_pretrained_2d(folder)
    _, info = BaseUNet3DModel.from_pretrained_2d(folder, strict=False, output_loading_info=True)
    assert "conv_out.bias" in info.missing_keys and info.unexpected_keys == ["extra.weight"]


def _vae_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "vae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    return folder


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: tmp / "nowhere", r"nowhere: no such file or directory$"),
        (lambda tmp: tmp, r": no config.json, so not a diffusers UNet folder$"),
        (_vae_folder, r"holds a AutoencoderKL config, expected UNet2DConditionModel$"),
    ],
)
def test_not_a_unet_gives_one_line_error(tmp_path, make, match):
    with pytest.raises(ModelLoadError, match=match) as error:
        BaseUNet3DModel.from_pretrained_2d(make(tmp_path))
    assert "\n" not in str(error.value)


def test_missing_weights_and_foreign_files(sd_folder, tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    shutil.copy(sd_folder / "config.json", folder / "config.json")
    with pytest.raises(ModelLoadError, match=r"no diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin$"):
        BaseUNet3DModel.from_pretrained_2d(folder)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match=r"diffusion_pytorch_model.safetensors: cannot read weights"):
        BaseUNet3DModel.from_pretrained_2d(folder)
    text_encoder = tmp_path / "clip.safetensors"
    save_file({"text_model.embeddings.weight": torch.zeros(2, 2)}, text_encoder)
    with pytest.raises(ModelLoadError, match=r"not a Stable Diffusion checkpoint, no 'model.diffusion_model.\*' keys$"):
        BaseUNet3DModel.from_pretrained_2d(text_encoder)


def test_2d_and_3d_folders_are_not_confused(sd_folder, tmp_path):
    with pytest.raises(
        ModelLoadError,
        match="holds a UNet2DConditionModel config, expected BaseUNet3DModel; "
        "inflate it with from_pretrained_2d$",
    ):
        BaseUNet3DModel.from_pretrained(sd_folder)
    BaseUNet3DModel.from_pretrained_2d(sd_folder).save_pretrained(tmp_path / "3d")
    with pytest.raises(
        ModelLoadError,
        match="holds a BaseUNet3DModel config, expected UNet2DConditionModel; "
        "load it with BaseUNet3DModel.from_pretrained$",
    ):
        BaseUNet3DModel.from_pretrained_2d(tmp_path / "3d")


def test_unsupported_config_is_reported(sd_2d, tmp_path):
    folder = tmp_path / "unet"
    sd_2d.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["down_block_types"] = ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="down_block_types contains 'SimpleCrossAttnDownBlock2D'"):
        BaseUNet3DModel.from_pretrained_2d(folder)


def test_torch_dtype(sd_folder):
    model = BaseUNet3DModel.from_pretrained_2d(sd_folder, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_no_class_shares_a_name_with_a_diffusers_model():
    import diffusers

    from cascade.models import registry

    assert registry.MODEL_CLASSES  # the base model and its variants register themselves
    assert not set(registry.MODEL_CLASSES) & set(dir(diffusers))


def test_folders_saved_under_the_old_class_name_keep_loading(sd_folder, randomize_temporal, make_inputs, tmp_path):
    """Earlier versions wrote ``_class_name: UNet3DConditionModel`` (diffusers' name for another
    architecture) into every export; users have such folders."""
    model = BaseUNet3DModel.from_pretrained_2d(sd_folder).eval()
    randomize_temporal(model)
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    assert config["_class_name"] == "BaseUNet3DModel"
    config["_class_name"] = "UNet3DConditionModel"
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = BaseUNet3DModel.from_pretrained(tmp_path / "old").eval()
    sample, timestep, context = make_inputs()
    with torch.no_grad():
        assert torch.equal(loaded(sample, timestep, context).sample, model(sample, timestep, context).sample)
    with pytest.raises(ModelLoadError, match="holds a BaseUNet3DModel config, expected VSRUNet3DModel"):
        from cascade.models import VSRUNet3DModel

        VSRUNet3DModel.from_pretrained(tmp_path / "old")
