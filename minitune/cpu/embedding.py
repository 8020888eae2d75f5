"""Fused embedding backward for numpy arrays (reference: ops/nn.py).

gweight (V, H) gets each row of gy added to the weight row it was read from. As in the
reference, the rows are sorted by id (a stable sort) and each run of equal ids is summed in
order into its row of gweight. Here the pool's threads share out the vocabulary: a chunk of
rows lo..hi-1 is zeroed and gets the runs of the ids in it, so no two threads write the same
row (no locks), and the zeros -- most of gweight: MiniLM's is 30522 x 384, 47 MB, for 4096
ids at B 32 x T 128 -- are written by all threads, while the rows are being summed, instead of
by ``np.zeros`` on one thread beforehand (4-5 ms a training step).

The forward is the reference's ``weight[ids]``, a row copy per id, with the rows shared out
among the threads (numpy's fancy indexing runs on one thread: 1-2 ms a training step at
B 32 x T 128, the word and token-type lookups, while the other thread waits).
"""
import numpy as np

from ..ops.nn import id_runs
from .threads import parallel_for
from .vecmath import kernel

_GRAIN = 1024                # vocabulary rows per chunk at least
_GATHER_GRAIN = 512          # ids per chunk of the forward at least


@kernel
def _gather(c, lo, hi, ids, weight, out):
    """out[r] = weight[ids[r]] for r in lo..hi-1 (ids checked in range by the caller)."""
    for r in range(lo, hi):
        src, dst = weight[ids[r]], out[r]
        for j in range(src.size):
            dst[j] = src[j]


@kernel
def _rows(c, lo, hi, g2, order, starts, row_ids, gw):
    """gw[lo:hi] = 0, then each run of ids in lo..hi-1 (row_ids sorted) summed into its row."""
    H = gw.shape[1]
    for r in range(lo, hi):
        for j in range(H):
            gw[r, j] = 0
    k = np.searchsorted(row_ids, lo)
    while k < row_ids.size and row_ids[k] < hi:
        dst = gw[row_ids[k]]
        for i in range(starts[k], starts[k + 1]):
            src = g2[order[i]]
            for j in range(H):
                dst[j] += src[j]
        k += 1


def supports(weight):
    return weight.dtype in (np.float32, np.float64)


def embedding_forward(ids, weight):
    """As ops.nn.embedding_forward: ids (...) integers in [0, V), weight (V, H) -> (..., H);
    saved (ids, V)."""
    V, H = weight.shape
    flat = np.ascontiguousarray(ids).reshape(-1)
    # The compiled copy checks no bounds: an id outside the table would read other memory.
    # The Embedding op has said which id is wrong before it gets here; this is the backstop.
    if flat.size and (flat.min() < 0 or flat.max() >= V):
        raise IndexError(f"embedding: ids must lie in [0, {V}), got {flat.min()}..{flat.max()}")
    out = np.empty((flat.size, H), weight.dtype)
    parallel_for(_gather, flat.size, flat, np.ascontiguousarray(weight), out,
                 grain=_GATHER_GRAIN)
    return out.reshape(ids.shape + (H,)), (ids, V)


def embedding_backward(gy, saved):
    """As ops.nn.embedding_backward: gweight (V, H)."""
    ids, vocab = saved
    H = gy.shape[-1]
    ids = ids.reshape(-1)
    if ids.size == 0:
        return np.zeros((vocab, H), dtype=gy.dtype)
    gw = np.empty((vocab, H), dtype=gy.dtype)
    g2 = np.ascontiguousarray(gy).reshape(-1, H)
    order, row_ids, starts = id_runs(ids)
    starts = np.r_[starts, ids.size]
    parallel_for(_rows, vocab, g2, order, starts, row_ids, gw, grain=_GRAIN)
    return gw


__all__ = ["embedding_forward", "embedding_backward", "supports"]
