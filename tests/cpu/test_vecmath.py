"""minitune.cpu.vecmath.exp_row: the vectorised float32 exp, and the exact float64 one."""
import numpy as np
import pytest

from minitune.cpu.vecmath import exp_row


def test_float32_exp_is_within_3_ulp_over_its_range():
    x = np.linspace(-87.0, 88.0, 200_003, dtype=np.float32)
    out = np.empty_like(x)
    exp_row(x, out)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - exact) / exact) < 3.6e-7           # 3 float32 ulp


def test_float32_exp_edges_underflow_overflow_and_nan():
    x = np.array([0.0, -0.0, -90.0, -np.inf, 100.0, np.inf, np.nan, 1.0], np.float32)
    out = np.empty_like(x)
    exp_row(x, out)
    assert out[0] == 1.0 and out[1] == 1.0
    assert out[2] == 0.0 and out[3] == 0.0                 # underflow is exactly 0, as np.exp
    assert np.isinf(out[5]) and out[4] > 3e38
    assert np.isnan(out[6])
    assert out[7] == pytest.approx(np.e, rel=2e-7)


def test_float64_exp_is_the_library_exp():
    x = np.random.default_rng(0).uniform(-700, 700, 1001)
    out = np.empty_like(x)
    exp_row(x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-15)

