"""Fused residual + LayerNorm, and dropout + residual + LayerNorm, forward and backward, for
numpy arrays (reference: ops/nn.py ``layer_norm_*`` and ``dropout_layer_norm_*``).

Per row of H values (u = x + residual, or u = dropout(x) + residual):

    forward   u    = x * keep * scale + residual          (without dropout: x + residual)
              mean = sum(u) / H,  rstd = 1 / sqrt(sum((u - mean)^2) / H + eps)
              xhat = (u - mean) * rstd,  y = xhat * w + b
    backward  gxhat = gy * w
              gu = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
              gx = gu * keep * scale                     (without dropout: gx = gu)
              gw = sum over rows of gy * xhat,  gb = sum over rows of gy

gu is the gradient of u, so also the residual's. Each row is read once into cache and finished
there (the reference makes about nine passes over the whole (N, H) array each way). Sums are
kept in the arrays' dtype: a row's (mean, variance, the backward's two means) in one
vectorised scalar sum; the column sums of gw and gb in one (H,) row per chunk (four chunks per
thread, one with a single thread), the chunks' rows added up at the end -- runs of float32
additions no longer than the reference's, which adds all N rows into one row. (They were
float64 once; in float32, 4096 x 384 on two threads, ``benchmarks/bench_fused_ops.py
--threads 2``: forward 0.95 -> 0.70-0.76 ms, backward 1.23 -> 1.00-1.02 ms.)

**Dropout inside the row pass.** The mask is cpu/dropout.py's: one seed drawn per call from
the op's Generator, keep flag of element e of the flat (N, H) array from (seed, e), so row r
has the draws of elements r H ... r H + H - 1 (``row_draws``), compared with the threshold
where the row pass applies them (``kept``), and recomputed in the backward. The arithmetic
is that of the dropout op followed by this LayerNorm -- ``x * scale`` rounded to x's dtype,
then ``+ residual``; ``gu`` rounded, then ``* scale`` -- so fused or not, a training run
computes the same bits; it saves one pass over (N, H) each way (the dropout op's read and
write of the whole array).

Shapes: x, residual (..., H), seen as N rows of H. saved: (xhat (..., H), rstd (..., 1), w) as
the reference (xhat None under no_grad, when no backward will run); with dropout also the mask
(True, seed, threshold, scale), as cpu/dropout.py's.
"""
import numpy as np

from ..autograd import GradTerms, is_grad_enabled
from ..ops.nn import dropout_threshold
from .dropout import draw_seed, kept, mask_scratch, row_draws
from .threads import parallel_for, reduction_bounds
from .vecmath import kernel

_GRAIN = 32          # rows per chunk at least


@kernel
def _forward_rows(c, lo, hi, x, residual, has_residual, w, b, eps, y, xhat, rstd,
                  dropout, seed, threshold, scale, keep_xhat):
    H = x.shape[1]
    f = x.dtype.type
    u = np.empty(H, x.dtype)
    words, draws = mask_scratch(H)
    for r in range(lo, hi):
        if dropout:                             # u = x * keep * scale, as the dropout op
            skip = row_draws(seed, r * H, H, words)
            for j in range(H):
                u[j] = x[r, j] * scale if kept(draws, skip + j, threshold) else f(0.0)
            if has_residual:                    # a loop of its own: no FMA with the above
                for j in range(H):
                    u[j] += residual[r, j]
        elif has_residual:                      # one loop over row views: 0.8x the time
            xr, rr = x[r], residual[r]          # of a copy and an add (8192 x 384)
            for j in range(H):
                u[j] = xr[j] + rr[j]
        else:
            u[:] = x[r]
        s = f(0.0)
        for j in range(H):
            s += u[j]
        mean = s / f(H)
        s2 = f(0.0)
        for j in range(H):
            d = u[j] - mean
            s2 += d * d
        rs = f(1.0) / np.sqrt(s2 / f(H) + f(eps))
        rstd[r] = rs
        y_r = y[r]
        if keep_xhat:
            xhat_r = xhat[r]
            for j in range(H):
                xh = (u[j] - mean) * rs
                xhat_r[j] = xh
                y_r[j] = xh * w[j] + b[j]
        else:                                   # under no_grad: nothing will read xhat
            for j in range(H):
                xh = (u[j] - mean) * rs
                y_r[j] = xh * w[j] + b[j]


@kernel
def _backward_rows(c, lo, hi, gy, gy_more, two_terms, xhat, rstd, w, gu, gw_part, gb_part,
                   dropout, seed, threshold, scale, gx):
    """With ``two_terms`` the output's gradient is gy + gy_more (autograd.GradTerms), added
    here, row by row, into an L1 row (a loop of its own: the same bits as the engine's sum)."""
    H = gy.shape[1]
    f = gy.dtype.type
    gw_acc, gb_acc = gw_part[c], gb_part[c]
    gxhat = np.empty(H, gy.dtype)
    total = np.empty(H, gy.dtype)
    words, draws = mask_scratch(H)
    for r in range(lo, hi):
        gy_r, xhat_r, gu_r = gy[r], xhat[r], gu[r]
        if two_terms:
            more_r = gy_more[r]
            for j in range(H):
                total[j] = gy_r[j] + more_r[j]
            gy_r = total
        s1 = f(0.0)
        s2 = f(0.0)
        for j in range(H):
            gxhat[j] = gy_r[j] * w[j]           # stored once: both uses see the same rounding
            s1 += gxhat[j]
            s2 += gxhat[j] * xhat_r[j]
        m1, m2 = s1 / f(H), s2 / f(H)
        rs = rstd[r]
        for j in range(H):
            gu_r[j] = rs * (gxhat[j] - m1 - xhat_r[j] * m2)
            gw_acc[j] += gy_r[j] * xhat_r[j]
            gb_acc[j] += gy_r[j]
        if dropout:                             # gx = gu * keep * scale, gu as stored
            skip = row_draws(seed, r * H, H, words)
            gx_r = gx[r]
            for j in range(H):
                gx_r[j] = gu_r[j] * scale if kept(draws, skip + j, threshold) else f(0.0)


def supports(x, *rest):
    return x.dtype in (np.float32, np.float64) and x.ndim >= 1


def _rows(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1, a.shape[-1])


_NO_DROPOUT = (False, np.uint64(0), 0, 1.0)     # (dropout, seed, threshold, scale)
SKIP_XHAT = True     # under no_grad, write no xhat (a switch for bench_bert.py --ab skip_xhat)


def _forward(x, w, b, eps, residual, mask):
    """y, xhat (..., H) and rstd (..., 1) of LN(x + residual), x first through ``mask``."""
    dt = x.dtype
    x2 = _rows(x, dt)
    res2 = x2 if residual is None else _rows(residual, dt)
    n = x2.shape[0]
    # Under no_grad no backward will read xhat: the forward then writes y alone (the eval
    # forward at 64 x 128 writes 13 fewer (B, T, H) arrays), and saves None for it.
    keep_xhat = is_grad_enabled() or not SKIP_XHAT
    y = np.empty(x.shape, dt)
    xhat = np.empty(x.shape, dt) if keep_xhat else None
    rstd = np.empty(x.shape[:-1] + (1,), dt)
    dropout, seed, threshold, scale = mask
    parallel_for(_forward_rows, n, x2, res2, residual is not None, w.astype(dt, copy=False),
                 b.astype(dt, copy=False), float(eps), y.reshape(n, -1),
                 xhat.reshape(n, -1) if keep_xhat else np.empty((0, x.shape[-1]), dt),
                 rstd.reshape(n), dropout, seed, threshold, dt.type(scale), keep_xhat,
                 grain=_GRAIN)
    return y, xhat, rstd


def _backward(gy, xhat, rstd, w, mask):
    """(gu, gx, gw, gb): gu the gradient of u = x' + residual, gx that of x (gu itself
    without dropout). gy: an array, or autograd.GradTerms whose sum the row pass makes (the
    first terms added beforehand when there are more than two)."""
    dt = xhat.dtype
    more = None
    if isinstance(gy, GradTerms):
        gy, more = (GradTerms(gy[:-1]).total(), gy[-1]) if len(gy) > 1 else (gy[0], None)
    gy2 = _rows(gy, dt)
    more2 = gy2 if more is None else _rows(more, dt)
    n, H = gy2.shape
    gu = np.empty(xhat.shape, dt)
    dropout, seed, threshold, scale = mask
    gx = np.empty(xhat.shape, dt) if dropout else gu
    bounds = reduction_bounds(n, _GRAIN)
    gw_part, gb_part = np.zeros((len(bounds), H), dt), np.zeros((len(bounds), H), dt)
    parallel_for(_backward_rows, n, gy2, more2, more is not None, xhat.reshape(n, H),
                 rstd.reshape(n), w.astype(dt, copy=False), gu.reshape(n, H), gw_part,
                 gb_part, dropout, seed, threshold, dt.type(scale), gx.reshape(n, H),
                 bounds=bounds)
    return gu, gx, gw_part.sum(axis=0).astype(w.dtype), gb_part.sum(axis=0).astype(w.dtype)


def layer_norm_forward(x, w, b, eps, residual=None):
    """As ops.nn.layer_norm_forward: x, residual (..., H), w, b (H,) -> y (..., H),
    saved (xhat (..., H), rstd (..., 1), w)."""
    y, xhat, rstd = _forward(x, w, b, eps, residual, _NO_DROPOUT)
    return y, (xhat, rstd, w)


def layer_norm_backward(gy, saved):
    """As ops.nn.layer_norm_backward: returns (gx, gw, gb)."""
    xhat, rstd, w = saved
    gx, _, gw, gb = _backward(gy, xhat, rstd, w, _NO_DROPOUT)
    return gx, gw, gb


def dropout_layer_norm_forward(x, w, b, eps, residual, p, rng):
    """As ops.nn.dropout_layer_norm_forward: LN(dropout(x) + residual), x, residual (..., H)
    (residual may be None), w, b (H,) -> y (..., H); saved (xhat, rstd, w, mask), mask =
    (True, seed, threshold, scale) with the seed drawn as cpu/dropout.py draws it."""
    threshold, scale = dropout_threshold(p)
    mask = (True, draw_seed(rng), threshold, scale)
    y, xhat, rstd = _forward(x, w, b, eps, residual, mask)
    return y, (xhat, rstd, w, mask)


def dropout_layer_norm_backward(gy, saved):
    """As ops.nn.dropout_layer_norm_backward: returns (gx, gw, gb, gresidual)."""
    xhat, rstd, w, mask = saved
    gu, gx, gw, gb = _backward(gy, xhat, rstd, w, mask)
    return gx, gw, gb, gu
