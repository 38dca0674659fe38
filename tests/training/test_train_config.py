"""The training config: strict schema, --set overrides, paths against a root, the packaged config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lavie.core.config import apply_override
from lavie.core.errors import UserError
from training.config import TrainConfig, load_train_config, packaged_config
from training.engine import LRLambda, deepspeed_config


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unknown_keys_fail_with_one_line_naming_them(make_config, tmp_path):
    config = make_config()
    config["deepspeed"]["zero_stag"] = 3
    with pytest.raises(UserError) as err:
        load_train_config(_write(tmp_path, config))
    assert "deepspeed.zero_stag: unknown key" in str(err.value) and "\n" not in str(err.value)
    config = make_config()
    config["data"]["sources"][0]["manifets"] = "x"
    with pytest.raises(UserError, match=r"data\.sources\.0\.manifets: unknown key"):
        load_train_config(config)
    with pytest.raises(UserError, match=r"deepspeed\.zero_stage: Input should be 1, 2 or 3"):
        load_train_config(make_config(deepspeed={"zero_stage": 4}))
    with pytest.raises(UserError, match=r"run: missing"):
        load_train_config({k: v for k, v in make_config().items() if k != "run"})
    with pytest.raises(UserError, match="offload_param needs zero_stage 3"):
        load_train_config(make_config(deepspeed={"offload_param": True}))
    with pytest.raises(UserError, match="trainable: .*neither all, temporal nor a valid regular expression"):
        load_train_config(make_config(trainable="attn_temp(["))


def test_set_overrides_apply_before_validation(make_config, tmp_path):
    path = _write(tmp_path, make_config())
    config = load_train_config(
        path,
        ["run.max_steps=5", "deepspeed.zero_stage=3", "data.sources.1.manifest=/elsewhere", "trainable=temporal",
         "ema.enabled=false"],
    )  # fmt: skip
    assert config.run.max_steps == 5 and config.deepspeed.zero_stage == 3 and not config.ema.enabled
    assert config.data.sources[1].manifest == "/elsewhere" and config.trainable == "temporal"
    with pytest.raises(UserError, match=r"run\.max_stepz: unknown key"):
        load_train_config(path, ["run.max_stepz=5"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_train_config(path, ["run.max_steps"])
    with pytest.raises(UserError, match="has no item 9"):
        apply_override({"data": {"sources": []}}, "data.sources.9.manifest=x")


def test_relative_paths_resolve_against_the_root(make_config, tmp_path):
    config = make_config(model={"pretrained": "tiny-sd"}, run={"name": "r", "max_steps": 1, "storage_path": "runs"})
    config["data"]["sources"][0]["manifest"] = "curated"
    config["data"]["sources"][1]["manifest"] = "s3://bucket/vimeo"
    loaded = load_train_config(config, root=tmp_path / "demo")
    assert loaded.model.pretrained == str(tmp_path / "demo" / "tiny-sd")
    assert loaded.data.sources[0].manifest == str(tmp_path / "demo" / "curated")
    assert loaded.data.sources[1].manifest == "s3://bucket/vimeo"
    assert loaded.run_uri() == str(tmp_path / "demo" / "runs" / "r")
    assert loaded.export_uri() == str(tmp_path / "demo" / "runs" / "r" / "export")


def test_packaged_tiny_cpu_config_loads(tmp_path):
    path = packaged_config("tiny-cpu")
    assert path is not None and packaged_config("tiny-cpu.yaml") == path
    config = load_train_config(path, root=tmp_path)
    assert config.scaling.num_workers == 2 and not config.scaling.use_gpu
    assert config.data.sources[0].manifest == str(tmp_path / "curated")
    assert config.model.pretrained == str(tmp_path / "tiny-sd")
    assert config.run_uri() == str(tmp_path / "runs" / "tiny-cpu")


def test_digest_ignores_what_a_resume_may_change(make_config):
    a = TrainConfig.model_validate(make_config())
    b = TrainConfig.model_validate(make_config(run={"max_steps": 99}, optimizer={"lr": 1.0}))
    c = TrainConfig.model_validate(make_config(deepspeed={"zero_stage": 3}))
    assert a.digest() == b.digest() != c.digest()


def test_deepspeed_config_follows_the_sections(make_config):
    config = TrainConfig.model_validate(
        make_config(deepspeed={"zero_stage": 3, "offload_optimizer": True, "offload_param": True, "bf16": True,
                               "grad_clip": 0.5, "grad_accum": 4, "config": {"zero_optimization": {"reduce_bucket_size": 7}}},
                    loader={"micro_batch_size": 2})
    )  # fmt: skip
    ds = deepspeed_config(config, on_gpu=True)
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["reduce_bucket_size"] == 7
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] and ds["gradient_clipping"] == 0.5
    assert ds["gradient_accumulation_steps"] == 4 and ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["train_batch_size"] == 2 * 4 * 2
    assert ds["optimizer"]["params"]["torch_adam"] is False  # fused / CPU-Adam on GPU machines
    cpu = deepspeed_config(config, on_gpu=False)
    assert cpu["optimizer"]["params"]["torch_adam"] is True and cpu["zero_force_ds_cpu_optimizer"] is False
    assert cpu["optimizer"]["params"]["fused"] is True and "fused" not in ds["optimizer"]["params"]


def test_lr_schedules():
    from training.config import LRScheduleSection

    warm = LRLambda(LRScheduleSection(kind="constant", warmup_steps=4), 100)
    assert [warm(n) for n in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = LRLambda(LRScheduleSection(kind="cosine", warmup_steps=0, min_ratio=0.1), 10)
    assert cosine(0) == pytest.approx(1.0) and cosine(5) == pytest.approx(0.55) and cosine(10) == pytest.approx(0.1)
    linear = LRLambda(LRScheduleSection(kind="linear"), 10)
    assert linear(5) == pytest.approx(0.5) and linear(20) == pytest.approx(0.0)


def test_model_kind_and_its_options_are_validated_on_load(make_config):
    config = load_train_config(make_config())
    assert config.model.kind == "base" and config.trainable is None  # the spec's default trainable set
    with pytest.raises(UserError, match=r"model\.kind: 'nope' is not a trainable network \(one of: base"):
        load_train_config(make_config(model={**make_config()["model"], "kind": "nope"}))
    with pytest.raises(UserError, match=r"model\.options: rank: unknown key"):
        load_train_config(make_config(model={**make_config()["model"], "options": {"rank": 4}}))
