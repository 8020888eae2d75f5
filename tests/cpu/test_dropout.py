"""minitune.cpu.dropout: the counter-based mask against its NumPy reference, and the fused
dropout against the reference op fed that mask."""
import numpy as np
import pytest
from numba import njit

from minitune.cpu import dropout as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, FusedDraws, assert_same, pool_threads  # noqa: F401


@pytest.mark.parametrize("start, n", [(0, 0), (0, 1), (3, 1), (2, 2), (1, 7), (5, 130),
                                      (0, 4096), (4097, 999), (2**20 + 3, 61)])
@pytest.mark.parametrize("threshold", [0, 1, 6554, 65535, 65536])
def test_row_draws_and_kept_are_their_numpy_reference_anywhere_in_the_stream(start, n, threshold):
    """Any start (the hashes' pieces then begin mid-word), any length, every threshold from
    keep-all (0) to keep-none (65536, past the 16-bit draws)."""
    seed = np.uint64(0x0123456789ABCDEF)
    keep = _flags(seed, start, n, threshold)
    expected = fused.draws16(seed, start + n)[start:] >= threshold
    np.testing.assert_array_equal(keep, expected)


@njit
def _flags(seed, start, n, threshold):
    """The keep flags of elements start .. start + n - 1, as a kernel computes them."""
    words, draws = fused.mask_scratch(n)
    words[:] = 0xFFFF_FFFF_FFFF_FFFF            # stale scratch must not leak into the mask
    skip = fused.row_draws(seed, start, n, words)
    keep = np.empty(n, np.bool_)
    for j in range(n):
        keep[j] = fused.kept(draws, skip + j, threshold)
    return keep


def test_draws_are_uniform_and_seeds_independent():
    a = fused.draws16(np.uint64(1), 1 << 18).astype(np.float64)
    b = fused.draws16(np.uint64(2), 1 << 18).astype(np.float64)
    n = a.size
    for d in (a, b):
        assert abs(d.mean() / 65535 - 0.5) < 4 * np.sqrt(1 / 12 / n)      # 4 sigma
        counts = np.bincount((d // 4096).astype(np.int64), minlength=16)   # 16 equal bins
        chi2 = ((counts - n / 16) ** 2 / (n / 16)).sum()
        assert chi2 < 50                                  # 15 degrees of freedom: p ~ 1e-5
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(n)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 4 / np.sqrt(n)          # neighbours too


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7, 3), (5, 33, 17), (70_001,)])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_matches_the_reference_given_the_same_mask(dtype, shape, p, pool_threads):
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    y, saved = fused.dropout_forward(x, p, np.random.default_rng(11))
    y_ref, saved_ref = ref.dropout_forward(x, p, FusedDraws(11))
    assert_same(y, y_ref, dtype)
    gy = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    assert_same(fused.dropout_backward(gy, saved), ref.dropout_backward(gy, saved_ref), dtype)


def test_dropout_keeps_one_minus_p_and_is_reproducible_from_the_seed(pool_threads):
    x = np.ones(200_000, np.float32)
    y, saved = fused.dropout_forward(x, 0.1, np.random.default_rng(3))
    assert abs((y == 0).mean() - 0.1) < 0.003
    assert y.sum() / x.size == pytest.approx(1.0, abs=0.01)          # E[y] = x
    again, _ = fused.dropout_forward(x, 0.1, np.random.default_rng(3))
    other, _ = fused.dropout_forward(x, 0.1, np.random.default_rng(4))
    np.testing.assert_array_equal(y, again)
    assert not np.array_equal(y, other)
    np.testing.assert_array_equal(fused.dropout_backward(x, saved), y)   # the same mask
