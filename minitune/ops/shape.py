"""Shape ops: reshape, transpose, indexing, concatenate, stack. They move values, never change
them, so each backward moves the gradient back the same way."""
import numpy as np

from ..autograd import Function, Tensor
from ..backend import device_of, get_array_module, to_device


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {x.shape} into {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None and sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation for "
                             f"shape {x.shape}")
        return x.transpose(self.axes)

    def backward(self, gy):
        # undo the permutation: gx = transpose(gy, argsort(axes))
        if self.axes is None:
            return gy.transpose()
        return gy.transpose(tuple(np.argsort([a % gy.ndim for a in self.axes]).tolist()))


def _is_advanced(index):
    """True when ``index`` uses an integer/boolean array (numpy "advanced" indexing)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (list, np.ndarray)) or hasattr(p, "__cuda_array_interface__")
               for p in parts)


def _index_to_device(index, device):
    """Copy the index arrays in ``index`` (numpy or cupy) to ``device``, explicitly: cupy would
    otherwise copy numpy index arrays silently, and numpy cannot read cupy ones."""
    def move(p):
        return to_device(p, device) if hasattr(p, "dtype") and np.ndim(p) > 0 else p
    return tuple(move(p) for p in index) if isinstance(index, tuple) else move(index)


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        self.index = _index_to_device(self.index, device_of(x))
        return x[self.index]

    def backward(self, gy):
        # scatter gy into zeros; with array indices the same element can be picked several
        # times, so the scatter must add (np.add.at), not assign
        xp = get_array_module(gy)
        gx = xp.zeros(self.in_shape, dtype=gy.dtype)
        if _is_advanced(self.index):
            xp.add.at(gx, self.index, gy)
        else:
            gx[self.index] = gy
        return gx


class Concatenate(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        try:
            return xp.concatenate(xs, axis=self.axis)
        except ValueError:
            raise ValueError(f"concatenate: shapes {[x.shape for x in xs]} do not match "
                             f"outside axis {self.axis}") from None

    def backward(self, gy):
        # split gy at the input boundaries along the axis
        xp = get_array_module(gy)
        return tuple(xp.split(gy, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis))


class Stack(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        if len({x.shape for x in xs}) > 1:
            raise ValueError(f"stack: all shapes must be equal, got {[x.shape for x in xs]}")
        return xp.stack(xs, axis=self.axis)

    def backward(self, gy):
        # slice gy along the new axis
        xp = get_array_module(gy)
        return tuple(xp.take(gy, i, axis=self.axis) for i in range(gy.shape[self.axis]))


def reshape(x, *shape):
    """Reshape to ``shape`` (a tuple or separate ints; one entry may be -1)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape(shape).apply(x)


def transpose(x, *axes):
    """Permute the axes (reverse them when none are given), like ``ndarray.transpose``."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose(axes or None).apply(x)


def getitem(x, index):
    """``x[index]`` with basic (ints, slices, None, Ellipsis) or integer/boolean array indices."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index).apply(x)


def concatenate(xs, axis=0):
    """Join tensors along an existing axis."""
    return Concatenate(axis).apply(*xs)


def stack(xs, axis=0):
    """Join same-shaped tensors along a new axis."""
    return Stack(axis).apply(*xs)
