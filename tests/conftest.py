"""Shared fixtures: one session-scoped local Ray for integration tests, and small pools.

Unit tests do not touch Ray; a test that needs it takes the `ray_session` fixture.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs and no dashboard, shared by the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_pool(tmp_path_factory):
    """A 400-line synthetic pool with ground truth (deterministic, seed 0)."""
    from ray_jobs.synth import synthesize

    out = tmp_path_factory.mktemp("pool400")
    synthesize(400, str(out), seed=0, parallel=False)
    return out
