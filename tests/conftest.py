"""Shared fixtures: the committed real-image samples and one local Ray per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"

# Two cores: keep torch from oversubscribing when Ray workers and the test process both train.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def assets() -> Path:
    """The small real samples committed under tests/assets/ (see tests/assets/README.md)."""
    return ASSETS


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the whole session (it takes seconds and ~1 GB to start)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
