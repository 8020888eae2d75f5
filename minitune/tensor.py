"""``Tensor``: an array plus what autograd needs (grad, creator, generation).

Operators are bound explicitly at the bottom of this file to the op functions in ``ops/``.
"""
import numpy as np

from . import autograd
from .backend import asnumpy, get_array_module


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    Args:
        data: a numpy or cupy array (kept as is; Python scalars become 0-d arrays).
        requires_grad: collect ``.grad`` for this tensor in ``backward()``. Floating dtypes only.
    """
    __array_priority__ = 1000   # numpy_array + tensor calls Tensor.__radd__, not numpy's loop

    def __init__(self, data, requires_grad=False):
        if not hasattr(data, "dtype") or isinstance(data, np.generic):
            # numpy ufuncs on 0-d arrays return numpy scalars (np.float64 is a Python float):
            # keep every Tensor's data an array, so ops never mistake it for a constant
            data = np.asarray(data)
        self.data = data
        self.grad = None
        self.creator = None
        self.generation = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    def requires_grad_(self, flag=True):
        """Mark this leaf tensor as needing a gradient (in place); returns self."""
        if flag and self.data.dtype.kind != "f":
            raise ValueError(f"only floating-point tensors can require grad; "
                             f"this one is {self.data.dtype} (cast it with .astype first)")
        self.requires_grad = bool(flag)
        return self

    # ---- array-like attributes
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = repr(self.data).replace("\n", "\n" + " " * 7)
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}{grad})"

    def numpy(self):
        """The data as a numpy array (copied from the GPU when needed)."""
        return asnumpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self):
        """A new tensor sharing the data, cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype):
        """A copy converted to ``dtype`` (no gradient flows through a dtype change)."""
        return Tensor(self.data.astype(dtype))

    def zero_grad(self):
        self.grad = None

    # ---- autograd
    def backward(self, grad=None, retain_graph=False):
        """Compute d(self)/d(leaf) for every leaf that requires grad, accumulating into ``.grad``.

        Args:
            grad: gradient of some scalar with respect to this tensor, same shape; may be omitted
                only when this tensor holds a single element (then it is 1).
            retain_graph: keep the graph so backward can run through it again.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of "
                               "the computation had requires_grad=True (or it ran under no_grad)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a grad needs a scalar output, got shape "
                                   f"{self.shape}; pass grad= of that shape or reduce first")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad shape {grad.shape} != tensor shape "
                                 f"{self.shape}")
        if self.creator is None:
            # copy: the caller's array must not become (and later change) this leaf's .grad
            self.grad = grad.copy() if self.grad is None else self.grad + grad
            return
        autograd.run_backward(self, grad, retain_graph=retain_graph)


def as_tensor(x):
    """Wrap a constant (Python scalar, numpy/cupy array) as a Tensor; Tensors pass through."""
    return x if isinstance(x, Tensor) else Tensor(x if hasattr(x, "dtype") else np.asarray(x))


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
    from .ops import elementwise as E, reduce as R, shape as S, matmul as M

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
