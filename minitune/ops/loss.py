"""Cross-entropy with a fused backward.

For logits z (N, K) and integer targets t (N,): loss_i = logsumexp(z_i) - z_i[t_i].
Its gradient is the familiar softmax(z_i) - onehot(t_i), divided by the number of counted rows
for the mean. Rows whose target equals ``ignore_index`` contribute nothing.
"""
import numpy as np

from ..autograd import Function
from ..backend import device_of, get_array_module, to_device
from .nn import _logsumexp

#: The target of positions the loss skips (sub-tokens after a word's first, [CLS], [SEP],
#: padding); the same value as PyTorch's default, so label arrays port unchanged.
IGNORE_INDEX = -100


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
        xp = get_array_module(logits)
        target = to_device(target, device_of(logits))   # numpy labels: an explicit, small copy
        k = logits.shape[-1]
        z = logits.reshape(-1, k)                                    # (N, K)
        t = target.reshape(-1)                                       # (N,)
        valid = t != self.ignore_index
        if xp.any(valid & ((t < 0) | (t >= k))):
            bad = t[valid & ((t < 0) | (t >= k))]
            raise ValueError(f"cross_entropy: targets must be in [0, {k}) or ignore_index "
                             f"{self.ignore_index}, got {bad[:5].tolist()}")
        t_safe = xp.where(valid, t, 0)
        logp = z - _logsumexp(z, axis=-1)                            # (N, K) log-probabilities
        losses = -xp.take_along_axis(logp, t_safe[:, None], axis=1)[:, 0] * valid
        self.logp, self.t, self.valid = logp, t_safe, valid
        self.shape = logits.shape
        self.count = int(valid.sum())
        if self.reduction == "none":
            return losses.reshape(target.shape)
        total = losses.sum()
        if self.reduction == "mean":
            # all targets ignored: loss 0 (and grad 0), not 0/0 = NaN
            total = total / max(self.count, 1)
        return xp.asarray(total, dtype=logits.dtype)

    def backward(self, gy):
        # gz = (softmax(z) - onehot(t)) * valid * gy   (/ count for the mean)
        xp = get_array_module(gy)
        g = xp.exp(self.logp)
        n = g.shape[0]
        g[np.arange(n) if xp is np else xp.arange(n), self.t] -= 1.0
        if self.reduction == "none":
            g *= (gy.reshape(-1) * self.valid)[:, None]
        else:
            scale = gy / max(self.count, 1) if self.reduction == "mean" else gy
            g *= self.valid[:, None] * scale
        return g.reshape(self.shape), None
