"""`lavie jobs` against a real two-node Ray cluster on 127.0.0.1 with token authentication: a head
plus a second node joined with `ray start --address`, each with every port of its own."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lavie.synthetic import clip_row, write_clip_manifest, write_pattern_video, write_scene_video, write_tiny_sd
from training.config import load_train_config
from training.launcher import run_state

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Every port a node opens, chosen free: the test session's own Ray holds the default ones."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "node-manager-port", "object-manager-port")  # fmt: skip
    return [f"--{name}={_free_port()}" for name in names]


def _outside_env() -> dict[str, str]:
    """This process's environment without the address or auth settings of the session's own Ray."""
    drop = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    return {k: v for k, v in os.environ.items() if k not in drop}


@dataclass
class Cluster:
    address: str  # the job server
    token_env: dict[str, str]  # what a client with the token has in its environment
    gcs: str  # the head's GCS address, which a driver joins with --address


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node, each with one CPU, under a token of their own."""
    root = tmp_path_factory.mktemp("cluster")
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    gcs, dashboard, client = _free_port(), _free_port(), _free_port()
    # RAY_ADDRESS: Ray's own helpers (Ray Train's placement-group cleaner among them) otherwise
    # find "the" cluster through /tmp/ray/ray_current_cluster, which names the suite's own Ray.
    env = {**_outside_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token), "RAY_ADDRESS": f"127.0.0.1:{gcs}"}  # fmt: skip
    logs = [open(root / "head.log", "w"), open(root / "node.log", "w")]
    # A temp dir of its own: a job's driver finds its cluster through the temp dir's
    # ray_current_cluster file, which the suite's own Ray writes too.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--temp-dir={temp_dir}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}", *_node_ports(),
         "--num-cpus=1", "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # 401: up, and asking for the token
            break
        except OSError:
            assert head.poll() is None and time.monotonic() < deadline, "Ray head did not start"
            time.sleep(0.5)
    node = subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", f"--address=127.0.0.1:{gcs}", *_node_ports(), "--num-cpus=1",
         "--disable-usage-stats"],
        env=env, stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    nodes = 0
    while nodes < 2:
        assert node.poll() is None and time.monotonic() < deadline + 60, "the second node did not join"
        time.sleep(1.0)
        nodes = _alive_nodes(address, token.read_text())
    yield Cluster(address, {"RAY_AUTH_TOKEN_PATH": str(token)}, f"127.0.0.1:{gcs}")
    for process in (node, head):  # each `ray start` leads a process group with its node's processes
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    for log in logs:
        log.close()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _alive_nodes(address: str, token: str) -> int:
    """Alive nodes, from the head's state API (which asks for the token too)."""
    request = urllib.request.Request(f"{address}/api/v0/nodes?limit=100", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            nodes = json.loads(response.read())["data"]["result"]["result"]
    except (OSError, KeyError, ValueError):
        return 0
    return sum(node.get("state") == "ALIVE" for node in nodes)


def _jobs(cluster: Cluster, *args: str, timeout: int = 300, with_token: bool = True, home: Path | None = None):
    env = {**_outside_env(), **(cluster.token_env if with_token else {})}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([str(BIN / "lavie"), "jobs", "--address", cluster.address, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip


def _one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


# --------------------------------------------------------------------------- curation
def test_curation_job_runs_on_the_cluster_and_is_followed(cluster, tmp_path):
    write_scene_video(tmp_path / "in" / "v.mp4", (30, 30), 1280, 720, seed=11)
    (tmp_path / "meta.csv").write_text("video,caption\nv.mp4,a long enough caption for the clip\n")
    out = tmp_path / "out"
    submitted = _jobs(cluster, "submit", "--job-id", "curate-test", "--wait", "curate", str(tmp_path / "in"),
                      "--metadata", str(tmp_path / "meta.csv"), "--out", str(out), "--quiet")  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert submitted.stdout.splitlines()[0] == "curate-test"
    assert '"clips_kept": 2' in submitted.stdout  # the job's own output, streamed back
    assert (out / "_SUCCESS").exists()
    assert _jobs(cluster, "status", "curate-test").stdout.startswith("curate-test\tSUCCEEDED")
    assert '"clips_kept": 2' in _jobs(cluster, "logs", "curate-test").stdout
    assert "curate-test\tSUCCEEDED\tlavie curate" in _jobs(cluster, "list").stdout
    assert _jobs(cluster, "stop", "curate-test").stdout.strip() == "curate-test\talready ended"


def test_a_failing_job_exits_non_zero(cluster, tmp_path):
    failed = _jobs(cluster, "submit", "--wait", "curate", "nosuch://x", "--out", str(tmp_path / "o"))
    assert failed.returncode == 1
    assert "unknown URL scheme 'nosuch://'" in failed.stdout and "FAILED" in failed.stderr


# --------------------------------------------------------------------------- training
FIRST_RUN_STEPS = 1000  # stopped long before the end; the resumed run is given a near end


@pytest.fixture(scope="module")
def train_spec(tmp_path_factory) -> dict:
    """A 2-worker tiny training run, one worker per node (STRICT_SPREAD), as a job spec file."""
    root = tmp_path_factory.mktemp("train-job")
    clips = []
    for i in range(4):
        video = write_pattern_video(root / "media" / f"v{i}.mp4", 16, 32, 32, pattern="texture")
        clips.append(clip_row(str(video), 0, 16, 24, 32, 32, f"clip {i} a red car on the road"))
    config = {
        "model": {"pretrained": str(write_tiny_sd(root / "tiny-sd"))},
        "data": {
            "num_frames": 4, "frame_stride": 2, "height": 32, "width": 32, "images_per_sample": 0,
            "sources": [{"name": "clips", "kind": "video", "manifest": str(write_clip_manifest(root / "clips", clips)),
                         "schedule": [[0, 1.0]]}],
        },
        "deepspeed": {"zero_stage": 2, "bf16": False},
        "optimizer": {"lr": 1e-3},
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}, "placement_strategy": "STRICT_SPREAD"},
        "run": {"name": "spread", "storage_path": str(root / "runs"), "max_steps": FIRST_RUN_STEPS,
                "checkpoint_every": 4, "log_every": 4, "max_failures": 0},
    }  # fmt: skip
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    spec = {"command": "train", "args": [str(root / "train.yaml")], "resources": {"num_cpus": 0}}
    (root / "job.yaml").write_text(yaml.safe_dump(spec))
    return {"root": root, "spec": root / "job.yaml", "config": root / "train.yaml", "run": root / "runs" / "spread"}


def _latest_checkpoint_step(run: Path, settle: float = 0.0) -> int:
    """The step of Ray Train's latest checkpoint, from its snapshot file; 0 while there is none.

    Ray rewrites the snapshot in place, so a read can catch it half written: with ``settle``
    (seconds) an unreadable snapshot is read again until it parses, instead of counting as 0.
    (A run stopped mid-rewrite keeps an empty one: after a stop, ask :func:`run_state`.)"""
    snapshot = run / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + settle
    while True:
        try:
            latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]["checkpoint_dir_name"]
            return int(latest.rsplit("_", 1)[1])
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return 0
            time.sleep(0.05)


def _train_worker_nodes(cluster: Cluster) -> dict[str, list[str]]:
    """The nodes of every Ray Train worker the cluster ran, by Ray job."""
    request = urllib.request.Request(
        f"{cluster.address}/api/v0/actors?limit=10000&detail=1",
        headers={"Authorization": f"Bearer {Path(cluster.token_env['RAY_AUTH_TOKEN_PATH']).read_text()}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        actors = json.loads(response.read())["data"]["result"]["result"]
    nodes: dict[str, list[str]] = {}
    for actor in actors:
        if actor.get("class_name") == "RayTrainWorker":
            nodes.setdefault(actor["job_id"], []).append(actor["node_id"])
    return nodes


def test_a_training_job_stopped_mid_run_resumes_with_one_worker_per_node(cluster, train_spec):
    first = _jobs(cluster, "submit", "--job-id", "train-first", "--spec", str(train_spec["spec"]))
    assert first.returncode == 0, first.stderr
    deadline = time.monotonic() + 300
    while _latest_checkpoint_step(train_spec["run"]) < 4:
        assert time.monotonic() < deadline, "no checkpoint within 300 s: " + _jobs(cluster, "logs", "train-first").stdout
        time.sleep(0.1)
    stopped = _jobs(cluster, "stop", "--wait", "train-first")
    assert stopped.stdout.strip() == "train-first\tSTOPPED", stopped.stdout + stopped.stderr
    assert _jobs(cluster, "status", "train-first").stdout.startswith("train-first\tSTOPPED")
    # A stop can land while Ray rewrites its snapshot, which leaves it empty for good: make it so
    # every time. `--resume` then starts from the newest checkpoint folder every rank finished.
    (train_spec["run"] / "checkpoint_manager_snapshot.json").write_text("")
    at = run_state(load_train_config(train_spec["config"])).step
    assert 4 <= at < FIRST_RUN_STEPS
    end = at + 4

    resumed = _jobs(cluster, "submit", "--job-id", "train-resumed", "--wait", "train", str(train_spec["config"]), "--resume",
                    "--set", f"run.max_steps={end}", timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming at step {at}" in resumed.stdout and f"step {end}/{end}" in resumed.stdout
    assert f"checkpoint_manager_snapshot.json was empty (the run was stopped while Ray rewrote it); resuming from {train_spec['run']}/checkpoint_{at:08d}" in resumed.stdout
    assert _latest_checkpoint_step(train_spec["run"], settle=30) == end
    export = train_spec["run"] / "export"
    assert json.loads((export / "export_info.json").read_text())["step"] == end
    from cascade.models import BaseUNet3DModel

    BaseUNet3DModel.from_pretrained(export / "raw")  # the exported model loads
    workers = _train_worker_nodes(cluster)
    assert len(workers) == 2  # the stopped job's and the resumed job's
    assert all(len(nodes) == 2 and len(set(nodes)) == 2 for nodes in workers.values())  # one worker per node


# --------------------------------------------------------------------------- errors
def test_a_submission_without_the_token_is_refused(cluster, tmp_path):
    result = _jobs(cluster, "list", with_token=False, home=tmp_path)
    _one_line_error(result, "the cluster requires an authentication token and this machine has none")


@pytest.mark.parametrize(
    ("address", "message"),
    [("", "no cluster address"), ("http://127.0.0.1:9", "cannot reach the Ray job server")],
)
def test_bad_address_is_one_line(address, message):
    result = subprocess.run([str(BIN / "lavie"), "jobs", "--address", address, "list"],
                            capture_output=True, text=True, timeout=60, env=_outside_env())  # fmt: skip
    _one_line_error(result, message)


def _lavie_check_on(address: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`lavie check`, a command that joins the cluster at ``address`` as a driver, from a shell
    with ``env``."""
    manifest = tmp_path / "manifest"
    video = write_scene_video(tmp_path / "v.mp4", (20,), 64, 48).path
    write_clip_manifest(manifest, [clip_row(str(video), 0, 20, 24.0, 64, 48, "a small test clip")])
    return subprocess.run([str(BIN / "lavie"), "check", str(manifest), "--out", str(tmp_path / "r"), "--address", address],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)  # fmt: skip


def test_a_driver_without_the_token_is_refused_in_one_line(cluster, tmp_path):
    """From a shell without RAY_AUTH_MODE or a token: one line naming the cause and the fix."""
    result = _lavie_check_on(cluster.gcs, tmp_path, {**_outside_env(), "HOME": str(tmp_path)})
    _one_line_error(result, f"{cluster.gcs}: ")
    assert "RAY_AUTH_TOKEN" in result.stderr


def test_a_driver_with_the_token_but_no_auth_mode_joins(cluster, tmp_path):
    """RAY_AUTH_MODE=token is set for the user when a token is there, as job submission does."""
    result = _lavie_check_on(cluster.gcs, tmp_path, {**_outside_env(), **cluster.token_env})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["clips"] == 1


def test_a_driver_address_where_nothing_listens_is_one_line(tmp_path):
    result = _lavie_check_on(f"127.0.0.1:{_free_port()}", tmp_path, _outside_env())
    _one_line_error(result, "nothing answers there")


def test_unknown_job_is_one_line(cluster):
    result = _jobs(cluster, "status", "no-such-job")
    _one_line_error(result, "job 'no-such-job'")
