"""Embedding lookup and its deterministic backward (kernels/embedding.cu).

Same arguments and results as ``minitune.ops.nn.embedding_forward/backward``; ``saved`` is
(ids (N,) int64, V). Backward sorts the ids stably -- numpy's stable argsort, or CuPy's radix
sort (stable) -- and the kernel adds each id's run of rows in order: the same bits every run,
unlike an atomic scatter-add. ``sorted_run_sums`` is that algorithm in NumPy.
"""
import numpy as np

from . import runtime

FILE = "embedding.cu"


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
        rt.launch(FILE, "embedding_backward", N, 128,
                  (sorted_ids, order, xp.ascontiguousarray(gy).reshape(N, H), gw,
                   np.int32(N), np.int32(H)))
    return gw


def sorted_run_sums(ids, gy, V):
    """NumPy reference of the backward: stable sort, then each run of equal ids summed in
    order of position into its row of gw."""
    gw = np.zeros((V, gy.shape[1]), dtype=gy.dtype)
    order = np.argsort(ids, kind="stable")
    for n, pos in enumerate(order):
        if n == 0 or ids[order[n - 1]] != ids[pos]:
            acc = np.zeros(gy.shape[1], dtype=gy.dtype)
            m = n
            while m < len(order) and ids[order[m]] == ids[pos]:
                acc += gy[order[m]]
                m += 1
            gw[ids[pos]] = acc
    return gw
