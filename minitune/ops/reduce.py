"""Reductions: sum, mean, max over an axis (or all), with numpy's ``axis``/``keepdims``.

Backward broadcasts the output gradient back over the reduced axes: it is reshaped to the
keepdims shape, then broadcast to the input's shape.
"""
import builtins

from ..autograd import Function
from ..backend import get_array_module


def _keepdims_shape(in_shape, axis):
    """Shape of the output with ``keepdims=True`` (reduced axes set to 1)."""
    if axis is None:
        return (1,) * len(in_shape)
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = {a % len(in_shape) for a in axes}
    return tuple(1 if i in axes else n for i, n in enumerate(in_shape))


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        # every input element contributes once: gx = broadcast(gy)
        xp = get_array_module(gy)
        gy = gy.reshape(_keepdims_shape(self.in_shape, self.axis))
        return xp.broadcast_to(gy, self.in_shape).copy()


class Mean(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        y = x.mean(axis=self.axis, keepdims=self.keepdims)
        self.count = x.size // builtins.max(y.size, 1) if x.size else 0
        return y

    def backward(self, gy):
        # y = sum(x) / n: gx = broadcast(gy) / n
        xp = get_array_module(gy)
        gy = gy.reshape(_keepdims_shape(self.in_shape, self.axis))
        return xp.broadcast_to(gy / self.count, self.in_shape).copy()


class Max(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x = x
        self.y = x.max(axis=self.axis, keepdims=True)
        return self.y if self.keepdims else self.y.squeeze(axis=self.axis)

    def backward(self, gy):
        # the gradient goes to the maximal element(s); ties share it equally
        gy = gy.reshape(self.y.shape)
        mask = self.x == self.y
        return gy * mask / mask.sum(axis=self.axis, keepdims=True)


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (int, tuple or None for all)."""
    return Sum(axis, keepdims).apply(x)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (int, tuple or None for all)."""
    return Mean(axis, keepdims).apply(x)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``; the gradient flows to the arg-max (split evenly on ties)."""
    return Max(axis, keepdims).apply(x)
