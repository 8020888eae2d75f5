"""Neural-network ops: gelu, softmax, log_softmax, layer_norm, embedding, dropout, attention,
where, masked_fill. Each keeps exactly what its backward needs.

The fused ops (gelu with its bias, layer_norm with its residual and maybe dropout, embedding,
dropout, attention) are written as llm.c writes its layers: a pair of plain functions
``*_forward`` / ``*_backward`` over raw arrays -- the op's *reference* -- and a ``Function``
that asks ``minitune.dispatch`` which implementation to run (the reference, minitune's
fused CPU code, or a CUDA kernel; all compute the same thing). ``forward`` returns
``(y, saved)``; ``backward(gy, saved)`` returns one gradient per differentiable input. A
backward never writes into ``gy``.
"""
import math

import numpy as np

from .. import amp, dispatch
from ..autograd import Function, grad_of_output, sum_to
from ..backend import device_of, get_array_module, to_device
from ..cuda.graph import capturing
from .matmul import LINEAR_REFERENCE, _batched, check_linear_shapes

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


def gelu_forward(x, bias=None):
    """gelu(u) = u * Phi(u) with u = x + bias: x (..., I), bias (I,) or None -> (..., I).

    Phi(u) = 0.5 * (1 + erf(u / sqrt 2)) exactly (the "gelu" of Hugging Face BERT): float64 and
    cupy evaluate erf to rounding, float32 on numpy uses ``_normal_cdf_float32`` (|error| <
    3e-7). saved: (u, Phi(u), whether there is a bias).
    """
    xp = get_array_module(x)
    u = x if bias is None else x + bias
    if xp is np and u.dtype == np.float32:
        cdf = _normal_cdf_float32(u)
    else:
        cdf = 0.5 * (1.0 + erf(u * _SQRT_HALF))
    return u * cdf, (u, cdf, bias is not None)


def gelu_backward(gy, saved):
    """Returns (gx, gbias): d/du [u Phi(u)] = Phi(u) + u phi(u), phi(u) = exp(-u^2/2)/sqrt(2 pi);
    gbias sums gx over every leading axis (None without a bias)."""
    xp = get_array_module(gy)
    u, cdf, has_bias = saved
    pdf = xp.exp(-0.5 * u * u) * _INV_SQRT_2PI
    gx = gy * (cdf + u * pdf)
    return gx, gx.sum(axis=tuple(range(gx.ndim - 1))) if has_bias else None


GELU_REFERENCE = dispatch.Implementation("gelu", forward=gelu_forward, backward=gelu_backward)


class GELU(Function):
    """gelu(x + bias), bias optional (the bias of the Linear before it, fused in)."""

    def forward(self, x, bias=None):
        self.impl = dispatch.implementation("gelu", GELU_REFERENCE, x)
        y, self.saved = self.impl.forward(x, bias)
        return y

    def backward(self, gy):
        gx, gb = self.impl.backward(gy, self.saved)
        return (gx,) if len(self.inputs) == 1 else (gx, gb)


def linear_gelu_forward(x, w, b, precision="fp32"):
    """gelu(x @ w^T + b), the first half of BERT's feed-forward: x (..., IN), w (I, IN), b (I,)
    -> (..., I). The reference is the two ops it fuses, each through its own dispatch point
    (so fused CPU code for either still runs). saved: both ops' implementations and saved."""
    linear = dispatch.implementation("linear", LINEAR_REFERENCE, x, w)
    u, linear_saved = linear.forward(x, w, None, precision)
    act = dispatch.implementation("gelu", GELU_REFERENCE, u)
    y, gelu_saved = act.forward(u, b)
    return y, (linear, linear_saved, act, gelu_saved)


def linear_gelu_backward(gy, saved, needs=(True, True, True)):
    """(gx, gw, gb): gelu's backward gives gu = dL/d(x w^T + b) and gb = sum(gu); linear's
    gives gx = gu w and gw = gu^T x."""
    linear, linear_saved, act, gelu_saved = saved
    gu, gb = act.backward(gy, gelu_saved)
    gx, gw, _ = linear.backward(gu, linear_saved, (needs[0], needs[1], False))
    return gx, gw, gb if needs[2] else None


LINEAR_GELU_REFERENCE = dispatch.Implementation("linear_gelu", forward=linear_gelu_forward,
                                                backward=linear_gelu_backward)


class LinearGELU(Function):
    """gelu(x @ W^T + b): one op, so a GEMM kernel can apply bias and GELU as it writes its
    result (``F.linear(x, W, b, activation="gelu")``)."""

    def forward(self, x, w, b):
        check_linear_shapes(x, w, b)
        self.impl = dispatch.implementation("linear_gelu", LINEAR_GELU_REFERENCE, x, w, b)
        y, self.saved = self.impl.forward(x, w, b, amp.current())
        return y

    def backward(self, gy):
        return self.impl.backward(gy, self.saved, [t.requires_grad for t in self.inputs])


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


def layer_norm_forward(x, w, b, eps, residual=None):
    """y = (u - mean(u)) / sqrt(var(u) + eps) * w + b over the last axis, u = x + residual.

    Shapes: x and residual (..., H), w (H,), b (H,) -> y (..., H).
    saved: (xhat, rstd, w) with xhat = (u - mean) * rstd (..., H), rstd (..., 1).
    """
    xp = get_array_module(x)
    u = x if residual is None else x + residual
    mu = u.mean(axis=-1, keepdims=True)
    xc = u - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat = xc * rstd
    return xhat * w + b, (xhat, rstd, w)


def layer_norm_backward(gy, saved):
    """Returns (gx, gw, gb); the residual's gradient is gx too.

    gxhat = gy * w
    gx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))   (means over H)
    gw = sum over rows of gy * xhat,  gb = sum over rows of gy
    """
    xhat, rstd, w = saved
    gxhat = gy * w
    gx = rstd * (gxhat - gxhat.mean(axis=-1, keepdims=True)
                 - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True))
    lead = tuple(range(gy.ndim - 1))
    return gx, (gy * xhat).sum(axis=lead), gy.sum(axis=lead)


LAYER_NORM_REFERENCE = dispatch.Implementation("layer_norm", forward=layer_norm_forward,
                                               backward=layer_norm_backward)


class LayerNorm(Function):
    """Normalise x (or x + residual) over the last axis, then scale by w and shift by b.

    Inputs (x, w, b) or (x, w, b, residual): the residual add of a Transformer layer is fused
    in, so the sum x + residual is never a separate op.
    """

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x, w, b, residual=None):
        check_layer_norm_shapes(x, w, b, residual)
        self.impl = dispatch.implementation("layer_norm", LAYER_NORM_REFERENCE, x)
        y, self.saved = self.impl.forward(x, w, b, self.eps, residual)
        return y

    adds_grad_terms = True     # gy may come as autograd.GradTerms: the impl or grad_of_output adds

    def backward(self, gy):
        gx, gw, gb = self.impl.backward(grad_of_output(gy, self.impl), self.saved)
        return (gx, gw, gb) if len(self.inputs) == 3 else (gx, gw, gb, gx)


def check_layer_norm_shapes(x, w, b, residual):
    """x and residual (..., H), w and b (H,): a ValueError naming the shapes otherwise."""
    if w.shape != x.shape[-1:] or b.shape != x.shape[-1:]:
        raise ValueError(f"layer_norm: input {x.shape} needs weight and bias of shape "
                         f"{x.shape[-1:]}, got {w.shape} and {b.shape}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"layer_norm: residual {residual.shape} must have the input's "
                         f"shape {x.shape}")


def embedding_forward(ids, weight):
    """Row lookup: ids (...) integers in [0, V), weight (V, H) -> (..., H). saved: (ids, V)."""
    return weight[ids], (ids, weight.shape[0])


def embedding_backward(gy, saved):
    """gweight (V, H): each row of gy is added to the weight row it was read from; a repeated
    id adds several times, so the scatter must accumulate."""
    xp = get_array_module(gy)
    ids, vocab = saved
    gw = xp.zeros((vocab, gy.shape[-1]), dtype=gy.dtype)
    ids = ids.reshape(-1)
    g2 = gy.reshape(-1, gy.shape[-1])
    if ids.size == 0:
        return gw
    if xp is np:
        # sort the rows by id, sum each run of equal ids, write each sum once
        order, row_ids, starts = id_runs(ids)
        gw[row_ids] = np.add.reduceat(g2[order], starts, axis=0)
    else:
        xp.add.at(gw, ids, g2)
    return gw


def id_runs(ids):
    """The rows of ``ids`` (N,) grouped by id: ``order`` (N,) sorts them stably, and the run
    of id ``row_ids[r]`` is ``order[starts[r]:starts[r + 1]]`` (``starts`` (R,): each run's
    first position; the last run ends at N)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    return order, sorted_ids[starts], starts


EMBEDDING_REFERENCE = dispatch.Implementation("embedding", forward=embedding_forward,
                                              backward=embedding_backward)


class Embedding(Function):
    """Row lookup: ids (...) integer, weight (V, H) -> (..., H)."""

    def forward(self, ids, weight):
        if ids.dtype.kind not in "iu":
            raise ValueError(f"embedding: ids must be integers, got {ids.dtype}")
        # ids usually come from the tokenizer as numpy: copy them (small) to the weight's device
        ids = to_device(ids, device_of(weight))
        # a host read of device values: not while a CUDA graph is captured (its caller checks)
        if ids.size and not capturing() and (ids.min() < 0 or ids.max() >= weight.shape[0]):
            raise ValueError(f"embedding: ids must lie in [0, {weight.shape[0]}), "
                             f"got min {ids.min()} max {ids.max()}")
        self.impl = dispatch.implementation("embedding", EMBEDDING_REFERENCE, weight)
        y, self.saved = self.impl.forward(ids, weight)
        return y

    def backward(self, gy):
        return None, self.impl.backward(gy, self.saved)


def dropout_keep_mask(rng, shape, p):
    """Which elements dropout keeps, and the scale 1/P(keep) of the kept ones.

    The mask comes from 16-bit uniform draws of the numpy Generator ``rng``: an element is kept
    when its draw is at least round(p * 2^16), so P(keep) = 1 - round(p * 2^16) / 2^16 (within
    8e-6 of 1 - p) and the scale 1/P(keep) keeps E[y] = x exactly. 16-bit draws cost half as
    much as float32 ones, and a boolean mask a quarter of the memory of a float mask. The mask
    is drawn on the host, so one seed gives the same masks on CPU and GPU.

    Returns (keep, scale): a boolean numpy array of ``shape`` and a Python float.
    """
    threshold, scale = dropout_threshold(p)
    keep = rng.integers(0, 65536, size=shape, dtype=np.uint16) >= threshold
    return keep, scale


def dropout_threshold(p):
    """(threshold, scale) of dropout probability p: a 16-bit draw >= threshold = round(p *
    65536) keeps its element, and kept elements are scaled by 1 / P(keep) = 65536 / (65536 -
    threshold). The rule of every implementation's mask, whatever draws it uses."""
    threshold = int(round(p * 65536))
    return threshold, 65536.0 / (65536 - threshold)


def dropout_forward(x, p, rng):
    """Inverted dropout: y = x * keep * scale, x any shape. saved: (keep, scale)."""
    xp = get_array_module(x)
    keep, scale = dropout_keep_mask(rng, x.shape, p)
    keep = xp.asarray(keep)                       # an explicit, small copy to x's device
    scale = x.dtype.type(scale)                   # a scalar of x's dtype: no upcast
    y = x * keep
    y *= scale
    return y, (keep, scale)


def dropout_backward(gy, saved):
    """The same mask and scale: gx = gy * keep * scale."""
    keep, scale = saved
    gx = gy * keep
    gx *= scale
    return gx


DROPOUT_REFERENCE = dispatch.Implementation("dropout", forward=dropout_forward,
                                            backward=dropout_backward)


class Dropout(Function):
    """Zero each element with probability p, scale the rest by 1/P(keep) (inverted dropout)."""

    def __init__(self, p, rng):
        self.p, self.rng = p, rng

    def forward(self, x):
        self.impl = dispatch.implementation("dropout", DROPOUT_REFERENCE, x)
        y, self.saved = self.impl.forward(x, self.p, self.rng)
        return y

    def backward(self, gy):
        return self.impl.backward(gy, self.saved)


# ----------------------------------------------------------- dropout + residual + LayerNorm

def dropout_layer_norm_forward(x, w, b, eps, residual, p, rng):
    """y = layer_norm(dropout(x) + residual): how a Transformer layer ends (BertOutput).

    Shapes: x and residual (..., H) (residual may be None), w (H,), b (H,) -> y (..., H).
    The reference is the two ops it fuses, each through its own dispatch point, so each runs
    as it would alone: both references with fused code switched off, both CUDA kernels on
    cupy arrays. The mask is drawn as the dropout op draws it (one call, before the LayerNorm).
    saved: each op's implementation and saved.
    """
    drop = dispatch.implementation("dropout", DROPOUT_REFERENCE, x)
    dropped, drop_saved = drop.forward(x, p, rng)
    norm = dispatch.implementation("layer_norm", LAYER_NORM_REFERENCE, dropped)
    y, norm_saved = norm.forward(dropped, w, b, eps, residual)
    return y, (drop, drop_saved, norm, norm_saved)


def dropout_layer_norm_backward(gy, saved):
    """Returns (gx, gw, gb, gresidual): the LayerNorm's backward gives gu, the gradient of its
    input u = dropout(x) + residual, which is the residual's; then gx = gu * keep * scale."""
    drop, drop_saved, norm, norm_saved = saved
    gu, gw, gb = norm.backward(gy, norm_saved)
    return drop.backward(gu, drop_saved), gw, gb, gu


DROPOUT_LAYER_NORM_REFERENCE = dispatch.Implementation(
    "dropout_layer_norm", forward=dropout_layer_norm_forward,
    backward=dropout_layer_norm_backward)


class DropoutLayerNorm(Function):
    """layer_norm(dropout(x) + residual) as one op; inputs (x, w, b) or (x, w, b, residual).

    The fused CPU code applies the mask inside the LayerNorm's row pass (forward: u = x * keep
    * scale + residual; backward: the row pass that gives gu also writes gu * keep * scale):
    one pass over (..., H) fewer each way than dropout, then layer_norm.
    """

    def __init__(self, eps, p, rng):
        self.eps, self.p, self.rng = eps, p, rng

    def forward(self, x, w, b, residual=None):
        check_layer_norm_shapes(x, w, b, residual)
        self.impl = dispatch.implementation("dropout_layer_norm", DROPOUT_LAYER_NORM_REFERENCE,
                                            x)
        y, self.saved = self.impl.forward(x, w, b, self.eps, residual, self.p, self.rng)
        return y

    adds_grad_terms = True     # as LayerNorm's

    def backward(self, gy):
        gx, gw, gb, gresidual = self.impl.backward(grad_of_output(gy, self.impl), self.saved)
        return (gx, gw, gb) if len(self.inputs) == 3 else (gx, gw, gb, gresidual)


# --------------------------------------------------------------------------- attention

def attention_forward(q, k, v, mask_bias, scale, dropout_p, rng):
    """Scaled dot-product attention with an additive mask and dropout on the probabilities.

        scores = q k^T * scale + mask_bias     (B, NH, T, T)
        probs  = softmax(scores)               over the keys (last axis)
        out    = dropout(probs) v              (B, NH, T, HS)

    Shapes: q, k, v (B, NH, T, HS); mask_bias broadcastable to (B, NH, T, T) -- BERT's is
    (B, 1, 1, T): 0 for a real key, the dtype's most negative value for padding -- or None.
    dropout_p = 0 turns dropout off (rng unused). A row whose keys are all masked gets equal
    scores, hence a uniform softmax, as in Hugging Face.
    saved: (q, k, v, probs, keep, keep_scale, scale); keep is None without dropout.
    """
    xp = get_array_module(q)
    scores = _batched(q, k.swapaxes(-1, -2))               # (B, NH, T, T)
    scores *= scale
    if mask_bias is not None:
        scores += mask_bias
    scores -= scores.max(axis=-1, keepdims=True)          # shift: exp never overflows
    probs = xp.exp(scores, out=scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    keep, keep_scale = None, 1.0
    dropped = probs
    if dropout_p > 0.0:
        keep, keep_scale = dropout_keep_mask(rng, probs.shape, dropout_p)
        keep = xp.asarray(keep)
        keep_scale = probs.dtype.type(keep_scale)
        dropped = probs * keep
        dropped *= keep_scale
    return _batched(dropped, v), (q, k, v, probs, keep, keep_scale, scale)


def attention_backward(gout, saved):
    """Returns (gq, gk, gv) for gout (B, NH, T, HS). With D = dropout(probs):

        gv = D^T gout                         gD = gout v^T
        gprobs = gD * keep * keep_scale       (dropout's backward)
        gscores = probs * (gprobs - sum(gprobs * probs))   (softmax's backward, per row)
        gq = gscores k * scale                gk = gscores^T q * scale
    """
    q, k, v, probs, keep, keep_scale, scale = saved
    dropped = probs if keep is None else probs * keep * keep_scale
    gv = _batched(dropped.swapaxes(-1, -2), gout)
    del dropped
    gprobs = _batched(gout, v.swapaxes(-1, -2))            # (B, NH, T, T)
    if keep is not None:
        gprobs *= keep
        gprobs *= keep_scale
    gscores = gprobs
    gscores -= (gprobs * probs).sum(axis=-1, keepdims=True)
    gscores *= probs
    gscores *= scale
    gq = _batched(gscores, k)
    gk = _batched(gscores.swapaxes(-1, -2), q)
    return gq, gk, gv


ATTENTION_REFERENCE = dispatch.Implementation("attention", forward=attention_forward,
                                              backward=attention_backward)


class Attention(Function):
    """softmax(q k^T * scale + mask_bias) with dropout, times v; inputs (q, k, v[, mask_bias]).
    No gradient flows to the mask."""

    def __init__(self, scale, dropout_p, rng):
        self.scale, self.dropout_p, self.rng = scale, dropout_p, rng

    def forward(self, q, k, v, mask_bias=None):
        if not (q.ndim == 4 and q.shape == k.shape == v.shape):
            raise ValueError(f"attention: q, k, v must all have shape (B, NH, T, HS), got "
                             f"{q.shape}, {k.shape}, {v.shape}")
        if mask_bias is not None:
            try:
                np.broadcast_shapes(mask_bias.shape, q.shape[:-1] + (k.shape[-2],))
            except ValueError:
                raise ValueError(f"attention: mask_bias {mask_bias.shape} does not broadcast "
                                 f"to the scores' shape {q.shape[:-1] + (k.shape[-2],)}") from None
        self.impl = dispatch.implementation("attention", ATTENTION_REFERENCE, q, k, v, mask_bias)
        out, self.saved = self.impl.forward(q, k, v, mask_bias, self.scale, self.dropout_p,
                                            self.rng)
        return out

    def backward(self, gout):
        gq, gk, gv = self.impl.backward(gout, self.saved)
        return (gq, gk, gv) if len(self.inputs) == 3 else (gq, gk, gv, None)


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
