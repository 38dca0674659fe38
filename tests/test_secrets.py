"""Credentials given in a config or on the command line are used, and never written back out.

A key and secret are planted (the key in a train config, the secret on the command line, both on
`lavie curate`'s command line), curation and training run against the suite's S3 server through
the `lavie` command, and then every object written to the bucket, every file of the Ray session
(logs included), the Ray job, actor, task and Train run state, and the commands' own output are
searched for them. The runs must have used them: no credential is in the environment or a
credentials file, so the workers could not have read the bucket otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lavie.synthetic import write_scene_video, write_tiny_sd

pytestmark = pytest.mark.slow
KEY = "AKIAPLANTEDKEY7F3A9C"
SECRET = "planted-secret-9b1c-e2d4"
BUCKET = "secret-test"


def _lavie(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["RAY_TRAIN_ENABLE_STATE_TRACKING"] = "1"  # Ray keeps a Train run's state (the dashboard's) only then
    env["HOME"] = os.environ.get("HOME", "/root")  # no ~/.aws/credentials there: checked below
    return subprocess.run([sys.executable, "-m", "lavie.cli", *args], capture_output=True, text=True, timeout=600, env=env)


def _holds_secret(data: bytes) -> bool:
    return KEY.encode() in data or SECRET.encode() in data


def _files_with_secret(root: Path, since: float = 0.0) -> list[str]:
    """Files under ``root`` written at ``since`` or later that hold the key or the secret."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_mtime >= since and _holds_secret(path.read_bytes()):
                found.append(str(path))
        except OSError:  # sockets, files removed while walking
            continue
    return found


def _state_dumps() -> dict[str, str]:
    """What Ray shows of jobs, actors, tasks and Train runs, as text."""
    import ray
    from ray.train.v2._internal.state.state_actor import get_state_actor
    from ray.util.state import list_actors, list_jobs, list_tasks

    dumps: dict[str, Any] = {
        "jobs": list_jobs(detail=True, limit=10000),
        "actors": list_actors(detail=True, limit=10000),
        "tasks": list_tasks(detail=True, limit=10000),
    }
    state_actor = get_state_actor()
    runs = ray.get(state_actor.get_train_runs.remote()) if state_actor is not None else {}
    attempts = ray.get(state_actor.get_train_run_attempts.remote()) if state_actor is not None else {}
    dumps["train_runs"] = [run.model_dump(mode="json") for run in runs.values()]
    dumps["train_run_attempts"] = [a.model_dump(mode="json") for per_run in attempts.values() for a in per_run.values()]
    assert dumps["train_runs"], "no Train run recorded: the search below would prove nothing"
    return {name: json.dumps(value, default=str) for name, value in dumps.items()}


def test_planted_credentials_are_used_and_never_written_out(ray_cluster, s3_server, tmp_path):
    started = time.time() - 1
    assert not (Path(os.environ.get("HOME", "/root")) / ".aws" / "credentials").exists()
    fs = s3_server.bucket(BUCKET)
    for i, scenes in enumerate(((30, 36), (40, 24))):
        video = write_scene_video(tmp_path / "raw" / f"v{i}.mp4", scenes, 256, 144, seed=20 + i)
        fs.put(str(video.path), f"{BUCKET}/raw/v{i}.mp4")
    fs.pipe(f"{BUCKET}/raw/metadata.csv", b"video,caption\nv0.mp4,a red car on a long road\nv1.mp4,a dog runs across a field\n")
    endpoint = f"endpoint_url={s3_server.endpoint}"

    curated = _lavie(
        "curate", f"s3://{BUCKET}/raw/", "--metadata", f"s3://{BUCKET}/raw/metadata.csv", "--out", f"s3://{BUCKET}/curated",
        "--address", ray_cluster, "--quiet", "--min-height", "144", "--storage-option", endpoint, "--storage-option", f"key={KEY}",
        "--storage-option", f"secret={SECRET}",
    )  # fmt: skip
    assert curated.returncode == 0, curated.stderr
    assert json.loads(curated.stdout.strip().splitlines()[-1])["clips_kept"] == 4  # the workers read the bucket

    options = {"key": KEY, "client_kwargs": {"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"}}
    config = {
        "model": {"pretrained": str(write_tiny_sd(tmp_path / "tiny-sd"))},
        "data": {
            "num_frames": 4, "frame_stride": 2, "height": 32, "width": 32, "images_per_sample": 0, "storage_options": options,
            "sources": [{"name": "curated", "kind": "video", "manifest": f"s3://{BUCKET}/curated", "schedule": [[0, 1.0]]}],
        },
        "deepspeed": {"zero_stage": 2, "bf16": False},
        "scaling": {"num_workers": 1, "resources_per_worker": {"CPU": 1}},
        "run": {"name": "secret-run", "storage_path": f"s3://{BUCKET}/runs", "storage_options": options, "max_steps": 1,
                "checkpoint_every": 1, "log_every": 1, "max_failures": 0},
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    trained = _lavie(
        "train", str(path), "--address", ray_cluster, "--quiet",
        "--set", f"data.storage_options.secret={SECRET}", "--set", f"run.storage_options.secret={SECRET}",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    fs.invalidate_cache()
    assert fs.exists(f"{BUCKET}/runs/secret-run/export/raw/config.json")  # trained from and into the bucket

    # Positive control: the search finds the credential where the user put it.
    assert _files_with_secret(tmp_path) == [str(path)]
    leaks = [obj for obj in fs.find(BUCKET) if _holds_secret(fs.cat(obj))]
    assert leaks == [], f"objects holding a credential: {leaks}"
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    assert _files_with_secret(session, since=started) == []  # logs included
    for name, text in _state_dumps().items():
        assert KEY not in text and SECRET not in text, f"Ray's {name} state shows a credential"
    for result in (curated, trained):
        assert not _holds_secret((result.stdout + result.stderr).encode())
