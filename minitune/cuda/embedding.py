"""Embedding lookup and its deterministic backward (kernels/embedding.cu).

Same arguments and results as ``minitune.ops.nn.embedding_forward/backward``; ``saved`` is
(ids (N,) int64, V). Backward sorts the ids stably -- numpy's stable argsort, or CuPy's radix
sort (stable) -- and the kernel adds each id's run of rows in order: the same bits every run,
unlike an atomic scatter-add. ``sorted_run_sums`` is that algorithm in NumPy.
"""
import numpy as np

from . import runtime

FILE = "embedding.cu"
PIECE = 64                        # sorted positions per piece (embedding.cu)


def supports(weight, *rest):
    return weight.dtype == np.float32 and weight.ndim == 2 and weight.shape[1] > 0


def forward(ids, weight):
    rt = runtime.for_array(weight)
    xp = rt.xp
    flat = xp.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    V, H = weight.shape
    N = flat.size
    y = xp.empty((N, H), dtype=np.float32)
    if N:
        rt.launch(FILE, "embedding_forward", min(N, 65535), 128,
                  (flat, xp.ascontiguousarray(weight), y, np.int32(N), np.int32(H)))
    return y.reshape(ids.shape + (H,)), (flat, V)


def backward(gy, saved):
    ids, V = saved
    rt = runtime.for_array(gy)
    xp = rt.xp
    H = gy.shape[-1]
    gw = xp.zeros((V, H), dtype=np.float32)
    N = ids.size
    if N:
        order = np.argsort(ids, kind="stable") if xp is np else xp.argsort(ids)
        order = order.astype(np.int64, copy=False)
        sorted_ids = xp.ascontiguousarray(ids[order])
        partial = xp.empty((N, H), dtype=np.float32)
        rt.launch(FILE, "embedding_backward_pieces", (N + PIECE - 1) // PIECE, 128,
                  (sorted_ids, order, xp.ascontiguousarray(gy).reshape(N, H), partial,
                   np.int32(N), np.int32(H)))
        rt.launch(FILE, "embedding_backward_runs", N, 128,
                  (sorted_ids, partial, gw, np.int32(N), np.int32(H)))
    return gw


def sorted_run_sums(ids, gy, V, piece=PIECE):
    """NumPy reference of the backward: stable sort; pieces = the sorted positions cut every
    ``piece`` positions and wherever the id changes, each summed in order; then each run's
    pieces added in order into its row of gw."""
    gw = np.zeros((V, gy.shape[1]), dtype=gy.dtype)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    N = len(ids)
    starts = [n for n in range(N) if n % piece == 0 or sorted_ids[n] != sorted_ids[n - 1]]
    ends = starts[1:] + [N]
    pieces = {s: gy[order[s:e]].sum(axis=0) for s, e in zip(starts, ends)}
    for s in starts:
        if s == 0 or sorted_ids[s] != sorted_ids[s - 1]:          # a run starts here
            acc = pieces[s].copy()
            c = s // piece + 1
            while c * piece < N and sorted_ids[c * piece] == sorted_ids[s]:
                acc += pieces[c * piece]
                c += 1
            gw[sorted_ids[s]] = acc
    return gw
