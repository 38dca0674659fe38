"""Fixtures shared by the whole suite: one local Ray per session (starting one costs ~9 s)."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_cluster():
    """An embedded local Ray; yields its GCS address so subprocess drivers can join it."""
    import ray

    if not ray.is_initialized():
        # address="local": always a new cluster, never one that happens to run on this machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
