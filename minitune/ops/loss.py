"""Cross-entropy with a fused backward.

For logits z (N, K) and integer targets t (N,): loss_i = logsumexp(z_i) - z_i[t_i].
Its gradient is the familiar softmax(z_i) - onehot(t_i), divided by the number of counted rows
for the mean. Rows whose target equals ``ignore_index`` contribute nothing.
"""
import numpy as np

from .. import dispatch
from ..autograd import Function
from ..backend import device_of, get_array_module, to_device
from .nn import _logsumexp

#: The target of positions the loss skips (sub-tokens after a word's first, [CLS], [SEP],
#: padding); the same value as PyTorch's default, so label arrays port unchanged.
IGNORE_INDEX = -100


def cross_entropy_forward(logits, target, ignore_index, reduction):
    """loss_i = logsumexp(z_i) - z_i[t_i] over rows whose target is not ``ignore_index``.

    Shapes: logits (..., K), target (...) integers on the logits' device -> a scalar for
    "mean"/"sum", (...) for "none". saved: (logp (N, K), t (N,), valid (N,), count, shape).
    """
    xp = get_array_module(logits)
    k = logits.shape[-1]
    z = logits.reshape(-1, k)                                    # (N, K)
    t = target.reshape(-1)                                       # (N,)
    valid, t_safe = checked_targets(t, k, ignore_index)
    logp = z - _logsumexp(z, axis=-1)                            # (N, K) log-probabilities
    losses = -xp.take_along_axis(logp, t_safe[:, None], axis=1)[:, 0] * valid
    count = int(valid.sum())
    saved = (logp, t_safe, valid, count, logits.shape, reduction)
    return reduced(losses, count, target.shape, reduction, logits.dtype), saved


def reduced(losses, count, shape, reduction, dtype):
    """The per-row losses (N,) (0 where ignored) as ``reduction`` asks: "none" -> ``shape``,
    "sum", or "mean" over the ``count`` counted rows (a 0-d array of ``dtype``)."""
    if reduction == "none":
        return losses.reshape(shape)
    total = losses.sum()
    if reduction == "mean":
        # all targets ignored: loss 0 (and grad 0), not 0/0 = NaN
        total = total / max(count, 1)
    return get_array_module(losses).asarray(total, dtype=dtype)


def checked_targets(t, k, ignore_index):
    """(valid, t_safe) for targets t (N,): which rows count, and t with ignored rows set to 0.
    Raises ValueError naming the first bad targets when any counted one is outside [0, K)."""
    xp = get_array_module(t)
    valid = t != ignore_index
    if xp.any(valid & ((t < 0) | (t >= k))):
        bad = t[valid & ((t < 0) | (t >= k))]
        raise ValueError(f"cross_entropy: targets must be in [0, {k}) or ignore_index "
                         f"{ignore_index}, got {bad[:5].tolist()}")
    return valid, xp.where(valid, t, 0)


def cross_entropy_backward(gy, saved):
    """glogits = (softmax(z) - onehot(t)) * valid * gy   (/ count for the mean)."""
    xp = get_array_module(gy)
    logp, t, valid, count, shape, reduction = saved
    g = xp.exp(logp)
    n = g.shape[0]
    g[np.arange(n) if xp is np else xp.arange(n), t] -= 1.0
    if reduction == "none":
        g *= (gy.reshape(-1) * valid)[:, None]
    else:
        scale = gy / max(count, 1) if reduction == "mean" else gy
        g *= valid[:, None] * scale
    return g.reshape(shape)


CROSS_ENTROPY_REFERENCE = dispatch.Implementation(
    "cross_entropy", forward=cross_entropy_forward, backward=cross_entropy_backward)


class CrossEntropy(Function):
    def __init__(self, ignore_index, reduction):
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', "
                             f"got {reduction!r}")
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits, target):
        if target.shape != logits.shape[:-1]:
            raise ValueError(f"cross_entropy: logits {logits.shape} need targets of shape "
                             f"{logits.shape[:-1]}, got {target.shape}")
        if target.dtype.kind not in "iu":
            raise ValueError(f"cross_entropy: targets must be integers, got {target.dtype}")
        target = to_device(target, device_of(logits))   # numpy labels: an explicit, small copy
        self.impl = dispatch.implementation("cross_entropy", CROSS_ENTROPY_REFERENCE, logits)
        loss, self.saved = self.impl.forward(logits, target, self.ignore_index, self.reduction)
        return loss

    def backward(self, gy):
        return self.impl.backward(gy, self.saved), None
