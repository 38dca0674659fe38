"""Job spec files: validated on load with one-line errors; the shipped examples are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lavie.core.errors import UserError
from ray_jobs.spec import load_spec
from training.config import load_train_config, packaged_config

EXAMPLES = Path(__file__).resolve().parents[2] / "ray_jobs" / "examples"


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid(example):
    spec = load_spec(example)
    assert spec.entrypoint_argv[:2] == ["lavie", spec.command]
    if spec.command == "train":  # and the packaged config they name loads
        config = load_train_config(packaged_config(spec.args[0]), root="/shared")
        assert config.scaling.num_workers >= 2


def test_spec_becomes_ray_submission_options(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "command": "train", "args": ["c.yaml", "--resume"], "job_id": "j1",
        "resources": {"num_cpus": 2, "num_gpus": 1, "memory_gb": 1.5, "custom": {"head": 0.01}},
        "runtime_env": {"working_dir": "/w", "pip": ["x==1"], "env_vars": {"A": "1"}},
    }))  # fmt: skip
    spec = load_spec(path)
    assert spec.entrypoint_argv == ["lavie", "train", "c.yaml", "--resume"]
    assert spec.submit_options() == {
        "submission_id": "j1",
        "runtime_env": {"working_dir": "/w", "pip": ["x==1"], "env_vars": {"A": "1"}},
        "entrypoint_num_cpus": 2,
        "entrypoint_num_gpus": 1,
        "entrypoint_memory": int(1.5 * 2**30),
        "entrypoint_resources": {"head": 0.01},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"command": "train", "argz": []}, "argz: unknown key"),
        ({"command": "jobs"}, "command: 'jobs' is not a command a job runs"),
        ({"command": "train", "resources": {"num_gpus": -1}}, "resources.num_gpus: Input should be greater than or equal to 0"),
        ({"command": "curate", "runtime_env": {"env_vars": {"AWS_SECRET_ACCESS_KEY": "x"}}},
         "runtime_env.env_vars: AWS_SECRET_ACCESS_KEY is a credential"),
        ({"command": "curate", "args": ["s3://b", "--storage-option", "secret=abc"]}, "'secret=***' gives a credential"),
    ],
)
def test_bad_specs_are_one_line(tmp_path, spec, message):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError) as caught:
        load_spec(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "abc" not in str(caught.value)  # a refused credential is not echoed either


def test_credentials_on_the_submit_command_line_are_refused_before_any_cluster_is_asked(capsys):
    from lavie.cli import main

    args = ["jobs", "--address", "http://127.0.0.1:9", "submit", "--env", "AWS_SECRET_ACCESS_KEY=abc", "curate", "x"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "AWS_SECRET_ACCESS_KEY is a credential" in err and "abc" not in err
    assert main(["jobs", "--address", "http://127.0.0.1:9", "submit", "curate", "x", "--storage-option", "key=abc"]) == 2
    err = capsys.readouterr().err
    assert "'key=***' gives a credential" in err and "abc" not in err


def test_a_bad_env_item_is_named(capsys):
    from lavie.cli import main

    args = ["jobs", "--address", "http://127.0.0.1:9", "submit", "--env", "A=1", "--env", "BROKEN", "curate", "x"]
    assert main(args) == 2
    assert "--env 'BROKEN': expected KEY=VALUE" in capsys.readouterr().err  # the item at fault, not the first
