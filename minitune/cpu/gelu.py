"""Fused bias + GELU, forward and backward, for numpy arrays (the reference: ops/nn.py).

    forward   u = x + bias;  y = u * Phi(u)
    backward  gx = gy * (Phi(u) + u * phi(u)),  phi(u) = exp(-u^2 / 2) / sqrt(2 pi)
              gbias = sum of gx over all rows

One pass over each row does all of it. Phi (the normal CDF) in float32 is the reference's:
Abramowitz & Stegun 7.1.26 applied to a = |u| / sqrt 2,

    q = 0.5 * erfc(a) = 0.5 * t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) * exp(-a^2),
    t = 1 / (1 + p a),     Phi(u) = 1 - q for u >= 0, q for u < 0      (|error| < 3e-7),

and exp(-a^2) = exp(-u^2 / 2) is also what phi needs, so the backward pays one exp per
element for both. float64 uses the exact ``math.erf`` and ``math.exp``.

saved: (x, bias) -- the Linear's output before its bias, which nothing else keeps alive, and
the (I,) bias. The reference keeps u and Phi(u) besides, two more (N, I) arrays per layer; the
backward here recomputes them in the same pass that needs them.
"""
import math

import numpy as np

from .threads import parallel_for, reduction_bounds
from .vecmath import exp_row, inline_kernel, kernel

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GRAIN = 16                  # rows per chunk at least (16 x I = 24 K elements at I = 1536)


@inline_kernel
def _phi_terms(u, e, cdf):
    """For a row u: e[j] = exp(-u^2/2) (both) and cdf[j] = Phi(u[j])."""
    f = u.dtype.type
    if u.itemsize == 8:
        for j in range(u.size):
            cdf[j] = 0.5 * (1.0 + math.erf(u[j] * _SQRT_HALF))
            e[j] = math.exp(-0.5 * u[j] * u[j])
        return
    for j in range(u.size):
        cdf[j] = f(-0.5) * u[j] * u[j]                # the exponent, kept in cdf for now
    exp_row(cdf, e, e.view(np.int32), 0.0)
    for j in range(u.size):
        a = abs(u[j]) * f(_SQRT_HALF)
        t = f(1.0) / (f(1.0) + f(0.3275911) * a)
        poly = f(1.061405429) * t + f(-1.453152027)
        poly = poly * t + f(1.421413741)
        poly = poly * t + f(-0.284496736)
        poly = poly * t + f(0.254829592)
        q = f(0.5) * poly * t * e[j]
        cdf[j] = f(1.0) - q if u[j] >= f(0.0) else q


@kernel
def _forward_rows(c, lo, hi, x, bias, y):
    u = np.empty(x.shape[1], x.dtype)
    e = np.empty_like(u)
    cdf = np.empty_like(u)
    for r in range(lo, hi):
        for j in range(u.size):
            u[j] = x[r, j] + bias[j]
        _phi_terms(u, e, cdf)
        for j in range(u.size):
            y[r, j] = u[j] * cdf[j]


@kernel
def _backward_rows(c, lo, hi, gy, x, bias, gx, gbias_part):
    f = x.dtype.type
    u = np.empty(x.shape[1], x.dtype)
    e = np.empty_like(u)
    cdf = np.empty_like(u)
    acc = gbias_part[c]
    for r in range(lo, hi):
        for j in range(u.size):
            u[j] = x[r, j] + bias[j]
        _phi_terms(u, e, cdf)
        for j in range(u.size):
            g = gy[r, j] * (cdf[j] + u[j] * e[j] * f(_INV_SQRT_2PI))
            gx[r, j] = g
            acc[j] += g


def _rows(a):
    return a.reshape(-1, a.shape[-1])


def supports(x, *rest):
    return x.dtype in (np.float32, np.float64) and x.ndim >= 1 and x.flags.c_contiguous


def gelu_forward(x, bias=None):
    """As ops.nn.gelu_forward: x (..., I), bias (I,) or None -> y (..., I), saved (x, bias)."""
    b = np.zeros(x.shape[-1], x.dtype) if bias is None else np.asarray(bias, x.dtype)
    y = np.empty_like(x)
    x2 = _rows(x)
    parallel_for(_forward_rows, x2.shape[0], x2, b, _rows(y), grain=_GRAIN)
    return y, (x, b, bias is not None)


def gelu_backward(gy, saved):
    """As ops.nn.gelu_backward: returns (gx, gbias) (gbias None without a bias)."""
    x, b, has_bias = saved
    x2 = _rows(x)
    gy2 = _rows(np.ascontiguousarray(gy, dtype=x.dtype))
    gx = np.empty_like(x)
    n = x2.shape[0]
    bounds = reduction_bounds(n, _GRAIN)
    part = np.zeros((len(bounds), x2.shape[1]), np.float64)
    parallel_for(_backward_rows, n, gy2, x2, b, _rows(gx), part, bounds=bounds)
    return gx, part.sum(axis=0).astype(x.dtype) if has_bias else None
