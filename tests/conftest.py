"""Shared test configuration: hypothesis profiles, the ``xp`` fixture and the ``gpu`` marker.

Hypothesis profiles (choose with the environment variable HYPOTHESIS_PROFILE, default "ci"):
    ci        derandomized (the same examples on every run), 25 examples per test, no deadline
    thorough  500 random examples per test, for a local hunt:
              HYPOTHESIS_PROFILE=thorough python -m pytest tests/ops

Tests marked ``gpu`` (and the cupy case of ``xp``) are skipped when cupy sees no CUDA device;
with REQUIRE_GPU=1 they fail instead, so a GPU job cannot pass by skipping everything.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minitune import backend

# Property tests draw shapes from hypothesis and values from a seeded numpy Generator; the
# xp fixture is a module, so sharing it across examples is harmless.
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_gpu = None


def _gpu_available():
    global _gpu
    if _gpu is None:
        _gpu = backend.gpu_available()
    return _gpu


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None or _gpu_available():
        return
    if os.environ.get("REQUIRE_GPU") == "1":
        pytest.fail("REQUIRE_GPU=1 but cupy sees no CUDA device (is cupy installed?)",
                    pytrace=False)
    pytest.skip("needs a CUDA device and cupy")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy always; cupy too when a GPU is present."""
    if request.param == "numpy":
        return np
    return backend.get_array_module(backend.to_device(np.zeros(1), "gpu"))
