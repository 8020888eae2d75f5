"""Fused dropout for numpy arrays (reference: ops/nn.py): y = x * keep * scale in one pass on
all cores. The mask is the reference's (``dropout_keep_mask``: 16-bit draws from ``rng``, in
the same order), so a seed gives the same masks with and without fused ops.

saved: (keep, scale) as the reference.
"""
import numpy as np

from ..ops.nn import dropout_keep_mask
from .threads import parallel_for
from .vecmath import kernel

_GRAIN = 1 << 15            # elements per chunk at least


@kernel
def _scale_kept(c, lo, hi, x, keep, scale, y):
    for i in range(lo, hi):
        y[i] = x[i] * keep[i] * scale


def supports(x):
    return x.dtype in (np.float32, np.float64)


def _masked(x, keep, scale):
    x1 = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(x1)
    parallel_for(_scale_kept, x1.size, x1, keep.reshape(-1), scale, y, grain=_GRAIN)
    return y.reshape(x.shape)


def dropout_forward(x, p, rng):
    """As ops.nn.dropout_forward: y = x * keep * scale, saved (keep, scale)."""
    keep, scale = dropout_keep_mask(rng, x.shape, p)
    scale = x.dtype.type(scale)
    return _masked(x, keep, scale), (keep, scale)


def dropout_backward(gy, saved):
    """As ops.nn.dropout_backward: gx = gy * keep * scale."""
    keep, scale = saved
    return _masked(np.asarray(gy, dtype=scale.dtype), keep, scale)
