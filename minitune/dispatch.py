"""One dispatch point for every fused op: its reference, minitune's fused CPU code, or a kernel.

A *fused op* (attention, residual + LayerNorm, dropout + residual + LayerNorm, bias + GELU,
softmax cross-entropy, embedding, dropout, the Adam/AdamW update) is defined by its
**reference**: plain ``xp`` code in ``minitune/ops/`` (``minitune/optim/`` for Adam), written
to be read, running on numpy or cupy arrays alike. Faster implementations of the same op may
exist beside it:

    on numpy arrays   minitune/cpu/    fused, multi-threaded CPU code     table ``cpu.FUSED``
    on cupy arrays    minitune/cuda/   launchers of kernels/*.cu          table ``cuda.KERNELS``

An op asks once, at the start of its forward, which implementation runs it, and keeps the
answer so that its backward uses the same one (each implementation keeps its own ``saved``)::

    self.impl = dispatch.implementation("layer_norm", LAYER_NORM, x)
    y, self.saved = self.impl.forward(x, w, b, eps, residual)
    ...
    gx, gw, gb = self.impl.backward(gy, self.saved)

Every implementation of an op offers the same functions, with the same arguments and results,
as the op's reference (``LAYER_NORM`` above), and a ``supports(*arrays)`` test: a kernel that
handles float32 only, or head sizes up to 128, says no to other inputs and the reference runs
instead. Tests compare every implementation with its reference (tests/cpu, tests/cuda).

The switch: ``MINITUNE_FUSED=0`` in the environment, or ``with dispatch.use_fused(False):``,
runs every op on its reference -- for A/B comparisons, and to rule a fused path in or out when
something looks wrong.
"""
import contextlib
import os

from . import cpu, cuda
from .backend import is_cupy_array


class Implementation:
    """The functions that implement one op on one kind of array.

    Args:
        name: what the op is called in the tables ("layer_norm", "attention", ...).
        supports: ``supports(*arrays) -> bool``; the default accepts everything.
        functions: the op's functions, e.g. ``forward=...`` and ``backward=...``
            (``step=...`` for an optimizer update).
    """

    def __init__(self, name, supports=None, **functions):
        self.name = name
        self.supports = supports if supports is not None else _always
        for key, fn in functions.items():
            setattr(self, key, fn)

    def __repr__(self):
        return f"<Implementation {self.name!r}>"


def _always(*arrays):
    return True


class _Switch:
    enabled = os.environ.get("MINITUNE_FUSED", "1") != "0"


def fused_enabled():
    """True unless fused implementations were switched off (MINITUNE_FUSED=0, use_fused)."""
    return _Switch.enabled


@contextlib.contextmanager
def use_fused(flag=True):
    """Inside the block, ops use their fused implementations (True) or only references (False)."""
    previous = _Switch.enabled
    _Switch.enabled = bool(flag)
    try:
        yield
    finally:
        _Switch.enabled = previous


GRAD_SUM = Implementation("grad_sum", forward=lambda a, b: a + b)


def grad_sum(a, b):
    """a + b for two gradients of one tensor: the autograd engine's one piece of arithmetic
    (autograd.py ``run_backward``), dispatched like a fused op (cpu/grad_sum.py on all cores)."""
    return implementation("grad_sum", GRAD_SUM, a, b).forward(a, b)


def implementation(op, reference, *arrays):
    """The implementation that computes ``op`` on ``arrays``.

    Args:
        op: the op's name in the tables.
        reference: the op's reference ``Implementation`` (plain xp code).
        arrays: the op's array arguments, which decide the device (cupy -> the kernel table,
            numpy -> the CPU table) and are handed to ``supports``.

    Returns:
        the fused CPU implementation or CUDA kernel for this op when one exists, fused code is
        switched on, and it supports these arrays; otherwise ``reference``.
    """
    if not _Switch.enabled:
        return reference
    table = cuda.KERNELS if any(is_cupy_array(a) for a in arrays) else cpu.FUSED
    impl = table.get(op)
    if impl is None or not impl.supports(*arrays):
        return reference
    return impl
