"""assert_close: tolerances by dtype, the worst element in the message, integers, NaN, inf,
dtype checks and the headroom it returns.
"""
import numpy as np
import pytest

import minitune as mt
from minitune.testing import assert_close


def test_assert_close_tolerance_follows_the_dtype():
    a = np.array([1.0, 2.0, 3.0])
    nudged = a * (1 + 1e-6)
    assert_close(nudged.astype(np.float32), a.astype(np.float32))     # float32: rtol 1.3e-6
    with pytest.raises(AssertionError):
        assert_close(nudged, a)                                       # float64: rtol 1e-7
    assert_close(nudged, a.astype(np.float32))                        # the less precise dtype
    assert_close(nudged, a, rtol=1e-5)
    assert_close(mt.tensor(a), a.astype(np.float32))                  # Tensors work too


def test_assert_close_reports_the_worst_element_and_checks_shapes():
    a = np.zeros((2, 3))
    b = a.copy()
    b[1, 2], b[0, 0] = 0.5, 1e-3
    with pytest.raises(AssertionError, match=r"2 of 6 elements differ.*\(1, 2\).*expected 0\.5"):
        assert_close(a, b)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.zeros(3), np.zeros((3, 1)))


def test_assert_close_integers_nan_and_inf():
    assert_close(np.array([1, 2]), np.array([1, 2]))
    with pytest.raises(AssertionError):
        assert_close(np.array([1, 2]), np.array([1, 3]))
    nan = np.array([np.nan, 1.0])
    with pytest.raises(AssertionError):
        assert_close(nan, nan)
    assert_close(nan, nan, equal_nan=True)
    assert_close(np.array([np.inf, -np.inf]), np.array([np.inf, -np.inf]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.inf]), np.array([-np.inf]))


def test_assert_close_checks_dtypes_on_request_and_returns_the_headroom():
    a = np.array([1.0, 2.0])
    assert_close(a.astype(np.float32), a)                              # dtypes may differ
    with pytest.raises(AssertionError, match="dtypes differ: actual float32, expected float64"):
        assert_close(a.astype(np.float32), a, check_dtype=True)
    assert assert_close(a, a) == 0.0                                   # identical: nothing used
    used = assert_close(a + np.array([0.0, 0.5]), a, rtol=0.0, atol=1.0)
    assert used == pytest.approx(0.5)                                  # half the bound
