"""LoRA personalisation on the spatial attention layers through peft."""

from __future__ import annotations

import pytest
import torch

from cascade.errors import ModelLoadError
from cascade.models import (
    BaseUNet3DModel,
    add_spatial_lora,
    load_spatial_lora,
    lora_parameters,
    save_spatial_lora,
)
from cascade.models.blocks import is_temporal_key


@pytest.fixture
def model(sd_folder, randomize_temporal) -> BaseUNet3DModel:
    model = BaseUNet3DModel.from_pretrained_2d(sd_folder).eval()
    randomize_temporal(model)
    return model


def _outputs(model, make_inputs) -> torch.Tensor:
    sample, timestep, context = make_inputs()
    with torch.no_grad():
        return model(sample, timestep, context).sample


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items() if "lora_" not in name}


def _train_adapter(model) -> None:
    with torch.no_grad():
        for param in lora_parameters(model):
            param.normal_(0.0, 0.3)


def test_adapters_only_on_spatial_attention_and_only_they_train(model, make_inputs):
    before = _outputs(model, make_inputs)
    add_spatial_lora(model, rank=2)
    names = [name for name, _ in model.named_parameters() if "lora_" in name]
    assert names and all((".attn1." in name or ".attn2." in name) for name in names)
    assert not any(is_temporal_key(name) for name in names)
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trainable == set(names)
    # a fresh adapter changes nothing (its up-projection starts at zero)
    torch.testing.assert_close(_outputs(model, make_inputs), before, atol=1e-6, rtol=0)


def test_save_load_unload_leave_base_weights_unchanged(model, sd_folder, randomize_temporal, make_inputs, tmp_path):
    base_weights = _base_weights(model)
    before = _outputs(model, make_inputs)
    add_spatial_lora(model, rank=2)
    _train_adapter(model)
    adapted = _outputs(model, make_inputs)
    assert not torch.allclose(adapted, before, atol=1e-3)
    saved = save_spatial_lora(model, tmp_path / "lora")
    assert saved.is_file()

    other = BaseUNet3DModel.from_pretrained_2d(sd_folder).eval()
    randomize_temporal(other)
    load_spatial_lora(other, tmp_path / "lora")
    torch.testing.assert_close(_outputs(other, make_inputs), adapted, atol=1e-6, rtol=0)

    for unloaded in (model, other):
        unloaded.unload_lora()
        assert not list(lora_parameters(unloaded))
        torch.testing.assert_close(_outputs(unloaded, make_inputs), before, atol=1e-6, rtol=0)
    for name, value in _base_weights(model).items():
        assert torch.equal(value, base_weights[name]), name


def test_load_errors(model, tmp_path):
    with pytest.raises(ModelLoadError, match=r"pytorch_lora_weights.safetensors: no such LoRA weights file$"):
        load_spatial_lora(model, tmp_path)
    from safetensors.torch import save_file

    bad = tmp_path / "temporal.safetensors"
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.to_q.lora_A.weight"
    save_file({key: torch.zeros(2, 16)}, bad)
    with pytest.raises(ModelLoadError, match="adapts temporal layer .*attn_temp.to_q.lora_A.weight; only spatial"):
        load_spatial_lora(model, bad)
