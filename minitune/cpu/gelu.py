"""Fused bias + GELU, forward and backward, for numpy arrays (the reference: ops/nn.py).

    forward   u = x + bias;  y = u * Phi(u)
    backward  gx = gy * (Phi(u) + u * phi(u)),  phi(u) = exp(-u^2 / 2) / sqrt(2 pi)
              gbias = sum of gx over all rows

float64 uses the exact ``math.erf`` and ``math.exp``. float32 computes Phi (the normal CDF) as
the reference does: Abramowitz & Stegun 7.1.26 applied to a = |u| / sqrt 2,

    q = 0.5 * erfc(a) = 0.5 * t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) * exp(-a^2),
    t = 1 / (1 + p a),     Phi(u) = 1 - q for u >= 0, q for u < 0      (|error| < 3e-7),

and exp(-a^2) = exp(-u^2 / 2) is also what phi needs, so the backward pays one exp per
element for both. That exp is taken in base 2, the scale folded into the one multiply by |u|:

    b = |u| sqrt(log2(e) / 2),   m = b^2 = (u^2 / 2) log2(e),   exp(-u^2 / 2) = 2^-m
    2^-m = 2^-n 2^g,   n = round(m),   g = n - m  in [-1/2, 1/2]
    2^g ~ 1 + g P(g)       Cephes exp2f, P of degree 5 (relative error < 1.1e-7 in float32)
    2^-n = the float32 with exponent field 127 - n and mantissa 0 (``float32_from_bits``)

m is capped at 127, where the exponent field 0 with mantissa 0 is 0.0: the exp underflows to
exactly 0, as the library's does (so u = +-inf gives Phi 1 or 0, as in the reference). With b
in hand, p a = (p / sqrt(2 log2 e)) b, and the 0.5 of q goes into a1..a5.

Measured against the float64 GELU on every 1e-5 of [-10, 10] and 4 M normal draws of scale 4
(``benchmarks/bench_gelu.py``; ``test_float32_error_against_exact_gelu`` holds it there): max
|error| 4.22e-7 in y, 3.06e-7 in dy/du, as before this exp (4.22e-7, 3.10e-7). The largest
errors, near u = 3, are the float32 roundings of 1 - q and u Phi, not the approximations.

**The loops.** Each row is done in three loops: u = x + b into an L1 row, then everything up
to y (or dy/du) in one loop over that row, then (backward) the products with gy. The long
loop in the middle reads no memory beyond L1: a fused loop reading x straight from memory
was 1.23 times *slower* than the five short loops it replaced -- out-of-order execution
could not hide the memory latency in front of about 30 operations per element, most of them
dependent -- and reading u from an L1 row made it 0.65 times as long (8192 x 1536, one
thread; docs/cpu.md has the figures).

saved: (x, bias) -- the Linear's output before its bias, which nothing else keeps alive, and
the (I,) bias. The reference keeps u and Phi(u) besides, two more (N, I) arrays per layer; the
backward here recomputes them in the same pass that needs them.
"""
import math

import numpy as np

from .. import dispatch
from ..autograd import is_grad_enabled
from ..ops.matmul import LINEAR_REFERENCE
from ..ops.nn import GELU_REFERENCE, linear_gelu_backward  # noqa: F401 (this op's backward)
from .threads import parallel_for, reduction_bounds
from .vecmath import float32_from_bits, inline_kernel, kernel

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_B_SCALE = math.sqrt(0.5 / math.log(2.0))      # b = |u| _B_SCALE: b^2 = (u^2 / 2) log2(e)
_P_B = 0.3275911 * _SQRT_HALF / _B_SCALE       # A&S p a, as a multiple of b
_GRAIN = 16                  # rows per chunk at least (16 x I = 24 K elements at I = 1536)


@inline_kernel
def _phi_terms32(u):
    """For one float32 u: (Phi(u), exp(-u^2 / 2))."""
    f = np.float32
    b = abs(u) * f(_B_SCALE)
    m = min(b * b, f(127.0))
    n = np.rint(m)
    g = n - m                                              # e = 2^-n * 2^g
    p = f(1.535336188319500e-4)
    p = p * g + f(1.339887440266574e-3)
    p = p * g + f(9.618437357674640e-3)
    p = p * g + f(5.550332471162809e-2)
    p = p * g + f(2.402264791363012e-1)
    p = p * g + f(6.931472028550421e-1)
    e = (p * g + f(1.0)) * float32_from_bits(np.int32((127 - np.int32(n)) << 23))
    t = f(1.0) / (f(1.0) + f(_P_B) * b)
    poly = f(0.5 * 1.061405429) * t + f(0.5 * -1.453152027)
    poly = poly * t + f(0.5 * 1.421413741)
    poly = poly * t + f(0.5 * -0.284496736)
    poly = poly * t + f(0.5 * 0.254829592)
    q = poly * t * e                                       # 0.5 erfc(|u| / sqrt 2)
    return (f(1.0) - q if u >= f(0.0) else q), e


@kernel
def _forward_rows(c, lo, hi, x, bias, y, slope, with_slope):
    """y = gelu(x + bias) for rows lo..hi-1; with ``with_slope`` also slope = dy/du, the
    backward's formula (``_backward_rows``), written where the caller says (its x: see
    ``linear_gelu_forward``)."""
    f = x.dtype.type
    u = np.empty(x.shape[1], x.dtype)
    for r in range(lo, hi):
        xr, yr, sr = x[r], y[r], slope[r]
        for j in range(u.size):
            u[j] = xr[j] + bias[j]
        if u.itemsize == 8:
            for j in range(u.size):
                cdf = 0.5 * (1.0 + math.erf(u[j] * _SQRT_HALF))
                yr[j] = u[j] * cdf
                if with_slope:
                    sr[j] = cdf + u[j] * math.exp(-0.5 * u[j] * u[j]) * _INV_SQRT_2PI
        elif with_slope:
            for j in range(u.size):
                cdf, e = _phi_terms32(u[j])
                yr[j] = u[j] * cdf
                sr[j] = cdf + u[j] * e * f(_INV_SQRT_2PI)
        else:
            for j in range(u.size):
                cdf, _ = _phi_terms32(u[j])
                yr[j] = u[j] * cdf


@kernel
def _backward_rows(c, lo, hi, gy, x, bias, gx, gbias_part):
    f = x.dtype.type
    u = np.empty(x.shape[1], x.dtype)
    dydu = np.empty_like(u)
    acc = gbias_part[c]
    for r in range(lo, hi):
        xr, gyr, gxr = x[r], gy[r], gx[r]
        for j in range(u.size):
            u[j] = xr[j] + bias[j]
        if u.itemsize == 8:
            for j in range(u.size):
                cdf = 0.5 * (1.0 + math.erf(u[j] * _SQRT_HALF))
                dydu[j] = cdf + u[j] * math.exp(-0.5 * u[j] * u[j]) * _INV_SQRT_2PI
        else:
            for j in range(u.size):
                cdf, e = _phi_terms32(u[j])
                dydu[j] = cdf + u[j] * e * f(_INV_SQRT_2PI)
        _times_slope(gyr, dydu, gxr, acc)


@kernel
def _slope_backward_rows(c, lo, hi, gy, slope, gx, gbias_part):
    """gx = gy * slope for rows lo..hi-1, the slope dy/du saved by the forward."""
    acc = gbias_part[c]
    for r in range(lo, hi):
        _times_slope(gy[r], slope[r], gx[r], acc)


@inline_kernel
def _times_slope(gy, dydu, gx, acc):
    """gx = gy * dy/du along a row; acc (the bias gradient's share, float64) += gx."""
    for j in range(gx.size):
        g = gy[j] * dydu[j]
        gx[j] = g
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
    parallel_for(_forward_rows, x2.shape[0], x2, b, _rows(y), x2, False, grain=_GRAIN)
    return y, (x, b, bias is not None)


def gelu_backward(gy, saved):
    """As ops.nn.gelu_backward: returns (gx, gbias) (gbias None without a bias)."""
    x, b, has_bias = saved
    return _backward(_backward_rows, gy, x, (b,), has_bias)


def _backward(rows_kernel, gy, saved, extra, has_bias):
    """gx (of saved's shape) and gbias from a backward row kernel run on (gy, saved, *extra,
    gx, part), gy and saved (..., I) as rows: each chunk of rows adds its gx into its own
    float64 row of ``part``, summed at the end."""
    gy2 = _rows(np.ascontiguousarray(gy, dtype=saved.dtype))
    gx = np.empty_like(saved)
    n = gy2.shape[0]
    bounds = reduction_bounds(n, _GRAIN)
    part = np.zeros((len(bounds), saved.shape[-1]), np.float64)
    parallel_for(rows_kernel, n, gy2, _rows(saved), *extra, _rows(gx), part, bounds=bounds)
    return gx, part.sum(axis=0).astype(saved.dtype) if has_bias else None


# Linear + GELU: the forward keeps GELU's slope, so the backward needs no erf and no exp.

def _slope_backward(gy, saved):
    """GELU's backward from the slope the forward kept: (gx, gbias)."""
    slope, has_bias = saved
    return _backward(_slope_backward_rows, gy, slope, (), has_bias)


_FROM_SLOPE = dispatch.Implementation("gelu", backward=_slope_backward)


def linear_gelu_forward(x, w, b, precision="fp32"):
    """As ops.nn.linear_gelu_forward: x (..., IN), w (I, IN), b (I,) -> y = gelu(x w^T + b)
    (..., I), and what ops.nn.linear_gelu_backward needs -- which is this op's backward too.

    The product u = x w^T is this op's own array, read by nothing after the GELU pass. When a
    backward will run, that pass writes GELU's slope dy/du over it, row by row, as it computes
    y (the backward's formula: the same bits): the backward is then gx = gy * dy/du and the
    bias gradient, with no erf or exp to recompute (``_slope_backward``), and nothing more is
    kept than before (one (N, I) array). Measured at 4096 x 1536, two threads: the GELU
    forward 2.45 -> 2.88 ms, its backward 5.12 -> 3.57 ms (docs/cpu.md). Under no_grad, or for
    arrays the GELU kernel does not take, the reference's composition."""
    linear = dispatch.implementation("linear", LINEAR_REFERENCE, x, w)
    u, linear_saved = linear.forward(x, w, None, precision)
    act = dispatch.implementation("gelu", GELU_REFERENCE, u)
    if not (is_grad_enabled() and act.forward is gelu_forward):
        y, gelu_saved = act.forward(u, b)
        return y, (linear, linear_saved, act, gelu_saved)
    bias = np.asarray(b, u.dtype) if b is not None else np.zeros(u.shape[-1], u.dtype)
    y = np.empty_like(u)
    u2 = _rows(u)
    parallel_for(_forward_rows, u2.shape[0], u2, bias, _rows(y), u2, True, grain=_GRAIN)
    return y, (linear, linear_saved, _FROM_SLOPE, (u, b is not None))

