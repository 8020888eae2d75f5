"""Fused softmax cross-entropy for numpy arrays (reference: ops/loss.py).

Per row of logits z (K,) with target t:

    forward   lse = m + log(sum_j exp(z_j - m)),  m = max_j z_j;     loss = lse - z_t
    backward  g_j = (exp(z_j - lse) - [j == t]) * valid * gy   (/ count for the mean)

One pass per row each way; the (N, K) log-probabilities of the reference are not stored: the
backward recomputes exp(z - lse) from the logits (kept alive by the Linear before anyway) and
the saved (N,) lse.

saved: (z (N, K), lse (N,), t_safe (N,), valid (N,), count, logits' shape, reduction).
"""
import math

import numpy as np

from ..ops.loss import checked_targets, reduced
from .threads import parallel_for
from .vecmath import exp_row, kernel, row_max

_GRAIN = 4096                # rows per chunk at least (a chunk of K = 9 logits is little work)


@kernel
def _forward_rows(c, lo, hi, z, t, valid, lse, losses):
    e = np.empty(z.shape[1], z.dtype)
    for r in range(lo, hi):
        m = row_max(z[r])
        lse[r] = m + math.log(exp_row(z[r], e, m))
        losses[r] = (lse[r] - z[r, t[r]]) if valid[r] else 0.0


@kernel
def _backward_rows(c, lo, hi, z, lse, t, row_scale, g):
    K = z.shape[1]
    for r in range(lo, hi):
        exp_row(z[r], g[r], lse[r])
        g[r, t[r]] -= 1.0
        for j in range(K):
            g[r, j] *= row_scale[r]


def supports(logits):
    return logits.dtype in (np.float32, np.float64)


def cross_entropy_forward(logits, target, ignore_index, reduction):
    """As ops.loss.cross_entropy_forward: logits (..., K), target (...) -> loss, saved."""
    k = logits.shape[-1]
    z = np.ascontiguousarray(logits).reshape(-1, k)
    valid, t_safe = checked_targets(target.reshape(-1), k, ignore_index)
    n = z.shape[0]
    lse, losses = np.empty(n, z.dtype), np.empty(n, z.dtype)
    parallel_for(_forward_rows, n, z, t_safe, valid, lse, losses, grain=_GRAIN)
    count = int(valid.sum())
    saved = (z, lse, t_safe, valid, count, logits.shape, reduction)
    return reduced(losses, count, target.shape, reduction, logits.dtype), saved


def cross_entropy_backward(gy, saved):
    """As ops.loss.cross_entropy_backward: glogits of the logits' shape."""
    z, lse, t, valid, count, shape, reduction = saved
    if reduction == "none":
        row_scale = (np.asarray(gy, z.dtype).reshape(-1) * valid).astype(z.dtype)
    else:
        scale = gy / max(count, 1) if reduction == "mean" else gy
        row_scale = (valid * scale).astype(z.dtype)
    g = np.empty_like(z)
    parallel_for(_backward_rows, z.shape[0], z, lse, t, row_scale, g, grain=_GRAIN)
    return g.reshape(shape)
