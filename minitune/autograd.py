"""The autograd core: the ``Function`` base class, grad mode, and ``sum_to``.

A ``Function`` turns input Tensors into output Tensors. ``forward`` works on raw arrays (numpy or
cupy) and keeps whatever ``backward`` will need as attributes of ``self``; ``backward`` receives
the gradient of the loss with respect to each output and returns one gradient per input (``None``
for inputs that are not differentiable, such as labels or masks). ``Function.apply`` links the
outputs to the function (``creator``) so that ``Tensor.backward`` can walk the graph in reverse.
"""
import contextlib
import weakref

from .backend import get_array_module


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


class Function:
    """Base of every differentiable op.

    Subclasses implement ``forward(*arrays)`` returning an array (or a tuple of arrays) and
    ``backward(*grads)`` returning one gradient array (or None) per input, in order.
    After ``apply``: ``self.inputs`` are the input Tensors, ``self.outputs`` weak references to
    the outputs (so the graph does not keep results alive), ``self.generation`` orders backward.
    """
    differentiable = True   # False for ops such as comparisons whose outputs never need grad

    def apply(self, *inputs):
        from .tensor import Tensor, as_tensor
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
        outs = [y() for y in f.outputs]
        gys = [g if g is not None else get_array_module(o.data).zeros_like(o.data)
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
                    shared = (any(xp.may_share_memory(gx, g) for g in gys)
                              or sum(g is gx for g in gxs) > 1)
                    x.grad = gx.copy() if shared else gx
                else:
                    x.grad = x.grad + gx
            else:
                pending = grads.get(id(x))
                grads[id(x)] = (x, gx if pending is None else pending[1] + gx)
        if not retain_graph:
            f.release()


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
