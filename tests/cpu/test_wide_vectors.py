"""minitune.cpu.wide_vectors: on AVX-512 CPUs the kernels are compiled with 512-bit vectors,
unless the user chose numba's target (NUMBA_CPU_FEATURES / NUMBA_CPU_NAME) or switched it off
(MINITUNE_WIDE_VECTORS=0)."""
import re

import numba
import numpy as np
import pytest
from llvmlite import binding
from numba.core import config

from minitune import cpu
from minitune.cpu.vecmath import FASTMATH

AVX512 = "+avx512f" in binding.get_host_cpu_features().flatten().split(",")


@pytest.fixture
def numba_target(monkeypatch):
    """numba's target settings as if nobody had set them; restored afterwards."""
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(config, "CPU_NAME", None)
    monkeypatch.delenv("MINITUNE_WIDE_VECTORS", raising=False)


@pytest.mark.skipif(not AVX512, reason="the CPU has no AVX-512: nothing to widen")
def test_applied_on_avx512(numba_target):
    assert cpu.wide_vectors() is True
    features = config.CPU_FEATURES.split(",")
    assert features[-1] == "-prefer-256-bit"
    assert "+avx512f" in features


def test_not_applied_when_switched_off(numba_target, monkeypatch):
    monkeypatch.setenv("MINITUNE_WIDE_VECTORS", "0")
    assert cpu.wide_vectors() is False
    assert config.CPU_FEATURES is None


def test_the_users_numba_target_wins(numba_target, monkeypatch):
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2")
    assert cpu.wide_vectors() is False
    assert config.CPU_FEATURES == "+avx2"
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(config, "CPU_NAME", "generic")
    assert cpu.wide_vectors() is False
    assert config.CPU_FEATURES is None


@pytest.mark.skipif(not AVX512, reason="the CPU has no AVX-512: nothing to widen")
def test_this_process_compiles_512_bit_loops():
    """The setting took effect: it was made before numba compiled or loaded its first function
    (``register`` calls it first), so a loop compiled now -- not loaded from the cache, whose
    code cannot be inspected -- is vectorised over zmm registers."""
    if config.CPU_FEATURES is None or not config.CPU_FEATURES.endswith("-prefer-256-bit"):
        pytest.skip("this process was started with MINITUNE_WIDE_VECTORS=0 or numba settings "
                    "of its own")

    @numba.njit(fastmath=FASTMATH, error_model="numpy")
    def scale_shift(x, y):
        for j in range(x.size):
            y[j] = x[j] * np.float32(2.0) + np.float32(1.0)

    x = np.ones(256, np.float32)
    y = np.empty_like(x)
    scale_shift(x, y)
    assert (y == 3.0).all()
    assert re.search(r"\bzmm\d+", scale_shift.inspect_asm(scale_shift.signatures[0]))
