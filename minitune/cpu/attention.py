"""Fused attention for numpy arrays: the reference's algorithm (ops/nn.py), one batch slice at
a time, on all cores.

    scores = q k^T * scale + mask_bias     (B, NH, T, T)
    probs  = softmax(scores)               over the keys
    out    = dropout(probs) v              (B, NH, T, HS)

The reference runs each step over the whole (B, NH, T, T) tensor: at B 32, T 128 that is 25 MB
per pass, far more than the caches, and every pass goes to memory. Here the batch is cut into
slices of a few sequences; a pool thread takes a slice and does every step for it -- the two
products (BLAS, on one thread: the pool is the parallelism) and, between them, one compiled
pass per row that scales, masks, shifts, exponentiates, normalises and drops out -- while the
slice's scores are still in its cache. The backward does the same with its four products and
the row pass

    gD = gout v^T;  gprobs = gD * keep * keep_scale
    gscores = probs * (gprobs - sum(gprobs * probs)) * scale
    gv = D^T gout,  gq = gscores k,  gk = gscores^T q,     D = probs * keep * keep_scale

The dropout mask is drawn from ``rng`` for the whole tensor before the slices are handed out,
in the reference's order, so a seed gives the same masks with and without fused ops.

supports: q, k, v float32 or float64 of one dtype, and a mask_bias that is None or BERT's
(B, 1, 1, T) / (1, 1, 1, T) additive mask; anything else runs on the reference.
saved: (q, k, v, probs, keep, keep_scale, scale) as the reference.
"""
import numpy as np

from ..ops.nn import dropout_keep_mask
from .threads import parallel_for, single_threaded_blas
from .vecmath import exp_row, kernel, row_max


@kernel
def _softmax_dropout_rows(s, mask, row0, rows_per_batch, scale, keep, keep_scale, dropped):
    """Rows of s (R, T): s = softmax(s * scale + mask) in place; dropped = s * keep * ks.

    mask (Bm, T): Bm = 1 (shared) or one row per sequence; row r of s belongs to sequence
    (row0 + r) // rows_per_batch. keep has zero rows when there is no dropout.
    """
    R, T = s.shape
    f = s.dtype.type
    arg = np.empty(T, s.dtype)
    acc = np.empty(16, s.dtype)
    for r in range(R):
        mrow = mask[0] if mask.shape[0] == 1 else mask[(row0 + r) // rows_per_batch]
        for j in range(T):
            arg[j] = s[r, j] * scale + mrow[j]
        total = exp_row(arg, s[r], row_max(arg, acc))      # shifted by the max: no overflow
        inv = f(1.0) / f(total)
        for j in range(T):
            s[r, j] *= inv
        if keep.shape[0]:
            for j in range(T):
                dropped[r, j] = s[r, j] * keep[r, j] * keep_scale


@kernel
def _softmax_dropout_backward_rows(g, probs, keep, keep_scale, scale, dropped):
    """Rows of g (R, T) = gout v^T, turned in place into gscores; dropped = probs*keep*ks."""
    R, T = g.shape
    f = g.dtype.type
    for r in range(R):
        if keep.shape[0]:
            for j in range(T):
                g[r, j] = g[r, j] * keep[r, j] * keep_scale
                dropped[r, j] = probs[r, j] * keep[r, j] * keep_scale
        dot = f(0.0)
        for j in range(T):
            dot += g[r, j] * probs[r, j]
        for j in range(T):
            g[r, j] = (g[r, j] - dot) * probs[r, j] * scale


def supports(q, k, v, mask_bias=None):
    if not (q.dtype == k.dtype == v.dtype and q.dtype in (np.float32, np.float64)):
        return False
    if mask_bias is None:
        return True
    B, NH, T, _ = q.shape
    return (mask_bias.dtype == q.dtype and mask_bias.ndim == 4
            and mask_bias.shape[1:] == (1, 1, T) and mask_bias.shape[0] in (1, B))


def _grain(B, NH, T):
    """Sequences per slice: about 1.5 MB of scores (cache-sized), at least one."""
    return max(1, (1 << 18) // (NH * T * T) + 1) if B > 1 else 1


def attention_forward(q, k, v, mask_bias, scale, dropout_p, rng):
    """As ops.nn.attention_forward: q, k, v (B, NH, T, HS) -> out (B, NH, T, HS), saved."""
    B, NH, T, HS = q.shape
    dt = q.dtype
    mask = (np.zeros((1, T), dt) if mask_bias is None
            else np.ascontiguousarray(mask_bias.reshape(mask_bias.shape[0], T)))
    keep, keep_scale = None, 1.0
    if dropout_p > 0.0:
        keep, keep_scale = dropout_keep_mask(rng, (B, NH, T, T), dropout_p)
        keep_scale = dt.type(keep_scale)
    probs = np.empty((B, NH, T, T), dt)
    out = np.empty((B, NH, T, HS), dt)
    no_rows = np.empty((0, T), dt)

    def slice_(c, lo, hi):
        s = probs[lo:hi]
        np.matmul(q[lo:hi], k[lo:hi].swapaxes(-1, -2), out=s)
        rows = s.reshape(-1, T)
        if keep is None:
            _softmax_dropout_rows(rows, mask, lo * NH * T, NH * T, dt.type(scale),
                                  no_rows.view(np.bool_), dt.type(1.0), no_rows)
            np.matmul(s, v[lo:hi], out=out[lo:hi])
        else:
            dropped = np.empty_like(s)
            _softmax_dropout_rows(rows, mask, lo * NH * T, NH * T, dt.type(scale),
                                  keep[lo:hi].reshape(-1, T), keep_scale,
                                  dropped.reshape(-1, T))
            np.matmul(dropped, v[lo:hi], out=out[lo:hi])

    with single_threaded_blas():
        parallel_for(slice_, B, grain=_grain(B, NH, T))
    return out, (q, k, v, probs, keep, keep_scale, scale)


def attention_backward(gout, saved):
    """As ops.nn.attention_backward: returns (gq, gk, gv), each (B, NH, T, HS)."""
    q, k, v, probs, keep, keep_scale, scale = saved
    B, NH, T, HS = q.shape
    dt = q.dtype
    gout = np.asarray(gout, dt)
    gq, gk, gv = (np.empty((B, NH, T, HS), dt) for _ in range(3))
    no_rows = np.empty((0, T), dt)

    def slice_(c, lo, hi):
        g = np.matmul(gout[lo:hi], v[lo:hi].swapaxes(-1, -2))          # gD (b, NH, T, T)
        p = probs[lo:hi]
        if keep is None:
            dropped = p
            _softmax_dropout_backward_rows(g.reshape(-1, T), p.reshape(-1, T),
                                           no_rows.view(np.bool_), dt.type(1.0),
                                           dt.type(scale), no_rows)
        else:
            dropped = np.empty_like(p)
            _softmax_dropout_backward_rows(g.reshape(-1, T), p.reshape(-1, T),
                                           keep[lo:hi].reshape(-1, T), keep_scale,
                                           dt.type(scale), dropped.reshape(-1, T))
        np.matmul(dropped.swapaxes(-1, -2), gout[lo:hi], out=gv[lo:hi])
        np.matmul(g, k[lo:hi], out=gq[lo:hi])
        np.matmul(g.swapaxes(-1, -2), q[lo:hi], out=gk[lo:hi])

    with single_threaded_blas():
        parallel_for(slice_, B, grain=_grain(B, NH, T))
    return gq, gk, gv
