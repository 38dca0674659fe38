"""Fixtures shared by the whole suite: one local Ray per session (starting one costs ~9 s) and one
S3 API server (moto) on 127.0.0.1 for everything that reads or writes object storage."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that runs work on Ray (through the session's cluster, even by way of another
    fixture) is marked ``slow``; tests that start a cluster of their own mark themselves."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread in this process, as in each single-CPU Ray worker: no oversubscription
    of a 2-core machine, and in-process numbers computed like the workers' ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """An embedded local Ray; yields its GCS address so subprocess drivers can join it."""
    import ray

    from ray_jobs.cluster import connect

    # Always a new cluster, never one that happens to run on this machine (other test sessions).
    connect(None, num_cpus=2, log_to_driver=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address


@dataclass(frozen=True)
class S3Server:
    """moto's S3 API on loopback; any key and secret are accepted."""

    endpoint: str
    key: str = "testing"
    secret: str = "testing"

    def options(self, **credentials: str) -> dict[str, Any]:
        """fsspec storage options for this server (credentials may be replaced)."""
        return {
            "key": credentials.get("key", self.key),
            "secret": credentials.get("secret", self.secret),
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def bucket(self, name: str) -> Any:
        """A fresh, empty bucket ``name``; returns an s3fs filesystem on the server."""
        import boto3
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.options())
        if fs.exists(name):
            fs.rm(name, recursive=True)
        boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        ).create_bucket(Bucket=name)  # fmt: skip
        fs.invalidate_cache()
        return fs


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(f"http://{host}:{port}")
    server.stop()
