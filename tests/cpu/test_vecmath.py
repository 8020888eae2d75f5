"""minitune.cpu.vecmath: the vectorised float32 exp and the exact float64 one; the row max;
the streaming copy and the aligned arrays it writes into; the prefetch hint."""
import numba
import numpy as np
import pytest

from minitune.cpu.vecmath import (LINE, aligned_empty, exp_row, maximum, prefetch_rows, row_max,
                                  store_fence, stream_copy, streamable)


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


# The row max: one vectorised loop over ``maximum`` (llvm.maximum), numpy's max as reference.

@numba.njit
def _row_max(x):
    return row_max(x)


@numba.njit
def _maximum(a, b):
    return maximum(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 31, 128, 129, 1000])
def test_row_max_is_numpys_max_at_every_length_and_place(n, dtype):
    """Every length around the vector widths, the maximum at every place (first, last, in
    the tail a vector loop leaves to scalar code), all-negative rows."""
    rng = np.random.default_rng(n)
    for place in {0, n // 2, n - 1}:
        x = (rng.standard_normal(n) - 10).astype(dtype)
        x[place] = 5.0
        assert _row_max(x) == 5.0
        assert _row_max(x[::-1]) == 5.0                    # a strided view too
        assert _row_max(-np.abs(x) - 1) == np.max(-np.abs(x) - 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_propagates_nan_and_handles_infinities_and_empty_rows(dtype):
    for n in (3, 40):
        for place in (0, n - 1):
            x = np.arange(n, dtype=dtype)
            x[place] = np.nan
            assert np.isnan(_row_max(x)), (n, place)     # as numpy's max (Python's max would
    x = np.array([-np.inf, 1.0, np.inf], dtype)          # keep the first of unordered values)
    assert _row_max(x) == np.inf
    assert _row_max(np.full(20, -np.inf, dtype)) == -np.inf
    assert _row_max(np.empty(0, dtype)) == -np.inf
    zero = _maximum(dtype(-0.0), dtype(0.0))
    assert zero == 0 and not np.signbit(zero)             # IEEE maximum: +0 above -0
    assert np.isnan(_maximum(dtype(np.nan), dtype(1.0)))
    assert np.isnan(_maximum(dtype(1.0), dtype(np.nan)))


# The streaming copy: non-temporal stores, one cache line at a time, into aligned arrays.

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("shape", [(16,), (128, 128), (3, 7, 64)])
def test_aligned_empty_starts_on_a_cache_line(shape, dtype):
    for _ in range(5):                   # np.empty's start varies; every one must be aligned
        a = aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % LINE == 0


def test_streamable_needs_an_aligned_start_and_whole_lines():
    a = aligned_empty((4, 32), np.float32)          # 512 bytes
    assert streamable(a) and streamable(a[1:3])     # rows of 128 bytes: whole lines
    assert not streamable(a.reshape(-1)[1:17])      # starts 4 bytes into a line
    assert not streamable(a[:, :8])                 # not contiguous
    assert not streamable(aligned_empty((15,), np.float32))   # 60 bytes


@numba.njit
def _stream_and_fence(dst, src):
    stream_copy(dst, src)
    store_fence()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stream_copy_copies_every_element(dtype):
    rng = np.random.default_rng(0)
    src = rng.standard_normal((64, 48)).astype(dtype)      # 64 x 48 x 4 = 12 KB: whole lines
    dst = aligned_empty(src.shape, dtype)
    dst[...] = np.nan
    _stream_and_fence(dst, src)
    np.testing.assert_array_equal(dst, src)
    dst[...] = 0                                             # a block in the middle only
    _stream_and_fence(dst[16:32], src[16:32])
    np.testing.assert_array_equal(dst[16:32], src[16:32])
    assert not dst[:16].any() and not dst[32:].any()


@numba.njit
def _prefetch_all(ahead, rows, nbytes):
    for r in range(rows):
        prefetch_rows(ahead, r, nbytes)


def test_prefetch_is_a_hint_that_never_faults_or_writes():
    a = np.arange(4096, dtype=np.float32).reshape(64, 64)
    before = a.copy()
    ahead = np.array([[a.ctypes.data, a.strides[0]], [a[:, 3:].ctypes.data, a.strides[0]]],
                     np.int64)
    _prefetch_all(ahead, 64, 100)                 # 100 bytes of each row: 2 or 3 lines
    _prefetch_all(np.array([[0, 4096], [1 << 47, 64]], np.int64), 8, 64)   # no memory there
    _prefetch_all(np.empty((0, 2), np.int64), 8, 64)
    np.testing.assert_array_equal(a, before)
