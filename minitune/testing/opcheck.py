"""``check_op``: one example of an op checked both ways, forward against a NumPy reference and
backward against central finite differences. Property tests call it on hypothesis draws:

    @given(mst.arrays(mst.shapes()))
    def test_tanh(x):
        check_op(F.tanh, np.tanh, x)

minitune's own op tests use it, so an op of yours is held to exactly the same checks.
"""
import numpy as np

from ..backend import to_device
from ..tensor import Tensor
from .compare import assert_close
from .gradcheck import GradcheckError, gradcheck


def check_forward(out, expected, rtol=1e-12, atol=1e-12, name="op"):
    """Check an op's output Tensor against the reference value: type, shape, dtype, values.

    Args:
        out: what the op returned (must be a Tensor).
        expected: the reference array (a float reference fixes the dtype too).
        rtol, atol: tolerance of ``assert_close``.
        name: the op's name, for messages.
    """
    if not isinstance(out, Tensor):
        raise AssertionError(f"{name} returned {type(out).__name__}, not a Tensor")
    expected = np.asarray(expected)
    if out.shape != expected.shape:
        raise AssertionError(f"{name}: output shape {out.shape}, reference {expected.shape}")
    if expected.dtype.kind == "f" and out.dtype != expected.dtype:
        raise AssertionError(f"{name}: output dtype {out.dtype}, reference {expected.dtype}")
    assert_close(out, expected, rtol=rtol, atol=atol, msg=f"{name} forward vs reference")


def check_op(fn, reference, *args, rtol=1e-12, atol=1e-12, grad=True, wrt=None, device="cpu",
             **gradcheck_kwargs):
    """Check ``fn(*tensors)`` against ``reference(*args)`` and its gradients numerically.

    Args:
        fn: the op under test, called with Tensors; returns a Tensor.
        reference: the same computation on numpy arrays (float64), written independently
            (a closed form, not a call of ``fn``).
        args: the inputs as numpy arrays or Python numbers. Floating arrays become float64
            leaf Tensors that require grad (the inputs checked); integer and boolean arrays
            (ids, labels, masks) and numbers reach ``fn`` unchanged.
        rtol, atol: forward tolerance (float64 against float64: 1e-12 by default).
        grad: also check the backward (False: forward only).
        wrt: indices of the arguments to differentiate (default: every floating array).
        device: "cpu" or "gpu": where the Tensors live (the reference always runs on numpy).
        gradcheck_kwargs: passed to ``minitune.gradcheck`` (eps, atol, rtol, mode, seed).

    Returns:
        The output Tensor of ``fn``.

    Raises:
        AssertionError: the forward differs from the reference (shape, dtype or values).
        GradcheckError: the backward differs from finite differences; the message names the
            op, the input and its worst element.
    """
    name = getattr(fn, "__name__", None) or type(fn).__name__
    floating = [i for i, a in enumerate(args)
                if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    wrt = floating if wrt is None else list(wrt)
    inputs = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            a = to_device(a.astype(np.float64) if i in wrt else a, device)
            inputs.append(Tensor(a, requires_grad=True) if i in wrt else a)
        else:
            inputs.append(a)

    out = fn(*inputs)
    check_forward(out, reference(*args), rtol, atol, name)
    if grad and wrt:
        try:
            gradcheck(fn, inputs, **gradcheck_kwargs)
        except GradcheckError as e:
            e.args = (f"{name} backward: {e.args[0]}",) + e.args[1:]
            raise
    return out
