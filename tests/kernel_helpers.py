"""Helpers shared by the kernel tests (tests/cuda).

A kernel draws its dropout masks from Philox; the reference op draws 16-bit values from a numpy
Generator. ``Draws`` stands in for that Generator and hands the reference the kernel's own
Philox draws, so reference and kernel drop exactly the same elements and can be compared
element by element.
"""
import numpy as np

from minitune import backend
from minitune.cuda import emulator, philox


class Draws:
    """A stand-in numpy Generator whose ``integers`` returns prepared 16-bit draws."""

    def __init__(self, draws):
        self.draws = draws

    def integers(self, low, high, size=None, dtype=None):
        assert (low, high) == (0, 65536) and tuple(size) == self.draws.shape, (low, high, size)
        return self.draws


def kernel_seed(rng_seed):
    """The Philox seed a kernel draws first from ``np.random.default_rng(rng_seed)``."""
    return int(np.random.default_rng(rng_seed).integers(0, 2**64, dtype=np.uint64))


def attention_draws(rng_seed, B, NH, T):
    """attention.cu's 16-bit draws (B, NH, T, T) for a kernel seeded from default_rng(rng_seed)."""
    bh = np.arange(B * NH, dtype=np.uint32)[:, None, None]
    i = np.arange(T, dtype=np.uint32)[None, :, None]
    j = np.arange(T, dtype=np.uint32)[None, None, :]
    words = philox.philox4x32_10(j >> np.uint32(3), i, bh, 0, kernel_seed(rng_seed))
    draws = philox.draws16(words, (j & np.uint32(7)).astype(np.int64))
    return Draws(draws.reshape(B, NH, T, T).astype(np.uint16))


def flat_draws(rng_seed, shape):
    """dropout.cu's 16-bit draws for an array of ``shape``."""
    n = int(np.prod(shape))
    e = np.arange(n, dtype=np.uint64)
    g = e >> np.uint64(3)
    words = philox.philox4x32_10(g & np.uint64(0xFFFFFFFF), g >> np.uint64(32), 0, 0,
                                 kernel_seed(rng_seed))
    draws = philox.draws16(words, (e & np.uint64(7)).astype(np.int64))
    return Draws(draws.reshape(shape).astype(np.uint16))


def padding_bias(rng, B, T, all_masked_row=False):
    """BERT's (B, 1, 1, T) mask bias: 0 for a real key, float32's minimum for padding."""
    lengths = rng.integers(1, T + 1, size=B)
    if all_masked_row:
        lengths[0] = 0
    keep = np.arange(T)[None, :] < lengths[:, None]
    return ((~keep) * np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]


def attention_inputs(seed, B, NH, T, HS, masked=True, all_masked_row=True):
    """q, k, v, mask bias (BERT's, row 0 fully masked by default) and a cotangent."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(B, NH, T, HS)).astype(np.float32) for _ in range(3))
    bias = padding_bias(rng, B, T, all_masked_row) if masked else None
    gout = rng.normal(size=(B, NH, T, HS)).astype(np.float32)
    return q, k, v, bias, gout


def both_schedules(fn):
    """fn() run with the emulator's threads in index order and in reverse; the two results
    (nested tuples of arrays) must be bit-identical -- a race would make them differ."""
    first = fn()
    with emulator.reverse_schedule():
        second = fn()
    for a, b in zip(_flat(first), _flat(second)):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b, equal_nan=True), "results depend on the thread order"
    return first


def _flat(x):
    if isinstance(x, (tuple, list)):
        for item in x:
            yield from _flat(item)
    else:
        yield x


def f64(*arrays):
    """float64 numpy copies (of numpy or cupy arrays); None stays None."""
    return [None if a is None else backend.asnumpy(a).astype(np.float64) for a in arrays]


def gpu(*arrays):
    """cupy copies of numpy arrays; None stays None."""
    return [None if a is None else backend.to_device(a, "gpu") for a in arrays]
