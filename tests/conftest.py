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

    from ray_jobs.cluster import start_local_ray

    if not ray.is_initialized():
        # Always a new cluster, never one that happens to run on this machine (other test sessions).
        start_local_ray(num_cpus=2, log_to_driver=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
