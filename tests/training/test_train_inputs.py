"""Bad input to `lavie train` fails with one line before Ray or any worker starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from lavie.cli import main as lavie
from lavie.cli import train as train_command
from lavie.synthetic import write_clip_manifest
from training.config import TrainConfig
from training.engine import select_trainable
from training.specs.base_model import BaseModelSpec


def inspect_model(config: TrainConfig):
    return BaseModelSpec(config).check()


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the command gets as far as starting (or joining) Ray."""

    def refuse(address, **kwargs):
        raise AssertionError("Ray was started although the input is bad")

    monkeypatch.setattr(train_command, "connect", refuse)


def _run(tmp_path: Path, config: dict, *args: str) -> tuple[int, str]:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return lavie(["train", str(path), "--quiet", *args]), str(path)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"not one line: {err!r}"
    assert err.startswith("lavie train: error: ")
    return err


def _sd_copy(train_data, tmp_path: Path) -> Path:
    sd = tmp_path / "sd"
    shutil.copytree(train_data["sd"], sd)
    return sd


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown_key", "run.max_stepz: unknown key"),
        ("missing_manifest", "data source 'vimeo': manifest {root}/nowhere: no such file or folder"),
        ("wrong_kind", "data source 'webvid': manifest {laion} is an image manifest but the source has kind 'video'"),
        ("no_rows", "data source 'vimeo': manifest {root}/empty has no rows"),
        ("all_zero_weights", "data sources: every video source (webvid, vimeo) has weight 0 at step 12"),
        ("not_sd_folder", "model.pretrained: {root}/sd lacks vae/"),
        ("unet_shape", "model.pretrained: {root}/sd/unet/diffusion_pytorch_model.safetensors: conv_in.weight has shape (16, 4, 3, 3) but the config needs (32, 4, 3, 3)"),
        ("text_shape", "model.pretrained: {root}/sd/text_encoder/model.safetensors: embeddings.token_embedding.weight has shape (575, 16) but the config needs (575, 32)"),
        ("cross_attention", "model: the UNet's cross_attention_dim is 32 but the text encoder's hidden_size is 24"),
        ("frame_size", "data: the training frames must be multiples of 8 per side (VAE x4, UNet x2), got 36x32"),
        ("trainable", "trainable: 'no_such_layer' matches no parameter of the UNet"),
    ],
)  # fmt: skip
def test_bad_input_fails_with_one_line_before_any_worker(case, expected, make_config, train_data, tmp_path, capsys, no_ray):
    config = make_config(storage=tmp_path / "runs")
    sources = config["data"]["sources"]
    if case == "unknown_key":
        config["run"]["max_stepz"] = 3
    elif case == "missing_manifest":
        sources[1]["manifest"] = str(tmp_path / "nowhere")
    elif case == "wrong_kind":
        sources[0]["manifest"] = str(train_data["laion"])
    elif case == "no_rows":
        sources[1]["manifest"] = str(write_clip_manifest(tmp_path / "empty", []))
    elif case == "all_zero_weights":
        sources[1]["schedule"] = [[0, 1.0], [12, 0.0]]
    elif case in ("not_sd_folder", "unet_shape", "text_shape", "cross_attention"):
        sd = _sd_copy(train_data, tmp_path)
        config["model"]["pretrained"] = str(sd)
        if case == "not_sd_folder":
            shutil.rmtree(sd / "vae")
        elif case == "unet_shape":
            weights = load_file(sd / "unet" / "diffusion_pytorch_model.safetensors")
            weights["conv_in.weight"] = torch.zeros(16, 4, 3, 3)
            save_file(weights, sd / "unet" / "diffusion_pytorch_model.safetensors")
        elif case == "text_shape":
            weights = load_file(sd / "text_encoder" / "model.safetensors")
            # A transformers-4-era key: the check maps it like transformers 5 does on load.
            del weights["embeddings.token_embedding.weight"]
            weights["text_model.embeddings.token_embedding.weight"] = torch.zeros(575, 16)
            save_file(weights, sd / "text_encoder" / "model.safetensors")
        else:  # a text encoder of another width: each folder consistent, the pair not
            from transformers import CLIPTextConfig, CLIPTextModel

            text_config = CLIPTextConfig.from_pretrained(sd / "text_encoder")
            text_config.hidden_size = 24
            shutil.rmtree(sd / "text_encoder")
            CLIPTextModel(text_config).save_pretrained(sd / "text_encoder")
    elif case == "frame_size":
        config["data"]["height"] = 36
    elif case == "trainable":
        config["trainable"] = "no_such_layer"
    capsys.readouterr()  # set-up output
    code, _ = _run(tmp_path, config)
    assert code == 2
    message = _error(capsys)
    assert expected.format(root=tmp_path, laion=train_data["laion"]) in message
    assert not (tmp_path / "runs").exists()


def test_resume_needs_a_run_and_a_new_run_needs_a_new_name(make_config, tmp_path, capsys, no_ray):
    config = make_config(storage=tmp_path / "runs")
    assert _run(tmp_path, config, "--resume")[0] == 2
    assert "--resume: run 'run' has no checkpoint in" in _error(capsys)
    (tmp_path / "runs" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "run" / "leftover").write_text("x")
    assert _run(tmp_path, config)[0] == 2
    message = _error(capsys)
    assert "run 'run' already exists in" in message and "pass --resume" in message


def test_unknown_packaged_config(capsys, no_ray):
    assert lavie(["train", "no-such-config"]) == 2
    assert "config no-such-config: no such file" in _error(capsys)


def test_inspect_model_counts_trainable_parameters(make_config):
    full = inspect_model(TrainConfig.model_validate(make_config()))
    temporal = inspect_model(TrainConfig.model_validate(make_config(trainable="temporal")))
    assert full.num_trainable == full.num_parameters
    assert 0 < temporal.num_trainable < full.num_parameters
    assert full.vae_downscale == 4 and full.unet_downscale == 2 and full.latent_channels == 4


def test_select_trainable_freezes_the_rest(train_data):
    from cascade.models import BaseUNet3DModel
    from cascade.models.blocks import is_temporal_key

    model = BaseUNet3DModel.from_pretrained_2d(train_data["sd"])
    names = select_trainable(model, "temporal")
    assert names and all(is_temporal_key(n) for n in names)
    assert all(p.requires_grad == is_temporal_key(n) for n, p in model.named_parameters())
    names = select_trainable(model, r"^up_blocks\.1\.")
    assert names and all(n.startswith("up_blocks.1.") for n in names)
    assert len(select_trainable(model, "all")) == len(list(model.parameters()))


def test_resume_refuses_a_changed_config(make_config, tmp_path, capsys, no_ray):
    config = make_config(storage=tmp_path / "runs")
    run = tmp_path / "runs" / "run"
    (run / "checkpoint_00000004").mkdir(parents=True)
    (run / "checkpoint_manager_snapshot.json").write_text(
        json.dumps({"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_00000004"}})
    )
    saved = TrainConfig.model_validate(make_config(storage=tmp_path / "runs", deepspeed={"zero_stage": 3}))
    (run / "checkpoint_00000004" / "trainer_state.json").write_text(
        json.dumps({"step": 4, "config_digest": saved.digest()})
    )
    assert _run(tmp_path, config, "--resume")[0] == 2
    assert "--resume: the config of run 'run' changed in what a resume must keep" in _error(capsys)
    assert _run(tmp_path, config)[0] == 2  # and without --resume the name is taken
    assert "already exists" in _error(capsys)


def test_a_run_stopped_while_ray_rewrote_its_snapshot_resumes_from_the_newest_complete_checkpoint(make_config, tmp_path):
    """`lavie jobs stop` can land while Ray rewrites checkpoint_manager_snapshot.json, which leaves
    it empty for good (Ray then refuses to restore the run): the run's state comes from the
    checkpoint folders instead, the newest one that every rank finished."""
    from training.launcher import run_state

    config = TrainConfig.model_validate(make_config(storage=tmp_path / "runs"))
    run = tmp_path / "runs" / "run"
    world = config.scaling.num_workers
    for step, ranks in ((4, world), (8, world), (12, world - 1)):  # step 12: a rank had not finished
        folder = run / f"checkpoint_{step:08d}"
        (folder / "data").mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "config_digest": config.digest()}))
        for rank in range(ranks):
            (folder / "data" / f"rank_{rank:05d}.json").write_text("{}")
    (run / "checkpoint_manager_snapshot.json").write_text("")
    state = run_state(config)
    assert (state.step, state.checkpoint) == (8, f"{run}/checkpoint_00000008")
    assert state.damaged_snapshot == f"{run}/checkpoint_manager_snapshot.json"
    (run / "checkpoint_manager_snapshot.json").write_text(
        json.dumps({"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_00000004"}})
    )
    assert (run_state(config).step, run_state(config).damaged_snapshot) == (4, None)  # a readable one decides


def test_export_only_needs_a_checkpoint(make_config, tmp_path, capsys, no_ray):
    config = make_config(storage=tmp_path / "runs")
    assert _run(tmp_path, config, "--export-only")[0] == 2
    assert "export: run 'run' has no checkpoint in" in _error(capsys)
    assert _run(tmp_path, config, "--export-only", "--checkpoint", str(tmp_path))[0] == 2
    assert f"--checkpoint {tmp_path}: not a training checkpoint (no trainer_state.json)" in _error(capsys)
    assert _run(tmp_path, config, "--checkpoint", str(tmp_path))[0] == 2
    assert "--checkpoint only goes with --export-only" in _error(capsys)


def test_model_unet_takes_a_cascade_3d_folder_only(make_config, train_data, tmp_path):
    from cascade.models import BaseUNet3DModel

    folder = tmp_path / "unet3d"
    model = BaseUNet3DModel.from_pretrained_2d(train_data["sd"])
    model.save_pretrained(folder)
    info = inspect_model(TrainConfig.model_validate(make_config(model={"pretrained": str(train_data["sd"]), "unet": str(folder)})))
    assert info.num_parameters == sum(p.numel() for p in model.parameters())
    with pytest.raises(Exception, match="holds a UNet2DConditionModel config, expected BaseUNet3DModel"):
        inspect_model(TrainConfig.model_validate(make_config(model={"pretrained": str(train_data["sd"]), "unet": str(train_data["sd"] / "unet")})))
