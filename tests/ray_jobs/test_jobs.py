"""`lavie jobs` against a real Ray cluster with a job server and token authentication."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from curation.sample_videos import write_video

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _outside_env() -> dict[str, str]:
    """This process's environment without the address of the test session's own Ray."""
    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}


@pytest.fixture(scope="module")
def job_server(tmp_path_factory):
    """A separate Ray head with its job server; stopped by ending its `ray start --block`."""
    # Every port of its own: the test session's embedded Ray already holds the default ones
    # (a second head whose job agent cannot bind its port never accepts a job).
    gcs, dashboard, agent_http, agent_grpc, runtime_env, metrics, client = (_free_port() for _ in range(7))
    env = {**_outside_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # `lavie` on the cluster
    log = open(tmp_path_factory.mktemp("head") / "head.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent_http}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
         f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}",
         "--num-cpus=1", "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
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
    yield address
    head.send_signal(signal.SIGTERM)
    head.wait(timeout=60)
    log.close()


def _jobs(address: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in _outside_env().items() if k != "RAY_AUTH_MODE"}  # as a fresh shell would be
    return subprocess.run([str(BIN / "lavie"), "jobs", "--address", address, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_curation_job_runs_on_the_cluster_and_is_followed(job_server, tmp_path):
    write_video(tmp_path / "in" / "v.mp4", (30, 30), 1280, 720, seed=11)
    (tmp_path / "meta.csv").write_text("video,caption\nv.mp4,a long enough caption for the clip\n")
    out = tmp_path / "out"
    submitted = _jobs(job_server, "submit", "--job-id", "curate-test", "--wait", "curate", str(tmp_path / "in"),
                      "--metadata", str(tmp_path / "meta.csv"), "--out", str(out), "--quiet")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert submitted.stdout.splitlines()[0] == "curate-test"
    assert '"clips_kept": 2' in submitted.stdout  # the job's own output, streamed back
    assert (out / "_SUCCESS").exists()
    assert _jobs(job_server, "status", "curate-test").stdout.startswith("curate-test\tSUCCEEDED")
    assert '"clips_kept": 2' in _jobs(job_server, "logs", "curate-test").stdout
    assert "curate-test\tSUCCEEDED\tlavie curate" in _jobs(job_server, "list").stdout
    assert _jobs(job_server, "stop", "curate-test").stdout.strip() == "curate-test\talready ended"


def test_a_failing_job_exits_non_zero(job_server, tmp_path):
    failed = _jobs(job_server, "submit", "--wait", "curate", "nosuch://x", "--out", str(tmp_path / "o"))
    assert failed.returncode == 1
    assert "unknown URL scheme 'nosuch://'" in failed.stdout and "FAILED" in failed.stderr


@pytest.mark.parametrize(
    ("address", "message"),
    [("", "no cluster address"), ("http://127.0.0.1:9", "cannot reach the Ray job server")],
)
def test_bad_address_is_one_line(address, message):
    env = _outside_env()
    result = subprocess.run([str(BIN / "lavie"), "jobs", "--address", address, "list"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_unknown_job_is_one_line(job_server):
    result = _jobs(job_server, "status", "no-such-job")
    assert result.returncode == 2 and "job 'no-such-job'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
