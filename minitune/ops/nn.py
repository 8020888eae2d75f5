"""Neural-network ops: gelu, softmax, log_softmax, layer_norm, embedding, dropout, where,
masked_fill. Each keeps exactly what its backward needs."""
import math

import numpy as np

from ..autograd import Function, sum_to
from ..backend import device_of, get_array_module, to_device

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_BLOCK = 1 << 15      # elements per chunk in the float32 erf: keeps temporaries in cache


def erf(x):
    """The error function, elementwise, for numpy or cupy arrays.

    float64 (and cupy) use the library erf, exact to rounding. float32 on numpy uses
    Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7 in exact arithmetic; evaluated in float32 the
    absolute error reaches 6.5e-7, near |x| ~ 0.03 where 1 - poly * exp(-x^2) cancels, so small
    arguments have poor *relative* accuracy: erf(1e-5) is 2% off. Harmless inside GELU, which
    adds erf to 1), evaluated in cache-sized chunks: about 4x faster than scipy's erf, which
    computes float32 in float64.
    """
    xp = get_array_module(x)
    if xp is not np:
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    if x.dtype != np.float32:
        from scipy.special import erf as scipy_erf
        return scipy_erf(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    for i in range(0, flat.size, _BLOCK):
        out[i:i + _BLOCK] = _erf_as_float32(flat[i:i + _BLOCK])
    return out.reshape(x.shape)


def _erf_as_float32(x):
    """erf(x) = 1 - t*(a1 + t*(a2 + ... + t*a5)) * exp(-x^2), t = 1/(1 + p|x|), odd-extended."""
    f = np.float32
    a = np.abs(x)
    t = 1.0 / (f(1.0) + f(0.3275911) * a)
    poly = f(1.061405429) * t + f(-1.453152027)
    poly = poly * t + f(1.421413741)
    poly = poly * t + f(-0.284496736)
    poly = poly * t + f(0.254829592)
    poly *= t
    poly *= np.exp(-a * a)
    return np.copysign(f(1.0) - poly, x)


def _normal_cdf_float32(x):
    """Phi(x), the standard normal CDF, for a float32 numpy array, in cache-sized chunks.

    Phi(x) = 0.5 * erfc(-x / sqrt 2). With a = |x| / sqrt 2 and A&S 7.1.26,
    q = 0.5 erfc(a) = 0.5 poly(t) exp(-a^2), t = 1 / (1 + p a), and
        Phi(x) = 0.5 + sign(x) (0.5 - q)        (|error| < 3e-7).
    Each chunk is worked on in place, so the temporaries stay in cache.
    """
    f = np.float32
    flat = np.ascontiguousarray(x).reshape(-1)
    cdf = np.empty_like(flat)
    for i in range(0, flat.size, _BLOCK):
        xb, out = flat[i:i + _BLOCK], cdf[i:i + _BLOCK]
        a = np.abs(xb)
        a *= f(_SQRT_HALF)
        t = a * f(0.3275911)
        t += f(1.0)
        np.reciprocal(t, out=t)
        np.multiply(t, f(1.061405429), out=out)
        for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
            out += f(c)
            out *= t
        np.square(a, out=a)
        np.negative(a, out=a)
        np.exp(a, out=a)
        out *= a                      # poly * exp(-a^2) = erfc(|x| / sqrt 2)
        out *= f(-0.5)
        out += f(0.5)                 # 0.5 - q
        np.copysign(out, xb, out=out)
        out += f(0.5)
    return cdf.reshape(x.shape)


class GELU(Function):
    """gelu(x) = x * Phi(x), Phi(x) = 0.5 * (1 + erf(x / sqrt(2))): exact, as in Hugging Face BERT.

    float64 (and cupy) evaluate erf exactly; float32 on numpy uses the chunked
    approximation ``_normal_cdf_float32`` (|Phi error| < 3e-7).
    """

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if xp is np and x.dtype == np.float32:
            self.cdf = _normal_cdf_float32(x)
        else:
            self.cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
        return x * self.cdf

    def backward(self, gy):
        # d/dx [x Phi(x)] = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
        xp = get_array_module(gy)
        x = self.x
        pdf = xp.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return gy * (self.cdf + x * pdf)


class Softmax(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        y = x - x.max(axis=self.axis, keepdims=True)    # shift: exp never overflows
        xp.exp(y, out=y)
        y /= y.sum(axis=self.axis, keepdims=True)
        self.y = y
        return y

    def backward(self, gy):
        # Jacobian diag(y) - y y^T applied to gy:  gx = y * (gy - sum(gy * y))
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = x - _logsumexp(x, self.axis)
        return self.y

    def backward(self, gy):
        # y = x - logsumexp(x):  gx = gy - softmax(x) * sum(gy)
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def _logsumexp(x, axis):
    """log(sum(exp(x))) over ``axis`` with keepdims, computed without overflow."""
    xp = get_array_module(x)
    m = x.max(axis=axis, keepdims=True)
    return m + xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))


class LayerNorm(Function):
    """Normalise over the last axis: y = (x - mean) / sqrt(var + eps) * w + b.

    Shapes: x (..., H), w (H,), b (H,) -> y (..., H). Saves xhat and rstd for backward.
    """

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x, w, b):
        if w.shape != x.shape[-1:] or b.shape != x.shape[-1:]:
            raise ValueError(f"layer_norm: input {x.shape} needs weight and bias of shape "
                             f"{x.shape[-1:]}, got {w.shape} and {b.shape}")
        xp = get_array_module(x)
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        self.rstd = 1.0 / xp.sqrt(var + self.eps)
        self.xhat = xc * self.rstd
        self.w = w
        return self.xhat * w + b

    def backward(self, gy):
        # gxhat = gy * w
        # gx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))   (mean over H)
        # gw = sum over rows of gy * xhat,  gb = sum over rows of gy
        xhat, rstd = self.xhat, self.rstd
        gxhat = gy * self.w
        gx = rstd * (gxhat - gxhat.mean(axis=-1, keepdims=True)
                     - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True))
        lead = tuple(range(gy.ndim - 1))
        gw = (gy * xhat).sum(axis=lead) if self.inputs[1].requires_grad else None
        gb = gy.sum(axis=lead) if self.inputs[2].requires_grad else None
        return gx, gw, gb


class Embedding(Function):
    """Row lookup: ids (...) integer, weight (V, H) -> (..., H)."""

    def forward(self, ids, weight):
        if ids.dtype.kind not in "iu":
            raise ValueError(f"embedding: ids must be integers, got {ids.dtype}")
        # ids usually come from the tokenizer as numpy: copy them (small) to the weight's device
        ids = to_device(ids, device_of(weight))
        if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
            raise ValueError(f"embedding: ids must lie in [0, {weight.shape[0]}), "
                             f"got min {ids.min()} max {ids.max()}")
        self.ids, self.weight_shape = ids, weight.shape
        return weight[ids]

    def backward(self, gy):
        # each row of gy is added to the weight row it was read from; a repeated id adds
        # several times, so the scatter must accumulate
        xp = get_array_module(gy)
        gw = xp.zeros(self.weight_shape, dtype=gy.dtype)
        ids = self.ids.reshape(-1)
        g2 = gy.reshape(-1, self.weight_shape[1])
        if ids.size == 0:
            return None, gw
        if xp is np:
            # sort the rows by id, sum each run of equal ids, write each sum once
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            gw[sorted_ids[starts]] = np.add.reduceat(g2[order], starts, axis=0)
        else:
            xp.add.at(gw, ids, g2)
        return None, gw


class Dropout(Function):
    """Zero each element with probability p, scale the rest by 1/P(keep) (inverted dropout).

    The mask comes from 16-bit uniform draws: an element is kept when its draw is at least
    round(p * 2^16), so P(keep) = 1 - round(p * 2^16) / 2^16 (within 8e-6 of 1 - p) and the
    scale is exactly 1/P(keep), keeping E[y] = x. 16-bit draws cost half as much as float32
    ones, and the boolean mask a quarter of the memory of a float mask.
    """

    def __init__(self, p, rng):
        self.p, self.rng = p, rng

    def forward(self, x):
        xp = get_array_module(x)
        threshold = int(round(self.p * 65536))
        keep = self.rng.integers(0, 65536, size=x.shape, dtype=np.uint16) >= threshold
        # the mask is drawn on the host by the numpy Generator, so one seed gives the same masks
        # on CPU and GPU; for a cupy x it is copied to the device here, explicitly
        self.keep = xp.asarray(keep)
        self.scale = x.dtype.type(65536.0 / (65536 - threshold))     # a scalar of x's dtype
        y = x * self.keep
        y *= self.scale
        return y

    def backward(self, gy):
        # the same mask and scale: gx = gy * keep / P(keep)
        gx = gy * self.keep
        gx *= self.scale
        return gx


class Where(Function):
    def forward(self, cond, a, b):
        xp = get_array_module(cond, a, b)
        self.cond = cond
        self.shapes = (np.shape(a), np.shape(b))
        return xp.where(cond, a, b)

    def backward(self, gy):
        # the gradient goes to whichever input was chosen
        xp = get_array_module(gy)
        ga = sum_to(xp.where(self.cond, gy, 0), self.shapes[0]) \
            if self.inputs[1].requires_grad else None
        gb = sum_to(xp.where(self.cond, 0, gy), self.shapes[1]) \
            if self.inputs[2].requires_grad else None
        return None, ga, gb


class MaskedFill(Function):
    def __init__(self, value):
        self.value = value

    def forward(self, x, mask):
        xp = get_array_module(x)
        self.mask, self.in_shape = mask, x.shape
        try:
            return xp.where(mask, xp.asarray(self.value, dtype=x.dtype), x)
        except ValueError:
            raise ValueError(f"masked_fill: mask {mask.shape} does not broadcast to "
                             f"input {x.shape}") from None

    def backward(self, gy):
        # filled positions are constants: gx = gy where the mask is False, else 0
        xp = get_array_module(gy)
        return sum_to(xp.where(self.mask, 0, gy), self.in_shape), None
