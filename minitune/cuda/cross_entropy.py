"""Softmax cross-entropy with ignore_index (kernels/cross_entropy.cu).

Same arguments and results as ``minitune.ops.loss.cross_entropy_forward/backward``; ``saved``
is (z (N, K), t (N,) int64, lse (N,), count (1,) on the device, logits shape, reduction,
ignore_index): no (N, K) log-probabilities are kept. The reduced loss and the count of counted
rows stay on the device; the one host read is the 4-byte flag of out-of-range targets, so that
a bad label raises the reference's clear error (a synchronisation; docs/kernels.md). A step
being captured as a CUDA graph skips it: its caller checks the labels on the host.
``online_logsumexp`` is the NumPy picture of the forward's per-lane running max and sum.
"""
import numpy as np

from . import graph, runtime

FILE = "cross_entropy.cu"
MODES = {"none": 0, "sum": 1, "mean": 2}


def supports(logits, *rest):
    return logits.dtype == np.float32 and logits.ndim >= 1 and logits.shape[-1] > 0


def forward(logits, target, ignore_index, reduction):
    rt = runtime.for_array(logits)
    xp = rt.xp
    K = logits.shape[-1]
    z = xp.ascontiguousarray(logits).reshape(-1, K)
    t = xp.ascontiguousarray(target.reshape(-1), dtype=np.int64)
    N = z.shape[0]
    losses = xp.zeros(N, dtype=np.float32)
    lse = xp.zeros(N, dtype=np.float32)
    bad = xp.zeros(1, dtype=np.int32)
    out = xp.empty(1, dtype=np.float32)
    count = xp.empty(1, dtype=np.float32)
    if N:
        rt.launch(FILE, "cross_entropy_forward", (N + 7) // 8, 256,
                  (z, t, losses, lse, np.int32(N), np.int32(K), np.int64(ignore_index), bad))
    if not graph.capturing() and int(bad[0]):             # the one host read (see above)
        wrong = t[(t != ignore_index) & ((t < 0) | (t >= K))]
        raise ValueError(f"cross_entropy: targets must be in [0, {K}) or ignore_index "
                         f"{ignore_index}, got {wrong[:5].tolist()}")
    rt.launch(FILE, "cross_entropy_reduce", 1, 256,
              (losses, t, np.int32(N), np.int64(ignore_index), np.int32(reduction == "mean"),
               out, count))
    saved = (z, t, lse, count, logits.shape, reduction, ignore_index)
    if reduction == "none":
        return losses.reshape(target.shape), saved
    return out.reshape(()), saved


def backward(gy, saved):
    z, t, lse, count, shape, reduction, ignore_index = saved
    rt = runtime.for_array(z)
    xp = rt.xp
    N, K = z.shape
    g = xp.empty_like(z)
    gy = xp.ascontiguousarray(gy, dtype=np.float32).reshape(-1)
    if N:
        block = min(256, (K + 31) // 32 * 32)
        rt.launch(FILE, "cross_entropy_backward", ((K + block - 1) // block, min(N, 65535)), block,
                  (z, t, lse, gy, count, g, np.int32(N), np.int32(K), np.int64(ignore_index),
                   np.int32(MODES[reduction])))
    return g.reshape(shape)


def online_logsumexp(z, lanes=32):
    """NumPy reference of the forward's row reduction: lane l visits columns l, l + lanes, ...
    keeping a running max m and a sum s rescaled whenever m grows; lanes then combine."""
    N, K = z.shape
    m = np.full((N, lanes), -np.inf, dtype=z.dtype)
    s = np.zeros((N, lanes), dtype=z.dtype)
    for j in range(K):
        lane, v = j % lanes, z[:, j]
        grows = v > m[:, lane]
        with np.errstate(invalid="ignore", over="ignore"):
            s[:, lane] = np.where(grows, s[:, lane] * np.exp(m[:, lane] - v) + 1,
                                  s[:, lane] + np.exp(v - m[:, lane]))
        m[:, lane] = np.maximum(m[:, lane], v)
    m_all = m.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        s = np.where(m == -np.inf, 0, s * np.exp(m - m_all))
    return m_all[:, 0] + np.log(s.sum(axis=1))
