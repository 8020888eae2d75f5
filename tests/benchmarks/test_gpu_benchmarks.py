"""The GPU benchmarks run only where a GPU is lent, which CI is not: their --dry-run (a tiny case
of each through the same code, on the CPU) keeps them from rotting in between."""
import os
import subprocess
import sys

import pytest

from minitune import backend
from paths import TESTS

REPO = TESTS.parent
SCRIPTS = ["bench_kernels.py", "bench_gemm.py", "bench_step.py"]


def run(script, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run(script):
    result = run(script, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run ok" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_without_a_device_one_line_and_status_2(script):
    if backend.gpu_available():
        pytest.skip("a GPU is visible: the benchmark would run")
    result = run(script, "--rounds", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{script[:-3]}: no CUDA device visible to CuPy; use --dry-run on a CPU machine"]
