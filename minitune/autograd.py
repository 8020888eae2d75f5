"""The autograd core: ``Tensor``, the ``Function`` base class, grad mode, ``sum_to`` and backward.

Tensor and Function live together because each needs the other: ``Function.apply`` wraps its
outputs in Tensors, and ``Tensor.backward`` runs the Functions that made it. Everything else
imports this module, never the other way round: ops/ define Functions, tensor.py binds them to
Tensor's operators (``a + b``, ``a @ b``, ``a.sum()``).

A ``Function`` turns input Tensors into output Tensors. ``forward`` works on raw arrays (numpy or
cupy) and keeps whatever ``backward`` will need as attributes of ``self``; ``backward`` receives
the gradient of the loss with respect to each output and returns one gradient per input (``None``
for inputs that are not differentiable, such as labels or masks). ``Function.apply`` links the
outputs to the function (``creator``) so that ``Tensor.backward`` can walk the graph in reverse.
"""
import contextlib
import weakref

import numpy as np

from .backend import asnumpy, get_array_module


class Config:
    """Global switches, changed only through context managers."""
    grad_enabled = True


def is_grad_enabled():
    """True unless inside ``no_grad()``."""
    return Config.grad_enabled


@contextlib.contextmanager
def set_grad_enabled(mode):
    """Context manager that turns graph building on (True) or off (False) inside its block."""
    previous = Config.grad_enabled
    Config.grad_enabled = bool(mode)
    try:
        yield
    finally:
        Config.grad_enabled = previous


def no_grad():
    """``with no_grad():`` runs ops without recording a graph (inference, optimizer updates)."""
    return set_grad_enabled(False)


def sum_to(g, shape):
    """Sum ``g`` down to ``shape``: the backward of numpy broadcasting.

    Broadcasting prepends size-1 dims and stretches size-1 dims; both are undone by summing.
    Example: g of shape (B, T, H) summed to (H,) or to (1, T, 1).
    """
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


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
        run_backward(self, grad, retain_graph=retain_graph)


def as_tensor(x):
    """Wrap a constant (Python scalar, numpy/cupy array) as a Tensor; Tensors pass through."""
    return x if isinstance(x, Tensor) else Tensor(x if hasattr(x, "dtype") else np.asarray(x))


class Function:
    """Base of every differentiable op.

    Subclasses implement ``forward(*arrays)`` returning an array (or a tuple of arrays) and
    ``backward(*grads)`` returning one gradient array (or None) per input, in order.
    After ``apply``: ``self.inputs`` are the input Tensors, ``self.outputs`` weak references to
    the outputs (so the graph does not keep results alive), ``self.generation`` orders backward.
    """
    differentiable = True   # False for ops such as comparisons whose outputs never need grad

    def apply(self, *inputs):
        # Python numbers reach forward unwrapped so they keep numpy's "weak" scalar typing
        # (float32 tensor * 2.0 stays float32); arrays and Tensors are used as they are.
        arrays = [x.data if isinstance(x, Tensor) else x if isinstance(x, (int, float)) else
                  as_tensor(x).data for x in inputs]
        ys = self.forward(*arrays)
        single = not isinstance(ys, tuple)
        outputs = [Tensor(y) for y in ((ys,) if single else ys)]
        if (Config.grad_enabled and self.differentiable
                and any(isinstance(x, Tensor) and x.requires_grad for x in inputs)):
            self.inputs = [as_tensor(x) for x in inputs]
            self.generation = max(x.generation for x in self.inputs)
            self.outputs = [weakref.ref(y) for y in outputs]
            for y in outputs:
                y.requires_grad = True
                y.creator = self
                y.generation = self.generation + 1
        return outputs[0] if single else outputs

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def release(self):
        """Drop inputs and everything saved for backward (called after backward)."""
        self.__dict__.clear()
        self.released = True

    def __repr__(self):
        return f"<{type(self).__name__}>"


def run_backward(root, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like ``root``) through the graph below ``root``.

    Functions are visited in reverse topological order, so each one sees the complete gradient of
    every output before it runs. Leaves (tensors with ``requires_grad`` and no creator) accumulate
    into ``.grad``; gradients of intermediate tensors are dropped as soon as they are used.
    Unless ``retain_graph``, each function releases its saved arrays once it has run.
    """
    order = _topological_order(root.creator)
    # pending gradients of intermediate tensors: id -> (tensor, grad). Holding the tensor keeps
    # it alive (functions refer to their outputs only weakly) until its creator has used the grad.
    grads = {id(root): (root, grad)}
    for f in reversed(order):
        if getattr(f, "released", False):
            raise RuntimeError(
                "backward through a graph that was already freed: the first backward() released "
                "the saved arrays; call backward(retain_graph=True) the first time to go twice")
        gys = [grads.pop(id(y()), (None, None))[1] if y() is not None else None
               for y in f.outputs]
        if all(g is None for g in gys):
            continue
        # an output nobody used has no grad: zeros, or None where it was freed already (the
        # Function then knows its shape from what it saved)
        outs = [y() for y in f.outputs]
        gys = [g if g is not None or o is None else get_array_module(o.data).zeros_like(o.data)
               for g, o in zip(gys, outs)]
        gxs = f.backward(*gys)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(f.inputs):
            raise RuntimeError(f"{f!r}.backward returned {len(gxs)} grads for "
                               f"{len(f.inputs)} inputs")
        for x, gx in zip(f.inputs, gxs):
            if gx is None or not x.requires_grad:
                continue
            if gx.shape != x.shape:
                raise RuntimeError(f"{f!r}.backward returned grad of shape {gx.shape} "
                                   f"for an input of shape {x.shape}")
            if gx.dtype != x.dtype:
                gx = gx.astype(x.dtype)
            if x.creator is None:            # a leaf: accumulate across uses and calls
                if x.grad is None:
                    # .grad must own its memory (optimizers and clip_grad_norm scale it in
                    # place), but add/transpose/reshape hand back gy itself or a view of it,
                    # and layer_norm one array for both x and its residual: without the copy,
                    # a + b would give a and b one shared .grad array
                    xp = get_array_module(gx)
                    shared = (any(xp.may_share_memory(gx, g) for g in _arrays(gys))
                              or sum(g is gx for g in gxs) > 1)
                    x.grad = gx.copy() if shared else gx
                else:
                    x.grad = x.grad + gx
            else:
                pending = grads.get(id(x))
                if pending is None:
                    grads[id(x)] = (x, gx)
                elif getattr(x.creator, "adds_grad_terms", False):    # its creator adds them
                    grads[id(x)] = (x, GradTerms(pending[1]) + (gx,))
                else:
                    grads[id(x)] = (x, _sum_of_grads(pending[1], gx))
        if not retain_graph:
            f.release()


class GradTerms(tuple):
    """The gradients of one tensor, not yet added: what the engine hands the backward of a
    Function with ``adds_grad_terms = True`` (the LayerNorms) when that tensor, its output, was
    used more than once -- in BERT, every layer's output: the next layer's attention and its
    residual. Such a backward adds the terms, in order, inside the pass that reads its gy
    anyway (cpu/layer_norm.py), instead of the engine writing their sum to memory and the
    backward reading it back. ``total()`` is the sum the engine would have made, to the bit:
    ((g0 + g1) + g2) ...

    ``GradTerms(g)`` of an array is (g,); of a tuple or list of arrays (a GradTerms among
    them), those terms."""

    def __new__(cls, terms):
        return super().__new__(cls, terms if isinstance(terms, (tuple, list)) else (terms,))

    def __add__(self, more):
        return GradTerms(tuple(self) + tuple(more))

    def total(self):
        out = self[0]
        for g in self[1:]:
            out = _sum_of_grads(out, g)
        return out


def grad_of_output(gy, impl):
    """gy for ``impl.backward``: the GradTerms as they are where ``impl`` adds them itself
    (``impl.adds_grad_terms``), else their sum; an array as it is."""
    if isinstance(gy, GradTerms) and not getattr(impl, "adds_grad_terms", False):
        return gy.total()
    return gy


def _arrays(gys):
    """The arrays among ``gys``, the terms of a GradTerms among them."""
    for g in gys:
        if isinstance(g, GradTerms):
            yield from g
        elif g is not None:
            yield g


def _sum_of_grads(a, b):
    """a + b: two gradients of one tensor. Through ``dispatch.grad_sum``, so that large numpy
    arrays are added on all cores (cpu/grad_sum.py). dispatch is imported here, not at the top:
    it imports the ops, which import this module."""
    from . import dispatch
    return dispatch.grad_sum(a, b)


def _topological_order(start):
    """Functions reachable from ``start``, each listed after every function that feeds it.

    Iterative depth-first search: a function is appended only once all its inputs' creators
    have been appended (post-order), so reversing the list gives a valid backward order.
    """
    if start is None:
        return []
    order, visited = [], set()
    stack = [(start, False)]
    while stack:
        f, finished = stack.pop()
        if finished:
            order.append(f)
            continue
        if id(f) in visited:
            continue
        visited.add(id(f))
        stack.append((f, True))
        for x in getattr(f, "inputs", ()):
            if x.creator is not None and id(x.creator) not in visited:
                stack.append((x.creator, False))
    return order
