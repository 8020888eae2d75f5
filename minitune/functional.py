"""The functional API, imported as ``F``: every op as a plain function of Tensors.

Shapes: B batch, T tokens, H hidden, K classes; ``...`` any leading dims.
"""
import numpy as np

from .ops import nn as _nn
from .ops.elementwise import exp, log, sqrt, tanh
from .ops.loss import IGNORE_INDEX, CrossEntropy
from .ops import matmul as _matmul
from .ops.matmul import matmul, stacked_linear
from .ops.reduce import max, mean, sum
from .ops.shape import concatenate, reshape, stack, transpose
from .ops.nn import erf
from .tensor import Tensor

__all__ = ["gelu", "softmax", "log_softmax", "layer_norm", "embedding", "dropout",
           "scaled_dot_product_attention", "where", "masked_fill", "cross_entropy", "matmul",
           "linear", "stacked_linear", "concatenate", "stack", "reshape", "transpose", "exp",
           "log", "sqrt", "tanh", "sum", "mean", "max", "erf"]


def _data(x):
    # Tensors only: a cupy array also has a .data (its device MemoryPointer)
    return x.data if isinstance(x, Tensor) else x


def gelu(x, bias=None):
    """Exact GELU, u * 0.5 * (1 + erf(u / sqrt(2))) with u = x + bias: the "gelu" of Hugging
    Face BERT. x (..., I), bias (I,) or None (then any shape).

    Passing the bias of the preceding Linear here (``gelu(linear(x, w), bias=b)``) fuses the
    bias add into the activation.
    """
    if bias is None:
        return _nn.GELU().apply(x)
    return _nn.GELU().apply(x, bias)


def linear(x, weight, bias=None, activation=None):
    """``x @ weight.T + bias``, then ``activation`` ("gelu" or None): x (..., IN), weight
    (OUT, IN), bias (OUT,) -> (..., OUT).

    ``activation="gelu"`` with a bias is one op (bias and exact GELU applied as the product is
    written, on the GPU kernels), the same numbers as ``gelu(linear(x, weight), bias=bias)``.
    """
    if activation is None:
        return _matmul.linear(x, weight, bias)
    if activation != "gelu":
        raise ValueError(f"linear: unknown activation {activation!r} (None or 'gelu')")
    if bias is None:
        return gelu(_matmul.linear(x, weight))
    return _nn.LinearGELU().apply(x, weight, bias)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed after subtracting the max. Any shape."""
    return _nn.Softmax(axis).apply(x)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``, numerically stable. Any shape."""
    return _nn.LogSoftmax(axis).apply(x)


def layer_norm(x, weight, bias, eps=1e-12, residual=None, dropout_p=0.0, training=True,
               rng=None):
    """Layer normalisation of dropout(x) + residual (or x) over the last axis.

    x and residual (..., H), weight (H,), bias (H,) -> (..., H). Passing the residual here
    (a Transformer layer's ``LN(h + sublayer(h))``) fuses the add into the normalisation;
    passing ``dropout_p`` fuses the dropout of x too: the same numbers, and the same draws
    from ``rng``, as ``layer_norm(dropout(x, dropout_p, training, rng), ..., residual)``.

    Args:
        dropout_p: probability of zeroing an element of x, in [0, 1); only when training.
        rng: the ``numpy.random.Generator`` behind the dropout masks (a fresh unseeded one if
            None); nothing is drawn without dropout (eval mode or dropout_p == 0).
    """
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"layer_norm: dropout_p must be in [0, 1), got {dropout_p}")
    inputs = (x, weight, bias) if residual is None else (x, weight, bias, residual)
    if not training or dropout_p == 0.0:
        return _nn.LayerNorm(eps).apply(*inputs)
    rng = rng if rng is not None else np.random.default_rng()
    return _nn.DropoutLayerNorm(eps, dropout_p, rng).apply(*inputs)


def embedding(ids, weight):
    """Look up rows: ids (...) integers in [0, V), weight (V, H) -> (..., H)."""
    return _nn.Embedding().apply(_data(ids), weight)


def dropout(x, p=0.1, training=True, rng=None):
    """Inverted dropout. Identity when not training or p == 0.

    Args:
        x: tensor of any shape.
        p: probability of zeroing an element, in [0, 1).
        training: apply dropout only when True.
        rng: a ``numpy.random.Generator`` (so masks are reproducible); a fresh unseeded one
            if None.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return _nn.Dropout(p, rng if rng is not None else np.random.default_rng()).apply(x)


def scaled_dot_product_attention(q, k, v, mask_bias=None, dropout_p=0.0, training=True,
                                 rng=None, scale=None):
    """softmax(q k^T * scale + mask_bias) v, with dropout on the attention probabilities.

    Args:
        q, k, v: (B, NH, T, HS) tensors.
        mask_bias: additive mask broadcastable to (B, NH, T, T), e.g. BERT's (B, 1, 1, T) of 0
            (keep) and the dtype's most negative value (padding); None for no mask. It gets
            no gradient.
        dropout_p: probability of dropping an attention probability (only when training).
        rng: the ``numpy.random.Generator`` behind the dropout masks.
        scale: defaults to 1 / sqrt(HS).

    Returns:
        (B, NH, T, HS). One op (forward and backward) rather than five: with a fused kernel the
        (B, NH, T, T) scores and probabilities need never be stored.
    """
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention: dropout_p must be in [0, 1), got {dropout_p}")
    p = dropout_p if training else 0.0
    if p > 0.0 and rng is None:
        rng = np.random.default_rng()
    if scale is None:
        scale = 1.0 / float(np.sqrt(q.shape[-1]))
    op = _nn.Attention(scale, p, rng)
    if mask_bias is None:
        return op.apply(q, k, v)
    return op.apply(q, k, v, _data(mask_bias))


def where(cond, a, b):
    """Elementwise choice: a where ``cond`` is True, else b (broadcasting). No grad to cond."""
    return _nn.Where().apply(_data(cond), a, b)


def masked_fill(x, mask, value):
    """Copy of x with ``value`` where the boolean ``mask`` (broadcast to x) is True."""
    return _nn.MaskedFill(value).apply(x, _data(mask))


def cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="mean"):
    """Cross-entropy between logits (..., K) and integer targets (...).

    Targets equal to ``ignore_index`` are skipped; "mean" divides by the number of counted
    targets (0 loss and 0 grad when every target is ignored). reduction: "mean", "sum", "none".
    """
    return CrossEntropy(ignore_index, reduction).apply(logits, _data(target))
