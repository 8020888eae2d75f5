"""Fused embedding backward for numpy arrays (reference: ops/nn.py).

gweight (V, H) gets each row of gy added to the weight row it was read from. As in the
reference, the rows are sorted by id (a stable sort) and each run of equal ids is summed in
order into its row of gweight; here the runs are shared out among the pool's threads (no two
threads write the same row, so no locks). The forward (``weight[ids]``) is the reference's.
"""
import numpy as np

from ..ops.nn import embedding_forward, id_runs
from .threads import parallel_for
from .vecmath import kernel

_GRAIN = 64                  # runs of equal ids per chunk at least


@kernel
def _sum_runs(c, lo, hi, g2, order, starts, row_ids, gw):
    H = g2.shape[1]
    for k in range(lo, hi):
        dst = gw[row_ids[k]]
        for i in range(starts[k], starts[k + 1]):
            src = g2[order[i]]
            for j in range(H):
                dst[j] += src[j]


def supports(weight):
    return weight.dtype in (np.float32, np.float64)


def embedding_backward(gy, saved):
    """As ops.nn.embedding_backward: gweight (V, H)."""
    ids, vocab = saved
    H = gy.shape[-1]
    gw = np.zeros((vocab, H), dtype=gy.dtype)
    ids = ids.reshape(-1)
    if ids.size == 0:
        return gw
    g2 = np.ascontiguousarray(gy).reshape(-1, H)
    order, row_ids, starts = id_runs(ids)
    starts = np.r_[starts, ids.size]
    parallel_for(_sum_runs, row_ids.size, g2, order, starts, row_ids, gw, grain=_GRAIN)
    return gw


__all__ = ["embedding_forward", "embedding_backward", "supports"]
