"""Shared test settings: hypothesis profiles and the backend fixture.

Profiles: `dev` (25 examples) and `ci` (8 examples), chosen with HYPOTHESIS_PROFILE; `ci` is
the default where the CI environment variable is set.
Neither has a deadline: tinygrad compiles each new shape on first use, torch warms up.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fault_helpers import train_in_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "ci", max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

BACKEND_NAMES = ["torch", "tinygrad"]


@pytest.fixture(scope="session", params=BACKEND_NAMES)
def backend(request):
    """Each backend on its default device (CPU here)."""
    from backends import get_backend

    return get_backend(request.param)


@pytest.fixture(scope="session")
def backends():
    """Both backends, for tests that compare them with each other."""
    from backends import get_backend

    return {name: get_backend(name) for name in BACKEND_NAMES}


# The fault tests' shared runs (tests/test_faults.py, tests/test_faults_files.py).
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 20-step run (4 evaluations); tests work on copies of it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert train_in_process(run, 20) == 0
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"

