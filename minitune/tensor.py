"""``Tensor``'s operators and the ``tensor()`` factory.

The class itself (an array plus grad, creator, generation, and ``backward``) is defined in
autograd.py, beside ``Function``. This module binds its operators (``a + b``, ``a @ b``,
``a[i]``, ``a.sum()``, ...) explicitly to the op functions of ``ops/``, so the import order is
one way: backend <- autograd <- ops <- tensor.
"""
import numpy as np

from .autograd import Tensor
from .backend import get_array_module
from .ops import elementwise as E, matmul as M, reduce as R, shape as S


def tensor(data, dtype=None, requires_grad=False):
    """Create a Tensor from Python data or an array, copying it.

    Floating data defaults to float32 and integers to int64 unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    xp = get_array_module(data)
    if dtype is None:
        arr = xp.array(data)
        if arr.dtype.kind == "f" and not hasattr(data, "dtype"):
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu" and not hasattr(data, "dtype"):
            arr = arr.astype(np.int64)
    else:
        arr = xp.array(data, dtype=dtype)
    return Tensor(arr, requires_grad=requires_grad)


def _bind_operators():
    """Attach operators and methods; done here, explicitly, rather than by a registry."""
    def rsub(a, b):
        return E.sub(b, a)

    def rdiv(a, b):
        return E.div(b, a)

    def rpow(a, b):
        return E.pow(b, a)

    ops = {
        "__add__": E.add, "__radd__": E.add, "__sub__": E.sub, "__rsub__": rsub,
        "__mul__": E.mul, "__rmul__": E.mul, "__truediv__": E.div, "__rtruediv__": rdiv,
        "__pow__": E.pow, "__rpow__": rpow, "__neg__": E.neg,
        "__matmul__": M.matmul, "__rmatmul__": lambda a, b: M.matmul(b, a),
        "__getitem__": S.getitem,
        "__lt__": E.less, "__le__": E.less_equal, "__gt__": E.greater,
        "__ge__": E.greater_equal, "__eq__": E.equal, "__ne__": E.not_equal,
        "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "tanh": E.tanh,
        "sum": R.sum, "mean": R.mean, "max": R.max,
        "reshape": S.reshape, "transpose": S.transpose,
    }
    for name, fn in ops.items():
        setattr(Tensor, name, fn)
    Tensor.__hash__ = object.__hash__   # __eq__ is elementwise, identity stays hashable
    Tensor.T = property(lambda self: S.transpose(self))


_bind_operators()
