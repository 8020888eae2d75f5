"""Fused residual + LayerNorm, forward and backward, for numpy arrays (reference: ops/nn.py).

Per row of H values (u = x + residual):

    forward   mean = sum(u) / H,  rstd = 1 / sqrt(sum((u - mean)^2) / H + eps)
              xhat = (u - mean) * rstd,  y = xhat * w + b
    backward  gxhat = gy * w
              gx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
              gw = sum over rows of gy * xhat,  gb = sum over rows of gy

Each row is read once into cache and finished there (the reference makes about nine passes
over the whole (N, H) array each way). The row sums are accumulated in float64 scalars, the
column sums of gw and gb in one float64 (H,) row per chunk, added up at the end.

saved: (xhat (N, H), rstd (N,), w) as the reference.
"""
import numpy as np

from .threads import parallel_for, reduction_bounds
from .vecmath import kernel

_GRAIN = 32          # rows per chunk at least


@kernel
def _forward_rows(c, lo, hi, x, residual, has_residual, w, b, eps, y, xhat, rstd):
    H = x.shape[1]
    u = np.empty(H, x.dtype)
    for r in range(lo, hi):
        if has_residual:
            for j in range(H):
                u[j] = x[r, j] + residual[r, j]
        else:
            u[:] = x[r]
        s = 0.0
        for j in range(H):
            s += u[j]
        mean = s / H
        s2 = 0.0
        for j in range(H):
            d = u[j] - mean
            s2 += d * d
        rs = 1.0 / np.sqrt(s2 / H + eps)
        rstd[r] = rs
        for j in range(H):
            xh = (u[j] - mean) * rs
            xhat[r, j] = xh
            y[r, j] = xh * w[j] + b[j]


@kernel
def _backward_rows(c, lo, hi, gy, xhat, rstd, w, gx, gw_part, gb_part):
    H = gy.shape[1]
    gw_acc, gb_acc = gw_part[c], gb_part[c]
    gxhat = np.empty(H, gy.dtype)
    for r in range(lo, hi):
        s1 = 0.0
        s2 = 0.0
        for j in range(H):
            gxhat[j] = gy[r, j] * w[j]          # stored once: both uses see the same rounding
            s1 += gxhat[j]
            s2 += gxhat[j] * xhat[r, j]
        m1, m2 = s1 / H, s2 / H
        rs = rstd[r]
        for j in range(H):
            gx[r, j] = rs * (gxhat[j] - m1 - xhat[r, j] * m2)
            gw_acc[j] += gy[r, j] * xhat[r, j]
            gb_acc[j] += gy[r, j]


def supports(x, *rest):
    return x.dtype in (np.float32, np.float64) and x.ndim >= 1


def _rows(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1, a.shape[-1])


def layer_norm_forward(x, w, b, eps, residual=None):
    """As ops.nn.layer_norm_forward: x, residual (..., H), w, b (H,) -> y (..., H),
    saved (xhat (..., H), rstd (..., 1), w)."""
    dt = x.dtype
    x2 = _rows(x, dt)
    res2 = x2 if residual is None else _rows(residual, dt)
    n = x2.shape[0]
    y, xhat = np.empty(x.shape, dt), np.empty(x.shape, dt)
    rstd = np.empty(x.shape[:-1] + (1,), dt)
    parallel_for(_forward_rows, n, x2, res2, residual is not None, w.astype(dt, copy=False),
                 b.astype(dt, copy=False), float(eps), y.reshape(n, -1), xhat.reshape(n, -1),
                 rstd.reshape(n), grain=_GRAIN)
    return y, (xhat, rstd, w)


def layer_norm_backward(gy, saved):
    """As ops.nn.layer_norm_backward: returns (gx, gw, gb)."""
    xhat, rstd, w = saved
    dt = xhat.dtype
    gy2 = _rows(gy, dt)
    n, H = gy2.shape
    gx = np.empty(xhat.shape, dt)
    bounds = reduction_bounds(n, _GRAIN)
    gw_part, gb_part = np.zeros((len(bounds), H)), np.zeros((len(bounds), H))
    parallel_for(_backward_rows, n, gy2, xhat.reshape(n, H), rstd.reshape(n),
                 w.astype(dt, copy=False), gx.reshape(n, H), gw_part, gb_part, bounds=bounds)
    return gx, gw_part.sum(axis=0).astype(w.dtype), gb_part.sum(axis=0).astype(w.dtype)
