"""Shared by tests/cpu: compare a fused CPU implementation with its reference.

Every fused op must return what its reference returns -- the same shapes and dtypes, values
within the dtype's tolerance -- and its backward, fed the fused forward's own ``saved``, must
return the reference backward's gradients. Shapes are odd on purpose (not multiples of the
vector width or of the chunk sizes), and each test also runs with the thread pool at 1 and 2
threads so that chunk boundaries move.
"""
import numpy as np
import pytest

from minitune.cpu import threads
from minitune.testing import assert_close

# float32: the fused kernels sum in another order (and in float64); 1e-5 relative covers it.
# float64: the fused path must stay as exact as the reference (parity fixtures at 1e-9).
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def pool_threads(request):
    """Run the test with the pool (and BLAS) at 1 and at 2 threads, even on a busy machine."""
    before = threads.num_threads()
    threads.set_adaptive(False)
    threads.set_num_threads(request.param)
    yield request.param
    threads.set_adaptive(True)
    threads.set_num_threads(before)


def assert_same(got, want, dtype, scale=1.0):
    """got == want within the dtype's tolerance (absolute tolerance times ``scale``)."""
    if want is None:
        assert got is None
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    tol = TOL[dtype]
    assert_close(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale)


class FusedDraws:
    """A stand-in for the numpy Generator that hands the *reference* the fused path's masks.

    The fused dropout (minitune/cpu/dropout.py) takes one 64-bit seed from the Generator per
    call and computes its 16-bit draws from it; the reference takes the draws themselves from
    the Generator. Given to the reference, this object answers each request for a mask's
    draws with the seed a real Generator (seeded as the fused run's) would have given at that
    point, turned into the fused draws: the reference then applies the fused path's masks, so
    the two can be compared value by value.
    """

    def __init__(self, seed):
        """seed: a Generator to take the seeds from (used, not copied), or its seed."""
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def integers(self, low, high=None, size=None, dtype=np.int64):
        from minitune.cpu import dropout
        if dtype == np.uint16 and (low, high) == (0, 65536):
            seed = dropout.draw_seed(self.rng)
            return dropout.draws16(seed, int(np.prod(size))).reshape(size)
        return self.rng.integers(low, high, size=size, dtype=dtype)
